//! The Grandstream UCM CDR XML reader.
//!
//! The root element (`<cdr_root>` or any other) holds one element per call
//! or record:
//! - `<cdr session="…">` holding `<main_cdr>` and `<sub_cdr_N>` children,
//!   whose own children are the fields → a `main` row and `sub` rows with
//!   `leg` = N, in numeric order (the JSON reader's rules);
//! - `<cdr>` whose field elements stand directly inside → a `record` row.
//!
//! Field text is taken as written (not trimmed); entities and character
//! references are decoded, CDATA kept verbatim; `<answer/>` or an empty
//! element is null. Text without markup to decode stays a view into the
//! input. quick-xml does the tokenising; a syntax error (mismatched tags,
//! an unknown entity) fails the read in either error mode.

use quick_xml::Reader;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::Event;

use super::chunks::{self, Piece};
use super::records::{self, Builder, Kind, RecordSet, Row, Value};
use super::{Emit, Input, Locator, OnError, ReadOptions, ReadOutput, STOPPED, encoding};
use crate::error::{Error, Result};

/// The text of the field element being read.
struct OpenField {
    /// Where its (local) name is in the input, and its length.
    name: (usize, usize),
    depth: usize,
    /// Input offset of the element, for errors.
    at: usize,
    /// One unescaped run of the input, while it is the only piece.
    span: Option<(usize, usize)>,
    /// The decoded text once there is more than one piece.
    text: Option<Vec<u8>>,
}

impl OpenField {
    fn push_span(&mut self, buf: &[u8], start: usize, end: usize) {
        match (&mut self.text, self.span) {
            (None, None) => self.span = Some((start, end)),
            (None, Some(_)) => {
                self.promote(buf);
                self.push_decoded(&buf[start..end]);
            }
            (Some(text), _) => text.extend_from_slice(&buf[start..end]),
        }
    }

    fn push_decoded(&mut self, bytes: &[u8]) {
        if self.text.is_none() {
            self.text = Some(Vec::new());
        }
        if let Some(text) = &mut self.text {
            text.extend_from_slice(bytes);
        }
    }

    fn promote_if_needed(&mut self, buf: &[u8]) {
        if self.text.is_none() {
            self.promote(buf);
        }
    }

    /// From a single input span to decoded text (a second piece arrived).
    fn promote(&mut self, buf: &[u8]) {
        let mut text = Vec::new();
        if let Some((s, e)) = self.span.take() {
            text.extend_from_slice(&buf[s..e]);
        }
        self.text = Some(text);
    }

    fn value(self, set: &mut RecordSet) -> Value {
        match (self.text, self.span) {
            (Some(text), _) => set.decoded_value(&text, self.at),
            (None, Some((start, end))) => Value::Input { start, end },
            (None, None) => Value::Null,
        }
    }
}

/// A call element being read: where it started and its legs so far.
struct OpenCall {
    start: usize,
    first_field: usize,
    legs: Vec<Row>,
}

/// Reads a UCM CDR XML export. The calls under the root are split into
/// chunks at `<cdr` starts and parsed and built on all cores; a chunk that
/// does not start where its predecessor ended (its `<cdr` was not a call)
/// is parsed again from there, so the result is the one-pass result.
pub fn read_ucm_xml(input: &Input, options: &ReadOptions) -> Result<ReadOutput> {
    run(input, options, None)
}

/// Reads UCM XML handing calls to `emit` a window at a time; returns what
/// is left (nothing but an empty output, for XML).
pub fn stream_xml(input: &Input, options: &ReadOptions, emit: Emit<'_>) -> Result<ReadOutput> {
    run(input, options, Some(emit))
}

fn run(input: &Input, options: &ReadOptions, emit: Option<Emit<'_>>) -> Result<ReadOutput> {
    let buf = input.bytes();
    let syntax = |at: usize, reason: String| Error::Parse(Box::new(Locator::new(input).reject(at, at, at, reason)));
    let text = match super::json::utf8_error(buf) {
        // SAFETY: just checked to be UTF-8.
        None => unsafe { std::str::from_utf8_unchecked(buf) },
        // Collecting, invalid bytes are their records' problem (see json.rs).
        Some(at) => {
            return match (options.on_error, encoding::repair(input)) {
                (OnError::Collect, Some(repaired)) => run(&repaired, options, emit),
                _ => Err(syntax(at, "invalid UTF-8".into())),
            };
        }
    };
    let Some(body) = root_body(text) else {
        let shown: String = text.trim_start().chars().take(40).collect();
        return Err(syntax(0, format!("no XML root element holding CDRs: {shown:?}")));
    };
    let threads = rayon::current_num_threads();
    let target = options.chunk_bytes.unwrap_or((buf.len() / (4 * threads)).clamp(1 << 20, 32 << 20)).max(1);
    let bounds = body.map_or_else(Vec::new, |start| call_bounds(buf, start, target));
    if bounds.len() <= 2 {
        let part = parse_part(input, options, text, 0, usize::MAX, 0);
        return records::merge(&input.name, part.result?, input.bytes().len());
    }
    let parse = |start: usize, nominal_end: usize| parse_part(input, options, text, start, nominal_end, 1);
    // Read whole: every chunk at once. Scanned: a group at a time, handed
    // over as one window (`hand_over`) before the next is parsed.
    let group = if emit.is_some() { 4 * threads } else { usize::MAX };
    let (mut outputs, mut closed, mut failed, mut stopped) = (Vec::new(), false, None, false);
    chunks::parse_chunk_groups(&bounds, group, parse, |parts| {
        let (mut window, mut end) = (Vec::new(), 0);
        for part in parts {
            closed = part.closed;
            match part.result {
                Err(e) => failed = Some(e),
                Ok(built) if emit.is_some() => window.extend(built.into_iter().map(Ok)),
                Ok(built) => outputs.extend(built),
            }
            if failed.is_some() {
                break;
            }
            end = part.end;
        }
        stopped = emit.is_some_and(|emit| !chunks::hand_over(&input.name, emit, window, end));
        failed.is_none() && !stopped
    });
    if let Some(e) = failed {
        return Err(e);
    }
    if stopped {
        return Err(Error::Input { source: input.name.clone(), reason: STOPPED.into() });
    }
    if !closed {
        return Err(syntax(buf.len(), "invalid XML: unclosed element".into()));
    }
    records::merge(&input.name, outputs, input.bytes().len())
}

/// Where the root element's content starts: `None` without a root element
/// (not XML, unless blank), `Some(None)` for an empty one (`<cdr_root/>`).
fn root_body(text: &str) -> Option<Option<usize>> {
    let mut reader = Reader::from_str(text);
    loop {
        match reader.read_event() {
            Ok(Event::Start(_)) => return Some(Some(reader.buffer_position() as usize)),
            Ok(Event::Empty(_)) => return Some(None),
            Ok(Event::Eof) => return super::is_blank(text.as_bytes()).then_some(None),
            Err(_) => return Some(None), // the parse below says where
            _ => {}
        }
    }
}

/// Nominal chunk starts: `<cdr` tags about `target` apart, then the end.
fn call_bounds(buf: &[u8], first: usize, target: usize) -> Vec<usize> {
    let mut bounds = vec![first];
    let mut pos = first;
    let finder = memchr::memmem::Finder::new(b"<cdr");
    while pos.saturating_add(target) < buf.len() {
        let mut at = pos + target;
        let next = loop {
            let Some(k) = finder.find(&buf[at..]) else { break None };
            at += k;
            if matches!(buf.get(at + 4), Some(b' ' | b'>' | b'/' | b'\t' | b'\r' | b'\n')) {
                break Some(at);
            }
            at += 4;
        };
        let Some(next) = next else { break };
        bounds.push(next);
        pos = next;
    }
    bounds.push(buf.len());
    bounds
}

/// One chunk of the document; closed once it saw the root's end, or failed.
type Part = Piece<Result<Vec<ReadOutput>>>;

/// Parses from `start` (at element depth `depth0`) until the first call
/// starting at or after `nominal_end`, or the end of the document.
fn parse_part(
    input: &Input,
    options: &ReadOptions,
    text: &str,
    start: usize,
    nominal_end: usize,
    depth0: usize,
) -> Part {
    let mut part = Part { start, end: start, closed: false, result: Ok(Vec::new()) };
    part.result = parse_into(input, options, text, nominal_end, depth0, &mut part);
    part.closed |= part.result.is_err();
    part
}

/// [`parse_part`]'s work: fills in where `part` ended and whether it closed
/// the root; returns its built parts.
fn parse_into(
    input: &Input,
    options: &ReadOptions,
    text: &str,
    nominal_end: usize,
    depth0: usize,
    part: &mut Part,
) -> Result<Vec<ReadOutput>> {
    let start = part.start;
    let buf = input.bytes();
    let syntax = |at: usize, reason: String| Error::Parse(Box::new(Locator::new(input).reject(at, at, at, reason)));
    let offset_of = |s: &str| s.as_ptr() as usize - text.as_ptr() as usize;

    let mut reader = Reader::from_str(&text[start..]);
    // Chunks start inside the root: end tags are matched here, not by quick-xml.
    reader.config_mut().check_end_names = false;
    reader.config_mut().allow_unmatched_ends = true;
    // Names of the open elements, as (offset, length) in the input: events
    // borrow from it, and an owned copy per element would cost more than
    // the rest of the parse.
    let mut open: Vec<(usize, usize)> = Vec::new();
    let mut set = RecordSet::default();
    let mut depth = depth0;
    let mut call: Option<OpenCall> = None;
    let mut leg: Option<(Kind, usize, usize)> = None; // kind, start, first field
    let mut field: Option<OpenField> = None;
    // Records are built a few hundred at a time, so the parsed fields held
    // before building stay in cache whatever the input's size.
    const BUILD_ROWS: usize = 512;
    let expected = nominal_end.min(buf.len()).saturating_sub(start);
    let mut builder = Builder::new(input, options, start).expecting(expected);
    loop {
        let before = start + reader.buffer_position() as usize;
        let event = reader
            .read_event()
            .map_err(|e| syntax(start + reader.error_position() as usize, format!("invalid XML: {e}")))?;
        let after = start + reader.buffer_position() as usize;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                if depth == 1 && before >= nominal_end {
                    part.end = before;
                    break;
                }
                let empty = matches!(event, Event::Empty(_));
                let local = e.local_name();
                let name = local.as_ref().as_bytes();
                if !empty {
                    let qname = e.name();
                    open.push((offset_of(qname.as_ref()), qname.as_ref().len()));
                }
                depth += 1;
                match depth {
                    1 => {}
                    // `<cdr/>` is the UCM's `null`; another empty element
                    // (`<html><head/>…`) is no CDR export's.
                    2 if empty && name == b"cdr" => set.skipped.push((before, "an empty element")),
                    2 if empty => {
                        let name = String::from_utf8_lossy(name);
                        set.unmapped.push((before, after, format!("<{name}/> is neither a call nor a record")));
                    }
                    2 => call = Some(OpenCall { start: before, first_field: set.fields.len(), legs: Vec::new() }),
                    3 if leg_kind(name).is_some() => {
                        let kind = leg_kind(name).unwrap_or(Kind::Record);
                        if empty {
                            set.skipped.push((before, "an empty leg"));
                        } else {
                            leg = Some((kind, before, set.fields.len()));
                        }
                    }
                    3 | 4 if field.is_none() && (depth == 3 || leg.is_some()) => {
                        let name = (offset_of(local.as_ref()), name.len());
                        field = Some(OpenField { name, depth, at: before, span: None, text: None });
                    }
                    _ => {} // markup nested inside a field: its text joins the field's
                }
                if empty {
                    close(buf, &mut depth, &mut call, &mut leg, &mut field, &mut set, after);
                }
            }
            Event::End(ref e) => {
                match open.pop().map(|(at, len)| &text[at..at + len]) {
                    Some(name) if name != e.name().as_ref() => {
                        let found = e.name().as_ref().to_string();
                        return Err(syntax(before, format!("invalid XML: </{found}> closes <{name}>")));
                    }
                    None if depth0 == 0 || depth != 1 => {
                        return Err(syntax(before, "invalid XML: an end tag without its start".into()));
                    }
                    _ => {}
                }
                close(buf, &mut depth, &mut call, &mut leg, &mut field, &mut set, after);
                if depth == 0 {
                    part.closed = true;
                }
                if depth == 1 && set.rows.len() >= BUILD_ROWS {
                    builder.add(&mut set)?;
                }
            }
            // Text without entities and CDATA are runs of the input as they are.
            Event::Text(ref t) if field.is_some() => push_run(&mut field, buf, offset_of(t), t.len()),
            Event::CData(ref t) if field.is_some() => push_run(&mut field, buf, offset_of(t), t.len()),
            Event::GeneralRef(r) => {
                if let Some(f) = &mut field {
                    let ch = r.resolve_char_ref().map_err(|e| syntax(before, format!("invalid XML: {e}")))?;
                    let mut utf8 = [0u8; 4];
                    let decoded = match ch {
                        Some(c) => c.encode_utf8(&mut utf8).as_bytes(),
                        None => resolve_predefined_entity(&r)
                            .ok_or_else(|| syntax(before, format!("unknown entity &{};", &*r)))?
                            .as_bytes(),
                    };
                    f.promote_if_needed(buf);
                    f.push_decoded(decoded);
                }
            }
            Event::Eof if depth > 0 => return Err(syntax(buf.len(), "invalid XML: unclosed element".into())),
            Event::Eof => {
                part.end = buf.len();
                break;
            }
            _ => {} // declaration, comments, processing instructions, doctype
        }
    }
    builder.add(&mut set)?;
    Ok(vec![builder.finish(part.end.max(start))?])
}

fn push_run(field: &mut Option<OpenField>, buf: &[u8], start: usize, len: usize) {
    if let Some(f) = field {
        f.push_span(buf, start, start + len);
    }
}

/// `main_cdr` → main, `sub_cdr_N` → leg N.
fn leg_kind(name: &[u8]) -> Option<Kind> {
    if name == b"main_cdr" {
        return Some(Kind::Main);
    }
    let n = name.strip_prefix(b"sub_cdr_")?;
    std::str::from_utf8(n).ok()?.parse().ok().map(Kind::Sub)
}

/// Closes the innermost element at `end`: a field, a leg, or a call.
fn close(
    buf: &[u8],
    depth: &mut usize,
    call: &mut Option<OpenCall>,
    leg: &mut Option<(Kind, usize, usize)>,
    field: &mut Option<OpenField>,
    set: &mut RecordSet,
    end: usize,
) {
    if field.as_ref().is_some_and(|f| f.depth == *depth) {
        if let Some(f) = field.take() {
            let (at, len) = f.name;
            let value = f.value(set);
            set.push_field(&buf[at..at + len], value);
        }
    } else if *depth == 3 && field.is_none() {
        if let (Some((kind, start, first_field)), Some(c)) = (leg.take(), call.as_mut()) {
            c.legs.push(Row { kind, start, end, first_field, last_field: set.fields.len() });
        }
    } else if *depth == 2
        && let Some(mut c) = call.take()
    {
        if c.legs.is_empty() {
            let last_field = set.fields.len();
            set.rows.push(Row { kind: Kind::Record, start: c.start, end, first_field: c.first_field, last_field });
        } else {
            records::order_call(&mut c.legs);
            set.rows.extend(c.legs);
        }
    }
    *depth = depth.saturating_sub(1);
}
