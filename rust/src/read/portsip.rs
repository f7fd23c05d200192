//! PortSIP CDRs (`GET /api/cdrs` items and the CDR webhook event) mapped
//! into the UCM data model. Every PortSIP field is also kept under its own
//! name; this module adds the UCM fields derived from them:
//!
//! | UCM field | from PortSIP |
//! |---|---|
//! | `AcctId`, `uniqueid` | `id` (webhook: `cdr_id`) |
//! | `src`, `channel_ext` | user part of `caller` (`sip:101@test.io` → `101`) |
//! | `dst`, `dstchannel_ext` | user part of `callee` |
//! | `caller_name` | `caller_display_name` |
//! | `clid` | `"caller_display_name" <src>`, or `src` without a name |
//! | `start`, `answer`, `end` | `started_at`, `answered_at`, `ended_at` (RFC 3339 instants; webhook: `time`, epoch seconds) |
//! | `duration` | `end − start`, whole seconds |
//! | `billsec` | `end − answer`, whole seconds; 0 if never answered |
//! | `disposition` | `ANSWERED` if answered; else `BUSY` (end reason or status 486), `FAILED` (end reason with FAIL/ERROR, or status ≥ 400 but 408/480/487), else `NO ANSWER`; null while the call has not ended |
//! | `userfield` | `direction`: `EXTENSION_CALL`/`ext` → `Internal`, `INBOUND`/`in` → `Inbound`, `OUTBOUND`/`out` → `Outbound`, else as written |
//! | `session` | `call_id` |

use super::records::{RecordSet, Value};
use super::values::{format_timestamp, parse_int, parse_rfc3339};

/// Adds the derived UCM fields of the record whose fields start at
/// `set.fields[first_field]`.
pub fn derive(buf: &[u8], set: &mut RecordSet, first_field: usize) {
    let get = |set: &RecordSet, key: &str| -> Value {
        let Some(column) = set.column_of(key) else { return Value::Null };
        set.fields[first_field..].iter().rev().find(|(c, _)| *c == column).map_or(Value::Null, |&(_, v)| v)
    };
    let text = |set: &RecordSet, v: Value| set.bytes(buf, v).map(<[u8]>::to_vec).filter(|t| !t.is_empty());

    let id = match get(set, "id") {
        Value::Null => get(set, "cdr_id"),
        v => v,
    };
    let src = sip_user(set, buf, get(set, "caller"));
    let dst = sip_user(set, buf, get(set, "callee"));
    let name = get(set, "caller_display_name");
    for (key, value) in [
        ("AcctId", id),
        ("uniqueid", id),
        ("src", src),
        ("channel_ext", src),
        ("dst", dst),
        ("dstchannel_ext", dst),
        ("caller_name", name),
        ("session", get(set, "call_id")),
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

    // Instants: a parsed one is rendered canonically; one that does not parse
    // goes through as written, so the typing step rejects the record naming it.
    let instant = |set: &mut RecordSet, key: &str, field: &str| -> Option<i64> {
        let value = get(set, key);
        let raw = text(set, value)?;
        let parsed = if key == "time" { parse_int(&raw).map(|s| s * 1_000_000) } else { parse_rfc3339(&raw) };
        let rendered = match parsed {
            Some(us) => set.decoded_value(format_timestamp(us).as_bytes(), 0),
            None => value,
        };
        set.push_field(field.as_bytes(), rendered);
        parsed
    };
    let start = instant(set, "started_at", "start").or_else(|| instant(set, "time", "start"));
    let answer = instant(set, "answered_at", "answer");
    let end = instant(set, "ended_at", "end");

    let seconds = |from: i64, to: i64| ((to - from).div_euclid(1_000_000)).to_string();
    if let (Some(start), Some(end)) = (start, end) {
        let value = set.decoded_value(seconds(start, end).as_bytes(), 0);
        set.push_field(b"duration", value);
    }
    if let Some(end) = end {
        let billsec = answer.map_or_else(|| "0".to_string(), |answer| seconds(answer, end));
        let value = set.decoded_value(billsec.as_bytes(), 0);
        set.push_field(b"billsec", value);
        let reason = text(set, get(set, "end_reason")).unwrap_or_default().to_ascii_uppercase();
        let status = text(set, get(set, "status_code")).and_then(|s| parse_int(&s)).unwrap_or(0);
        let has = |word: &[u8]| reason.windows(word.len()).any(|w| w == word);
        let disposition: &[u8] = if answer.is_some() {
            b"ANSWERED"
        } else if has(b"BUSY") || status == 486 {
            b"BUSY"
        } else if has(b"FAIL") || has(b"ERROR") || (status >= 400 && ![408, 480, 487].contains(&status)) {
            b"FAILED"
        } else {
            b"NO ANSWER"
        };
        let value = set.decoded_value(disposition, 0);
        set.push_field(b"disposition", value);
    }

    if let Some(direction) = text(set, get(set, "direction")) {
        let userfield: &[u8] = match &direction.to_ascii_lowercase()[..] {
            b"extension_call" | b"ext" | b"internal" => b"Internal",
            b"inbound" | b"in" => b"Inbound",
            b"outbound" | b"out" => b"Outbound",
            _ => &direction,
        };
        let value = set.decoded_value(userfield, 0);
        set.push_field(b"userfield", value);
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
