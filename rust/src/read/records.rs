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
use crate::error::{Error, Result};
use crate::schema::{
    self, BASE_COLUMNS, BILLSEC_COLUMN, ColumnType, DST_COLUMN, KIND_COLUMN, LEG_COLUMN, SRC_COLUMN, START_COLUMN,
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
        // Records repeat their keys in the same order: guess the column
        // from the one before, and hash only when the guess is wrong.
        let guess = self.next_key.get(self.last_column).and_then(|g| g.as_ref());
        let column = match guess {
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
        };
        self.last_column = column;
        if column != KIND_COLUMN && column != LEG_COLUMN {
            self.fields.push((column, value));
        }
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
/// `range` (whose slice of the input becomes the text columns' buffer).
pub fn build(input: &Input, options: &ReadOptions, set: RecordSet, range: Range<usize>) -> Result<ReadOutput> {
    let buf = input.bytes();
    let base = range.start;
    let strict = options.on_error == OnError::Raise;
    let tz = options.tz.as_deref();
    let types: Vec<ColumnType> = set.names.iter().map(|n| schema::column_type(n)).collect();
    let wanted = Pushdown::wanted(options.pushdown.as_deref(), &set.names);
    let filter = options.pushdown.as_deref().and_then(|p| p.filter.as_ref());
    let mut columns: Vec<Option<ColumnBuilder>> =
        types.iter().zip(&wanted).map(|(&t, &w)| w.then(|| ColumnBuilder::new(t, set.rows.len()))).collect();
    let (mut records, mut rows) = (0, 0);
    let mut rejects = Vec::new();
    let mut slots = vec![Value::Null; set.names.len()];
    let mut ints: Vec<Option<i64>> = vec![None; set.names.len()];
    let mut locator = Locator::new(input);

    let gaps = options.gaps.as_deref();
    let invalid_utf8 = input.invalid_utf8.as_deref();
    for row in &set.rows {
        slots.fill(Value::Null);
        for &(column, value) in &set.fields[row.first_field..row.last_field] {
            slots[column] = value;
        }
        let checked = match encoding::invalid_in(invalid_utf8, row.start, row.end) {
            Some(at) => Err((at, "invalid UTF-8".to_string())),
            // Not a CDR at all (`{"hello": 1}`, an HTML page as XML): no key
            // of the data model, so no row to make of it.
            None if set.fields[row.first_field..row.last_field].iter().all(|&(c, _)| c >= BASE_COLUMNS.len()) => {
                Err((row.start, "holds no CDR field".to_string()))
            }
            None => check_row(buf, &set, &types, &slots, &mut ints, gaps),
        };
        if let Err((at, reason)) = checked {
            let reject = locator.reject(row.start, row.end, at, reason);
            if strict {
                return Err(Error::Parse(Box::new(reject)));
            }
            rejects.push(reject);
            continue;
        }
        records += 1;
        if let Some(filter) = filter {
            let text = |column: usize| set.bytes(buf, slots[column]);
            let (src, dst) = (text(SRC_COLUMN), text(DST_COLUMN));
            if row.kind == Kind::Main || !filter.keep(src, dst, ints[START_COLUMN], ints[BILLSEC_COLUMN]) {
                continue;
            }
        }
        rows += 1;
        for (column, builder) in columns.iter_mut().enumerate() {
            let Some(builder) = builder else { continue };
            match column {
                KIND_COLUMN => {
                    let kind: &[u8] = match row.kind {
                        Kind::Record => b"record",
                        Kind::Main => b"main",
                        Kind::Sub(_) => b"sub",
                    };
                    builder.push_text(kind, INPUT_BUFFER, 0);
                }
                LEG_COLUMN => builder.push_i64(if let Kind::Sub(n) = row.kind { n } else { 0 }),
                _ if types[column] != ColumnType::Text => match ints[column] {
                    Some(v) => builder.push_i64(v),
                    None => builder.push_null(),
                },
                _ => match slots[column] {
                    Value::Input { start, end } if start < end => {
                        builder.push_text(&buf[start..end], INPUT_BUFFER, start - base)
                    }
                    Value::Decoded { start, end, .. } if start < end => {
                        builder.push_text(&set.decoded[start..end], SCRATCH_BUFFER, start)
                    }
                    _ => builder.push_null(),
                },
            }
        }
    }
    for (start, end, reason) in &set.unmapped {
        let reject = locator.reject(*start, *end, *start, reason.clone());
        if strict {
            return Err(Error::Parse(Box::new(reject)));
        }
        rejects.push(reject);
    }
    if !strict {
        for &(at, what) in &set.skipped {
            let end = (at + 4).min(buf.len());
            rejects.push(locator.reject(at, end, at, format!("{what} holds no record")));
        }
        rejects.sort_by_key(|r| (r.line, r.column));
    }

    if range.len() > u32::MAX as usize || set.decoded.len() > u32::MAX as usize {
        return Err(Error::Input { source: input.name.clone(), reason: "a record run over 4 GiB".into() });
    }
    let names: Vec<String> = set.names.iter().zip(&wanted).filter(|(_, w)| **w).map(|(n, _)| n.clone()).collect();
    COUNTERS.add(records, rows, names.len());
    let schema = schema::arrow_schema(&names, tz);
    let input_slice = input.column_buffer(base, range.len());
    let buffers: Arc<[Buffer]> = Arc::from([input_slice, Buffer::from_vec(set.decoded)]);
    let arrays: Vec<ArrayRef> = columns.into_iter().flatten().map(|c| c.finish(&buffers, tz)).collect();
    let batch_options = RecordBatchOptions::new().with_row_count(Some(rows));
    let batch = RecordBatch::try_new_with_options(Arc::clone(&schema), arrays, &batch_options)
        .map_err(|e| Error::Input { source: input.name.clone(), reason: e.to_string() })?;
    let batches = if batch.num_rows() > 0 { vec![batch] } else { Vec::new() };
    Ok(ReadOutput { schema, batches, rejects })
}

/// Checks the typed values of a row into `ints`; the offending offset and
/// reason on failure.
fn check_row(
    buf: &[u8],
    set: &RecordSet,
    types: &[ColumnType],
    slots: &[Value],
    ints: &mut [Option<i64>],
    gaps: Option<&Gaps>,
) -> std::result::Result<(), (usize, String)> {
    for (column, &ty) in types.iter().enumerate() {
        ints[column] = None;
        if ty == ColumnType::Text || column == LEG_COLUMN {
            continue;
        }
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

/// One output from the outputs of a document's parts, in order: the union
/// of their columns (base columns first, then further keys as first seen),
/// a column missing from a part null in its rows.
pub fn merge(outputs: Vec<ReadOutput>) -> Result<ReadOutput> {
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
                    .map_err(|e| Error::Input { source: "cdrq".into(), reason: e.to_string() })?,
            );
        }
    }
    Ok(ReadOutput { schema, batches, rejects })
}
