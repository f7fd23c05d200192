//! The Grandstream UCM CDR API CSV reader.
//!
//! ADVICE FOR HACKERS — each quirk below is pinned by a sample in
//! `tests/samples/` and must keep working together with the others:
//! - fw 1.0.2.5 (`ucm6510-fw1.0.2.5-cdrapi.csv`) writes a 22-name header and
//!   leaves `lastdata` unquoted, so `SIP/5301,60,` yields 24 fields under 22
//!   names. A record with more fields than names takes the fields before
//!   `lastdata` from the front, those after it from the back, and joins the
//!   middle with `,` (see [`Layout`]).
//! - fw ≥ 1.0.11 (`ucm6xxx-fw1.0.11-cdrapi.csv`) writes no header, quotes
//!   `lastdata`, writes 31 fields (the 32 JSON keys less `dstchanext`) and
//!   ends the line with `, ` — a whitespace-only last field, read as empty.
//! - `clid` is written `"pn01" <5300>`: a quoted token followed by text, kept
//!   verbatim (see [`super::split`]).
//! - Records are split into chunks at line starts and parsed in parallel; a
//!   chunk that turns out to start inside a quoted field is parsed again from
//!   where its predecessor really ended, so the result is the one-thread
//!   result exactly.

use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, RecordBatchOptions, StringViewArray, new_null_array};
use arrow_buffer::Buffer;
use arrow_schema::SchemaRef;
use rayon::prelude::*;

use super::builder::{ColumnBuilder, INLINE_MAX, INPUT_BUFFER, SCRATCH_BUFFER, make_view};
use super::chunks::parse_chunks;
use super::pushdown::{COUNTERS, Pushdown, RowFilter};
use super::split::{FieldKind, FieldSpan, Splitter, skip_blank_lines, split_record, unescape_into};
use super::{Input, Locator, OnError, ReadOptions, ReadOutput};
use super::{asterisk, webui};
use crate::error::{Error, Reject, Result};
use crate::schema::{
    self, AMAFLAGS_COLUMN, BASE_COLUMNS, BILLSEC_COLUMN, CALLER_NAME_COLUMN, CLID_COLUMN, ColumnType, DST_COLUMN,
    EXTRA_COLUMN, KIND_COLUMN, LASTDATA_COLUMN, LEG_COLUMN, SRC_COLUMN, START_COLUMN,
};
use crate::values::{Gaps, Timestamp, parse_int, parse_timestamp};

/// Which CSV export a file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// The CDR API's CSV: vendor field names or no header.
    Api,
    /// The web UI's download: labels, a `cdr` column, UI time forms.
    WebUi,
    /// Asterisk cdr_csv's `Master.csv`: no header, every field quoted,
    /// 16 to 21 fields by the site's options (see [`asterisk::csv_layout`]).
    AsteriskCsv,
    /// Asterisk cdr_custom: no header, the columns the caller names.
    AsteriskCustom,
    /// FreePBX's CDR report export: a header of Asterisk's names, RFC 4180
    /// or the old export's unescaped quoting (see [`asterisk::split_freepbx`]).
    FreepbxCsv,
}

impl Dialect {
    fn is_asterisk(self) -> bool {
        matches!(self, Self::AsteriskCsv | Self::AsteriskCustom | Self::FreepbxCsv)
    }
}

/// Index of `AcctId` in [`BASE_COLUMNS`].
pub(super) const ACCTID_COLUMN: usize = 0;

/// Index of `dstchanext` in [`BASE_COLUMNS`]: the field fw 1.0.11 omits.
const DSTCHANEXT: usize = 26;

/// How the fields of a record map to output columns.
#[derive(Clone, Debug)]
pub(super) struct Layout {
    /// Output column of each field position.
    pub columns: Vec<usize>,
    /// Field position of `lastdata`, which may hold unquoted commas.
    pub lastdata: Option<usize>,
}

impl Layout {
    fn headerless(n: usize) -> Self {
        let columns: Vec<usize> = match n {
            22 => (0..22).collect(),
            31 => (0..32).filter(|&i| i != DSTCHANEXT).collect(),
            _ => (0..32).collect(),
        };
        Self { columns, lastdata: Some(LASTDATA_COLUMN) }
    }
}

/// The layouts of one file.
pub(super) struct FileLayout {
    /// From the header, or from the first record's field count.
    pub primary: Layout,
    pub has_header: bool,
    /// Headerless only: rows of another firmware's exact width.
    pub other_widths: Vec<Layout>,
    /// What [`Self::expected`] says, where not the UCM's.
    pub described: Option<String>,
}

impl FileLayout {
    /// The layout of a record of `n` fields, and whether the `lastdata`
    /// rule applies.
    fn for_record(&self, n: usize) -> Option<(&Layout, bool)> {
        let m = self.primary.columns.len();
        if n == m {
            Some((&self.primary, false))
        } else if n > m && self.primary.lastdata.is_some() {
            Some((&self.primary, true))
        } else {
            self.other_widths.iter().find(|l| l.columns.len() == n).map(|l| (l, false))
        }
    }

    fn expected(&self) -> String {
        if let Some(described) = &self.described {
            described.clone()
        } else if self.has_header {
            format!("{} fields as in the header (more only with an unquoted lastdata)", self.primary.columns.len())
        } else {
            "22, 31 or 32 fields (more only with an unquoted lastdata)".to_string()
        }
    }
}

/// A value assigned to an output column for one record: an index into
/// the record's spans (its fields, then spans derived from them), so that
/// mapping fields to columns moves indices rather than spans.
#[derive(Clone, Copy)]
enum Slot {
    Null,
    Field(usize),
    /// `lastdata` rebuilt from fields `a..b` of the record, joined with `,`.
    Joined(usize, usize),
}

/// A problem found in a chunk, located by byte offsets.
struct ChunkError {
    record_start: usize,
    record_end: usize,
    at: usize,
    reason: String,
}

/// The parse of one chunk.
struct Chunk {
    start: usize,
    /// Where the chunk's last record ended (blank lines skipped).
    end: usize,
    /// `None` for columns not built: those every row of an API CSV shares
    /// (`cdr_kind`, `leg`) and those a projection leaves out.
    columns: Vec<Option<ColumnBuilder>>,
    scratch: Vec<u8>,
    /// Records parsed and checked, and those of them built.
    records: usize,
    rows: usize,
    errors: Vec<ChunkError>,
    /// Web UI: legs seen since the last `main_cdr` row.
    legs: i64,
    /// Strict mode met an error: the read stops here.
    failed: bool,
}

impl super::chunks::Chunk for Chunk {
    fn span(&self) -> (usize, usize) {
        (self.start, self.end)
    }

    fn is_last(&self) -> bool {
        self.failed
    }
}

/// What reading a CSV file needs once its header (or first record) is
/// known; a file is then read in one window or in many ([`read_window`]).
pub struct CsvPlan {
    dialect: Dialect,
    layout: FileLayout,
    names: Vec<String>,
    types: Vec<ColumnType>,
    /// The columns whose values are checked and converted (typed ones, and
    /// the web UI's `cdr`): most columns are text and need neither.
    checked: Vec<usize>,
    /// The columns built, by index into `names`.
    output: Vec<usize>,
    /// Asterisk family: what columns give others (`linkedid` `session`, …).
    fills: Option<asterisk::Fills>,
    /// Columns no record of the file can fill (the UCM's own, in an
    /// Asterisk layout): built null whole, not a null a row.
    empty: Vec<bool>,
    /// API dialect: the width of the records that map field to column as
    /// the primary layout says (no rejoined `lastdata`), built in batches.
    direct_width: Option<usize>,
    /// The primary layout's field of each column.
    field_of: Vec<Option<usize>>,
    /// The built columns' schema.
    pub schema: SchemaRef,
    /// Where the records start.
    pub data_start: usize,
}

/// What every chunk parse shares.
struct Context<'a> {
    input: &'a Input,
    buf: &'a [u8],
    plan: &'a CsvPlan,
    strict: bool,
    filter: Option<&'a RowFilter>,
    gaps: Option<&'a Gaps>,
    /// Long values are copied into the chunk's scratch ([`copies_values`]).
    copy: bool,
}

/// Reads a UCM CDR API CSV export.
pub fn read_ucm_csv(input: &Input, options: &ReadOptions) -> Result<ReadOutput> {
    read_csv(input, options, Dialect::Api)
}

/// Reads a UCM web UI CDR download.
pub fn read_webui_csv(input: &Input, options: &ReadOptions) -> Result<ReadOutput> {
    read_csv(input, options, Dialect::WebUi)
}

/// Reads a CSV export of the given dialect.
pub fn read_csv(input: &Input, options: &ReadOptions, dialect: Dialect) -> Result<ReadOutput> {
    let plan = CsvPlan::new(input, options, dialect)?;
    Ok(read_window(input, &plan, options, plan.data_start, input.bytes().len())?.0)
}

impl CsvPlan {
    pub fn new(input: &Input, options: &ReadOptions, dialect: Dialect) -> Result<Self> {
        let buf = input.bytes();
        let mut pos = if buf.starts_with(b"\xEF\xBB\xBF") { 3 } else { 0 };
        pos = skip_blank_lines(buf, pos);
        let (layout, extra, data_start) = match dialect {
            Dialect::AsteriskCsv => asterisk::csv_layout(input, pos),
            Dialect::AsteriskCustom => asterisk::custom_layout(input, options.columns.as_deref(), pos)?,
            Dialect::FreepbxCsv => asterisk::freepbx_layout(input, pos).map_err(|(header, reason)| {
                let err = ChunkError { record_start: header.start, record_end: header.end, at: header.start, reason };
                Error::Parse(Box::new(locate(input, &[&err]).remove(0)))
            })?,
            _ => read_layout(input, pos, dialect)?,
        };
        let names = schema::output_names(&extra);
        let fills = dialect.is_asterisk().then(|| asterisk::Fills::new(&names, &layout.primary.columns));
        let layouts = std::iter::once(&layout.primary).chain(&layout.other_widths);
        let filled: Vec<usize> = layouts.flat_map(|l| l.columns.iter().copied()).collect();
        let own = |c: usize| c == KIND_COLUMN || c == LEG_COLUMN;
        let empty = (0..names.len())
            .map(|c| {
                !own(c)
                    && !filled.contains(&c)
                    && match &fills {
                        Some(fills) => !fills.may_fill(c, &filled),
                        // An API record fills only its layout's columns (fw
                        // 1.0.11 has no `dstchanext`); the web UI derives
                        // `src` and `caller_name` from the caller ID.
                        None => dialect == Dialect::Api,
                    }
            })
            .collect();
        let types: Vec<ColumnType> = names.iter().map(|n| schema::column_type(n)).collect();
        let checked = (0..names.len()).filter(|&c| types[c] != ColumnType::Text || c == KIND_COLUMN).collect();
        let wanted = Pushdown::wanted(options.pushdown.as_deref(), &names);
        let output: Vec<usize> = (0..names.len()).filter(|&c| wanted[c]).collect();
        let output_names: Vec<String> = output.iter().map(|&c| names[c].clone()).collect();
        let schema = schema::arrow_schema(&output_names, options.tz.as_deref());
        let mut field_of = vec![None; names.len()];
        for (i, &c) in layout.primary.columns.iter().enumerate().filter(|&(_, &c)| c != SKIPPED) {
            field_of[c] = Some(i);
        }
        let direct_width = (dialect == Dialect::Api).then_some(layout.primary.columns.len());
        Ok(Self {
            dialect,
            layout,
            names,
            types,
            checked,
            output,
            fills,
            empty,
            direct_width,
            field_of,
            schema,
            data_start,
        })
    }

    /// All the file's columns, built or not.
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

/// Reads the records that start in `from..to` (`from` a record start);
/// returns them and where the last one ended, the next window's start.
/// Web UI files are read in one window: legs are numbered from the last
/// main row.
pub fn read_window(
    input: &Input,
    plan: &CsvPlan,
    options: &ReadOptions,
    from: usize,
    to: usize,
) -> Result<(ReadOutput, usize)> {
    let buf = input.bytes();
    let strict = options.on_error == OnError::Raise;
    let filter = options.pushdown.as_deref().and_then(|p| p.filter.as_ref());
    let copy = copies_values(input);
    let ctx = Context { input, buf, plan, strict, filter, gaps: options.gaps.as_deref(), copy };
    let bounds = match plan.dialect {
        Dialect::WebUi => vec![from, buf.len().max(from)],
        _ => chunk_bounds(buf, from, to, rayon::current_num_threads(), options.chunk_bytes),
    };
    let chunks = parse_chunks(&bounds, |start, nominal_end| parse_chunk(&ctx, start, nominal_end));
    let end = chunks.last().map_or(from, |c| c.end);

    let errors: Vec<&ChunkError> = chunks.iter().flat_map(|c| &c.errors).collect();
    if strict && !errors.is_empty() {
        return Err(Error::Parse(Box::new(locate(input, &errors[..1]).remove(0))));
    }
    let rejects = locate(input, &errors);

    let tz = options.tz.as_deref();
    for chunk in &chunks {
        COUNTERS.add(chunk.records, chunk.rows, plan.output.len());
    }
    // In parallel: finishing a chunk may copy its bytes out of a mapping.
    let batches = chunks
        .into_par_iter()
        .filter(|chunk| chunk.rows > 0)
        .map(|chunk| finish_chunk(input, chunk, plan, tz))
        .collect::<Result<Vec<_>>>()?;
    Ok((ReadOutput { schema: Arc::clone(&plan.schema), batches, rejects }, end))
}

/// Rejects for the chunk errors, located in the input.
fn locate(input: &Input, errors: &[&ChunkError]) -> Vec<Reject> {
    let mut locator = Locator::new(input);
    errors.iter().map(|e| locator.reject(e.record_start, e.record_end, e.at, e.reason.clone())).collect()
}

/// Builds a chunk's record batch; its text columns share the chunk's slice
/// of the input and its scratch buffer.
fn finish_chunk(input: &Input, mut chunk: Chunk, plan: &CsvPlan, tz: Option<&str>) -> Result<RecordBatch> {
    let fail = |reason: String| Error::Input { source: input.name.clone(), reason };
    let len = chunk.end - chunk.start;
    if len > u32::MAX as usize || chunk.scratch.len() > u32::MAX as usize {
        return Err(fail(format!("a record run of {len} bytes exceeds 4 GiB")));
    }
    let buffers: Arc<[Buffer]> = if copies_values(input) {
        // No view points into the input (its pages went after parsing).
        let mut scratch = std::mem::take(&mut chunk.scratch);
        scratch.shrink_to_fit();
        Arc::from([Buffer::from_vec(Vec::<u8>::new()), Buffer::from_vec(scratch)])
    } else if chunk.scratch.is_empty() {
        Arc::from([input.column_buffer(chunk.start, len)])
    } else {
        let input_slice = input.column_buffer(chunk.start, len);
        Arc::from([input_slice, Buffer::from_vec(std::mem::take(&mut chunk.scratch))])
    };
    let rows = chunk.rows;
    let arrays: Vec<ArrayRef> = plan
        .output
        .iter()
        .enumerate()
        .map(|(i, &c)| match chunk.columns[c].take() {
            Some(b) => b.finish(&buffers, tz),
            None if plan.empty[c] => new_null_array(plan.schema.field(i).data_type(), rows),
            None if c == LEG_COLUMN => Arc::new(Int64Array::from(vec![0; rows])) as ArrayRef,
            None => {
                let view = make_view(b"record", 0, 0);
                // SAFETY: an inline view of an ASCII literal, no buffers needed.
                Arc::new(unsafe { StringViewArray::new_unchecked(vec![view; rows].into(), Arc::from([]), None) })
            }
        })
        .collect();
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    RecordBatch::try_new_with_options(Arc::clone(&plan.schema), arrays, &options).map_err(|e| fail(e.to_string()))
}

/// Decides the layout from the header or the first record; returns the
/// layout, the header's names beyond the data model, and where data starts.
fn read_layout(input: &Input, pos: usize, dialect: Dialect) -> Result<(FileLayout, Vec<String>, usize)> {
    let buf = input.bytes();
    let mut fields = Vec::new();
    let headerless = |n: usize| {
        let width = match n {
            22 | 31 | 32 => n,
            23..=30 => 22,
            _ => 32,
        };
        let other_widths = [22, 31, 32].into_iter().filter(|&w| w < width).map(Layout::headerless).collect();
        FileLayout { primary: Layout::headerless(width), has_header: false, other_widths, described: None }
    };
    let Ok(first) = split_record(buf, pos, &mut fields) else {
        return Ok((headerless(32), Vec::new(), pos));
    };
    if pos >= buf.len() {
        return Ok((headerless(32), Vec::new(), pos));
    }
    let names: Vec<String> = fields.iter().map(|f| schema::column_name(field_bytes(buf, f).trim_ascii())).collect();
    let header_error = |reason: String| {
        let err = ChunkError { record_start: first.start, record_end: first.end, at: first.start, reason };
        Error::Parse(Box::new(locate(input, &[&err]).remove(0)))
    };
    let known = names.iter().filter(|n| lookup_base(n).is_some()).count();
    match dialect {
        Dialect::Api if known < 3 => return Ok((headerless(fields.len()), Vec::new(), pos)),
        Dialect::WebUi if !names.iter().any(|n| webui::lookup(n).is_some() || lookup_base(n).is_some()) => {
            return Err(header_error("expected a header of web UI column labels".into()));
        }
        _ => {}
    }

    let mut extra: Vec<String> = Vec::new();
    let mut columns = Vec::with_capacity(names.len());
    for label in &names {
        let (name, base) = match (dialect, webui::lookup(label)) {
            (Dialect::WebUi, Some(webui::Target::Kind)) => (label.as_str(), Some(KIND_COLUMN)),
            (Dialect::WebUi, Some(webui::Target::Field(field))) => (field, schema::base_index(field)),
            _ => (label.as_str(), lookup_base(label)),
        };
        let column = match base {
            Some(i) => i,
            // `cdr_kind` and `leg` are cdrq's own columns (a CSV written from
            // a cdrq frame has them): the reader sets them, as for JSON keys.
            None if name == schema::CDR_KIND || name == schema::LEG => {
                columns.push(SKIPPED);
                continue;
            }
            None => {
                if name.is_empty() {
                    return Err(header_error("empty column name in header".into()));
                }
                if extra.iter().any(|e| e == name) {
                    return Err(header_error(format!("duplicate column {label:?} in header")));
                }
                extra.push(name.to_string());
                EXTRA_COLUMN + extra.len() - 1
            }
        };
        if columns.contains(&column) {
            return Err(header_error(format!("duplicate column {label:?} in header")));
        }
        columns.push(column);
    }
    let lastdata = columns.iter().position(|&c| c == LASTDATA_COLUMN);
    let layout = FileLayout {
        primary: Layout { columns, lastdata },
        has_header: true,
        other_widths: Vec::new(),
        described: None,
    };
    Ok((layout, extra, first.next))
}

/// The column of a header field that is read past.
pub(super) const SKIPPED: usize = usize::MAX;

/// A data-model name, matched case-insensitively.
pub(super) fn lookup_base(name: &str) -> Option<usize> {
    schema::base_index(name).or_else(|| BASE_COLUMNS.iter().position(|n| n.eq_ignore_ascii_case(name)))
}

#[inline]
pub(super) fn field_bytes<'a>(buf: &'a [u8], f: &FieldSpan) -> std::borrow::Cow<'a, [u8]> {
    let raw = &buf[f.start..f.end];
    match f.kind {
        FieldKind::Plain | FieldKind::Quoted => raw.into(),
        FieldKind::Escaped => {
            let mut out = Vec::with_capacity(raw.len());
            unescape_into(raw, &mut out);
            out.into()
        }
    }
}

/// Nominal chunk starts in `start..end`: line starts about
/// `(end - start) / (4 × threads)` apart, then `end`.
fn chunk_bounds(buf: &[u8], start: usize, end: usize, threads: usize, chunk_bytes: Option<usize>) -> Vec<usize> {
    const MIN_CHUNK: usize = 1 << 18;
    const MAX_CHUNK: usize = 32 << 20;
    let len = end.min(buf.len());
    let target = chunk_bytes
        .unwrap_or_else(|| ((len - start.min(len)) / (4 * threads.max(1))).clamp(MIN_CHUNK, MAX_CHUNK))
        .max(1);
    let mut bounds = vec![start];
    let mut pos = start;
    while pos.saturating_add(target) < len {
        match memchr::memchr(b'\n', &buf[pos + target..len]) {
            Some(k) if pos + target + k + 1 < len => {
                pos += target + k + 1;
                bounds.push(pos);
            }
            _ => break,
        }
    }
    bounds.push(len.max(start));
    bounds
}

/// Parses the records that start in `[start, nominal_end)`.
fn parse_chunk(ctx: &Context<'_>, start: usize, nominal_end: usize) -> Chunk {
    let (buf, plan) = (ctx.buf, ctx.plan);
    let start = skip_blank_lines(buf, start);
    let estimate = (nominal_end.saturating_sub(start) / 200).max(16);
    let mut columns: Vec<Option<ColumnBuilder>> = (0..plan.names.len()).map(|_| None).collect();
    for &c in &plan.output {
        let constant = c == KIND_COLUMN || c == LEG_COLUMN;
        if (plan.dialect == Dialect::WebUi || !constant) && !plan.empty[c] {
            columns[c] = Some(ColumnBuilder::new(plan.types[c], estimate));
        }
    }
    let scratch = Vec::with_capacity(if ctx.copy { nominal_end.saturating_sub(start).min(64 << 20) } else { 0 });
    advise_huge_pages(&scratch);
    let mut chunk = Chunk {
        start,
        end: start,
        columns,
        // Owned frames copy a chunk's long values here: room for them all
        // (pages untouched cost nothing), so the vector never moves. (A
        // web UI file is one chunk: past 64 MiB it grows as it must.)
        scratch,
        records: 0,
        rows: 0,
        errors: Vec::new(),
        legs: 0,
        failed: false,
    };
    // Records ending before `utf8_valid_to` need no UTF-8 check of their own.
    let region = &buf[start..nominal_end.max(start)];
    let utf8_valid_to = start + std::str::from_utf8(region).map_or_else(|e| e.valid_up_to(), |s| s.len());

    let mut fields = Vec::with_capacity(40);
    let mut slots = vec![Slot::Null; plan.types.len()];
    let mut ints = vec![None; plan.types.len()];
    let mut batch = Batch::default();
    let mut pos = start;
    let layouts = std::iter::once(&plan.layout.primary).chain(&plan.layout.other_widths);
    let widths: Vec<usize> = layouts.map(|l| l.columns.len()).collect();
    let mut splitter = Splitter::default();
    while pos < nominal_end && pos < buf.len() {
        // FreePBX's and cdr_custom's quotes need not be RFC 4180's.
        let split = match plan.dialect {
            Dialect::FreepbxCsv => asterisk::split_freepbx(buf, pos, widths[0], &mut fields),
            Dialect::AsteriskCustom => asterisk::split_custom(buf, pos, &widths, &mut fields),
            _ => Ok(splitter.split(buf, pos, &mut fields)),
        };
        let split = match split {
            Ok(split) => split,
            Err((line, reason)) => {
                chunk.errors.push(ChunkError { record_start: line.start, record_end: line.end, at: pos, reason });
                pos = line.next;
                if ctx.strict {
                    break;
                }
                pos = skip_blank_lines(buf, pos);
                continue;
            }
        };
        match split {
            Err(unterminated) => {
                // Reject up to the end of the quote's line, go on with the next.
                let at = unterminated.quote_at;
                let line_end = memchr::memchr(b'\n', &buf[at..]).map_or(buf.len(), |k| at + k);
                let text_end = if line_end > pos && buf[line_end - 1] == b'\r' { line_end - 1 } else { line_end };
                chunk.errors.push(ChunkError {
                    record_start: pos,
                    record_end: text_end,
                    at: unterminated.quote_at,
                    reason: "unterminated quoted field".into(),
                });
                pos = (line_end + 1).min(buf.len());
            }
            Ok(record) => {
                let utf8 = if record.end <= utf8_valid_to {
                    Ok(())
                } else {
                    std::str::from_utf8(&buf[record.start..record.end])
                        .map(|_| ())
                        .map_err(|e| (record.start + e.valid_up_to(), "invalid UTF-8".to_string()))
                };
                let utf8 = match plan.dialect {
                    Dialect::AsteriskCsv => utf8.and_then(|()| asterisk::cdr_csv_quoting(buf, &fields)),
                    _ => utf8,
                };
                // A record of the file's own width goes into the batch.
                let direct = utf8.is_ok() && plan.direct_width == Some(fields.len());
                let result = if direct {
                    blank_trailing_field(ctx, &mut fields);
                    batch.check(ctx, &fields).map(|()| chunk.records += 1)
                } else {
                    batch.flush(ctx, start, &mut chunk);
                    utf8.and_then(|()| check_record(ctx, &mut fields, &mut slots, &mut ints)).map(|()| {
                        chunk.records += 1;
                        if plan.dialect == Dialect::WebUi {
                            // Numbered whether or not the row is kept.
                            chunk.legs = if ints[KIND_COLUMN] == Some(1) { chunk.legs + 1 } else { 0 };
                        }
                        if ctx.filter.is_none_or(|f| keep(buf, f, &fields, &slots, &ints)) {
                            append_record(ctx, &fields, &slots, &ints, start, &mut chunk);
                        }
                    })
                };
                if let Err((at, reason)) = result {
                    chunk.errors.push(ChunkError { record_start: record.start, record_end: record.end, at, reason });
                }
                if batch.rows == BATCH_ROWS {
                    batch.flush(ctx, start, &mut chunk);
                }
                pos = record.next;
            }
        }
        if ctx.strict && !chunk.errors.is_empty() {
            break;
        }
        pos = skip_blank_lines(buf, pos);
    }
    batch.flush(ctx, start, &mut chunk);
    chunk.end = pos;
    chunk.failed = ctx.strict && !chunk.errors.is_empty();
    if ctx.copy {
        // No view points into the chunk's input: its pages can go now, so
        // they and the copies are not resident together.
        ctx.input.release(start, pos);
    }
    chunk
}

/// Records a batch holds before it is built into the chunk's columns.
const BATCH_ROWS: usize = 256;

/// Checked records of the file's own width, built into the chunk's
/// columns a column at a time: each column's loop runs over the batch
/// with its builder and field position fixed.
#[derive(Default)]
struct Batch {
    /// The records' fields, `width` a record.
    fields: Vec<FieldSpan>,
    /// The checked columns' values, [`CsvPlan::checked`]'s order, a record
    /// after the other.
    ints: Vec<Option<i64>>,
    rows: usize,
}

impl Batch {
    /// Checks a record of [`CsvPlan::direct_width`] fields; adds it if it
    /// passes, and passes the scan's row filter (as [`keep`] does).
    fn check(&mut self, ctx: &Context<'_>, fields: &[FieldSpan]) -> std::result::Result<(), (usize, String)> {
        let mark = self.ints.len();
        for &column in &ctx.plan.checked {
            let value = match ctx.plan.field_of[column] {
                Some(i) => check_value(ctx, column, fields[i]),
                None => Ok(None),
            };
            match value {
                Ok(v) => self.ints.push(v),
                Err(e) => {
                    self.ints.truncate(mark);
                    return Err(e);
                }
            }
        }
        if let Some(filter) = ctx.filter {
            let value = |column: usize| {
                let k = ctx.plan.checked.iter().position(|&c| c == column)?;
                self.ints[mark + k]
            };
            let text = |column: usize| ctx.plan.field_of[column].map(|i| field_bytes(ctx.buf, &fields[i]));
            let is_main = value(KIND_COLUMN) == Some(0);
            let kept = !is_main
                && filter.keep(
                    text(SRC_COLUMN).as_deref(),
                    text(DST_COLUMN).as_deref(),
                    value(START_COLUMN),
                    value(BILLSEC_COLUMN),
                );
            if !kept {
                self.ints.truncate(mark);
                return Ok(());
            }
        }
        self.fields.extend_from_slice(fields);
        self.rows += 1;
        Ok(())
    }

    /// Builds the batch into the chunk's columns and empties it.
    fn flush(&mut self, ctx: &Context<'_>, base: usize, chunk: &mut Chunk) {
        let rows = self.rows;
        if rows == 0 {
            return;
        }
        let width = self.fields.len() / rows;
        let checked = &ctx.plan.checked;
        let Chunk { columns, scratch, .. } = chunk;
        for (column, builder) in columns.iter_mut().enumerate() {
            let Some(builder) = builder else { continue };
            builder.reserve(rows);
            if let Some(k) = checked.iter().position(|&c| c == column) {
                for value in self.ints.iter().skip(k).step_by(checked.len()) {
                    match value {
                        Some(v) => builder.push_i64(*v),
                        None => builder.push_null(),
                    }
                }
            } else if let (Some(i), ColumnBuilder::Text { views, nulls }) = (ctx.plan.field_of[column], &mut *builder) {
                // The builder's pushes, written out: this loop is the hot one.
                for record in self.fields.chunks_exact(width) {
                    match field_view(ctx, scratch, record[i], base) {
                        Some(view) => {
                            views.push(view);
                            nulls.append_non_null();
                        }
                        None => {
                            views.push(0);
                            nulls.append_null();
                        }
                    }
                }
            } else {
                (0..rows).for_each(|_| builder.push_null());
            }
        }
        chunk.rows += rows;
        self.fields.clear();
        self.ints.clear();
        self.rows = 0;
    }
}

/// Whether a checked record passes the scan's row filter.
fn keep(buf: &[u8], filter: &RowFilter, fields: &[FieldSpan], slots: &[Slot], ints: &[Option<i64>]) -> bool {
    let text = |column: usize| match slots[column] {
        Slot::Field(i) => Some(field_bytes(buf, &fields[i])),
        _ => None,
    };
    let is_main = ints[KIND_COLUMN] == Some(0);
    !is_main
        && filter.keep(
            text(SRC_COLUMN).as_deref(),
            text(DST_COLUMN).as_deref(),
            ints[START_COLUMN],
            ints[BILLSEC_COLUMN],
        )
}

/// The CDR API guide's trailing `, `: a whitespace-only last field is
/// empty. (The web UI's download has no such quirk: values as written.)
fn blank_trailing_field(ctx: &Context<'_>, fields: &mut [FieldSpan]) {
    if let Some(last) = fields.last_mut()
        && ctx.plan.dialect == Dialect::Api
        && last.kind == FieldKind::Plain
        && ctx.buf[last.start..last.end].iter().all(|b| *b == b' ' || *b == b'\t')
    {
        last.end = last.start;
    }
}

/// Maps a record's fields to columns and checks typed values; on failure
/// returns the offending offset and the reason.
fn check_record(
    ctx: &Context<'_>,
    fields: &mut Vec<FieldSpan>,
    slots: &mut [Slot],
    ints: &mut [Option<i64>],
) -> std::result::Result<(), (usize, String)> {
    let buf = ctx.buf;
    let n = fields.len();
    blank_trailing_field(ctx, fields);
    let Some((layout, rejoin)) = ctx.plan.layout.for_record(n) else {
        let at = fields.first().map_or(0, |f| f.start);
        return Err((at, format!("expected {}, found {n}", ctx.plan.layout.expected())));
    };

    slots.fill(Slot::Null);
    let m = layout.columns.len();
    for (i, &column) in layout.columns.iter().enumerate() {
        if column == SKIPPED {
            continue;
        }
        slots[column] = match (rejoin, layout.lastdata) {
            (true, Some(ld)) if i == ld => Slot::Joined(ld, n - (m - ld - 1)),
            (true, Some(ld)) if i > ld => Slot::Field(n - (m - i)),
            _ => Slot::Field(i),
        };
    }

    if let Some(fills) = &ctx.plan.fills {
        // `linkedid` ties a call's legs together, as the UCM's `session`.
        for &(source, target) in &fills.copies {
            if matches!(slots[target], Slot::Null) {
                slots[target] = slots[source];
            }
        }
        if let (Some(Slot::Field(l)), Some(sequence)) = (fills.linkedid.map(|c| slots[c]), fills.sequence)
            && fields[l].start < fields[l].end
            && matches!(slots[ACCTID_COLUMN], Slot::Null)
        {
            slots[ACCTID_COLUMN] = slots[sequence];
        }
        if let (Slot::Null, Slot::Field(clid)) = (slots[CALLER_NAME_COLUMN], slots[CLID_COLUMN]) {
            slots[CALLER_NAME_COLUMN] = derived(fields, asterisk::clid_name(buf, fields[clid]));
        }
    }
    let webui = ctx.plan.dialect == Dialect::WebUi;
    if webui && matches!(slots[SRC_COLUMN], Slot::Null) {
        // Older downloads give the caller only as `Call From`, the caller
        // ID (`"John Doe"<6012>`): its number is the caller, so queries on
        // `src` match these files too.
        if let Slot::Field(clid) = slots[CLID_COLUMN] {
            let (name, number) = webui::split_caller_id(buf, fields[clid]);
            slots[SRC_COLUMN] = derived(fields, number);
            if matches!(slots[CALLER_NAME_COLUMN], Slot::Null) {
                slots[CALLER_NAME_COLUMN] = derived(fields, name);
            }
        }
    }
    for &column in &ctx.plan.checked {
        ints[column] = match slots[column] {
            Slot::Field(i) => check_value(ctx, column, fields[i])?,
            _ => None,
        };
    }
    if let Some(fills) = &ctx.plan.fills {
        let at = fields.first().map_or(0, |f| f.start);
        asterisk::derive_times(fills.derive, ints).map_err(|reason| (at, reason))?;
    }
    Ok(())
}

/// Checks and converts the value of a checked column (a typed one, or the
/// web UI's `cdr`); an empty or unset value is `None`.
fn check_value(ctx: &Context<'_>, column: usize, f: FieldSpan) -> std::result::Result<Option<i64>, (usize, String)> {
    if f.start == f.end {
        return Ok(None);
    }
    let value = field_bytes(ctx.buf, &f);
    let name = &ctx.plan.names[column];
    let shown = || String::from_utf8_lossy(&value).into_owned();
    let webui = ctx.plan.dialect == Dialect::WebUi;
    if column == KIND_COLUMN {
        let kind = webui::parse_kind(&value)
            .ok_or_else(|| (f.start, format!("cdr is not main_cdr or sub_cdr: {:?}", shown())))?;
        return Ok(Some(i64::from(kind == webui::Kind::Sub)));
    }
    Ok(Some(match ctx.plan.types[column] {
        ColumnType::Int if webui => webui::parse_duration(&value)
            .ok_or_else(|| (f.start, format!("{name} is not seconds or H:MM:SS: {:?}", shown())))?,
        ColumnType::Int => {
            parse_int(&value).ok_or_else(|| (f.start, format!("{name} is not an integer: {:?}", shown())))?
        }
        _ => match if webui {
            webui::parse_time(&value)
        } else if ctx.plan.fills.is_some() {
            asterisk::parse_time(&value)
        } else {
            parse_timestamp(&value)
        } {
            Some(Timestamp::At(us)) => match ctx.gaps {
                Some(gaps) if gaps.skips(us) => return Err((f.start, gaps.reason(name, &value))),
                _ => us,
            },
            Some(Timestamp::Unset) => return Ok(None),
            None => return Err((f.start, format!("{name} is not a YYYY-MM-DD HH:MM:SS time: {:?}", shown()))),
        },
    }))
}

/// The slot of a span derived from a record's fields, appended to them.
fn derived(fields: &mut Vec<FieldSpan>, span: Option<FieldSpan>) -> Slot {
    span.map_or(Slot::Null, |span| {
        fields.push(span);
        Slot::Field(fields.len() - 1)
    })
}

/// Appends a checked record to the chunk's columns.
fn append_record(
    ctx: &Context<'_>,
    fields: &[FieldSpan],
    slots: &[Slot],
    ints: &[Option<i64>],
    base: usize,
    chunk: &mut Chunk,
) {
    let buf = ctx.buf;
    let asterisk = ctx.plan.dialect.is_asterisk();
    let Chunk { columns, scratch, legs, .. } = chunk;
    for (column, builder) in columns.iter_mut().enumerate() {
        let Some(builder) = builder else { continue };
        if !matches!(builder, ColumnBuilder::Text { .. }) {
            match (column, ints[column]) {
                (LEG_COLUMN, _) => builder.push_i64(*legs),
                (_, Some(v)) => builder.push_i64(v),
                (_, None) => builder.push_null(),
            }
            continue;
        }
        // Web UI only (for the API dialect this builder is absent).
        if column == KIND_COLUMN {
            let kind: &[u8] = match ints[KIND_COLUMN] {
                None => b"record",
                Some(0) => b"main",
                Some(_) => b"sub",
            };
            builder.push_text(kind, INPUT_BUFFER, 0);
            continue;
        }
        match slots[column] {
            Slot::Field(i) if fields[i].start < fields[i].end => {
                let f = fields[i];
                // Asterisk: an AMA flag written as its number gets its name.
                let amaflags = if asterisk && column == AMAFLAGS_COLUMN && f.kind != FieldKind::Escaped {
                    schema::amaflags_name(&buf[f.start..f.end])
                } else {
                    None
                };
                if let Some(name) = amaflags {
                    let at = scratch.len();
                    scratch.extend_from_slice(name.as_bytes());
                    builder.push_text(&scratch[at..], SCRATCH_BUFFER, at);
                } else {
                    push_field(ctx, builder, scratch, f, base);
                }
            }
            Slot::Joined(a, b) => {
                let parts = &fields[a..b];
                if parts.iter().all(|f| f.kind == FieldKind::Plain) {
                    // The middle fields are one contiguous run of the input.
                    builder.push_view(input_view(ctx, scratch, parts[0].start..parts[parts.len() - 1].end, base));
                } else {
                    let at = scratch.len();
                    for (k, f) in parts.iter().enumerate() {
                        if k > 0 {
                            scratch.push(b',');
                        }
                        match f.kind {
                            FieldKind::Escaped => unescape_into(&buf[f.start..f.end], scratch),
                            _ => scratch.extend_from_slice(&buf[f.start..f.end]),
                        }
                    }
                    builder.push_text(&scratch[at..], SCRATCH_BUFFER, at);
                }
            }
            _ => builder.push_null(),
        }
    }
    chunk.rows += 1;
}

/// Appends a field's value to a text column (null when empty).
#[inline(always)]
fn push_field(ctx: &Context<'_>, builder: &mut ColumnBuilder, scratch: &mut Vec<u8>, f: FieldSpan, base: usize) {
    match field_view(ctx, scratch, f, base) {
        Some(view) => builder.push_view(view),
        None => builder.push_null(),
    }
}

/// The view of a field's value (`None` when empty), its decoded or copied
/// bytes appended to `scratch`.
#[inline(always)]
fn field_view(ctx: &Context<'_>, scratch: &mut Vec<u8>, f: FieldSpan, base: usize) -> Option<u128> {
    if f.start == f.end {
        None
    } else if f.kind == FieldKind::Escaped {
        let at = scratch.len();
        unescape_into(&ctx.buf[f.start..f.end], scratch);
        Some(make_view(&scratch[at..], SCRATCH_BUFFER, at as u32))
    } else {
        Some(input_view(ctx, scratch, f.start..f.end, base))
    }
}

/// The view of bytes of the input, as they are: when the frame owns its
/// memory a long value is copied now, while it is in cache (short ones
/// live in their views), so the chunk is never copied whole.
#[inline(always)]
fn input_view(ctx: &Context<'_>, scratch: &mut Vec<u8>, span: std::ops::Range<usize>, base: usize) -> u128 {
    let at = span.start;
    let value = &ctx.buf[span];
    if ctx.copy && value.len() > INLINE_MAX {
        let offset = scratch.len();
        copy_value(scratch, ctx.buf, at, value.len());
        make_view(value, SCRATCH_BUFFER, offset as u32)
    } else {
        make_view(value, INPUT_BUFFER, (at - base) as u32)
    }
}

/// Appends `buf[at..at + len]` to `scratch`. A value is a few dozen bytes:
/// copying a fixed 64 (where both sides have them) takes four moves, not
/// a call to `memcpy` for its exact length.
#[inline(always)]
fn copy_value(scratch: &mut Vec<u8>, buf: &[u8], at: usize, len: usize) {
    const WIDE: usize = 64;
    let to = scratch.len();
    match buf.get(at..at + WIDE) {
        Some(wide) if len <= WIDE && scratch.capacity() - to >= WIDE => {
            // SAFETY: `wide` is WIDE readable bytes; the vector has WIDE
            // bytes of spare capacity at `to`, of which `len` become its.
            unsafe {
                std::ptr::copy_nonoverlapping(wide.as_ptr(), scratch.as_mut_ptr().add(to), WIDE);
                scratch.set_len(to + len);
            }
        }
        _ => scratch.extend_from_slice(&buf[at..at + len]),
    }
}

/// Asks for transparent huge pages under a fresh output vector (Linux, in
/// THP's common `madvise` mode): it then faults in 2 MiB at a time, not
/// 4 KiB (page faults were a fifth of an owned read's time).
fn advise_huge_pages<T>(vector: &Vec<T>) {
    #[cfg(target_os = "linux")]
    {
        const HUGE_PAGE: usize = 2 << 20;
        let start = vector.as_ptr() as usize;
        let end = start + vector.capacity() * size_of::<T>();
        let (from, to) = (start.next_multiple_of(HUGE_PAGE), end / HUGE_PAGE * HUGE_PAGE);
        if from < to {
            // SAFETY: advice only, on whole pages inside the vector's
            // allocation; no byte of memory changes.
            unsafe { libc::madvise(from as *mut libc::c_void, to - from, libc::MADV_HUGEPAGE) };
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = vector;
}

/// Whether built columns get a copy of their long values: for a mapped
/// file not shared with the frame (see [`Input::column_buffer`]).
fn copies_values(input: &Input) -> bool {
    input.map.is_some() && !input.share_map
}

#[cfg(test)]
mod tests {
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int64Type, TimestampMicrosecondType};

    use super::*;

    fn read(bytes: &[u8], on_error: OnError, threads: usize) -> Result<ReadOutput> {
        let input = Input::from_vec("<test>", bytes.to_vec());
        let options = ReadOptions {
            threads: Some(threads),
            on_error,
            tz: Some("UTC".into()),
            chunk_bytes: Some(if threads == 1 { usize::MAX } else { 512 }),
            ..ReadOptions::default()
        };
        super::super::read(&input, super::super::Format::UcmCsv, &options)
    }

    fn text(out: &ReadOutput, name: &str) -> Vec<Option<String>> {
        let i = out.schema.index_of(name).unwrap();
        out.batches
            .iter()
            .flat_map(|b| b.column(i).as_string_view().iter().map(|v| v.map(str::to_string)).collect::<Vec<_>>())
            .collect()
    }

    fn int(out: &ReadOutput, name: &str) -> Vec<Option<i64>> {
        let i = out.schema.index_of(name).unwrap();
        out.batches.iter().flat_map(|b| b.column(i).as_primitive::<Int64Type>().iter().collect::<Vec<_>>()).collect()
    }

    #[test]
    fn fw_1_0_2_5_lastdata_rejoined() {
        let out =
            read(include_bytes!("../../../tests/samples/ucm6510-fw1.0.2.5-cdrapi.csv"), OnError::Raise, 1).unwrap();
        assert_eq!(out.num_rows(), 3);
        assert_eq!(text(&out, "lastdata"), vec![Some("SIP/5301,60,".to_string()); 3]);
        assert_eq!(text(&out, "clid")[0].as_deref(), Some("\"pn01\" <5300>"));
        assert_eq!(text(&out, "service"), vec![Some("s".to_string()); 3]);
        assert_eq!(int(&out, "AcctId"), vec![Some(62), Some(63), Some(64)]);
        assert_eq!(text(&out, "session"), vec![None; 3]);
        assert_eq!(text(&out, "cdr_kind"), vec![Some("record".to_string()); 3]);
    }

    #[test]
    fn fw_1_0_11_trailing_space_and_empty_answer() {
        let out =
            read(include_bytes!("../../../tests/samples/ucm6xxx-fw1.0.11-cdrapi.csv"), OnError::Raise, 1).unwrap();
        assert_eq!(out.num_rows(), 1);
        assert_eq!(text(&out, "lastdata")[0].as_deref(), Some("PJSIP/6011/sip:6011@,30"));
        assert_eq!(text(&out, "session")[0].as_deref(), Some("1447207127558984-6039"));
        assert_eq!(text(&out, "dst_trunk_name"), vec![None]);
        assert_eq!(text(&out, "dstchanext"), vec![None]);
        let i = out.schema.index_of("answer").unwrap();
        assert!(out.batches[0].column(i).as_primitive::<TimestampMicrosecondType>().is_null(0));
    }

    #[test]
    fn chunks_agree_with_one_thread() {
        let mut data = Vec::new();
        for i in 0..40_000 {
            let clid = if i % 3 == 0 { format!("\"Name {i}\" <{i}>") } else { format!("{i}") };
            let lastdata = if i % 7 == 0 { "\"multi\nline, data\"".to_string() } else { "\"SIP/1,30\"".to_string() };
            data.extend_from_slice(
                format!("{i},,{i},2,ctx,{clid},c,d,Dial,{lastdata},2015-11-10 17:58:47,,2015-11-10 17:58:51,4,0,NO ANSWER,DOC,1.2,I,1,2,s,n,,,,{i}-x,1,DIAL,,\r\n").as_bytes(),
            );
        }
        let one = read(&data, OnError::Raise, 1).unwrap();
        let many = read(&data, OnError::Raise, 4).unwrap();
        assert!(many.batches.len() > 1);
        assert_eq!(one.num_rows(), 40_000);
        for name in ["AcctId", "clid", "lastdata", "session"] {
            if name == "AcctId" {
                assert_eq!(int(&one, name), int(&many, name));
            } else {
                assert_eq!(text(&one, name), text(&many, name));
            }
        }
        assert_eq!(text(&one, "lastdata")[7].as_deref(), Some("multi\nline, data"));
    }

    #[test]
    fn asterisk_sniffing_says_what_it_saw() {
        use super::super::Format;
        // cdr/cdr_csv.c build_csv_record, 16 fields, an unset answer bare.
        let csv = b"\"\",\"1001\",\"2000\",\"from-internal\",\"1001\",\"PJSIP/1001-1\",\"\",\"Dial\",\"x,y\",\"2024-01-28 10:18:20\",,\"2024-01-28 10:18:30\",\"10\",\"0\",\"NO ANSWER\",\"3\"\n";
        let (format, why) = Format::sniff_why(csv);
        assert_eq!(format, Format::AsteriskCsv);
        assert!(why.contains("16 fields") && why.contains("cdr_csv"), "{why}");
        let out =
            super::super::read(&Input::from_vec("t", csv.to_vec()), Format::Auto, &ReadOptions::default()).unwrap();
        assert_eq!(text(&out, "amaflags"), vec![Some("DOCUMENTATION".to_string())]);
        assert_eq!(text(&out, "lastdata"), vec![Some("x,y".to_string())]);
        // The sample cdr_custom.conf template: 19 fields, `start` 9th.
        let custom = b"\"1001\",\"1001\",\"2000\",\"c\",\"P\",\"\",\"Dial\",\"x\",\"2024-01-28 10:18:20\",\"\",\"2024-01-28 10:18:30\",\"10\",\"0\",\"NO ANSWER\",\"DOCUMENTATION\",\"\",\"1.0\",\"\",3\n";
        assert_eq!(Format::sniff(custom), Format::AsteriskCustom);
        assert_eq!(Format::sniff(b"1,,6039,6011,from-internal\n"), Format::UcmCsv);
    }

    #[test]
    fn rejects_carry_line_and_column() {
        let good = "1,,6039,6011,from-internal,x,c,d,Dial,\"a,b\",2015-11-10 17:58:47,,2015-11-10 17:58:51,4,0,NO ANSWER,D,1.1,I,1,2,s,n,,,,s1,1,DIAL,, \n";
        let bad_int = good.replacen("1,,6039", "x1,,6039", 1);
        let bad_time = good.replace("2015-11-10 17:58:47", "2015-02-30 17:58:47");
        let input = format!("{good}{bad_int}\n{bad_time}a,b\n{good}\"open");
        let out = read(input.as_bytes(), OnError::Collect, 2).unwrap();
        assert_eq!(out.num_rows(), 2);
        let got: Vec<(u64, u64, &str)> = out.rejects.iter().map(|r| (r.line, r.column, &r.reason[..10])).collect();
        assert_eq!(got, vec![(2, 1, "AcctId is "), (4, 45, "start is n"), (5, 1, "expected 2"), (7, 1, "unterminat")]);
        let Err(err) = read(input.as_bytes(), OnError::Raise, 2) else { panic!("strict read passed") };
        assert!(matches!(err, Error::Parse(r) if r.line == 2 && r.raw == bad_int.trim_end_matches('\n')));
    }
}
