//! The Grandstream UCM CDR API JSON reader.
//!
//! Two shapes, both from the vendor's guides (`tests/samples/`):
//! - old firmware: `{"cdr": [flat record, …]}` (`ucm6100-fw1.0.x-cdrapi.json`)
//!   → one row per record, `cdr_kind` = `record`;
//! - fw ≥ 1.0.11: `{"cdr_root": [{"cdr": SESSION, "main_cdr": {…},
//!   "sub_cdr_1": {…}, …}]}` (`ucm6xxx-fw1.0.11-cdrapi-transfer.json`) → the
//!   `main` row, then each `sub` row with `leg` = N, legs in numeric order
//!   (`sub_cdr_10` after `sub_cdr_9`).
//!
//! Real UCM63xx output adds: `"cdr": ""` (no records), `null` elements and
//! legs (skipped; listed among the rejects in lenient mode), sub legs with a
//! `session` of their own (kept as written), and keys beyond the data model
//! (kept as further string columns, null where absent). Values may be
//! strings, numbers or null.
//!
//! The parser is a small recursive descent over the bytes. Strings without
//! escapes become views into the input buffer; escaped ones are decoded into
//! a scratch buffer. A syntax error fails the read whatever `on_error` says:
//! past it no record boundary can be trusted.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch};
use arrow_buffer::Buffer;

use super::builder::{ColumnBuilder, INPUT_BUFFER, SCRATCH_BUFFER};
use super::values::{Timestamp, parse_int, parse_timestamp};
use super::{Input, OnError, ReadOptions, ReadOutput};
use crate::error::{Error, Reject, Result};
use crate::schema::{self, BASE_COLUMNS, ColumnType, LEG};

/// A JSON value as it lies in the input.
#[derive(Clone, Copy, Debug)]
enum Value {
    Null,
    /// The inside of a string; `escaped` if it holds a backslash.
    Str {
        start: usize,
        end: usize,
        escaped: bool,
    },
    /// A number, `true`/`false`, or a nested object/array: kept as raw text.
    Raw {
        start: usize,
        end: usize,
    },
}

/// Which kind of row a record becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Record,
    Main,
    Sub(i64),
}

/// One record: its extent and its (column, value) pairs.
struct Row {
    kind: Kind,
    start: usize,
    end: usize,
    first_field: usize,
    last_field: usize,
}

struct SyntaxError {
    at: usize,
    reason: String,
}

type Parsed<T> = std::result::Result<T, SyntaxError>;

/// Records found so far, with their fields in one flat list.
struct Document<'a> {
    buf: &'a [u8],
    pos: usize,
    names: Vec<String>,
    columns_by_key: HashMap<Vec<u8>, usize, BuildHasherDefault<KeyHasher>>,
    fields: Vec<(usize, Value)>,
    rows: Vec<Row>,
    /// `null` elements and legs: (offset, what it was).
    skipped: Vec<(usize, &'static str)>,
}

/// Reads a UCM CDR API JSON export.
pub fn read_ucm_json(input: &Input, options: &ReadOptions) -> Result<ReadOutput> {
    let buf = input.bytes();
    let syntax = |e: SyntaxError| Error::Parse(Box::new(locate(input, e.at, e.at, e.at, e.reason)));
    if let Err(e) = std::str::from_utf8(buf) {
        return Err(syntax(SyntaxError { at: e.valid_up_to(), reason: "invalid UTF-8".into() }));
    }
    let mut doc = Document::new(buf);
    doc.document().map_err(syntax)?;

    let strict = options.on_error == OnError::Raise;
    let tz = options.tz.as_deref();
    let types: Vec<ColumnType> = doc.names.iter().map(|n| schema::column_type(n)).collect();
    let mut columns: Vec<ColumnBuilder> =
        types.iter().map(|&t| ColumnBuilder::new(t, doc.rows.len())).collect();
    let mut scratch = Vec::new();
    let mut rejects = Vec::new();
    let mut slots: Vec<Value> = vec![Value::Null; doc.names.len()];
    let mut ints: Vec<Option<i64>> = vec![None; doc.names.len()];
    let (kind_column, leg_column) = (BASE_COLUMNS.len(), BASE_COLUMNS.len() + 1);

    for row in &doc.rows {
        slots.fill(Value::Null);
        for &(column, value) in &doc.fields[row.first_field..row.last_field] {
            slots[column] = value;
        }
        if let Err((at, reason)) = check_row(buf, &doc.names, &types, &slots, &mut ints) {
            let reject = locate(input, row.start, row.end, at, reason);
            if strict {
                return Err(Error::Parse(Box::new(reject)));
            }
            rejects.push(reject);
            continue;
        }
        for (column, builder) in columns.iter_mut().enumerate() {
            if column == kind_column {
                let kind: &[u8] = match row.kind {
                    Kind::Record => b"record",
                    Kind::Main => b"main",
                    Kind::Sub(_) => b"sub",
                };
                builder.push_text(kind, INPUT_BUFFER, 0);
            } else if column == leg_column {
                builder.push_i64(if let Kind::Sub(n) = row.kind { n } else { 0 });
            } else if types[column] != ColumnType::Text {
                match ints[column] {
                    Some(v) => builder.push_i64(v),
                    None => builder.push_null(),
                }
            } else {
                push_text(buf, slots[column], builder, &mut scratch);
            }
        }
    }
    if !strict {
        for &(at, what) in &doc.skipped {
            let end = at + 4;
            rejects.push(locate(input, at, end, at, format!("{what} is null: no record to read")));
        }
        rejects.sort_by_key(|r| (r.line, r.column));
    }

    if buf.len() > u32::MAX as usize || scratch.len() > u32::MAX as usize {
        return Err(Error::Input { source: input.name.clone(), reason: "JSON input over 4 GiB".into() });
    }
    let schema = schema::arrow_schema(&doc.names, tz);
    let buffers: Arc<[Buffer]> = Arc::from([input.data.clone(), Buffer::from_vec(scratch)]);
    let arrays: Vec<ArrayRef> = columns.into_iter().map(|c| c.finish(&buffers, tz)).collect();
    let batch = RecordBatch::try_new(Arc::clone(&schema), arrays)
        .map_err(|e| Error::Input { source: input.name.clone(), reason: e.to_string() })?;
    let batches = if batch.num_rows() > 0 { vec![batch] } else { Vec::new() };
    Ok(ReadOutput { schema, batches, rejects })
}

/// Checks the typed values of a row into `ints`; the offending offset and
/// reason on failure.
fn check_row(
    buf: &[u8],
    names: &[String],
    types: &[ColumnType],
    slots: &[Value],
    ints: &mut [Option<i64>],
) -> std::result::Result<(), (usize, String)> {
    for (column, &ty) in types.iter().enumerate() {
        ints[column] = None;
        if ty == ColumnType::Text || names[column] == LEG {
            continue;
        }
        let mut decoded = Vec::new();
        let (at, text): (usize, &[u8]) = match slots[column] {
            Value::Null => continue,
            Value::Str { start, end, escaped: false } | Value::Raw { start, end } => {
                (start, &buf[start..end])
            }
            Value::Str { start, end, escaped: true } => {
                unescape(buf, start, end, &mut decoded).map_err(|e| (e.at, e.reason))?;
                (start, &decoded)
            }
        };
        if text.is_empty() {
            continue;
        }
        let name = &names[column];
        let shown = || String::from_utf8_lossy(text).into_owned();
        ints[column] = match ty {
            ColumnType::Int => Some(
                parse_int(text).ok_or_else(|| (at, format!("{name} is not an integer: {:?}", shown())))?,
            ),
            _ => match parse_timestamp(text) {
                Some(Timestamp::At(us)) => Some(us),
                Some(Timestamp::Unset) => None,
                None => return Err((at, format!("{name} is not a YYYY-MM-DD HH:MM:SS time: {:?}", shown()))),
            },
        };
    }
    Ok(())
}

fn push_text(buf: &[u8], value: Value, builder: &mut ColumnBuilder, scratch: &mut Vec<u8>) {
    match value {
        Value::Null => builder.push_null(),
        Value::Str { start, end, .. } | Value::Raw { start, end } if start == end => builder.push_null(),
        Value::Str { start, end, escaped: false } | Value::Raw { start, end } => {
            builder.push_text(&buf[start..end], INPUT_BUFFER, start)
        }
        Value::Str { start, end, escaped: true } => {
            let from = scratch.len();
            // The escapes were validated when the document was parsed.
            let _ = unescape(buf, start, end, scratch);
            if scratch.len() == from {
                builder.push_null();
            } else {
                builder.push_text(&scratch[from..], SCRATCH_BUFFER, from);
            }
        }
    }
}

fn locate(input: &Input, start: usize, end: usize, at: usize, reason: String) -> Reject {
    let buf = input.bytes();
    let at = at.min(buf.len());
    let line_start = memchr::memrchr(b'\n', &buf[..at]).map_or(0, |k| k + 1);
    Reject {
        source: input.name.clone(),
        line: memchr::memchr_iter(b'\n', &buf[..at]).count() as u64 + 1,
        column: String::from_utf8_lossy(&buf[line_start..at]).chars().count() as u64 + 1,
        reason,
        raw: String::from_utf8_lossy(&buf[start.min(buf.len())..end.min(buf.len())]).into_owned(),
    }
}

/// FxHash (rustc's): keys are a few dozen short field names, looked up once
/// per value, where SipHash's DoS resistance buys nothing.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 =
                (self.0.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl<'a> Document<'a> {
    fn new(buf: &'a [u8]) -> Self {
        let mut names = schema::output_names(&[]);
        names.shrink_to_fit();
        let columns_by_key =
            BASE_COLUMNS.iter().enumerate().map(|(i, n)| (n.as_bytes().to_vec(), i)).collect();
        let pos = if buf.starts_with(b"\xEF\xBB\xBF") { 3 } else { 0 };
        Self { buf, pos, names, columns_by_key, fields: Vec::new(), rows: Vec::new(), skipped: Vec::new() }
    }

    fn error<T>(&self, reason: impl Into<String>) -> Parsed<T> {
        Err(SyntaxError { at: self.pos, reason: reason.into() })
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.buf.get(self.pos) {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.buf.get(self.pos).copied()
    }

    fn eat(&mut self, byte: u8) -> Parsed<()> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            self.error(format!("expected {:?}", byte as char))
        }
    }

    /// The whole input: `{"cdr": …}`, `{"cdr_root": …}`, or a bare array.
    fn document(&mut self) -> Parsed<()> {
        match self.peek() {
            None => return Ok(()),
            Some(b'[') => self.elements()?,
            Some(b'{') => {
                self.pos += 1;
                self.members(|doc, key| match key {
                    b"cdr" | b"cdr_root" => match doc.peek() {
                        Some(b'[') => doc.elements(),
                        Some(b'{') => doc.element(),
                        _ => doc.skip_value(),
                    },
                    _ => doc.skip_value(),
                })?;
            }
            Some(_) => return self.error("expected a JSON object or array"),
        }
        if self.peek().is_some() {
            return self.error("unexpected text after the JSON document");
        }
        Ok(())
    }

    /// Calls `on_member` with each key, positioned at its value, until `}`.
    fn members(&mut self, mut on_member: impl FnMut(&mut Self, &[u8]) -> Parsed<()>) -> Parsed<()> {
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            if self.peek() != Some(b'"') {
                return self.error("expected a key");
            }
            let buf: &'a [u8] = self.buf;
            let (start, end, escaped) = self.string()?;
            let decoded;
            let key: &[u8] = if escaped {
                decoded = self.decoded((start, end, escaped))?;
                &decoded
            } else {
                &buf[start..end]
            };
            self.eat(b':')?;
            on_member(self, key)?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return self.error("expected ',' or '}'"),
            }
        }
    }

    fn elements(&mut self) -> Parsed<()> {
        self.eat(b'[')?;
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.element()?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return self.error("expected ',' or ']'"),
            }
        }
    }

    /// One array element: a flat record, a `{cdr, main_cdr, sub_cdr_N}`
    /// call, or `null`.
    fn element(&mut self) -> Parsed<()> {
        self.ws();
        let start = self.pos;
        match self.peek() {
            Some(b'n') => {
                let at = self.pos;
                self.literal(b"null")?;
                self.skipped.push((at, "array element"));
                Ok(())
            }
            Some(b'{') => {
                self.pos += 1;
                let first_field = self.fields.len();
                let mut legs: Vec<(Kind, usize, usize, usize, usize)> = Vec::new();
                self.members(|doc, key| {
                    let kind = match key {
                        b"main_cdr" => Some(Kind::Main),
                        _ => key
                            .strip_prefix(b"sub_cdr_")
                            .and_then(|n| std::str::from_utf8(n).ok()?.parse::<i64>().ok())
                            .map(Kind::Sub),
                    };
                    match (kind, doc.peek()) {
                        (Some(kind), Some(b'{')) => {
                            let leg_start = doc.pos;
                            doc.pos += 1;
                            let leg_first = doc.fields.len();
                            doc.members(|doc, key| doc.field(key))?;
                            legs.push((kind, leg_start, doc.pos, leg_first, doc.fields.len()));
                            Ok(())
                        }
                        (Some(_), Some(b'n')) => {
                            let at = doc.pos;
                            doc.literal(b"null")?;
                            doc.skipped.push((at, "a leg"));
                            Ok(())
                        }
                        // The element's own `cdr` is the session id of its legs.
                        _ if key == b"cdr" && !legs.is_empty() => doc.skip_value(),
                        _ => doc.field(key),
                    }
                })?;
                let end = self.pos;
                if legs.is_empty() {
                    self.rows.push(Row {
                        kind: Kind::Record,
                        start,
                        end,
                        first_field,
                        last_field: self.fields.len(),
                    });
                } else {
                    // Main first, then legs by number (stable for duplicates).
                    legs.sort_by_key(|leg| match leg.0 {
                        Kind::Main => (0, 0),
                        Kind::Sub(n) => (1, n),
                        Kind::Record => (2, 0),
                    });
                    for (kind, start, end, first_field, last_field) in legs {
                        self.rows.push(Row { kind, start, end, first_field, last_field });
                    }
                }
                Ok(())
            }
            _ => self.error("expected a CDR object or null"),
        }
    }

    /// A field of a record: its value under the key's column.
    fn field(&mut self, key: &[u8]) -> Parsed<()> {
        let column = match self.columns_by_key.get(key) {
            Some(&c) => c,
            None => {
                let c = self.names.len();
                self.names.push(String::from_utf8_lossy(key).into_owned());
                self.columns_by_key.insert(key.to_vec(), c);
                c
            }
        };
        let value = self.value()?;
        if column == BASE_COLUMNS.len() || column == BASE_COLUMNS.len() + 1 {
            // `cdr_kind` / `leg` are cdrq's own; a source field of that name is not.
            return Ok(());
        }
        self.fields.push((column, value));
        Ok(())
    }

    fn value(&mut self) -> Parsed<Value> {
        let start = self.pos;
        match self.peek() {
            Some(b'"') => {
                let (s, e, escaped) = self.string()?;
                Ok(Value::Str { start: s, end: e, escaped })
            }
            Some(b'n') => self.literal(b"null").map(|()| Value::Null),
            Some(_) => {
                self.ws();
                let start = self.pos.max(start);
                self.skip_value()?;
                Ok(Value::Raw { start, end: self.pos })
            }
            None => self.error("unexpected end of input"),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Parsed<()> {
        self.ws();
        if self.buf[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            self.error("invalid literal")
        }
    }

    /// A string at `pos`: the span of its inside, and whether it has escapes.
    fn string(&mut self) -> Parsed<(usize, usize, bool)> {
        self.eat(b'"')?;
        let start = self.pos;
        let mut escaped = false;
        loop {
            match memchr::memchr2(b'"', b'\\', &self.buf[self.pos..]) {
                None => return self.error("unterminated string"),
                Some(k) => {
                    self.pos += k;
                    if self.buf[self.pos] == b'\\' {
                        escaped = true;
                        self.pos += 2;
                    } else {
                        let end = self.pos;
                        self.pos += 1;
                        if let Some(k) = self.buf[start..end].iter().position(|&b| b < 0x20) {
                            return Err(SyntaxError {
                                at: start + k,
                                reason: "control character in string".into(),
                            });
                        }
                        if escaped {
                            unescape(self.buf, start, end, &mut Vec::new())?;
                        }
                        return Ok((start, end, escaped));
                    }
                }
            }
        }
    }

    fn decoded(&self, (start, end, escaped): (usize, usize, bool)) -> Parsed<Vec<u8>> {
        let mut out = Vec::new();
        if escaped {
            unescape(self.buf, start, end, &mut out)?;
        } else {
            out.extend_from_slice(&self.buf[start..end]);
        }
        Ok(out)
    }

    /// Skips any value (validating its syntax).
    fn skip_value(&mut self) -> Parsed<()> {
        match self.peek() {
            Some(b'"') => self.string().map(|_| ()),
            Some(b'{') => {
                self.pos += 1;
                self.members(|doc, _| doc.skip_value())
            }
            Some(b'[') => {
                self.pos += 1;
                if self.peek() == Some(b']') {
                    self.pos += 1;
                    return Ok(());
                }
                loop {
                    self.skip_value()?;
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b']') => {
                            self.pos += 1;
                            return Ok(());
                        }
                        _ => return self.error("expected ',' or ']'"),
                    }
                }
            }
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => {
                let start = self.pos;
                while let Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') = self.buf.get(self.pos) {
                    self.pos += 1;
                }
                let text = std::str::from_utf8(&self.buf[start..self.pos]).unwrap_or("");
                if text.parse::<f64>().is_err() || text.starts_with("-.") || text.ends_with('.') {
                    return Err(SyntaxError { at: start, reason: format!("invalid number {text:?}") });
                }
                Ok(())
            }
            Some(_) => self.error("expected a JSON value"),
            None => self.error("unexpected end of input"),
        }
    }
}

/// Decodes the inside of a JSON string with escapes into `out`.
fn unescape(buf: &[u8], start: usize, end: usize, out: &mut Vec<u8>) -> Parsed<()> {
    let mut i = start;
    let bad = |at: usize, what: &str| SyntaxError { at, reason: format!("invalid escape: {what}") };
    while i < end {
        let Some(k) = memchr::memchr(b'\\', &buf[i..end]) else {
            out.extend_from_slice(&buf[i..end]);
            break;
        };
        out.extend_from_slice(&buf[i..i + k]);
        i += k;
        let code = *buf.get(i + 1).ok_or_else(|| bad(i, "at end of string"))?;
        i += 2;
        let byte = match code {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0C,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let hex = |at: usize| -> Parsed<u32> {
                    let digits =
                        buf.get(at..at + 4).filter(|_| at + 4 <= end).ok_or_else(|| bad(at, "short \\u"))?;
                    u32::from_str_radix(std::str::from_utf8(digits).unwrap_or("x"), 16)
                        .map_err(|_| bad(at, "\\u needs 4 hex digits"))
                };
                let mut c = hex(i)?;
                i += 4;
                if (0xD800..0xDC00).contains(&c) && buf[i..end].starts_with(b"\\u") {
                    let low = hex(i + 2)?;
                    if (0xDC00..0xE000).contains(&low) {
                        c = 0x10000 + ((c - 0xD800) << 10) + (low - 0xDC00);
                        i += 6;
                    }
                }
                let ch = char::from_u32(c).unwrap_or('\u{FFFD}');
                out.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes());
                continue;
            }
            other => return Err(bad(i - 2, &format!("\\{}", other as char))),
        };
        out.push(byte);
    }
    Ok(())
}
