//! PortSIP CDRs mapped into the UCM data model: the `/api/cdrs` items
//! (v22), the `call_cdr` webhook (v16+, with its `call_targets`), and the
//! call events (`call_start`, v12's `call_established`/`call_ended`/
//! `call_fail`/`call_noanswer`, the `cdr_target_*` events). Every PortSIP
//! field is kept under its own name; this module adds the UCM fields derived
//! from them:
//!
//! | UCM field | from PortSIP |
//! |---|---|
//! | `AcctId`, `uniqueid` | `cdr_id`, else `id` (`AcctId` only when it is an integer) |
//! | `src`, `channel_ext` | user part of `caller` (`sip:101@test.io` → `101`) |
//! | `dst`, `dstchannel_ext` | user part of `callee` |
//! | `caller_name` | `caller_display_name` |
//! | `clid` | `"caller_display_name" <src>`, or `src` without a name |
//! | `start`, `answer`, `end` | `started_at`, `answered_at`, `ended_at` (RFC 3339); webhook `start_time`, `answered_time`, `ended_time` (epoch seconds, `0` = never); an event's `time` by its type: start (`call_start`, `cdr_target_add`), answer (`call_established`, `cdr_target_answer`), end (`call_ended`, `call_fail`, `call_noanswer`, `*_end`, `*_fail`, `*_noanswer`) |
//! | `duration` | `end − start`, whole seconds (the vendor's own `duration`, talk seconds, is `portsip_duration`) |
//! | `billsec` | `end − answer`, whole seconds; else `talk_duration`; 0 if never answered; null for a bare `call_ended` |
//! | `disposition` | `call_status`/`status` (`answered`, `noanswer`, `fail`); the event (`*_fail` → `FAILED`, `*_noanswer` → `NO ANSWER`, `cdr_target_end` → `ANSWERED`); else `ANSWERED` if answered, `BUSY` (end reason with BUSY, or status 486), `FAILED` (end reason with FAIL/ERROR, or status ≥ 400 but 408/480/487), `NO ANSWER`; `BUSY` for any failure with status 486; null while the call has not ended, and for a bare `call_ended` |
//! | `userfield` | `direction`: `EXTENSION_CALL`/`ext` → `Internal`, `INBOUND`/`in` → `Inbound`, `OUTBOUND`/`out` → `Outbound`, `in2out` → `External`, else as written |
//! | `session` | `call_id` |
//!
//! A vendor key that is also a UCM field name (`duration`) is kept as
//! `portsip_KEY`, so no vendor value is overwritten. The `call_cdr`'s
//! `call_targets` become the call's legs: the call is the `main` row, each
//! target a `sub` row (`leg` = 1, 2, … in array order) with its own fields
//! mapped as above and the call's `session` and `userfield`. An object with
//! none of `call_id`, `cdr_id`, `session_id`, `event_type` is no PortSIP
//! CDR (an `/api/recordings` item, a UCM export) and is rejected.
//!
//! Shapes from PortSIP's own guides (support.portsip.com): "Accessing CDRs
//! and Recordings" (v22 `/api/cdrs` with `duration`, `/api/recordings`),
//! "Event Reference" (`call_cdr`, `call_targets`), and v12's "Going
//! Real-Time with PortSIP PBX Pub/Sub" (the call events).

use super::records::{RecordSet, Value};
use crate::schema;
use crate::values::{format_timestamp, parse_int, parse_rfc3339};

/// Keys one of which every PortSIP CDR or call event has (an `/api/cdrs`
/// item its `call_id`, an event its `event_type`, `cdr_id`, `session_id`).
const CDR_KEYS: [&str; 4] = ["call_id", "cdr_id", "session_id", "event_type"];

/// Keys of an `/api/recordings` item: its summary has only the first five
/// (and no CDR key), its detail the file's.
const RECORDING_KEYS: [&str; 9] =
    ["id", "caller", "callee", "started_at", "ended_at", "duration", "file_name", "file_size", "file_url"];

/// Whether an object with these keys is a PortSIP CDR or call event.
pub fn is_cdr<'k>(mut keys: impl Iterator<Item = &'k [u8]>) -> bool {
    keys.any(|k| CDR_KEYS.iter().any(|c| c.as_bytes() == k))
}

/// Why a top-level object with `keys` is not PortSIP CDRs (for format
/// `portsip-json`, which must not read any object as one all-null call).
pub fn not_cdrs(keys: &[Vec<u8>]) -> String {
    let shown: Vec<String> = keys.iter().take(8).map(|k| String::from_utf8_lossy(k).into_owned()).collect();
    let found = if shown.is_empty() {
        "an empty object".to_string()
    } else {
        format!("an object with keys {}{}", shown.join(", "), if keys.len() > 8 { ", …" } else { "" })
    };
    format!(
        "not PortSIP CDRs: expected the /api/cdrs answer {{\"items\": [...]}} or a CDR or call event \
         (with call_id, cdr_id, session_id or event_type), found {found}"
    )
}

/// What the call's rows pass on to its legs.
pub struct Call {
    session: Value,
    userfield: Value,
}

/// Adds the derived UCM fields of the record whose fields start at
/// `set.fields[first_field]`: a call (`parent` `None`), or one of its
/// `call_targets` (then it takes the call's `session` and `userfield`).
/// A call must have a PortSIP CDR key: else the reason it is not one (a
/// recording, or some other object), to reject it by.
pub fn derive(
    buf: &[u8],
    set: &mut RecordSet,
    first_field: usize,
    parent: Option<&Call>,
) -> Result<Call, &'static str> {
    if parent.is_none() {
        check(set, first_field)?;
    }
    rename_derived(set, first_field);

    let get = |set: &RecordSet, key: &str| -> Value {
        let Some(column) = set.column_of(key) else { return Value::Null };
        set.fields[first_field..].iter().rev().find(|(c, _)| *c == column).map_or(Value::Null, |&(_, v)| v)
    };
    let text = |set: &RecordSet, v: Value| set.bytes(buf, v).map(<[u8]>::to_vec).filter(|t| !t.is_empty());
    let number = |set: &RecordSet, key: &str| text(set, get(set, key)).and_then(|t| parse_int(&t));

    let id = match get(set, "cdr_id") {
        Value::Null => get(set, "id"),
        v => v,
    };
    // PortSIP calls ids opaque strings: one that is no integer stays out of
    // the Int64 `AcctId` rather than rejecting the record.
    let acct = if text(set, id).is_some_and(|t| parse_int(&t).is_some()) { id } else { Value::Null };
    let src = sip_user(set, buf, get(set, "caller"));
    let dst = sip_user(set, buf, get(set, "callee"));
    let name = get(set, "caller_display_name");
    let session = match (get(set, "call_id"), parent) {
        (Value::Null, Some(call)) => call.session,
        (v, _) => v,
    };
    for (key, value) in [
        ("AcctId", acct),
        ("uniqueid", id),
        ("src", src),
        ("channel_ext", src),
        ("dst", dst),
        ("dstchannel_ext", dst),
        ("caller_name", name),
        ("session", session),
    ] {
        set.push_field(key.as_bytes(), value);
    }
    if let (Some(name), Some(user)) = (text(set, name), text(set, src)) {
        let clid = [b"\"", &name[..], b"\" <", &user[..], b">"].concat();
        let value = set.decoded_value(&clid, 0);
        set.push_field(b"clid", value);
    } else {
        set.push_field(b"clid", src);
    }

    let event = text(set, get(set, "event_type")).unwrap_or_default();
    let event = Event::of(&event);
    // Instants: a parsed one is rendered canonically; one that does not parse
    // goes through as written, so the typing step rejects the record naming it.
    let instant = |set: &mut RecordSet, field: &str, keys: [&str; 2], event_time: bool| -> Option<i64> {
        let mut found = keys.iter().zip([false, true]).map(|(k, epoch)| (get(set, k), epoch));
        let (value, epoch) =
            found.find(|(v, _)| text(set, *v).is_some()).or(event_time.then(|| (get(set, "time"), true)))?;
        let raw = text(set, value)?;
        let parsed = if epoch { parse_int(&raw).map(|s| s * 1_000_000) } else { parse_rfc3339(&raw) };
        if parsed == Some(0) {
            return None; // the webhook's "0": never
        }
        let rendered = match parsed {
            Some(us) => set.decoded_value(format_timestamp(us).as_bytes(), 0),
            None => value,
        };
        set.push_field(field.as_bytes(), rendered);
        parsed
    };
    let start = instant(set, "start", ["started_at", "start_time"], event == Event::Start);
    let answer = instant(set, "answer", ["answered_at", "answered_time"], event == Event::Answer);
    let end = instant(set, "end", ["ended_at", "ended_time"], matches!(event, Event::End(_)));

    let seconds = |from: i64, to: i64| (to - from).div_euclid(1_000_000);
    if let (Some(start), Some(end)) = (start, end) {
        let value = set.decoded_value(seconds(start, end).to_string().as_bytes(), 0);
        set.push_field(b"duration", value);
    }

    let code = number(set, "status_code").filter(|&c| c != 0).or_else(|| number(set, "fail_code"));
    let status = text(set, get(set, "call_status")).or_else(|| text(set, get(set, "status"))).unwrap_or_default();
    let stated: Option<&[u8]> = match (&status.to_ascii_lowercase()[..], event) {
        (b"answered", _) | (_, Event::End(Some(Outcome::Answered))) => Some(b"ANSWERED"),
        (b"noanswer" | b"no answer" | b"no_answer", _) | (_, Event::End(Some(Outcome::NoAnswer))) => Some(b"NO ANSWER"),
        (b"busy", _) => Some(b"BUSY"),
        (b"fail" | b"failed", _) | (_, Event::End(Some(Outcome::Failed))) => {
            Some(if code == Some(486) { b"BUSY" } else { b"FAILED" })
        }
        _ => None,
    };
    // A bare `call_ended` event tells neither whether nor how long the call
    // was answered.
    let unknown = stated.is_none() && event == Event::End(None);
    let disposition: Option<&[u8]> = match (stated, end) {
        (Some(d), _) => Some(d),
        (None, Some(_)) if !unknown => {
            let reason = text(set, get(set, "end_reason"))
                .or_else(|| text(set, get(set, "ended_reason")))
                .unwrap_or_default()
                .to_ascii_uppercase();
            let has = |word: &[u8]| reason.windows(word.len()).any(|w| w == word);
            let code = code.unwrap_or(0);
            Some(if answer.is_some() {
                b"ANSWERED"
            } else if has(b"BUSY") || code == 486 {
                b"BUSY"
            } else if has(b"FAIL") || has(b"ERROR") || (code >= 400 && ![408, 480, 487].contains(&code)) {
                b"FAILED"
            } else {
                b"NO ANSWER"
            })
        }
        _ => None,
    };
    let billsec = match (answer, end) {
        (Some(answer), Some(end)) => Some(seconds(answer, end)),
        _ if disposition == Some(b"ANSWERED") => number(set, "talk_duration"),
        (None, Some(_)) if !unknown => Some(0),
        _ if disposition.is_some() => Some(0),
        _ => None,
    };
    if let Some(billsec) = billsec {
        let value = set.decoded_value(billsec.to_string().as_bytes(), 0);
        set.push_field(b"billsec", value);
    }
    if let Some(disposition) = disposition {
        let value = set.decoded_value(disposition, 0);
        set.push_field(b"disposition", value);
    }

    let userfield = match (text(set, get(set, "direction")), parent) {
        (Some(direction), _) => {
            let userfield: &[u8] = match &direction.to_ascii_lowercase()[..] {
                b"extension_call" | b"ext" | b"internal" => b"Internal",
                b"inbound" | b"in" => b"Inbound",
                b"outbound" | b"out" => b"Outbound",
                // Inbound from a trunk and routed out to one: the UCM's trunk
                // to trunk call.
                b"in2out" => b"External",
                _ => &direction,
            };
            set.decoded_value(userfield, 0)
        }
        (None, Some(call)) => call.userfield,
        (None, None) => Value::Null,
    };
    set.push_field(b"userfield", userfield);
    Ok(Call { session, userfield })
}

/// A call must name itself by a CDR key; an `/api/recordings` item (file
/// keys, or nothing but the summary's) is told apart for the message.
fn check(set: &RecordSet, first_field: usize) -> Result<(), &'static str> {
    let names = || set.fields[first_field..].iter().map(|&(c, _)| set.names[c].as_bytes());
    if is_cdr(names()) {
        return Ok(());
    }
    let file = names().any(|k| k.starts_with(b"file_"));
    let summary = names().next().is_some() && names().all(|k| RECORDING_KEYS.iter().any(|r| r.as_bytes() == k));
    Err(if file || summary {
        "a recording (an /api/recordings answer), not a CDR"
    } else {
        "not a PortSIP CDR: none of call_id, cdr_id, session_id, event_type"
    })
}

/// Moves a vendor field whose key is a UCM field name (PortSIP's own
/// `duration`, talk seconds) to `portsip_KEY`: the UCM fields are the
/// derived ones, which must neither overwrite it nor be stood in for by it.
fn rename_derived(set: &mut RecordSet, first_field: usize) {
    let last = set.fields.len();
    for i in first_field..last {
        let (column, value) = set.fields[i];
        if schema::base_index(&set.names[column]).is_some() {
            let key = format!("portsip_{}", set.names[column]);
            set.fields[i].1 = Value::Null;
            set.push_field(key.as_bytes(), value);
        }
    }
}

/// How an event's `time` is read, and what an end event says of the call.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Event {
    Start,
    Answer,
    End(Option<Outcome>),
    /// Not an event, or one whose `time` is no start, answer or end (hold,
    /// ringing, …): `time` stays only under its own name.
    Other,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Answered,
    NoAnswer,
    Failed,
}

impl Event {
    fn of(event_type: &[u8]) -> Self {
        match event_type {
            b"call_start" | b"call_update_info" | b"cdr_target_add" | b"target_add" => Event::Start,
            b"call_established" | b"cdr_target_answer" => Event::Answer,
            // v16+: "an established call has now ended".
            b"cdr_target_end" => Event::End(Some(Outcome::Answered)),
            b"call_ended" | b"target_ended" => Event::End(None),
            b"call_fail" | b"target_fail" | b"cdr_target_fail" => Event::End(Some(Outcome::Failed)),
            b"call_noanswer" | b"target_noanswer" | b"cdr_target_noanswer" => Event::End(Some(Outcome::NoAnswer)),
            _ => Event::Other,
        }
    }
}

/// The user part of a SIP URI (`sip:101@test.io` → `101`), as a sub-span of
/// the value; a plain number is itself.
fn sip_user(set: &RecordSet, buf: &[u8], value: Value) -> Value {
    let Some(bytes) = set.bytes(buf, value) else { return Value::Null };
    let scheme = [&b"sips:"[..], b"sip:", b"tel:"].iter().find(|p| bytes.starts_with(p)).map_or(0, |p| p.len());
    let end = bytes[scheme..].iter().position(|&b| b == b'@' || b == b';').map_or(bytes.len(), |k| scheme + k);
    match value {
        Value::Input { start, .. } => Value::Input { start: start + scheme, end: start + end },
        Value::Decoded { start, at, .. } => Value::Decoded { start: start + scheme, end: start + end, at },
        Value::Null => Value::Null,
    }
}
