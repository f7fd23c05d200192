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
//! The parser is a small recursive descent over the bytes: [`lexer`] reads
//! the JSON, this module maps what it reads onto records. Strings without
//! escapes become views into the input buffer; escaped ones are decoded into
//! a scratch buffer. A syntax error fails the read whatever `on_error` says:
//! past it no record boundary can be trusted.

mod lexer;

use super::chunks::{self, Piece};
use super::portsip;
use super::pushdown::{Pushdown, RowFilter};
use super::records::{self, Builder, Kind, RecordSet, Row, Value};
use super::{Emit, Input, Locator, OnError, ReadOptions, ReadOutput, STOPPED, encoding};
use crate::error::{Error, Result};
use lexer::{Lexer, Parsed, SyntaxError, unescape};

/// The parser's state: the input, where it is, and the records so far.
struct Document<'a> {
    input: &'a Input,
    options: &'a ReadOptions,
    /// The input's bytes and the position in them.
    lex: Lexer<'a>,
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
    /// Builds the records of a chunk a few hundred at a time, so that the
    /// parsed fields waiting to be built stay in cache.
    builder: Option<Builder<'a>>,
    /// The first record a chunk's builder refused (strict): the chunk's
    /// result, once its parse (whose syntax errors come first) is done.
    build_error: Option<Error>,
    /// After each column, the key that followed it last time and that
    /// key's column: records repeat their keys in one order, so most keys
    /// are recognised by comparing bytes, without lexing or hashing them.
    next_key: Vec<Option<(Box<[u8]>, usize)>>,
    last_column: usize,
    /// See [`element_bounds`].
    no_element_start_from: usize,
}

/// Rows parsed before they are built (see [`Document::builder`]).
const BUILD_ROWS: usize = 512;

/// One chunk of a record array; it ends at the start of the next element,
/// or at the array's `]` (then it is closed).
type Chunk = Piece<Parsed<Result<ReadOutput>>>;

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
    if let Some(at) = utf8_error(buf) {
        // Collecting, invalid bytes are their records' problem: parse the
        // repaired text and reject the records holding a repair.
        return match (options.on_error, encoding::repair(input)) {
            (OnError::Collect, Some(repaired)) => run(&repaired, options, portsip, emit),
            _ => Err(syntax(SyntaxError { at, reason: "invalid UTF-8".into() })),
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
    records::merge(&input.name, doc.done.into_iter().collect::<Result<Vec<_>>>()?, buf.len())
}

/// Byte ranges, about `target` bytes each, that split the document's one
/// record array at true element starts, so that readers on other machines
/// can each read one with [`read_elements`]; `None` when the document is
/// not one array of records (or too small to split). Parses the whole
/// input, building nothing.
pub fn element_ranges(input: &Input, portsip: bool, target: usize) -> Result<Option<Vec<(usize, usize)>>> {
    let options = ReadOptions {
        chunk_bytes: Some(target.max(1)),
        pushdown: Some(std::sync::Arc::new(Pushdown::new(None, Some(RowFilter::nothing())))),
        on_error: super::OnError::Collect,
        ..ReadOptions::default()
    };
    let buf = input.bytes();
    if utf8_error(buf).is_some() {
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
    doc.builder = Some(Builder::new(input, &options, start).expecting(end.saturating_sub(start)));
    doc.chunk_elements(end)
        .map_err(|e| Error::Parse(Box::new(Locator::new(input).reject(e.at, e.at, e.at, e.reason))))?;
    let stop = doc.lex.pos;
    doc.built(stop)
}

/// Where the first invalid UTF-8 of `buf` is, if any. Checked in pieces on
/// all cores: a piece starts at a byte that starts a character, so the
/// whole is valid exactly when every piece is.
pub(super) fn utf8_error(buf: &[u8]) -> Option<usize> {
    use rayon::prelude::*;
    const PIECE: usize = 4 << 20;
    let mut starts = vec![0];
    while let Some(&last) = starts.last()
        && last + PIECE < buf.len()
    {
        let mut at = last + PIECE;
        // At most three continuation bytes follow a character's first byte.
        while at < buf.len().min(last + PIECE + 3) && buf[at] & 0xC0 == 0x80 {
            at += 1;
        }
        starts.push(at);
    }
    starts.push(buf.len());
    starts
        .par_windows(2)
        .find_map_first(|w| std::str::from_utf8(&buf[w[0]..w[1]]).err().map(|e| w[0] + e.valid_up_to()))
}

/// Whether `a` and `b` (of one length) are equal, compared eight bytes at
/// a time (the last word overlapping): keys are short, and a `memcmp`
/// call costs more than the comparison.
#[inline(always)]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    #[inline(always)]
    fn word(s: &[u8], i: usize) -> u64 {
        u64::from_le_bytes(s[i..i + 8].try_into().unwrap_or([0; 8]))
    }
    let n = a.len();
    if b.len() != n {
        return false;
    }
    if n < 8 {
        let half = |s: &[u8], i: usize| u32::from_le_bytes(s[i..i + 4].try_into().unwrap_or([0; 4]));
        return if n < 4 { a == b } else { half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4) };
    }
    let mut i = 0;
    while i + 8 < n {
        if word(a, i) != word(b, i) {
            return false;
        }
        i += 8;
    }
    word(a, n - 8) == word(b, n - 8)
}

/// Nominal starts of the chunks of a record array whose first element is at
/// `first`: element starts (after `},` or `null,`) about `target` apart, and
/// the input's end. A start found inside a string is caught by
/// [`Document::record_array`]'s continuity check. `none_from`: a position
/// from which the input is known to hold no element start (a search
/// that reached the end without one lowers it), so that many small arrays
/// (`{"cdr":[…],"cdr":[…],…}`) do not each search the rest of the input.
fn element_bounds(buf: &[u8], first: usize, target: usize, none_from: &mut usize) -> Vec<usize> {
    let mut bounds = vec![first];
    let mut pos = first;
    while pos.saturating_add(target) < buf.len() && pos + target < *none_from {
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
        let Some(next) = next else {
            *none_from = (*none_from).min(pos + target);
            break;
        };
        bounds.push(next);
        pos = next;
    }
    bounds.push(buf.len());
    bounds
}

impl<'a> Document<'a> {
    fn new(input: &'a Input, options: &'a ReadOptions, pos: usize, portsip: bool) -> Self {
        Self {
            input,
            options,
            lex: Lexer::new(input.bytes(), pos),
            set: RecordSet::default(),
            done: Vec::new(),
            portsip,
            emit: None,
            arrays: 0,
            spans: Vec::new(),
            builder: None,
            build_error: None,
            next_key: Vec::new(),
            last_column: 0,
            no_element_start_from: usize::MAX,
        }
    }

    /// Builds the records parsed so far, if this document builds as it goes.
    fn build_some(&mut self) {
        match &mut self.builder {
            Some(builder) => {
                if let Err(e) = builder.add(&mut self.set) {
                    self.build_error = Some(e);
                    self.builder = None;
                }
            }
            // Strict and failed: the rest is parsed for syntax only.
            None if self.build_error.is_some() => self.set.clear_records(),
            None => {}
        }
    }

    /// The batch of a chunk parsed with a builder, ending at `end`.
    fn built(mut self, end: usize) -> Result<ReadOutput> {
        self.build_some();
        match (self.build_error, self.builder) {
            (Some(e), _) => Err(e),
            (None, Some(builder)) => builder.finish(end),
            (None, None) => records::build(self.input, self.options, self.set, end..end),
        }
    }

    /// An array of records at `pos`: split into chunks at element starts,
    /// each parsed and built on its own thread. A chunk is right only if it
    /// starts where the one before ended; one that does not (its nominal
    /// start fell inside a string) is parsed again from there.
    fn record_array(&mut self) -> Parsed<()> {
        self.lex.eat(b'[')?;
        if self.lex.peek() == Some(b']') {
            self.lex.pos += 1;
            return Ok(());
        }
        let first = self.lex.pos;
        self.arrays += 1;
        let threads = rayon::current_num_threads();
        let rest = self.lex.buf.len() - first;
        let target = self.options.chunk_bytes.unwrap_or((rest / (4 * threads)).clamp(1 << 20, 32 << 20));
        let bounds = element_bounds(self.lex.buf, first, target.max(1), &mut self.no_element_start_from);
        if bounds.len() <= 2 {
            return self.elements_from(first);
        }
        let set = std::mem::take(&mut self.set);
        if !set.rows.is_empty() {
            self.done.push(records::build(self.input, self.options, set, 0..self.lex.buf.len()));
        }

        let (input, options, portsip) = (self.input, self.options, self.portsip);
        let parse = |start: usize, nominal_end: usize| -> Chunk {
            let mut doc = Document::new(input, options, start, portsip);
            doc.builder = Some(Builder::new(input, options, start).expecting(nominal_end - start));
            match doc.chunk_elements(nominal_end) {
                Ok(closed) => {
                    let end = doc.lex.pos;
                    Chunk { start, end, closed, result: Ok(doc.built(end)) }
                }
                Err(e) => Chunk { start, end: doc.lex.pos, closed: true, result: Err(e) },
            }
        };
        // Read whole: every chunk at once. Scanned: a group at a time,
        // handed over as one window (`hand_over`) before the next is parsed.
        let group = if self.emit.is_some() { 4 * threads } else { usize::MAX };
        let (mut end, mut failed, mut stopped) = (first, None, false);
        let (emit, done, spans) = (self.emit, &mut self.done, &mut self.spans);
        chunks::parse_chunk_groups(&bounds, group, parse, |chunks| {
            let mut window = Vec::new();
            for chunk in chunks {
                spans.push((chunk.start, chunk.end));
                match chunk.result {
                    Err(e) => failed = Some(e),
                    Ok(output) if emit.is_some() => window.push(output),
                    Ok(output) => done.push(output),
                }
                if failed.is_some() {
                    break;
                }
                end = chunk.end;
            }
            stopped = emit.is_some_and(|emit| !chunks::hand_over(&input.name, emit, window, end));
            failed.is_none() && !stopped
        });
        if let Some(e) = failed {
            return Err(e);
        }
        if stopped {
            return Err(SyntaxError { at: end, reason: STOPPED.into() });
        }
        self.lex.pos = end;
        self.lex.eat(b']')
    }

    /// Elements from `pos` (an element start) until the array's `]`, which
    /// is consumed.
    fn elements_from(&mut self, first: usize) -> Parsed<()> {
        self.lex.pos = first;
        if self.chunk_elements(usize::MAX)? { self.lex.eat(b']') } else { self.lex.error("expected ']'") }
    }

    /// Elements from `pos` until the array's `]` (left in place: `true`) or
    /// the first element starting at or after `nominal_end` (`false`).
    fn chunk_elements(&mut self, nominal_end: usize) -> Parsed<bool> {
        loop {
            self.element()?;
            if self.set.rows.len() >= BUILD_ROWS {
                self.build_some();
            }
            match self.lex.peek() {
                Some(b',') => {
                    self.lex.pos += 1;
                    self.lex.ws();
                    if self.lex.pos >= nominal_end {
                        return Ok(false);
                    }
                }
                Some(b']') => return Ok(true),
                _ => return self.lex.error("expected ',' or ']'"),
            }
        }
    }

    /// The whole input: `{"cdr": …}`, `{"cdr_root": …}`, or a bare array.
    fn document(&mut self) -> Parsed<()> {
        match self.lex.peek() {
            None => return Ok(()),
            Some(b'[') => self.record_array()?,
            Some(b'{') if self.portsip && !self.has_items() => {
                // One CDR or call event; any other object (a UCM archive,
                // `{}`) is not PortSIP's, and must not become an all-null row.
                let keys = self.top_keys();
                if !portsip::is_cdr(keys.iter().map(Vec::as_slice)) {
                    return self.lex.error(portsip::not_cdrs(&keys));
                }
                self.element()?
            }
            Some(b'{') => {
                let at = self.lex.pos;
                self.lex.pos += 1;
                let portsip = self.portsip;
                let (mut found, mut keys) = (false, Vec::new());
                self.members(|doc, key| match key {
                    b"cdr" | b"cdr_root" if !portsip => {
                        found = true;
                        doc.records_value(key)
                    }
                    b"items" if portsip => {
                        found = true;
                        match doc.lex.peek() {
                            Some(b'[') => doc.record_array(),
                            Some(b'{') => doc.element(),
                            _ => doc.lex.skip_value(),
                        }
                    }
                    _ => {
                        if keys.len() < 8 {
                            keys.push(String::from_utf8_lossy(key).into_owned());
                        }
                        doc.lex.skip_value()
                    }
                })?;
                if !found {
                    let wanted = if portsip { "\"items\"" } else { "\"cdr\" or \"cdr_root\"" };
                    let reason = format!("a JSON object without {wanted}, so no CDRs (keys: {})", keys.join(", "));
                    return Err(SyntaxError { at, reason });
                }
            }
            Some(_) => return self.lex.error("expected a JSON object or array"),
        }
        if self.lex.peek().is_some() {
            return self.lex.error("unexpected text after the JSON document");
        }
        Ok(())
    }

    /// The records under a UCM document's `cdr` or `cdr_root`: an array, one
    /// call object, or `""` (none); anything else is not an export.
    fn records_value(&mut self, key: &[u8]) -> Parsed<()> {
        match self.lex.peek() {
            Some(b'[') => self.record_array(),
            Some(b'{') => self.element(),
            Some(b'"') if self.lex.buf[self.lex.pos..].starts_with(b"\"\"") => self.lex.skip_value(),
            Some(b'n') => self.lex.literal(b"null"),
            _ => {
                let key = String::from_utf8_lossy(key);
                self.lex.error(format!("\"{key}\" holds neither records nor \"\": not a CDR export"))
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
        let call = match portsip::derive(self.lex.buf, &mut self.set, first_field, None) {
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
        self.lex.pos = at + 1;
        let mut n = 0;
        while self.lex.peek() != Some(b']') {
            n += 1;
            let count = legs.len();
            self.leg(b"call_targets", Kind::Sub(n), &mut legs)?;
            if let Some(first_field) = legs.get(count).map(|leg| leg.first_field) {
                let _ = portsip::derive(self.lex.buf, &mut self.set, first_field, Some(&call));
                legs[count].last_field = self.set.fields.len();
            }
            if self.lex.next_or_close(b']')? {
                break;
            }
        }
        self.lex.pos = end;
        records::order_call(&mut legs);
        self.set.rows.extend(legs);
        Ok(())
    }

    /// The keys of the object at `pos` (syntax errors are left to the parse
    /// proper).
    fn top_keys(&self) -> Vec<Vec<u8>> {
        let mut probe = Document::new(self.input, self.options, self.lex.pos + 1, false);
        let mut keys = Vec::new();
        let _ = probe.members(|doc, key| {
            keys.push(key.to_vec());
            doc.lex.skip_value()
        });
        keys
    }

    /// Calls `on_member` with each key, positioned at its value, until `}`.
    fn members(&mut self, on_member: impl FnMut(&mut Self, &[u8]) -> Parsed<()>) -> Parsed<()> {
        self.object(false, on_member)
    }

    /// The members of a record (or leg): a key that follows its predecessor
    /// as it did before is a field, read without calling `on_member`.
    fn record_members(&mut self, on_member: impl FnMut(&mut Self, &[u8]) -> Parsed<()>) -> Parsed<()> {
        self.object(true, on_member)
    }

    fn object(&mut self, record: bool, mut on_member: impl FnMut(&mut Self, &[u8]) -> Parsed<()>) -> Parsed<()> {
        if self.lex.peek() == Some(b'}') {
            self.lex.pos += 1;
            return Ok(());
        }
        loop {
            match self.predicted_key(record) {
                Some(column) => {
                    let value = self.value()?;
                    self.last_column = column;
                    self.set.push_at(column, value);
                }
                None => {
                    let key = self.lex.key()?;
                    on_member(self, &key)?;
                }
            }
            if self.lex.next_or_close(b'}')? {
                return Ok(());
            }
        }
    }

    /// In a record, at a key (whitespace skipped): its column, the key and
    /// its `:` consumed, if they are byte for byte the `"key":` that followed
    /// the previous field's last time (else the key is lexed: also when
    /// whitespace comes before the `:`).
    #[inline]
    fn predicted_key(&mut self, record: bool) -> Option<usize> {
        if !record {
            return None;
        }
        let (pattern, column) = self.next_key.get(self.last_column)?.as_ref()?;
        let end = self.lex.pos + pattern.len();
        let found = self.lex.buf.get(self.lex.pos..end).is_some_and(|at| same_bytes(at, pattern));
        found.then(|| {
            self.lex.pos = end;
            *column
        })
    }

    /// One array element: a flat record, a `{cdr, main_cdr, sub_cdr_N}`
    /// call, or `null`.
    fn element(&mut self) -> Parsed<()> {
        self.lex.ws();
        let start = self.lex.pos;
        match self.lex.peek() {
            Some(b'n') => {
                let at = self.lex.pos;
                self.lex.literal(b"null")?;
                self.set.skipped.push((at, "a null array element"));
                Ok(())
            }
            Some(b'{') => {
                self.lex.pos += 1;
                let first_field = self.set.fields.len();
                let mut legs: Vec<Row> = Vec::new();
                let mut listed = false;
                let mut targets = None;
                self.record_members(|doc, key| {
                    if doc.portsip && key == b"call_targets" && doc.lex.peek() == Some(b'[') {
                        // PortSIP's legs: read after the call's own fields, so
                        // that each row's fields stay one run.
                        targets = Some(doc.lex.pos);
                        return doc.lex.skip_value();
                    }
                    let kind = match key {
                        b"main_cdr" => Some(Kind::Main),
                        _ => key
                            .strip_prefix(b"sub_cdr_")
                            .and_then(|n| std::str::from_utf8(n).ok()?.parse::<i64>().ok())
                            .map(Kind::Sub),
                    };
                    match (kind, doc.lex.peek()) {
                        // Legs listed in an array: each element a leg.
                        (Some(kind), Some(b'[')) => {
                            listed = true;
                            doc.lex.pos += 1;
                            if doc.lex.peek() == Some(b']') {
                                doc.lex.pos += 1;
                                return Ok(());
                            }
                            loop {
                                doc.leg(key, kind, &mut legs)?;
                                if doc.lex.next_or_close(b']')? {
                                    return Ok(());
                                }
                            }
                        }
                        (Some(kind), _) => doc.leg(key, kind, &mut legs),
                        // The element's own `cdr` is the session id of its legs,
                        // not a field.
                        _ if key == b"cdr" => doc.lex.skip_value(),
                        _ if key.starts_with(b"sub_cdr") || key.starts_with(b"main_cdr") => {
                            let start = doc.lex.pos;
                            doc.lex.skip_value()?;
                            let key = String::from_utf8_lossy(key);
                            doc.set.unmapped.push((
                                start,
                                doc.lex.pos,
                                format!("{key:?} is not main_cdr or sub_cdr_N"),
                            ));
                            Ok(())
                        }
                        _ => doc.field(key),
                    }
                })?;
                let end = self.lex.pos;
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
            _ => self.lex.error("expected a CDR object or null"),
        }
    }

    /// One leg of a call under `key`: an object becomes a row of `kind`,
    /// `null` is skipped, anything else is a reject naming the key.
    fn leg(&mut self, key: &[u8], kind: Kind, legs: &mut Vec<Row>) -> Parsed<()> {
        let start = self.lex.pos;
        match self.lex.peek() {
            Some(b'{') => {
                self.lex.pos += 1;
                let first_field = self.set.fields.len();
                self.record_members(|doc, key| doc.field(key))?;
                legs.push(Row { kind, start, end: self.lex.pos, first_field, last_field: self.set.fields.len() });
            }
            Some(b'n') => {
                self.lex.literal(b"null")?;
                self.set.skipped.push((start, "a null leg"));
            }
            _ => {
                self.lex.skip_value()?;
                let key = String::from_utf8_lossy(key);
                self.set.unmapped.push((start, self.lex.pos, format!("{key:?} holds a leg that is not an object")));
            }
        }
        Ok(())
    }

    /// A field of a record: its value under the key's column.
    fn field(&mut self, key: &[u8]) -> Parsed<()> {
        let value = self.value()?;
        let column = self.set.column(key);
        // Only a key that is always a field and reads the same in the input
        // as decoded may be recognised by its bytes next time.
        let literal = key.iter().all(|&b| b >= 0x20 && b != b'"' && b != b'\\');
        let special =
            key == b"cdr" || key == b"call_targets" || key.starts_with(b"main_cdr") || key.starts_with(b"sub_cdr");
        if literal && !special {
            if self.next_key.len() <= self.last_column {
                self.next_key.resize(self.last_column + 1, None);
            }
            let pattern = [&b"\""[..], key, b"\":"].concat();
            self.next_key[self.last_column] = Some((pattern.into(), column));
        }
        self.last_column = column;
        self.set.push_at(column, value);
        Ok(())
    }

    fn value(&mut self) -> Parsed<Value> {
        match self.lex.peek() {
            Some(b'"') => {
                self.lex.pos += 1;
                let (start, end, escaped) = self.lex.string_rest()?;
                if escaped {
                    let mut text = Vec::with_capacity(end - start);
                    unescape(self.lex.buf, start, end, &mut text)?;
                    Ok(self.set.decoded_value(&text, start))
                } else {
                    Ok(Value::Input { start, end })
                }
            }
            Some(b'n') => self.lex.literal(b"null").map(|()| Value::Null),
            Some(_) => {
                let start = self.lex.pos;
                self.lex.skip_value()?;
                Ok(Value::Input { start, end: self.lex.pos })
            }
            None => self.lex.error("unexpected end of input"),
        }
    }
}
