//! The UCM web UI's CDR "Download" CSV: human labels instead of field
//! names, a leading `cdr` column (`main_cdr` / `sub_cdr`), and the UI's own
//! time and duration forms. The CSV machinery is shared with the CDR API
//! reader (`csv.rs`); this module holds what differs, as data.
//!
//! Labels are those read by public importers of the download
//! (`tests/samples/ucm63xx-webui-export-columns.txt`), and those of older
//! firmware's manuals: UCM6510 1.0.0.5/1.0.2.5 and UCM6100 1.0.9.25 name
//! `Start Time`, `Call From` (the caller ID, `"John Doe"<6012>`), `Call To`,
//! `Call Time`, `Talk Time`, `Status`, `Context`, `Source Channel`,
//! `Dest Channel`; the GXW450x's report (same firmware family) `CallerID`.
//! The user picks which columns are exported, so any subset, order and
//! letter case is accepted.

use super::split::{FieldKind, FieldSpan};
use crate::values::{Timestamp, parse_int, parse_timestamp};

/// Where a header label goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// A data-model field, by name.
    Field(&'static str),
    /// The `cdr` column: sets `cdr_kind` and `leg`.
    Kind,
}

/// Web UI label (lower case) → vendor field name. Columns the data model
/// lacks keep a snake_case name of their own.
const LABELS: &[(&str, &str)] = &[
    ("account code", "accountcode"),
    ("caller number", "src"),
    ("caller nat", "caller_nat"),
    ("callee number", "dst"),
    ("callee nat", "callee_nat"),
    ("context", "dcontext"),
    ("caller id", "clid"),
    ("source channel", "channel"),
    ("dest. channel", "dstchannel"),
    ("last app.", "lastapp"),
    ("last data", "lastdata"),
    ("start time", "start"),
    ("answer time", "answer"),
    ("end time", "end"),
    ("call time", "duration"),
    ("talk time", "billsec"),
    ("call status", "disposition"),
    ("ama flags", "amaflags"),
    ("unique id", "uniqueid"),
    ("call type", "call_type"),
    ("dest channel extension", "dstchannel_ext"),
    ("caller name", "caller_name"),
    ("answered by", "dstanswer"),
    ("session", "session"),
    ("premier caller", "premier_caller"),
    ("action type", "action_type"),
    ("source trunk name", "src_trunk_name"),
    ("destination trunk name", "dst_trunk_name"),
    // Older firmware (UCM6510 1.0.2.5, UCM6100 1.0.9.25, GXW450x). `Call
    // From` is the caller ID as the UI shows it (`"John Doe"<6012>`, no
    // space), hence `clid`, kept as written.
    ("call from", "clid"),
    ("call to", "dst"),
    ("status", "disposition"),
    ("dest channel", "dstchannel"),
    ("callerid", "clid"),
];

/// The target of a header label, matched without regard to letter case or
/// surrounding blanks.
pub fn lookup(label: &str) -> Option<Target> {
    let label = label.trim().to_ascii_lowercase();
    if label == "cdr" {
        return Some(Target::Kind);
    }
    LABELS.iter().find(|(l, _)| *l == label).map(|(_, f)| Target::Field(f))
}

/// Whether a header line is a web UI download's (for format sniffing).
pub fn is_webui_header(fields: &[&str]) -> bool {
    let known = fields.iter().filter(|f| lookup(f).is_some_and(|t| t != Target::Field("session"))).count();
    known >= 2 && known * 2 >= fields.len()
}

/// `main_cdr` → main, `sub_cdr` → sub (also the short forms).
pub fn parse_kind(s: &[u8]) -> Option<Kind> {
    match s {
        b"main_cdr" | b"main" => Some(Kind::Main),
        b"sub_cdr" | b"sub" => Some(Kind::Sub),
        _ => None,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Main,
    Sub,
}

/// A duration as seconds (`95`) or `H:MM:SS` (`0:01:35`).
pub fn parse_duration(s: &[u8]) -> Option<i64> {
    if let Some(v) = parse_int(s) {
        return Some(v);
    }
    let text = std::str::from_utf8(s).ok()?;
    let mut parts = text.split(':');
    let (h, m, sec) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || m.len() != 2 || sec.len() != 2 {
        return None;
    }
    let num = |p: &str| p.bytes().all(|b| b.is_ascii_digit()).then(|| p.parse::<i64>().ok()).flatten();
    let (h, m, sec) = (num(h)?, num(m)?, num(sec)?);
    (m < 60 && sec < 60).then_some(h * 3600 + m * 60 + sec)
}

/// A time as `YYYY-MM-DD HH:MM:SS` or the UI's `M/D/YYYY h:mm:ss AM` form.
pub fn parse_time(s: &[u8]) -> Option<Timestamp> {
    parse_timestamp(s).or_else(|| parse_us_time(s).map(Timestamp::At))
}

fn parse_us_time(s: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(s).ok()?.trim();
    let (date, rest) = text.split_once(' ')?;
    let (clock, meridiem) = match rest.trim().rsplit_once(' ') {
        Some((clock, m)) => (clock, Some(m.to_ascii_uppercase())),
        None => (rest.trim(), None),
    };
    let mut d = date.split('/');
    let (month, day, year) = (d.next()?.parse::<i64>().ok()?, d.next()?.parse::<i64>().ok()?, d.next()?);
    if d.next().is_some() || year.len() != 4 {
        return None;
    }
    let year = year.parse::<i64>().ok()?;
    let mut c = clock.split(':');
    let (hour, minute) = (c.next()?.parse::<i64>().ok()?, c.next()?);
    let second = c.next().map_or(Some(0), |v| (v.len() == 2).then(|| v.parse::<i64>().ok()).flatten())?;
    if c.next().is_some() || minute.len() != 2 {
        return None;
    }
    let minute = minute.parse::<i64>().ok()?;
    let hour = match meridiem.as_deref() {
        Some("AM") if (1..=12).contains(&hour) => hour % 12,
        Some("PM") if (1..=12).contains(&hour) => hour % 12 + 12,
        None if hour < 24 => hour,
        _ => return None,
    };
    // Calendar check through the strict parser.
    let iso = format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}:{second:02}");
    match parse_timestamp(iso.as_bytes())? {
        Timestamp::At(us) => Some(us),
        Timestamp::Unset => None,
    }
}

/// The name and number of a caller ID field, `"John Doe"<6012>`,
/// `John Doe <6012>` or a bare `6012`, as spans of the input. The number is
/// taken from the raw bytes in any quoting (it holds no quotes); the name
/// only from an unquoted field, whose bytes are its text.
pub fn split_caller_id(buf: &[u8], field: FieldSpan) -> (Option<FieldSpan>, Option<FieldSpan>) {
    let raw = &buf[field.start..field.end];
    let span = |start: usize, end: usize| {
        (start < end).then_some(FieldSpan {
            start: field.start + start,
            end: field.start + end,
            kind: FieldKind::Plain,
        })
    };
    let dialable = |s: &[u8]| !s.is_empty() && s.iter().all(|b| b.is_ascii_digit() || b"+*#".contains(b));
    let trimmed = raw.trim_ascii_end();
    let Some(open) = trimmed.strip_suffix(b">").and_then(|t| memchr::memrchr(b'<', t)) else {
        return (None, if dialable(raw.trim_ascii()) { span(0, raw.len()) } else { None });
    };
    let number = &trimmed[open + 1..trimmed.len() - 1];
    if !dialable(number) {
        return (None, None);
    }
    let name = match field.kind {
        FieldKind::Plain => {
            let before = raw[..open].trim_ascii();
            let (lead, trail) = (raw[..open].len() - raw[..open].trim_ascii_start().len(), before.len());
            match before {
                [b'"', .., b'"'] if before.len() >= 2 => span(lead + 1, lead + trail - 1),
                _ => span(lead, lead + trail),
            }
        }
        _ => None,
    };
    (name, span(open + 1, trimmed.len() - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert_eq!(lookup(" Caller Number "), Some(Target::Field("src")));
        assert_eq!(lookup("DEST. CHANNEL"), Some(Target::Field("dstchannel")));
        assert_eq!(lookup("cdr"), Some(Target::Kind));
        assert_eq!(lookup("Talk Time"), Some(Target::Field("billsec")));
        assert_eq!(lookup("Call From"), Some(Target::Field("clid")));
        assert_eq!(lookup("call to"), Some(Target::Field("dst")));
        assert_eq!(lookup("STATUS"), Some(Target::Field("disposition")));
        assert!(is_webui_header(&["Start Time", "Call From", "Call To", "Call Time", "Talk Time", "Status"]));
        assert_eq!(lookup("nope"), None);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration(b"95"), Some(95));
        assert_eq!(parse_duration(b"0:01:35"), Some(95));
        assert_eq!(parse_duration(b"12:00:00"), Some(43_200));
        for bad in [&b"1:5:00"[..], b"0:60:00", b"1:00", b"a:00:00", b""] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn times() {
        let iso = |s: &str| parse_timestamp(s.as_bytes());
        assert_eq!(parse_time(b"9/28/2026 10:00:05 AM"), iso("2026-09-28 10:00:05"));
        assert_eq!(parse_time(b"9/28/2026 12:00:05 AM"), iso("2026-09-28 00:00:05"));
        assert_eq!(parse_time(b"9/28/2026 12:30:00 PM"), iso("2026-09-28 12:30:00"));
        assert_eq!(parse_time(b"12/1/2026 1:02:03 pm"), iso("2026-12-01 13:02:03"));
        assert_eq!(parse_time(b"2026-09-28 10:00:00"), iso("2026-09-28 10:00:00"));
        for bad in [&b"2/30/2026 1:00:00 AM"[..], b"9/28/2026 13:00:00 PM", b"9/28/26 1:00:00 AM", b"9/28/2026"] {
            assert_eq!(parse_time(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn caller_id_splits_into_name_and_number() {
        use super::{FieldKind, FieldSpan, split_caller_id};
        fn parts(text: &str, kind: FieldKind) -> (Option<&str>, Option<&str>) {
            let span = FieldSpan { start: 0, end: text.len(), kind };
            let (name, number) = split_caller_id(text.as_bytes(), span);
            let at = |s: Option<FieldSpan>| s.map(|s| &text[s.start..s.end]);
            (at(name), at(number))
        }
        assert_eq!(parts("\"John Doe\"<6012>", FieldKind::Plain), (Some("John Doe"), Some("6012")));
        assert_eq!(parts("John Doe <6012> ", FieldKind::Plain), (Some("John Doe"), Some("6012")));
        assert_eq!(parts("\"\"John\"\"<6012>", FieldKind::Escaped), (None, Some("6012")));
        assert_eq!(parts("+496012", FieldKind::Plain), (None, Some("+496012")));
        assert_eq!(parts("<6012>", FieldKind::Plain), (None, Some("6012")));
        assert_eq!(parts("John <sip:6012@pbx>", FieldKind::Plain), (None, None));
        assert_eq!(parts("anonymous", FieldKind::Plain), (None, None));
    }
}
