//! The Asterisk family's CSV layouts, read by [`super::csv`]: cdr_csv's
//! `Master.csv`, cdr_custom templates (and tables read through them) and
//! FreePBX's CDR report export.
//!
//! One mapping of Asterisk's CDR names (and FreePBX's `cdr` table's) to
//! output columns ([`map_columns`]) serves every layout, so a row means the
//! same whichever way it was written:
//! - `calldate` (FreePBX, cdr_pgsql, cdr_adaptive_odbc) is `start`;
//! - `linkedid` also fills `session`, `cnam` `caller_name` and
//!   `recordingfile` `recordfiles` (the original columns keep their names);
//!   without a `cnam`, `caller_name` is the name part of `clid`;
//! - a layout without `end` gets `end = start + duration`, one without
//!   `answer` gets `answer = end − billsec` where `billsec > 0` (derived on
//!   the wall clock, see [`Derive`]).
//!
//! FreePBX's old export (FreePBX/cdr functions.inc.php `cdr_export_csv`)
//! quotes a field only when it holds a comma and doubles no inner quote, so
//! `"Doe, John" <8914>` is written `""Doe, John" <8914>"`: RFC 4180 reads
//! that as two fields. A record with the wrong field count is reassembled
//! from its comma-separated parts ([`reassemble`]), or rejected where no
//! single way fits. A cdr_custom template may quote the same way: Asterisk's
//! own `configs/cdr_custom.conf` writes `"${CDR(clid)}",…` (literal quotes,
//! nothing escaped), read by [`split_custom`].

use super::csv::{ACCTID_COLUMN, FileLayout, Layout, SKIPPED, field_bytes, lookup_base};
use super::split::{FieldKind, FieldSpan, RecordSpan, UnterminatedQuote, split_record};
use super::{Format, Input};
use crate::error::Result;
use crate::schema::{
    self, AMAFLAGS_COLUMN, ASTERISK_EXTRA, BASE_COLUMNS, CALLER_NAME_COLUMN, CLID_COLUMN, EXTRA_COLUMN, START_COLUMN,
};
use crate::values::{Timestamp, parse_timestamp};

/// The columns of Asterisk's sample `cdr_custom.conf` template
/// (configs/samples/cdr_custom.conf.sample): `asterisk-custom`'s default.
#[rustfmt::skip]
pub const CUSTOM_DEFAULT: [&str; 19] = [
    "clid", "src", "dst", "dcontext", "channel", "dstchannel", "lastapp", "lastdata", "start", "answer",
    "end", "duration", "billsec", "disposition", "amaflags", "accountcode", "uniqueid", "userfield", "sequence",
];

/// The sample template before `sequence` (Asterisk 1.6 – 11): 18 fields.
const CUSTOM_DEFAULT_OLD: usize = 18;

/// The record widths cdr_csv writes (cdr/cdr_csv.c `build_csv_record`):
/// 16 fields `accountcode` … `amaflags`, then `uniqueid` if `loguniqueid`,
/// `userfield` if `loguserfield`, then `peeraccount, linkedid, sequence` if
/// `newcdrcolumns`. 17 and 20 fields (one of the two optional fields) are
/// read as `uniqueid`, the default's first.
const CSV_WIDTHS: [usize; 6] = [16, 17, 18, 19, 20, 21];

/// FreePBX's `asteriskcdrdb.cdr` columns beyond cdr_csv's (text columns of
/// their own names), and the data-model column each also fills, if any.
const FREEPBX_COLUMNS: [(&str, Option<&str>); 7] = [
    ("did", None),
    ("recordingfile", Some("recordfiles")),
    ("cnum", None),
    ("cnam", Some("caller_name")),
    ("outbound_cnum", None),
    ("outbound_cnam", None),
    ("dst_cnam", None),
];

/// FreePBX's name of the start time.
const CALLDATE: &str = "calldate";

/// The output columns of a cdr_csv record of `n` fields.
fn width_layout(n: usize) -> Layout {
    // `accountcode` … `amaflags` are data-model columns 1..=16, in order.
    let mut columns: Vec<usize> = (1..=AMAFLAGS_COLUMN).collect();
    let optional = if n >= 19 { n - 19 } else { n - 16 };
    columns.extend([17, 18].into_iter().take(optional));
    if n >= 19 {
        columns.extend((0..ASTERISK_EXTRA.len()).map(|k| EXTRA_COLUMN + k));
    }
    Layout { columns, lastdata: None }
}

/// Sniffs an Asterisk-family file from its start: a header naming
/// `calldate` (FreePBX), or a headerless record with every field quoted (an
/// empty one may be bare) of 16 to 21 fields with a time in the 10th
/// (cdr_csv) or the 19 of the sample cdr_custom template with a time in the
/// 9th. Returns the format and what was seen.
///
/// A file whose first line is cut short (a copy of a live file, a tail) is
/// told by its second record.
pub fn sniff(head: &[u8]) -> Option<(Format, String)> {
    let mut fields = Vec::new();
    // A cut first line may leave a quote open: line 2 starts after its line end.
    let second = match split_record(head, 0, &mut fields) {
        Ok(first) => first.next,
        Err(_) => memchr::memchr(b'\n', head).map_or(head.len(), |k| k + 1),
    };
    let is_name = |f: &FieldSpan, name: &str| field_bytes(head, f).trim_ascii().eq_ignore_ascii_case(name.as_bytes());
    if fields.iter().any(|f| is_name(f, CALLDATE)) {
        let n = fields.len();
        return Some((Format::FreepbxCsv, format!("a header of {n} names with calldate (FreePBX's CDR export)")));
    }
    sniff_record(head, 0, &mut fields).or_else(|| {
        let (format, seen) = sniff_record(head, second, &mut fields)?;
        Some((format, format!("{seen} on line 2 (line 1 is not one)")))
    })
}

/// The headerless record at `pos`: every field quoted (an empty one may
/// be bare), 16 to 21 fields with a time in the 10th (cdr_csv), or the
/// sample cdr_custom template's 19 or 18 with a time in the 9th (in a
/// template quoting literally too, [`split_custom`]).
fn sniff_record(head: &[u8], pos: usize, fields: &mut Vec<FieldSpan>) -> Option<(Format, String)> {
    if head.get(pos) != Some(&b'"') {
        return None;
    }
    let time_at = |fields: &[FieldSpan], i: usize| {
        fields.get(i).is_some_and(|f| f.kind != FieldKind::Plain && parse_timestamp(&field_bytes(head, f)).is_some())
    };
    // The template's 9th field is `start`; cdr_csv's is `lastdata`.
    let custom_widths = [CUSTOM_DEFAULT.len(), CUSTOM_DEFAULT_OLD];
    if let Ok(Ok(_)) = split_custom(head, pos, &custom_widths, fields)
        && custom_widths.contains(&fields.len())
        && time_at(fields, 8)
    {
        let n = fields.len();
        let seen =
            format!("a headerless quoted record of {n} fields, a time 9th (Asterisk's sample cdr_custom template)");
        return Some((Format::AsteriskCustom, seen));
    }
    split_record(head, pos, fields).ok()?;
    let n = fields.len();
    ((16..=21).contains(&n) && time_at(fields, 9) && cdr_csv_quoting(head, fields).is_ok()).then(|| {
        (Format::AsteriskCsv, format!("a headerless quoted record of {n} fields, a time 10th (Asterisk cdr_csv)"))
    })
}

/// cdr_csv quotes every text field and doubles inner quotes
/// (cdr/cdr_csv.c `append_string`), so a quote RFC 4180 could not read
/// is no cdr_csv record: read as one, its fields would be shifted.
pub(super) fn cdr_csv_quoting(buf: &[u8], fields: &[FieldSpan]) -> std::result::Result<(), (usize, String)> {
    match fields.iter().find(|f| unpaired_quote(buf, f)) {
        None => Ok(()),
        Some(f) => Err((
            f.start,
            "a quote inside a field that is not doubled, which cdr_csv never writes (a cdr_custom template \
             quoting literally? format=\"asterisk-custom\")"
                .into(),
        )),
    }
}

/// The layout of a cdr_csv file: by its first record's width, other
/// widths accepted too (a site that changed its options mid-file).
pub(super) fn csv_layout(input: &Input, pos: usize) -> (FileLayout, Vec<String>, usize) {
    let buf = input.bytes();
    let mut fields = Vec::new();
    let width = match split_record(buf, pos, &mut fields) {
        Ok(_) if pos < buf.len() && CSV_WIDTHS.contains(&fields.len()) => fields.len(),
        _ => 21,
    };
    let layout = FileLayout {
        primary: width_layout(width),
        has_header: false,
        other_widths: CSV_WIDTHS.into_iter().filter(|&w| w != width).map(width_layout).collect(),
        described: Some("16 to 21 fields as Asterisk's cdr_csv writes".into()),
    };
    (layout, ASTERISK_EXTRA.iter().map(|s| s.to_string()).collect(), pos)
}

/// The layout of a cdr_custom file (or a table written as CSV): the
/// caller's column names in order, by [`map_columns`].
pub(super) fn custom_layout(
    input: &Input,
    names: Option<&[String]>,
    pos: usize,
) -> Result<(FileLayout, Vec<String>, usize)> {
    let mut default: Vec<String> = Vec::new();
    let names = match names {
        Some(names) => names,
        None => {
            default = CUSTOM_DEFAULT.iter().map(|s| s.to_string()).collect();
            &default
        }
    };
    let fail = |reason: String| crate::error::Error::Input { source: input.name.clone(), reason };
    if names.is_empty() {
        return Err(fail("format=asterisk-custom needs at least one column".into()));
    }
    let (columns, extra) = map_columns(names).map_err(|e| fail(format!("{e} in columns=")))?;
    let lastdata = columns.iter().position(|&c| c == schema::LASTDATA_COLUMN);
    let (other_widths, described) = if default.is_empty() {
        (Vec::new(), format!("{} fields as in columns= (more only with an unquoted lastdata)", columns.len()))
    } else {
        let old = Layout { columns: columns[..CUSTOM_DEFAULT_OLD].to_vec(), lastdata };
        (vec![old], "19 or 18 fields as Asterisk's sample cdr_custom templates write".into())
    };
    let primary = Layout { columns, lastdata };
    Ok((FileLayout { primary, has_header: false, other_widths, described: Some(described) }, extra, pos))
}

/// The layout of a FreePBX export: its header's names, by [`map_columns`];
/// `Err` holds the header's extent and the reason it is unusable.
pub(super) fn freepbx_layout(
    input: &Input,
    pos: usize,
) -> std::result::Result<(FileLayout, Vec<String>, usize), (RecordSpan, String)> {
    let buf = input.bytes();
    let mut fields = Vec::new();
    let first = match split_record(buf, pos, &mut fields) {
        Ok(first) if pos < buf.len() => first,
        // Nothing to read: an empty export.
        _ => RecordSpan { start: pos, end: pos, next: buf.len() },
    };
    if pos >= buf.len() {
        fields.clear();
    }
    let names: Vec<String> = fields.iter().map(|f| schema::column_name(field_bytes(buf, f).trim_ascii())).collect();
    if pos < buf.len() && !names.iter().any(|n| n.eq_ignore_ascii_case(CALLDATE) || lookup_base(n).is_some()) {
        return Err((first, "expected a header of Asterisk CDR names (calldate, clid, src, …)".into()));
    }
    let (columns, extra) = map_columns(&names).map_err(|e| (first, format!("{e} in header")))?;
    let described = Some(format!("{} fields as in the header", columns.len()));
    let layout = FileLayout {
        primary: Layout { columns, lastdata: None },
        has_header: true,
        other_widths: Vec::new(),
        described,
    };
    Ok((layout, extra, first.next))
}

/// The output column of each of `names` (Asterisk's CDR names, FreePBX's
/// and cdr_pgsql's table columns; matched case-insensitively), and the
/// output names beyond the data model: [`ASTERISK_EXTRA`], then the others
/// as first named (text columns). `calldate` is `start` unless a `start`
/// is named too (then it is text).
pub fn map_columns(names: &[String]) -> std::result::Result<(Vec<usize>, Vec<String>), String> {
    let mut extra: Vec<String> = ASTERISK_EXTRA.iter().map(|s| s.to_string()).collect();
    let has_start = names.iter().any(|n| lookup_base(n.trim()) == Some(START_COLUMN));
    let mut columns = Vec::with_capacity(names.len());
    for name in names {
        // Names the caller gives become column names as header names do.
        let name = schema::column_name(name.trim().as_bytes());
        let known = ASTERISK_EXTRA
            .iter()
            .chain(FREEPBX_COLUMNS.iter().map(|(n, _)| n))
            .find(|n| n.eq_ignore_ascii_case(&name))
            .map_or(name.as_str(), |n| n);
        let column = match lookup_base(known) {
            Some(i) => i,
            None if known.eq_ignore_ascii_case(CALLDATE) && !has_start => START_COLUMN,
            None if known == schema::CDR_KIND || known == schema::LEG => SKIPPED,
            None if known.is_empty() => return Err("empty column name".into()),
            None => match extra.iter().position(|e| e == known) {
                Some(k) => EXTRA_COLUMN + k,
                None => {
                    extra.push(known.to_string());
                    EXTRA_COLUMN + extra.len() - 1
                }
            },
        };
        if column != SKIPPED && columns.contains(&column) {
            return Err(format!("duplicate column {name:?}"));
        }
        columns.push(column);
    }
    Ok((columns, extra))
}

/// What an Asterisk-family record's columns give other columns.
#[derive(Clone, Debug, Default)]
pub(super) struct Fills {
    /// (source, target): a value of the source also fills the target
    /// where the layout leaves it empty (`linkedid` → `session`, …).
    pub copies: Vec<(usize, usize)>,
    /// `linkedid` and `sequence`: beside a `linkedid`, `sequence`
    /// (Asterisk's CDR counter) is `AcctId`, so that (`session`, `AcctId`)
    /// keys a record as for the UCM. Not without one: the counter restarts
    /// with Asterisk.
    pub linkedid: Option<usize>,
    pub sequence: Option<usize>,
    pub derive: Derive,
}

/// Times a layout lacks, derived from those it has: `end = start +
/// duration`, `answer = end − billsec` where `billsec > 0` (Asterisk's own
/// definitions of `duration` and `billsec`). Derived on the wall clock: a
/// call across a DST change is an hour off.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Derive {
    pub end: bool,
    pub answer: bool,
}

/// Output columns of the times and counts [`Derive`] uses.
struct TimeColumns {
    start: usize,
    answer: usize,
    end: usize,
    duration: usize,
    billsec: usize,
}

const TIMES: TimeColumns = TimeColumns {
    start: START_COLUMN,
    answer: base("answer"),
    end: base("end"),
    duration: base("duration"),
    billsec: schema::BILLSEC_COLUMN,
};

/// Index of a name in [`BASE_COLUMNS`], at compile time.
const fn base(name: &str) -> usize {
    let mut i = 0;
    while i < BASE_COLUMNS.len() {
        if const_eq(BASE_COLUMNS[i], name) {
            return i;
        }
        i += 1;
    }
    panic!("not a data-model column")
}

const fn const_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

impl Fills {
    /// For a layout of `names` (the file's output columns) that fills the
    /// output `columns`.
    pub fn new(names: &[String], columns: &[usize]) -> Self {
        let at = |name: &str| names.iter().position(|n| n == name);
        let mut copies: Vec<(usize, usize)> = Vec::new();
        if let Some(linkedid) = at("linkedid") {
            copies.push((linkedid, schema::SESSION_COLUMN));
        }
        for (name, target) in FREEPBX_COLUMNS {
            if let (Some(source), Some(target)) = (at(name), target.and_then(schema::base_index)) {
                copies.push((source, target));
            }
        }
        Self {
            copies,
            linkedid: at("linkedid"),
            sequence: at("sequence"),
            derive: Derive { end: !columns.contains(&TIMES.end), answer: !columns.contains(&TIMES.answer) },
        }
    }
}

impl Fills {
    /// Whether a record whose layouts fill the columns `filled` may also
    /// get a value in `column` from another.
    pub fn may_fill(&self, column: usize, filled: &[usize]) -> bool {
        let has = |c: usize| filled.contains(&c);
        self.copies.iter().any(|&(source, target)| target == column && has(source))
            || (column == ACCTID_COLUMN && self.linkedid.is_some() && self.sequence.is_some())
            || (column == CALLER_NAME_COLUMN && has(CLID_COLUMN))
            || (column == TIMES.end && self.derive.end)
            || (column == TIMES.answer && self.derive.answer)
    }
}

/// Derives the times a record's layout lacks into `ints` (microseconds,
/// seconds); the reason where one is out of range.
pub(super) fn derive_times(derive: Derive, ints: &mut [Option<i64>]) -> std::result::Result<(), String> {
    let shift =
        |at: i64, seconds: i64, sign: i64| seconds.checked_mul(sign * 1_000_000).and_then(|d| at.checked_add(d));
    if derive.end
        && let (Some(start), Some(duration)) = (ints[TIMES.start], ints[TIMES.duration])
    {
        ints[TIMES.end] = Some(shift(start, duration, 1).ok_or("end (start + duration) is out of range")?);
    }
    if derive.answer
        && let (Some(end), Some(billsec)) = (ints[TIMES.end], ints[TIMES.billsec])
        && billsec > 0
    {
        ints[TIMES.answer] = Some(shift(end, billsec, -1).ok_or("answer (end − billsec) is out of range")?);
    }
    Ok(())
}

/// A time as [`parse_timestamp`] reads it, or written ISO-style with a
/// `T` (`2024-01-28T10:18:20.000000`: Polars' `write_csv` of a table's
/// datetimes).
pub(super) fn parse_time(value: &[u8]) -> Option<Timestamp> {
    if value.get(10) == Some(&b'T') {
        let mut spaced = value.to_vec();
        spaced[10] = b' ';
        return parse_timestamp(&spaced);
    }
    parse_timestamp(value)
}

/// The name in a caller ID `"Alice Smith" <1001>` (`Alice Smith`), as the
/// UCM's `caller_name` holds it; `None` where there is none.
pub(super) fn clid_name(buf: &[u8], clid: FieldSpan) -> Option<FieldSpan> {
    let raw = &buf[clid.start..clid.end];
    let trimmed = raw.trim_ascii_end().strip_suffix(b">")?;
    let open = memchr::memrchr(b'<', trimmed)?;
    let before = &raw[..open];
    let lead = before.len() - before.trim_ascii_start().len();
    let name = before.trim_ascii();
    // Inside a quoted field (`"""Alice"" <1>"`) each quote is doubled.
    let (quote, kind): (&[u8], _) = match clid.kind {
        FieldKind::Escaped => (b"\"\"", FieldKind::Escaped),
        _ => (b"\"", FieldKind::Plain),
    };
    let (skip, len) = match name.strip_prefix(quote).and_then(|n| n.strip_suffix(quote)) {
        Some(inner) => (quote.len(), inner.len()),
        None => (0, name.len()),
    };
    let start = clid.start + lead + skip;
    (len > 0).then_some(FieldSpan { start, end: start + len, kind })
}

/// A FreePBX record's split: RFC 4180's where it gives `width` fields;
/// else the old export's reassembly of the line where that fits one way
/// ([`reassemble`]); else RFC 4180's count or failure, or the reassembly's
/// reject (the line and the reason). (A field RFC 4180 reads across lines
/// is the newer export's: the old one writes no line break in a field.)
pub(super) fn split_freepbx(
    buf: &[u8],
    pos: usize,
    width: usize,
    fields: &mut Vec<FieldSpan>,
) -> std::result::Result<std::result::Result<RecordSpan, UnterminatedQuote>, (RecordSpan, String)> {
    let split = split_record(buf, pos, fields);
    if split.is_ok() && fields.len() == width {
        unquote(buf, fields, true);
        return Ok(split);
    }
    match reassemble(buf, pos, width, fields, Quoting::Freepbx) {
        Reassembly::Fields(line) => Ok(Ok(line)),
        Reassembly::Ambiguous(line, reason) => Err((line, reason)),
        Reassembly::TooFew => Ok(split),
    }
}

/// A cdr_custom record of one of `widths` fields (the template's first).
/// A template quotes with `CSV_QUOTE` (RFC 4180) or with literal quotes
/// around a value written as it is (`"${CDR(clid)}"`), which RFC 4180
/// cannot pair: `""Doe, John" <1>"` splits into `""Doe` and ` John" <1>"`.
/// A line with a quote RFC 4180 left unpaired is read from its
/// comma-separated parts instead, where they fit one width in one way
/// ([`reassemble`]), else it is a reject: read as RFC 4180 splits it, or
/// by the `lastdata` rule, its fields would be shifted.
pub(super) fn split_custom(
    buf: &[u8],
    pos: usize,
    widths: &[usize],
    fields: &mut Vec<FieldSpan>,
) -> std::result::Result<std::result::Result<RecordSpan, UnterminatedQuote>, (RecordSpan, String)> {
    let split = split_record(buf, pos, fields);
    let Ok(record) = split else { return Ok(split) };
    if !fields.iter().any(|f| unpaired_quote(buf, f)) {
        return Ok(split);
    }
    // Exactly one width must fit, in exactly one way.
    let (mut found, mut reason) = (None, None);
    for &width in widths {
        match reassemble(buf, pos, width, fields, Quoting::Literal) {
            Reassembly::Fields(_) if found.is_some() => {
                let reason = "its comma-separated parts fit more than one width of the template";
                return Err((record, reason.into()));
            }
            Reassembly::Fields(line) => found = Some((line, fields.clone())),
            Reassembly::Ambiguous(_, why) => reason = reason.or(Some(why)),
            Reassembly::TooFew => {}
        }
    }
    match found {
        Some((line, rejoined)) => {
            *fields = rejoined;
            unquote(buf, fields, false);
            Ok(Ok(line))
        }
        None => {
            let reason = reason.unwrap_or_else(|| "a quote closed that no field opened, and too few parts".into());
            Err((record, reason))
        }
    }
}

/// A field holding a quote RFC 4180 did not pair (`"a" <1>`, `""Doe`).
fn unpaired_quote(buf: &[u8], f: &FieldSpan) -> bool {
    f.kind == FieldKind::Plain && memchr::memchr(b'"', &buf[f.start..f.end]).is_some()
}

/// Quoted fields RFC 4180 read whole with their quotes still around them
/// (the inner quotes not doubled, `"a"b "c,d"`, `""Alice" <1>"`) lose those
/// quotes. FreePBX's old export quotes only a field with a comma
/// (`with_comma`): a comma outside RFC's quotes is never in a raw value.
/// A cdr_custom template quoting literally quotes any field.
fn unquote(buf: &[u8], fields: &mut [FieldSpan], with_comma: bool) {
    for f in fields.iter_mut().filter(|f| f.kind == FieldKind::Plain && f.end - f.start >= 2) {
        let text = &buf[f.start..f.end];
        if text[0] == b'"' && text[text.len() - 1] == b'"' && (!with_comma || memchr::memchr(b',', text).is_some()) {
            *f = FieldSpan { start: f.start + 1, end: f.end - 1, kind: FieldKind::Quoted };
        }
    }
}

/// Who quoted the line [`reassemble`] rejoins.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Quoting {
    /// FreePBX's old export: a field in quotes only if it holds a comma,
    /// any other as it is.
    Freepbx,
    /// A cdr_custom template's literal quotes: a field in quotes (by the
    /// template) or bare, so a part alone never closes a quote it did not
    /// open, and no part of a run is complete in its quotes (`"x"`: a
    /// field of its own).
    Literal,
}

/// How [`reassemble`] fared.
enum Reassembly {
    /// The record's fields, one line from `start`.
    Fields(RecordSpan),
    /// The line's parts fit the columns in no way or in more than one.
    Ambiguous(RecordSpan, String),
    /// Fewer parts than columns: not the old export's quirk.
    TooFew,
}

/// Reads the line at `start` as FreePBX's old export writes a record of
/// `width` fields: each field either as it is (no comma in it) or, holding
/// a comma, in quotes with inner quotes as they are. The line is cut at
/// every comma; a quoted field is a run of two or more parts, the first
/// opening with a quote and the last closing with one. Exactly one way to
/// group the parts into `width` fields must exist.
fn reassemble(buf: &[u8], start: usize, width: usize, fields: &mut Vec<FieldSpan>, quoting: Quoting) -> Reassembly {
    let newline = memchr::memchr(b'\n', &buf[start..]).map_or(buf.len(), |k| start + k);
    let end = if newline > start && buf[newline - 1] == b'\r' { newline - 1 } else { newline };
    let line = RecordSpan { start, end, next: (newline + 1).min(buf.len()) };
    let mut parts = Vec::new();
    let mut from = start;
    for comma in memchr::memchr_iter(b',', &buf[start..end]).map(|k| start + k) {
        parts.push((from, comma));
        from = comma + 1;
    }
    parts.push((from, end));
    let m = parts.len();
    if m < width {
        return Reassembly::TooFew;
    }
    // A run of parts is one field only if a comma was in it: beyond this
    // many parts a line is no record (and the table below stays small).
    if m > width * 64 {
        let reason = format!("{m} comma-separated parts for {width} columns");
        return Reassembly::Ambiguous(line, reason);
    }
    let literal = quoting == Quoting::Literal;
    let closes = |(s, e): (usize, usize)| e > s && buf[e - 1] == b'"';
    let whole = |(s, e): (usize, usize)| e > s + 1 && buf[s] == b'"' && closes((s, e));
    let opens = |(s, e): (usize, usize)| e > s && buf[s] == b'"' && !(literal && whole((s, e)));
    let alone = |(s, e): (usize, usize)| !(literal && closes((s, e)) && buf[s] != b'"');
    let inner = |part: (usize, usize)| !(literal && whole(part));
    // ways[i][j]: ways (capped at 2) to group parts i.. into j fields;
    // runs[i][j]: the sum of ways[k + 1][j] over closing parts k >= i.
    let mut ways = vec![vec![0u8; width + 1]; m + 1];
    let mut runs = vec![vec![0u8; width + 1]; m + 1];
    ways[m][0] = 1;
    for i in (0..m).rev() {
        for j in 1..=width {
            let run = if opens(parts[i]) { runs[i + 1][j - 1] } else { 0 };
            let single = if alone(parts[i]) { ways[i + 1][j - 1] } else { 0 };
            ways[i][j] = single.saturating_add(run).min(2);
        }
        for j in 0..=width {
            let closing = if closes(parts[i]) && inner(parts[i]) { ways[i + 1][j] } else { 0 };
            let inside = if inner(parts[i]) { runs[i + 1][j] } else { 0 };
            runs[i][j] = inside.saturating_add(closing).min(2);
        }
    }
    match ways[0][width] {
        1 => {}
        found => {
            let how = if found == 0 { "no way" } else { "more than one way" };
            let quoter = match quoting {
                Quoting::Freepbx => "FreePBX's old export quotes a field with a comma",
                Quoting::Literal => "a cdr_custom template's literal quotes hold a value",
            };
            let reason = format!(
                "{m} comma-separated parts for {width} columns, and {how} to rejoin them as {quoter} (inner \
                 quotes not doubled)"
            );
            return Reassembly::Ambiguous(line, reason);
        }
    }
    fields.clear();
    let (mut i, mut j) = (0, width);
    while i < m {
        // The one grouping: a part alone, or the run that leaves a way.
        let run_end = if alone(parts[i]) && ways[i + 1][j - 1] == 1 {
            i
        } else {
            let mut run = (i + 1..m).take_while(|&k| k == i + 1 || inner(parts[k - 1]));
            run.find(|&k| closes(parts[k]) && inner(parts[k]) && ways[k + 1][j - 1] == 1).unwrap_or(i)
        };
        let field = if run_end == i {
            FieldSpan { start: parts[i].0, end: parts[i].1, kind: FieldKind::Plain }
        } else {
            FieldSpan { start: parts[i].0 + 1, end: parts[run_end].1 - 1, kind: FieldKind::Quoted }
        };
        fields.push(field);
        i = run_end + 1;
        j -= 1;
    }
    Reassembly::Fields(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejoin(line: &str, width: usize) -> std::result::Result<Vec<String>, String> {
        let mut fields = Vec::new();
        match reassemble(line.as_bytes(), 0, width, &mut fields, Quoting::Freepbx) {
            Reassembly::Fields(_) => Ok(fields.iter().map(|f| line[f.start..f.end].to_string()).collect()),
            Reassembly::Ambiguous(_, reason) => Err(reason),
            Reassembly::TooFew => Err("too few".into()),
        }
    }

    #[test]
    fn old_freepbx_fields_rejoined() {
        // FreePBX/cdr functions.inc.php cdr_export_csv (2.x): quoted only for a comma.
        let line = "2024-01-28 10:18:20,\"\"Doe, John\" <89149825084>\",100,\"SIP/100,30,tT\",x\n";
        assert_eq!(
            rejoin(line, 5).unwrap(),
            ["2024-01-28 10:18:20", "\"Doe, John\" <89149825084>", "100", "SIP/100,30,tT", "x"]
        );
        assert_eq!(rejoin("\"a,b\",\"c,d\"", 2).unwrap(), ["a,b", "c,d"]);
        assert_eq!(rejoin("\"John\" <1>,\"a,b\"", 2).unwrap(), ["\"John\" <1>", "a,b"]);
        // `"John" <1>` and `,`, or `John" <1>,` and `"`: no telling.
        assert!(rejoin("\"John\" <1>,\",\"", 2).unwrap_err().contains("more than one way"));
        assert!(rejoin("\"a,b\",\"c,d\"", 3).unwrap_err().contains("more than one way"));
        assert!(rejoin("a,b,c", 2).unwrap_err().contains("no way"));
        assert_eq!(rejoin("a,b", 3), Err("too few".into()));
    }

    #[test]
    fn literal_quotes_of_a_custom_template_rejoined() {
        let split = |line: &str, widths: &[usize]| {
            let mut fields = Vec::new();
            split_custom(line.as_bytes(), 0, widths, &mut fields)
                .map(|_| fields.iter().map(|f| field_bytes(line.as_bytes(), f).into_owned()).collect::<Vec<_>>())
                .map_err(|(_, reason)| reason)
        };
        let texts = |v: &[&str]| v.iter().map(|s| s.as_bytes().to_vec()).collect::<Vec<_>>();
        // configs/cdr_custom.conf: `"${CDR(clid)}","${CDR(src)}",…`, nothing escaped.
        let line = "\"\"Doe, John\" <8914>\",\"8914\",\"\",\"x\"\n";
        assert_eq!(split(line, &[4]).unwrap(), texts(&["\"Doe, John\" <8914>", "8914", "", "x"]));
        assert_eq!(split("\"\"Alice\" <1>\",\"1\"", &[2]).unwrap(), texts(&["\"Alice\" <1>", "1"]));
        // CSV_QUOTE's doubled quotes are RFC 4180's.
        assert_eq!(split("\"\"\"Bob\"\" <2>\",\"2\"", &[2]).unwrap(), texts(&["\"Bob\" <2>", "2"]));
        // An unquoted lastdata is left to the lastdata rule.
        assert_eq!(split("\"1\",SIP/1,30", &[2]).unwrap().len(), 3);
        assert_eq!(split("\"a,\"b,c\",\"d\"", &[2]).unwrap(), texts(&["a,\"b,c", "d"]));
        assert!(split("\"a,\"a,b\",\"c,b\"", &[2]).unwrap_err().contains("more than one way"));
        // ` John" <8914>"` closes a quote it did not open: never a field alone.
        let doe = "\"\"Doe, John\" <8914>\",\"8914\"";
        assert_eq!(split(doe, &[3, 2, 1]).unwrap(), texts(&["\"Doe, John\" <8914>", "8914"]));
        // `"2024-01-02 10:00:00"` is a field of its own: never the end of a run
        // holding the unquoted lastdata before it.
        let line = "\"\"Smith\" <1>\",\"SIP/1,30,tT\",\"2024-01-02 10:00:00\"";
        let want = texts(&["\"Smith\" <1>", "SIP/1,30,tT", "2024-01-02 10:00:00"]);
        assert_eq!(split(line, &[3, 2]).unwrap(), want);
    }

    #[test]
    fn a_first_line_cut_inside_a_quote_is_sniffed_by_the_second() {
        let record = "\"\",\"2889\",\"0924\",\"pre-rec\",\"\"\"2889\"\" <2889>\",\"SIP/2889-1\",\"Local/0924-1\",\
                      \"Dial\",\"Local/0924,30,t\",\"2018-09-07 11:05:01\",\"2018-09-07 11:05:20\",\
                      \"2018-09-07 11:05:20\",19,0,\"ANSWERED\",\"DOCUMENTATION\",\"1536293101.12458\",\"\"\n";
        let opened = format!("\"\n{record}{record}");
        assert!(split_record(opened.as_bytes(), 0, &mut Vec::new()).is_err());
        for cut in ["\"\n", "TION\",\"15\n"] {
            let head = format!("{cut}{record}{record}");
            let (format, seen) = sniff(head.as_bytes()).unwrap();
            assert_eq!(format, Format::AsteriskCsv, "{cut:?}");
            assert!(seen.contains("line 2"));
        }
    }

    #[test]
    fn caller_names() {
        let name = |raw: &str, kind| {
            let f = FieldSpan { start: 0, end: raw.len(), kind };
            clid_name(raw.as_bytes(), f).map(|n| (raw[n.start..n.end].to_string(), n.kind))
        };
        assert_eq!(name("\"Alice\" <1001>", FieldKind::Plain), Some(("Alice".into(), FieldKind::Plain)));
        assert_eq!(name("\"\"Al \"\"x\"\"\"\" <1>", FieldKind::Escaped).unwrap().0, "Al \"\"x\"\"");
        assert_eq!(name("Bob <1>", FieldKind::Quoted).unwrap().0, "Bob");
        assert_eq!(name("\"\" <1>", FieldKind::Plain), None);
        assert_eq!(name("1001", FieldKind::Plain), None);
    }
}
