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

use super::portsip;
use super::pushdown::{Pushdown, RowFilter};
use super::records::{self, Kind, RecordSet, Row, Value};
use super::{Emit, Input, Locator, OnError, ReadOptions, ReadOutput, STOPPED, encoding};
use crate::error::{Error, Result};

struct SyntaxError {
    at: usize,
    reason: String,
}

type Parsed<T> = std::result::Result<T, SyntaxError>;

/// The parser's state: the input, where it is, and the records so far.
struct Document<'a> {
    input: &'a Input,
    options: &'a ReadOptions,
    buf: &'a [u8],
    pos: usize,
    /// Records parsed here, not yet built.
    set: RecordSet,
    /// Built parts, in document order (arrays of records are parsed and
    /// built in parallel chunks).
    done: Vec<Result<ReadOutput>>,
    /// PortSIP: flat records under `items` (or one event object), each
    /// mapped into the UCM fields by [`portsip::derive`].
    portsip: bool,
    /// A scan's consumer: record arrays are handed over a group of chunks
    /// at a time instead of gathered in `done`.
    emit: Option<Emit<'a>>,
    /// Record arrays met, and the spans of their chunks (for splits).
    arrays: usize,
    spans: Vec<(usize, usize)>,
}

/// One chunk of a record array; it ends at the start of the next element,
/// or at the array's `]` (then it is closed).
type Chunk = super::Piece<Parsed<Result<ReadOutput>>>;

/// Reads a UCM CDR API JSON export.
pub fn read_ucm_json(input: &Input, options: &ReadOptions) -> Result<ReadOutput> {
    read_json(input, options, false)
}

/// Reads PortSIP CDRs: the `/api/cdrs` response or a CDR webhook event.
/// Its times are instants, so they are labelled UTC whatever the archive zone.
pub fn read_portsip_json(input: &Input, options: &ReadOptions) -> Result<ReadOutput> {
    read_json(input, &options.for_instants(), true)
}

/// Reads UCM (or PortSIP) JSON handing record arrays to `emit` a window at
/// a time; returns what is left (records outside the arrays, rejects).
pub fn stream_json(input: &Input, options: &ReadOptions, portsip: bool, emit: Emit<'_>) -> Result<ReadOutput> {
    let options = if portsip { options.for_instants() } else { options.clone() };
    run(input, &options, portsip, Some(emit))
}

fn read_json(input: &Input, options: &ReadOptions, portsip: bool) -> Result<ReadOutput> {
    run(input, options, portsip, None)
}

fn run(input: &Input, options: &ReadOptions, portsip: bool, emit: Option<Emit<'_>>) -> Result<ReadOutput> {
    let buf = input.bytes();
    let syntax = |e: SyntaxError| Error::Parse(Box::new(Locator::new(input).reject(e.at, e.at, e.at, e.reason)));
    if let Err(e) = std::str::from_utf8(buf) {
        // Collecting, invalid bytes are their records' problem: parse the
        // repaired text and reject the records holding a repair.
        return match (options.on_error, encoding::repair(input)) {
            (OnError::Collect, Some(repaired)) => run(&repaired, options, portsip, emit),
            _ => Err(syntax(SyntaxError { at: e.valid_up_to(), reason: "invalid UTF-8".into() })),
        };
    }
    let pos = if buf.starts_with(b"\xEF\xBB\xBF") { 3 } else { 0 };
    let mut doc = Document::new(input, options, pos, portsip);
    doc.emit = emit;
    doc.document().map_err(|e| match e.reason.as_str() {
        STOPPED => Error::Input { source: input.name.clone(), reason: e.reason },
        _ => syntax(e),
    })?;
    let set = std::mem::take(&mut doc.set);
    doc.done.push(records::build(input, options, set, 0..buf.len()));
    records::merge(doc.done.into_iter().collect::<Result<Vec<_>>>()?)
}

/// Byte ranges, about `target` bytes each, that split the document's one
/// record array at true element starts, so that readers on other machines
/// can each read one with [`read_elements`]; `None` when the document is
/// not one array of records (or too small to split). Parses the whole
/// input, building nothing.
pub fn element_ranges(input: &Input, portsip: bool, target: usize) -> Result<Option<Vec<(usize, usize)>>> {
    let options = ReadOptions {
        chunk_bytes: Some(target.max(1)),
        pushdown: Some(std::sync::Arc::new(Pushdown { columns: None, filter: Some(RowFilter::nothing()) })),
        on_error: super::OnError::Collect,
        ..ReadOptions::default()
    };
    let buf = input.bytes();
    if std::str::from_utf8(buf).is_err() {
        return Ok(None);
    }
    let pos = if buf.starts_with(b"\xEF\xBB\xBF") { 3 } else { 0 };
    let mut doc = Document::new(input, &options, pos, portsip);
    if doc.document().is_err() || doc.arrays != 1 || !doc.set.rows.is_empty() || doc.spans.len() < 2 {
        return Ok(None);
    }
    Ok(Some(doc.spans))
}

/// The records of the elements starting in `start..end` of a record
/// array, `start` an element start from [`element_ranges`].
pub fn read_elements(
    input: &Input,
    options: &ReadOptions,
    portsip: bool,
    start: usize,
    end: usize,
) -> Result<ReadOutput> {
    let options = if portsip { options.for_instants() } else { options.clone() };
    let mut doc = Document::new(input, &options, start, portsip);
    doc.chunk_elements(end)
        .map_err(|e| Error::Parse(Box::new(Locator::new(input).reject(e.at, e.at, e.at, e.reason))))?;
    let stop = doc.pos;
    records::build(input, &options, doc.set, start..stop)
}

/// Nominal starts of the chunks of a record array whose first element is at
/// `first`: element starts (after `},` or `null,`) about `target` apart, and
/// the input's end. A start found inside a string is caught by
/// [`Document::record_array`]'s continuity check.
fn element_bounds(buf: &[u8], first: usize, target: usize) -> Vec<usize> {
    let mut bounds = vec![first];
    let mut pos = first;
    while pos.saturating_add(target) < buf.len() {
        let mut comma = pos + target;
        let next = loop {
            let Some(k) = memchr::memchr(b',', &buf[comma..]) else { break None };
            comma += k;
            let before = buf[..comma].iter().rposition(|b| !b.is_ascii_whitespace()).map(|i| buf[i]);
            let after = buf[comma + 1..].iter().position(|b| !b.is_ascii_whitespace()).map(|i| comma + 1 + i);
            match (before, after.map(|i| (i, buf[i]))) {
                (Some(b'}' | b'l'), Some((i, b'{' | b'n'))) => break Some(i),
                _ => comma += 1,
            }
        };
        let Some(next) = next else { break };
        bounds.push(next);
        pos = next;
    }
    bounds.push(buf.len());
    bounds
}

impl<'a> Document<'a> {
    fn new(input: &'a Input, options: &'a ReadOptions, pos: usize, portsip: bool) -> Self {
        let buf = input.bytes();
        Self {
            input,
            options,
            buf,
            pos,
            set: RecordSet::default(),
            done: Vec::new(),
            portsip,
            emit: None,
            arrays: 0,
            spans: Vec::new(),
        }
    }

    /// An array of records at `pos`: split into chunks at element starts,
    /// each parsed and built on its own thread. A chunk is right only if it
    /// starts where the one before ended; one that does not (its nominal
    /// start fell inside a string) is parsed again from there.
    fn record_array(&mut self) -> Parsed<()> {
        self.eat(b'[')?;
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(());
        }
        let first = self.pos;
        self.arrays += 1;
        let threads = rayon::current_num_threads();
        let rest = self.buf.len() - first;
        let target = self.options.chunk_bytes.unwrap_or((rest / (4 * threads)).clamp(1 << 20, 32 << 20));
        let bounds = element_bounds(self.buf, first, target.max(1));
        if bounds.len() <= 2 {
            return self.elements_from(first);
        }
        let set = std::mem::take(&mut self.set);
        if !set.rows.is_empty() {
            self.done.push(records::build(self.input, self.options, set, 0..self.buf.len()));
        }

        let (input, options, portsip) = (self.input, self.options, self.portsip);
        let parse = |start: usize, nominal_end: usize| -> Chunk {
            let mut doc = Document::new(input, options, start, portsip);
            match doc.chunk_elements(nominal_end) {
                Ok(closed) => {
                    let (end, set) = (doc.pos, doc.set);
                    Chunk { start, end, closed, result: Ok(records::build(input, options, set, start..end)) }
                }
                Err(e) => Chunk { start, end: doc.pos, closed: true, result: Err(e) },
            }
        };
        // Read whole: every chunk at once. Scanned: a group at a time, each
        // handed over before the next is parsed.
        let group = if self.emit.is_some() { 4 * threads } else { usize::MAX };
        let (mut end, mut failed, mut stopped) = (first, None, false);
        let (emit, done, spans) = (self.emit, &mut self.done, &mut self.spans);
        super::parse_chunk_groups(&bounds, group, parse, |chunks| {
            for chunk in chunks {
                end = chunk.end;
                spans.push((chunk.start, chunk.end));
                match (chunk.result, emit) {
                    (Err(e), _) => failed = Some(e),
                    (Ok(output), Some(emit)) => stopped = !emit(output, chunk.end),
                    (Ok(output), None) => done.push(output),
                }
                if failed.is_some() || stopped {
                    return false;
                }
            }
            true
        });
        if let Some(e) = failed {
            return Err(e);
        }
        if stopped {
            return Err(SyntaxError { at: end, reason: STOPPED.into() });
        }
        self.pos = end;
        self.eat(b']')
    }

    /// Elements from `pos` (an element start) until the array's `]`, which
    /// is consumed.
    fn elements_from(&mut self, first: usize) -> Parsed<()> {
        self.pos = first;
        if self.chunk_elements(usize::MAX)? { self.eat(b']') } else { self.error("expected ']'") }
    }

    /// Elements from `pos` until the array's `]` (left in place: `true`) or
    /// the first element starting at or after `nominal_end` (`false`).
    fn chunk_elements(&mut self, nominal_end: usize) -> Parsed<bool> {
        loop {
            self.element()?;
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.ws();
                    if self.pos >= nominal_end {
                        return Ok(false);
                    }
                }
                Some(b']') => return Ok(true),
                _ => return self.error("expected ',' or ']'"),
            }
        }
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
            Some(b'[') => self.record_array()?,
            Some(b'{') if self.portsip && !self.has_items() => {
                // One CDR or call event; any other object (a UCM archive,
                // `{}`) is not PortSIP's, and must not become an all-null row.
                let keys = self.top_keys();
                if !portsip::is_cdr(keys.iter().map(Vec::as_slice)) {
                    return self.error(portsip::not_cdrs(&keys));
                }
                self.element()?
            }
            Some(b'{') => {
                let at = self.pos;
                self.pos += 1;
                let portsip = self.portsip;
                let (mut found, mut keys) = (false, Vec::new());
                self.members(|doc, key| match key {
                    b"cdr" | b"cdr_root" if !portsip => {
                        found = true;
                        doc.records_value(key)
                    }
                    b"items" if portsip => {
                        found = true;
                        match doc.peek() {
                            Some(b'[') => doc.record_array(),
                            Some(b'{') => doc.element(),
                            _ => doc.skip_value(),
                        }
                    }
                    _ => {
                        if keys.len() < 8 {
                            keys.push(String::from_utf8_lossy(key).into_owned());
                        }
                        doc.skip_value()
                    }
                })?;
                if !found {
                    let wanted = if portsip { "\"items\"" } else { "\"cdr\" or \"cdr_root\"" };
                    let reason = format!("a JSON object without {wanted}, so no CDRs (keys: {})", keys.join(", "));
                    return Err(SyntaxError { at, reason });
                }
            }
            Some(_) => return self.error("expected a JSON object or array"),
        }
        if self.peek().is_some() {
            return self.error("unexpected text after the JSON document");
        }
        Ok(())
    }

    /// The records under a UCM document's `cdr` or `cdr_root`: an array, one
    /// call object, or `""` (none); anything else is not an export.
    fn records_value(&mut self, key: &[u8]) -> Parsed<()> {
        match self.peek() {
            Some(b'[') => self.record_array(),
            Some(b'{') => self.element(),
            Some(b'"') if self.buf[self.pos..].starts_with(b"\"\"") => self.skip_value(),
            Some(b'n') => self.literal(b"null"),
            _ => {
                let key = String::from_utf8_lossy(key);
                self.error(format!("\"{key}\" holds neither records nor \"\": not a CDR export"))
            }
        }
    }

    /// Whether the object at `pos` has an `items` key (a PortSIP list
    /// response rather than a single event).
    fn has_items(&self) -> bool {
        self.top_keys().iter().any(|k| k == b"items")
    }

    /// A PortSIP CDR or event at `start..end` whose fields begin at
    /// `fields[first_field]`: its derived fields, then its `call_targets`
    /// (the array at `targets`) as `sub` rows under a `main` row. An object
    /// that is not a CDR (an `/api/recordings` item) is a reject.
    fn portsip_call(&mut self, start: usize, end: usize, first_field: usize, targets: Option<usize>) -> Parsed<()> {
        let call = match portsip::derive(self.buf, &mut self.set, first_field, None) {
            Ok(call) => call,
            Err(reason) => {
                self.set.fields.truncate(first_field);
                self.set.unmapped.push((start, end, reason.to_string()));
                return Ok(());
            }
        };
        let last_field = self.set.fields.len();
        let Some(at) = targets else {
            self.set.rows.push(Row { kind: Kind::Record, start, end, first_field, last_field });
            return Ok(());
        };
        let mut legs = vec![Row { kind: Kind::Main, start, end, first_field, last_field }];
        self.pos = at + 1;
        let mut n = 0;
        while self.peek() != Some(b']') {
            n += 1;
            let count = legs.len();
            self.leg(b"call_targets", Kind::Sub(n), &mut legs)?;
            if let Some(first_field) = legs.get(count).map(|leg| leg.first_field) {
                let _ = portsip::derive(self.buf, &mut self.set, first_field, Some(&call));
                legs[count].last_field = self.set.fields.len();
            }
            if self.next_or_close(b']')? {
                break;
            }
        }
        self.pos = end;
        records::order_call(&mut legs);
        self.set.rows.extend(legs);
        Ok(())
    }

    /// The keys of the object at `pos` (syntax errors are left to the parse
    /// proper).
    fn top_keys(&self) -> Vec<Vec<u8>> {
        let mut probe = Document::new(self.input, self.options, self.pos + 1, false);
        let mut keys = Vec::new();
        let _ = probe.members(|doc, key| {
            keys.push(key.to_vec());
            doc.skip_value()
        });
        keys
    }

    /// After an item of an object or array: `,` (`false`: more follow) or
    /// the closing byte, consumed (`true`).
    fn next_or_close(&mut self, close: u8) -> Parsed<bool> {
        match self.peek() {
            Some(b',') => {
                self.pos += 1;
                Ok(false)
            }
            Some(b) if b == close => {
                self.pos += 1;
                Ok(true)
            }
            _ => self.error(format!("expected ',' or '{}'", close as char)),
        }
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
            if self.next_or_close(b'}')? {
                return Ok(());
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
                self.set.skipped.push((at, "a null array element"));
                Ok(())
            }
            Some(b'{') => {
                self.pos += 1;
                let first_field = self.set.fields.len();
                let mut legs: Vec<Row> = Vec::new();
                let mut listed = false;
                let mut targets = None;
                self.members(|doc, key| {
                    if doc.portsip && key == b"call_targets" && doc.peek() == Some(b'[') {
                        // PortSIP's legs: read after the call's own fields, so
                        // that each row's fields stay one run.
                        targets = Some(doc.pos);
                        return doc.skip_value();
                    }
                    let kind = match key {
                        b"main_cdr" => Some(Kind::Main),
                        _ => key
                            .strip_prefix(b"sub_cdr_")
                            .and_then(|n| std::str::from_utf8(n).ok()?.parse::<i64>().ok())
                            .map(Kind::Sub),
                    };
                    match (kind, doc.peek()) {
                        // Legs listed in an array: each element a leg.
                        (Some(kind), Some(b'[')) => {
                            listed = true;
                            doc.pos += 1;
                            if doc.peek() == Some(b']') {
                                doc.pos += 1;
                                return Ok(());
                            }
                            loop {
                                doc.leg(key, kind, &mut legs)?;
                                if doc.next_or_close(b']')? {
                                    return Ok(());
                                }
                            }
                        }
                        (Some(kind), _) => doc.leg(key, kind, &mut legs),
                        // The element's own `cdr` is the session id of its legs,
                        // not a field.
                        _ if key == b"cdr" => doc.skip_value(),
                        _ if key.starts_with(b"sub_cdr") || key.starts_with(b"main_cdr") => {
                            let start = doc.pos;
                            doc.skip_value()?;
                            let key = String::from_utf8_lossy(key);
                            doc.set.unmapped.push((start, doc.pos, format!("{key:?} is not main_cdr or sub_cdr_N")));
                            Ok(())
                        }
                        _ => doc.field(key),
                    }
                })?;
                let end = self.pos;
                if self.portsip {
                    return self.portsip_call(start, end, first_field, targets);
                }
                if legs.is_empty() {
                    let last_field = self.set.fields.len();
                    self.set.rows.push(Row { kind: Kind::Record, start, end, first_field, last_field });
                } else {
                    records::order_call(&mut legs);
                    if listed {
                        records::number_legs(&mut legs);
                    }
                    self.set.rows.extend(legs);
                }
                Ok(())
            }
            _ => self.error("expected a CDR object or null"),
        }
    }

    /// One leg of a call under `key`: an object becomes a row of `kind`,
    /// `null` is skipped, anything else is a reject naming the key.
    fn leg(&mut self, key: &[u8], kind: Kind, legs: &mut Vec<Row>) -> Parsed<()> {
        let start = self.pos;
        match self.peek() {
            Some(b'{') => {
                self.pos += 1;
                let first_field = self.set.fields.len();
                self.members(|doc, key| doc.field(key))?;
                legs.push(Row { kind, start, end: self.pos, first_field, last_field: self.set.fields.len() });
            }
            Some(b'n') => {
                self.literal(b"null")?;
                self.set.skipped.push((start, "a null leg"));
            }
            _ => {
                self.skip_value()?;
                let key = String::from_utf8_lossy(key);
                self.set.unmapped.push((start, self.pos, format!("{key:?} holds a leg that is not an object")));
            }
        }
        Ok(())
    }

    /// A field of a record: its value under the key's column.
    fn field(&mut self, key: &[u8]) -> Parsed<()> {
        let value = self.value()?;
        self.set.push_field(key, value);
        Ok(())
    }

    fn value(&mut self) -> Parsed<Value> {
        match self.peek() {
            Some(b'"') => {
                let (start, end, escaped) = self.string()?;
                if escaped {
                    let mut text = Vec::with_capacity(end - start);
                    unescape(self.buf, start, end, &mut text)?;
                    Ok(self.set.decoded_value(&text, start))
                } else {
                    Ok(Value::Input { start, end })
                }
            }
            Some(b'n') => self.literal(b"null").map(|()| Value::Null),
            Some(_) => {
                let start = self.pos;
                self.skip_value()?;
                Ok(Value::Input { start, end: self.pos })
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

    /// Skips string bytes that are neither `"`, `\\` nor control characters,
    /// eight at a time: a raw control character must be found anyway, so a
    /// SIMD search for the quote alone would not save the second look.
    #[inline]
    fn skip_plain(&mut self) {
        while let Some(word) = self.buf.get(self.pos..self.pos + 8) {
            let special = special_bytes(u64::from_le_bytes(word.try_into().unwrap_or([0; 8])));
            if special != 0 {
                self.pos += special.trailing_zeros() as usize / 8;
                return;
            }
            self.pos += 8;
        }
    }

    /// A string at `pos`: the span of its inside, and whether it has
    /// escapes (which whoever decodes it validates).
    fn string(&mut self) -> Parsed<(usize, usize, bool)> {
        self.eat(b'"')?;
        let start = self.pos;
        let mut escaped = false;
        self.skip_plain();
        while let Some(&b) = self.buf.get(self.pos) {
            match b {
                b'"' => {
                    self.pos += 1;
                    return Ok((start, self.pos - 1, escaped));
                }
                b'\\' => {
                    escaped = true;
                    self.pos += 2;
                }
                0..=0x1f => return self.error("control character in string"),
                _ => self.pos += 1,
            }
            self.skip_plain();
        }
        self.error("unterminated string")
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
            Some(b'"') => {
                let (start, end, escaped) = self.string()?;
                if escaped {
                    unescape(self.buf, start, end, &mut Vec::new())?;
                }
                Ok(())
            }
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
                    if self.next_or_close(b']')? {
                        return Ok(());
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

/// High bit set in each byte of `w` that is `"`, `\\` or a control
/// character (exact for the lowest such byte, which is all that is used).
#[inline]
fn special_bytes(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_in = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let control = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    control | zero_in(w ^ (ONES * u64::from(b'"'))) | zero_in(w ^ (ONES * u64::from(b'\\')))
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
                    let digits = buf.get(at..at + 4).filter(|_| at + 4 <= end).ok_or_else(|| bad(at, "short \\u"))?;
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

#[cfg(test)]
mod tests {
    #[test]
    fn special_bytes_finds_the_first_quote_backslash_or_control() {
        for (text, first) in [
            (&b"abcdefgh"[..], None),
            (b"abc\"efgh", Some(3)),
            (b"\\bcdefgh", Some(0)),
            (b"abcdefg\n", Some(7)),
            (b"\xc3\xa9\xc3\xa9abcd", None),
            (b"a\x1f\"defgh", Some(1)),
        ] {
            let w = u64::from_le_bytes(text.try_into().unwrap());
            let found = super::special_bytes(w);
            assert_eq!((found != 0).then(|| found.trailing_zeros() as usize / 8), first, "{text:?}");
        }
    }
}
