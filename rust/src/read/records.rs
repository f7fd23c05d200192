//! Records of the nested formats (JSON, XML), gathered by their parsers and
//! built into Arrow columns here: one place for the `cdr_kind`/`leg` rows,
//! the union of keys, typing, and rejects.
//!
//! Values are spans: of the input (zero-copy views) or of `decoded`, the
//! text that had to be unescaped, which becomes the columns' second buffer.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::Range;
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, RecordBatchOptions, new_null_array};
use arrow_buffer::Buffer;

use super::builder::{ColumnBuilder, INPUT_BUFFER, SCRATCH_BUFFER};
use super::pushdown::{COUNTERS, Pushdown};
use super::{Input, Locator, OnError, ReadOptions, ReadOutput, encoding};
use crate::error::{Error, Reject, Result};
use crate::schema::{
    self, BASE_COLUMNS, BILLSEC_COLUMN, ColumnType, DST_COLUMN, EXTRA_COLUMN, KIND_COLUMN, LEG_COLUMN, MAX_COLUMNS,
    SRC_COLUMN, START_COLUMN,
};
use crate::values::{Gaps, Timestamp, parse_int, parse_timestamp};

/// A field's value.
#[derive(Clone, Copy, Debug)]
pub enum Value {
    Null,
    /// Bytes `start..end` of the input, as they are.
    Input {
        start: usize,
        end: usize,
    },
    /// Bytes `start..end` of [`RecordSet::decoded`], decoded from the value
    /// at input offset `at`.
    Decoded {
        start: usize,
        end: usize,
        at: usize,
    },
}

/// Which kind of row a record becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Record,
    Main,
    Sub(i64),
}

impl Kind {
    /// Order of a call's rows: main first, then legs by number.
    pub fn order(self) -> (u8, i64) {
        match self {
            Kind::Main => (0, 0),
            Kind::Sub(n) => (1, n),
            Kind::Record => (2, 0),
        }
    }
}

/// Orders a call's rows (main first, then legs by number, stable for
/// duplicates). A call of one `main_cdr` and no `sub_cdr_N` is a session
/// with one leg (docs/query-language.md §5): that record is the leg, not a summary.
pub fn order_call(legs: &mut [Row]) {
    if !legs.iter().any(|leg| matches!(leg.kind, Kind::Sub(_))) {
        for leg in legs.iter_mut() {
            leg.kind = Kind::Record;
        }
    }
    legs.sort_by_key(|leg| leg.kind.order());
}

/// Numbers a call's `sub` rows 1, 2, … in their order: legs listed in
/// arrays (`"sub_cdr_1": [{…}, {…}]`) have no number of their own.
pub fn number_legs(legs: &mut [Row]) {
    let mut n = 0;
    for leg in legs.iter_mut().filter(|leg| matches!(leg.kind, Kind::Sub(_))) {
        n += 1;
        leg.kind = Kind::Sub(n);
    }
}

/// One record: its kind, its extent in the input and its fields
/// (`fields[first_field..last_field]`).
pub struct Row {
    pub kind: Kind,
    pub start: usize,
    pub end: usize,
    pub first_field: usize,
    pub last_field: usize,
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
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Everything a nested-format parser found.
pub struct RecordSet {
    pub names: Vec<String>,
    columns_by_key: HashMap<Vec<u8>, usize, BuildHasherDefault<KeyHasher>>,
    pub fields: Vec<(usize, Value)>,
    pub rows: Vec<Row>,
    /// `null` (or empty) records: (offset, what it was).
    pub skipped: Vec<(usize, &'static str)>,
    /// Content that is not a record cdrq can map (a leg that is not an
    /// object): (start, end, reason), each one reject.
    pub unmapped: Vec<(usize, usize, String)>,
    pub decoded: Vec<u8>,
    /// The key that followed each column's last time, and its column.
    next_key: Vec<Option<(Vec<u8>, usize)>>,
    last_column: usize,
}

impl Default for RecordSet {
    fn default() -> Self {
        let columns_by_key = BASE_COLUMNS.iter().enumerate().map(|(i, n)| (n.as_bytes().to_vec(), i)).collect();
        Self {
            names: schema::output_names(&[]),
            columns_by_key,
            fields: Vec::new(),
            rows: Vec::new(),
            skipped: Vec::new(),
            unmapped: Vec::new(),
            decoded: Vec::new(),
            next_key: Vec::new(),
            last_column: 0,
        }
    }
}

impl RecordSet {
    /// Records `value` under the column of `key` (a new column for a key
    /// beyond the data model). A source field named `cdr_kind` or `leg` is
    /// dropped: those columns are cdrq's own.
    pub fn push_field(&mut self, key: &[u8], value: Value) {
        let column = self.column(key);
        self.push_at(column, value);
    }

    /// The column of `key` (a new one for a key beyond the data model).
    pub fn column(&mut self, key: &[u8]) -> usize {
        // Records repeat their keys in the same order: guess the column
        // from the one before, and hash only when the guess is wrong.
        let guess = self.next_key.get(self.last_column).and_then(|g| g.as_ref());
        match guess {
            Some((k, c)) if k.as_slice() == key => *c,
            _ => {
                let column = match self.columns_by_key.get(key) {
                    Some(&c) => c,
                    None => {
                        // Keys that differ only in bytes a name cannot hold
                        // share a column rather than make two of one name.
                        let name = schema::column_name(key);
                        let c = self.names.iter().position(|n| *n == name).unwrap_or(self.names.len());
                        if c == self.names.len() {
                            self.names.push(name);
                        }
                        self.columns_by_key.insert(key.to_vec(), c);
                        c
                    }
                };
                if self.next_key.len() <= self.last_column {
                    self.next_key.resize(self.last_column + 1, None);
                }
                self.next_key[self.last_column] = Some((key.to_vec(), column));
                column
            }
        }
    }

    /// Records `value` under `column` (from [`Self::column`]).
    #[inline]
    pub fn push_at(&mut self, column: usize, value: Value) {
        self.last_column = column;
        if column != KIND_COLUMN && column != LEG_COLUMN {
            self.fields.push((column, value));
        }
    }

    /// Forgets the records, keeping the columns (see [`Builder::add`]).
    pub fn clear_records(&mut self) {
        self.fields.clear();
        self.rows.clear();
        self.skipped.clear();
        self.unmapped.clear();
        self.decoded.clear();
    }

    /// Appends decoded text (of the value at input offset `at`).
    pub fn decoded_value(&mut self, text: &[u8], at: usize) -> Value {
        let start = self.decoded.len();
        self.decoded.extend_from_slice(text);
        Value::Decoded { start, end: self.decoded.len(), at }
    }

    /// The column of a key, if any record had it.
    pub fn column_of(&self, key: &str) -> Option<usize> {
        self.columns_by_key.get(key.as_bytes()).copied()
    }

    pub fn bytes<'a>(&'a self, buf: &'a [u8], value: Value) -> Option<&'a [u8]> {
        match value {
            Value::Null => None,
            Value::Input { start, end } => Some(&buf[start..end]),
            Value::Decoded { start, end, .. } => Some(&self.decoded[start..end]),
        }
    }
}

/// Builds the record batch of a parsed document, or of the part of it at
/// `range` (whose slice of the input the text columns may point into).
pub fn build(input: &Input, options: &ReadOptions, mut set: RecordSet, range: Range<usize>) -> Result<ReadOutput> {
    let mut builder = Builder::new(input, options, range.start);
    builder.add(&mut set)?;
    builder.finish(range.end)
}

/// Records in the making: parsers hand over their [`RecordSet`] every few
/// thousand rows ([`Builder::add`] empties it), so the parsed fields held
/// at once stay small (cache-sized, not a second copy of the input) and the
/// columns grow as the input is read.
pub struct Builder<'a> {
    input: &'a Input,
    options: &'a ReadOptions,
    /// Where the part's range starts: views into the input are relative to it.
    base: usize,
    /// Whether text views may point into the input (bytes given by the
    /// caller, or a map shared by `memory_map=True`); otherwise values over
    /// the 12 bytes a view holds are copied into `owned`, and the part's
    /// pages of the map are given back.
    share: bool,
    names: Vec<String>,
    types: Vec<ColumnType>,
    /// The integer and time columns, which every row's check parses.
    typed: Vec<(usize, ColumnType)>,
    wanted: Vec<bool>,
    /// The columns built, by column number.
    columns: Vec<(usize, ColumnBuilder)>,
    /// Decoded values, and copied ones unless `share` (the second buffer).
    owned: Vec<u8>,
    records: usize,
    rows: usize,
    rejects: Vec<Reject>,
    locator: Locator<'a>,
    slots: Vec<Value>,
    ints: Vec<Option<i64>>,
    /// Input bytes the builder is expected to see, to size the columns
    /// once the first rows tell the bytes per row.
    expected_bytes: usize,
}

impl<'a> Builder<'a> {
    pub fn new(input: &'a Input, options: &'a ReadOptions, base: usize) -> Self {
        Self {
            input,
            options,
            base,
            share: input.map.is_none() || input.share_map,
            names: Vec::new(),
            types: Vec::new(),
            typed: Vec::new(),
            wanted: Vec::new(),
            columns: Vec::new(),
            owned: Vec::new(),
            records: 0,
            rows: 0,
            rejects: Vec::new(),
            locator: Locator::new(input),
            slots: Vec::new(),
            ints: Vec::new(),
            expected_bytes: 0,
        }
    }

    /// Sizes the columns for about `bytes` of input (a chunk's length), so
    /// that they are not copied as they grow.
    pub fn expecting(self, bytes: usize) -> Self {
        Self { expected_bytes: bytes, ..self }
    }

    /// Columns for the keys `set` met since the last call (null in the rows
    /// built before).
    fn add_columns(&mut self, set: &RecordSet) {
        let pushdown = self.options.pushdown.as_deref();
        let new = &set.names[self.types.len()..];
        for (name, wanted) in new.iter().zip(Pushdown::wanted(pushdown, new)) {
            let (column, ty) = (self.types.len(), schema::column_type(name));
            self.names.push(name.clone());
            self.types.push(ty);
            self.wanted.push(wanted);
            if ty != ColumnType::Text && column != LEG_COLUMN {
                self.typed.push((column, ty));
            }
            if wanted {
                let mut builder = ColumnBuilder::new(ty, self.rows);
                (0..self.rows).for_each(|_| builder.push_null());
                self.columns.push((column, builder));
            }
        }
        self.slots.resize(set.names.len(), Value::Null);
        self.ints.resize(set.names.len(), None);
    }

    /// Checks and builds the rows of `set` and takes its rejects, leaving it
    /// empty of records (its column names stay). Strict, the first problem
    /// in input order is the error.
    pub fn add(&mut self, set: &mut RecordSet) -> Result<()> {
        if set.names.len() > MAX_COLUMNS {
            return Err(self.too_many_columns(set));
        }
        let extra = set.names.len() - EXTRA_COLUMN;
        if let (true, Some(last)) = (extra > 0, set.rows.last()) {
            let cells = (self.rows + set.rows.len()).saturating_mul(extra);
            if let Err(reason) = sparse_enough(cells, last.end.saturating_sub(self.base)) {
                return Err(Error::Input { source: self.input.name.clone(), reason });
            }
        }
        self.add_columns(set);
        if let (Some(first), Some(last)) = (set.rows.first(), set.rows.last())
            && self.expected_bytes > 0
        {
            let per_row = (last.end.saturating_sub(first.start) / set.rows.len()).max(1);
            let rows = (std::mem::take(&mut self.expected_bytes) / per_row + 16).min(1 << 24);
            self.columns.iter_mut().for_each(|(_, column)| column.reserve(rows));
        }
        let buf = self.input.bytes();
        let strict = self.options.on_error == OnError::Raise;
        let pushdown = self.options.pushdown.as_deref();
        let filter = pushdown.and_then(|p| p.filter.as_ref());
        let builds_rows = pushdown.is_none_or(Pushdown::builds_rows);
        let gaps = self.options.gaps.as_deref();
        let invalid_utf8 = self.input.invalid_utf8.as_deref();
        let first_unmapped = set.unmapped.iter().min_by_key(|u| u.0).map(|u| u.0);
        for row in &set.rows {
            let fields = &set.fields[row.first_field..row.last_field];
            self.slots.fill(Value::Null);
            for &(column, value) in fields {
                self.slots[column] = value;
            }
            let checked = match encoding::invalid_in(invalid_utf8, row.start, row.end) {
                Some(at) => Err((at, "invalid UTF-8".to_string())),
                // Not a CDR at all (`{"hello": 1}`, an HTML page as XML): no
                // key of the data model, so no row to make of it.
                None if fields.iter().all(|&(c, _)| c >= BASE_COLUMNS.len()) => {
                    Err((row.start, "holds no CDR field".to_string()))
                }
                None => check_row(buf, set, &self.typed, &self.slots, &mut self.ints, gaps),
            };
            if let Err((at, reason)) = checked {
                if strict && first_unmapped.is_none_or(|u| u > row.start) {
                    return Err(Error::Parse(Box::new(self.locator.reject(row.start, row.end, at, reason))));
                }
                if !strict {
                    self.rejects.push(self.locator.reject(row.start, row.end, at, reason));
                }
                continue;
            }
            self.records += 1;
            if !builds_rows {
                continue;
            }
            if let Some(filter) = filter {
                let text = |column: usize| set.bytes(buf, self.slots[column]);
                let (src, dst) = (text(SRC_COLUMN), text(DST_COLUMN));
                if row.kind == Kind::Main || !filter.keep(src, dst, self.ints[START_COLUMN], self.ints[BILLSEC_COLUMN])
                {
                    continue;
                }
            }
            self.rows += 1;
            self.push_row(buf, set, row.kind);
        }
        for (start, end, reason) in set.unmapped.drain(..) {
            let reject = self.locator.reject(start, end, start, reason);
            if strict {
                return Err(Error::Parse(Box::new(reject)));
            }
            self.rejects.push(reject);
        }
        if !strict {
            for &(at, what) in &set.skipped {
                let end = (at + 4).min(buf.len());
                self.rejects.push(self.locator.reject(at, end, at, format!("{what} holds no record")));
            }
        }
        set.clear_records();
        Ok(())
    }

    /// The error of a set naming more than [`MAX_COLUMNS`] columns, at the
    /// first record holding a key beyond them.
    fn too_many_columns(&mut self, set: &RecordSet) -> Error {
        let reason = format!(
            "more than {MAX_COLUMNS} columns named ({:?} is the {}th): not a CDR export",
            set.names[MAX_COLUMNS],
            MAX_COLUMNS + 1
        );
        let beyond = |row: &&Row| set.fields[row.first_field..row.last_field].iter().any(|&(c, _)| c >= MAX_COLUMNS);
        match set.rows.iter().find(beyond) {
            Some(row) => Error::Parse(Box::new(self.locator.reject(row.start, row.end, row.start, reason))),
            None => Error::Input { source: self.input.name.clone(), reason },
        }
    }

    /// Appends a checked row's values (in `slots` and `ints`) to the columns.
    #[inline]
    fn push_row(&mut self, buf: &[u8], set: &RecordSet, kind: Kind) {
        for (column, builder) in &mut self.columns {
            let column = *column;
            match column {
                KIND_COLUMN => {
                    let kind: &[u8] = match kind {
                        Kind::Record => b"record",
                        Kind::Main => b"main",
                        Kind::Sub(_) => b"sub",
                    };
                    builder.push_text(kind, INPUT_BUFFER, 0);
                }
                LEG_COLUMN => builder.push_i64(if let Kind::Sub(n) = kind { n } else { 0 }),
                _ if self.types[column] != ColumnType::Text => match self.ints[column] {
                    Some(v) => builder.push_i64(v),
                    None => builder.push_null(),
                },
                _ => {
                    let (text, shared_at) = match self.slots[column] {
                        Value::Input { start, end } if start < end => (&buf[start..end], Some(start)),
                        Value::Decoded { start, end, .. } if start < end => (&set.decoded[start..end], None),
                        _ => {
                            builder.push_null();
                            continue;
                        }
                    };
                    match shared_at {
                        // Up to 12 bytes live in the view itself.
                        _ if text.len() <= 12 => builder.push_text(text, INPUT_BUFFER, 0),
                        Some(start) if self.share => builder.push_text(text, INPUT_BUFFER, start - self.base),
                        _ => {
                            builder.push_text(text, SCRATCH_BUFFER, self.owned.len());
                            self.owned.extend_from_slice(text);
                        }
                    }
                }
            }
        }
    }

    /// The batch of the rows added, the part's range ending at `end`.
    pub fn finish(mut self, end: usize) -> Result<ReadOutput> {
        let input = self.input;
        if !self.share {
            // What the frame needs is copied: the mapped pages can go.
            input.release(self.base, end);
        }
        if end.saturating_sub(self.base) > u32::MAX as usize || self.owned.len() > u32::MAX as usize {
            return Err(Error::Input { source: input.name.clone(), reason: "a record run over 4 GiB".into() });
        }
        self.rejects.sort_by_key(|r| (r.line, r.column));
        let names: Vec<String> =
            self.names.iter().zip(&self.wanted).filter(|(_, w)| **w).map(|(n, _)| n.clone()).collect();
        COUNTERS.add(self.records, self.rows, names.len());
        let tz = self.options.tz.as_deref();
        let schema = schema::arrow_schema(&names, tz);
        let shared = match self.share {
            true => input.data.slice_with_length(self.base, end.saturating_sub(self.base)),
            false => Buffer::from_vec(Vec::<u8>::new()),
        };
        let buffers: Arc<[Buffer]> = Arc::from([shared, Buffer::from_vec(self.owned)]);
        let arrays: Vec<ArrayRef> = self.columns.into_iter().map(|(_, c)| c.finish(&buffers, tz)).collect();
        let batch_options = RecordBatchOptions::new().with_row_count(Some(self.rows));
        let batch = RecordBatch::try_new_with_options(Arc::clone(&schema), arrays, &batch_options)
            .map_err(|e| Error::Input { source: input.name.clone(), reason: e.to_string() })?;
        let batches = if batch.num_rows() > 0 { vec![batch] } else { Vec::new() };
        Ok(ReadOutput { schema, batches, rejects: self.rejects })
    }
}

/// Checks the typed values of a row into `ints`; the offending offset and
/// reason on failure.
fn check_row(
    buf: &[u8],
    set: &RecordSet,
    typed: &[(usize, ColumnType)],
    slots: &[Value],
    ints: &mut [Option<i64>],
    gaps: Option<&Gaps>,
) -> std::result::Result<(), (usize, String)> {
    for &(column, ty) in typed {
        ints[column] = None;
        let Some(text) = set.bytes(buf, slots[column]).filter(|t| !t.is_empty()) else { continue };
        let at = match slots[column] {
            Value::Input { start, .. } | Value::Decoded { at: start, .. } => start,
            Value::Null => 0,
        };
        let name = &set.names[column];
        let shown = || String::from_utf8_lossy(text).into_owned();
        ints[column] = match ty {
            ColumnType::Int => {
                Some(parse_int(text).ok_or_else(|| (at, format!("{name} is not an integer: {:?}", shown())))?)
            }
            _ => match parse_timestamp(text) {
                Some(Timestamp::At(us)) if gaps.is_some_and(|g| g.skips(us)) => {
                    return Err((at, gaps.map(|g| g.reason(name, text)).unwrap_or_default()));
                }
                Some(Timestamp::At(us)) => Some(us),
                Some(Timestamp::Unset) => None,
                None => return Err((at, format!("{name} is not a YYYY-MM-DD HH:MM:SS time: {:?}", shown()))),
            },
        };
    }
    Ok(())
}

/// An error if `columns` named in all by `source`'s parts are more than
/// [`MAX_COLUMNS`].
pub fn few_enough_columns(source: &str, columns: usize) -> Result<()> {
    if columns <= MAX_COLUMNS {
        return Ok(());
    }
    let reason = format!("more than {MAX_COLUMNS} columns named: not a CDR export");
    Err(Error::Input { source: source.to_string(), reason })
}

/// Values of columns beyond the data model (mostly nulls, 16 bytes each in
/// Arrow) a read may build per byte of input, past the first 65 536: one
/// record naming 980 keys then 100 000 records of one key made 1.7 GB of
/// nulls of 1.2 MB. A UCM export's extra keys are in every record, at
/// well under one value per 10 bytes.
const EXTRA_VALUES_PER_BYTE: usize = 1;

/// `Err` (the reason) where `values` beyond the data model from `bytes` of
/// input are more than [`EXTRA_VALUES_PER_BYTE`] allows.
fn sparse_enough(values: usize, bytes: usize) -> std::result::Result<(), String> {
    if values <= bytes.saturating_mul(EXTRA_VALUES_PER_BYTE).max(1 << 16) {
        return Ok(());
    }
    Err(format!(
        "{values} values of keys beyond the data model from {bytes} bytes: a frame of nulls, no CDR export's \
         (a few records name keys the others lack)"
    ))
}

/// One output from the outputs of a document's parts, in order: the union
/// of their columns (base columns first, then further keys as first seen),
/// a column missing from a part null in its rows. `bytes`: the input's,
/// for [`sparse_enough`].
pub fn merge(source: &str, outputs: Vec<ReadOutput>, bytes: usize) -> Result<ReadOutput> {
    if outputs.len() == 1 {
        return Ok(outputs.into_iter().next().unwrap_or_else(|| unreachable!()));
    }
    let mut fields: Vec<arrow_schema::FieldRef> = Vec::new();
    for out in &outputs {
        for field in out.schema.fields() {
            if !fields.iter().any(|f| f.name() == field.name()) {
                fields.push(Arc::clone(field));
            }
        }
    }
    // Each chunk had few enough; their union is what would be built.
    few_enough_columns(source, fields.len())?;
    let rows: usize = outputs.iter().map(ReadOutput::num_rows).sum();
    let extra = fields.len().saturating_sub(EXTRA_COLUMN);
    sparse_enough(rows.saturating_mul(extra), bytes)
        .map_err(|reason| Error::Input { source: source.into(), reason })?;
    let schema = Arc::new(arrow_schema::Schema::new(fields));
    let mut batches = Vec::new();
    let mut rejects = Vec::new();
    for out in outputs {
        rejects.extend(out.rejects);
        for batch in out.batches {
            let columns = schema
                .fields()
                .iter()
                .map(|f| match batch.column_by_name(f.name()) {
                    Some(column) => Arc::clone(column),
                    None => new_null_array(f.data_type(), batch.num_rows()),
                })
                .collect();
            let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
            batches.push(
                RecordBatch::try_new_with_options(Arc::clone(&schema), columns, &options)
                    .map_err(|e| Error::Input { source: source.to_string(), reason: e.to_string() })?,
            );
        }
    }
    Ok(ReadOutput { schema, batches, rejects })
}
