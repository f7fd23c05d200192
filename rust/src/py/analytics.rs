//! The analytics kernels' Python face: Polars Series in (Arrow PyCapsule),
//! Arrow arrays out. python/cdrq/analytics.py prepares the inputs.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, UInt32Type, UInt64Type};
use arrow_array::{Array, ArrayRef, BooleanArray, Int64Array, RecordBatch, UInt32Array};
use arrow_schema::{DataType, Field, Schema};
use pyo3::prelude::*;

use super::arrow_export::ArrowStream;
use super::errors::CdrqError;
use super::query::import_arrays;
use crate::analytics::rate::{Band, RateTable};
use crate::analytics::{calls, concurrency};
use crate::error::Error;

fn input_error(reason: impl Into<String>) -> Error {
    Error::Input { source: "analytics".into(), reason: reason.into() }
}

/// A Series as one array (Python hands over rechunked Series; an empty
/// one may come as no chunk at all).
fn one_array(series: &Bound<'_, PyAny>, empty: DataType) -> PyResult<ArrayRef> {
    let mut chunks = import_arrays(series)?;
    match chunks.len() {
        0 => Ok(arrow_array::new_empty_array(&empty)),
        1 => Ok(chunks.pop().expect("one chunk")),
        n => Err(CdrqError::new_err(format!("analytics kernel: a Series of one chunk expected, not {n}"))),
    }
}

/// An Int64 array with no nulls, checked.
fn int64_array(series: &Bound<'_, PyAny>, what: &str) -> PyResult<ArrayRef> {
    let array = one_array(series, DataType::Int64)?;
    if array.data_type() != &DataType::Int64 || array.null_count() > 0 {
        return Err(CdrqError::new_err(format!("analytics kernel: {what} must be Int64 without nulls")));
    }
    Ok(array)
}

fn stream(columns: Vec<(&str, ArrayRef)>) -> PyResult<ArrowStream> {
    let fields: Vec<Field> =
        columns.iter().map(|(name, a)| Field::new(*name, a.data_type().clone(), a.null_count() > 0)).collect();
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(Arc::clone(&schema), columns.into_iter().map(|(_, a)| a).collect())
        .map_err(|e| CdrqError::new_err(e.to_string()))?;
    Ok(ArrowStream::new(schema, vec![batch]))
}

/// Runs a sweep kernel over `[starts, ends)` (Int64 Series, microseconds)
/// per dense group id (a UInt32 Series below `group_count`) if given,
/// borrowing the Series' values.
fn swept<T: Send>(
    py: Python<'_>,
    starts: &Bound<'_, PyAny>,
    ends: &Bound<'_, PyAny>,
    groups: Option<&Bound<'_, PyAny>>,
    group_count: u32,
    kernel: impl FnOnce(&[i64], &[i64], Option<&[u32]>, u32) -> T + Send,
) -> PyResult<T> {
    let (starts, ends) = (int64_array(starts, "starts")?, int64_array(ends, "ends")?);
    let groups = match groups {
        None => None,
        Some(g) => {
            let array = one_array(g, DataType::UInt32)?;
            if array.data_type() != &DataType::UInt32 || array.null_count() > 0 {
                return Err(CdrqError::new_err("analytics kernel: groups must be UInt32 without nulls"));
            }
            Some(array)
        }
    };
    super::guarded(py, || {
        let starts = starts.as_primitive::<Int64Type>().values().as_ref();
        let ends = ends.as_primitive::<Int64Type>().values().as_ref();
        let groups = groups.as_ref().map(|g| g.as_primitive::<UInt32Type>().values().as_ref());
        if starts.len() != ends.len() || groups.is_some_and(|g| g.len() != starts.len()) {
            return Err(input_error("starts, ends and groups differ in length"));
        }
        if groups.is_some_and(|g| g.iter().any(|&id| id >= group_count)) {
            return Err(input_error("a group id is not below group_count"));
        }
        Ok(kernel(starts, ends, groups, group_count))
    })
}

/// The step function of calls in progress over `[starts, ends)`: columns
/// `group`, `time`, `calls`; with `peaks_only` the most calls in progress
/// at once per group and the first instant it was reached (null where no
/// call of the group ever is): columns `peak`, `at`, a row per group id.
/// See `swept` for the arguments.
#[pyfunction]
#[pyo3(signature = (starts, ends, groups = None, group_count = 0, peaks_only = false))]
pub fn concurrency_sweep(
    py: Python<'_>,
    starts: &Bound<'_, PyAny>,
    ends: &Bound<'_, PyAny>,
    groups: Option<&Bound<'_, PyAny>>,
    group_count: u32,
    peaks_only: bool,
) -> PyResult<ArrowStream> {
    if peaks_only {
        let peaks = swept(py, starts, ends, groups, group_count, concurrency::peaks)?;
        let (peak, at): (Vec<i64>, Vec<Option<i64>>) = peaks.into_iter().unzip();
        return stream(vec![("peak", Arc::new(Int64Array::from(peak))), ("at", Arc::new(Int64Array::from(at)))]);
    }
    let steps = swept(py, starts, ends, groups, group_count, concurrency::sweep)?;
    stream(vec![
        ("group", Arc::new(UInt32Array::from(steps.group))),
        ("time", Arc::new(Int64Array::from(steps.time))),
        ("calls", Arc::new(Int64Array::from(steps.calls))),
    ])
}

/// For each value of `hashes` (a UInt64 Series without nulls, any
/// chunks), whether no later value equals it: column `last` (Boolean).
#[pyfunction]
pub fn last_of_each(py: Python<'_>, hashes: &Bound<'_, PyAny>) -> PyResult<ArrowStream> {
    let chunks = import_arrays(hashes)?;
    if chunks.iter().any(|c| c.data_type() != &DataType::UInt64 || c.null_count() > 0) {
        return Err(CdrqError::new_err("analytics kernel: hashes must be UInt64 without nulls"));
    }
    let last = super::guarded(py, || {
        let values: Vec<&[u64]> = chunks.iter().map(|c| c.as_primitive::<UInt64Type>().values().as_ref()).collect();
        Ok(calls::last_of_each(&values))
    })?;
    stream(vec![("last", Arc::new(BooleanArray::new(last, None)))])
}

/// A rate table's prefixes, built once (sorted, with parent links) and
/// matched against as many batches of numbers as a scan brings.
#[pyclass(frozen, module = "cdrq._core")]
pub struct PrefixTable {
    table: RateTable,
}

#[pymethods]
impl PrefixTable {
    /// `prefixes[i]` in force during `bands[i]` (`(from, to)` minutes of
    /// the day, `None`: all day). Raises `CdrqError` for the same prefix
    /// twice with overlapping times, naming the rows.
    #[new]
    fn new(py: Python<'_>, prefixes: Vec<String>, bands: Vec<Option<(u16, u16)>>) -> PyResult<Self> {
        let table = super::guarded(py, || {
            if prefixes.len() != bands.len() {
                return Err(input_error("prefixes and bands differ in length"));
            }
            let bands: Vec<Option<Band>> = bands.into_iter().map(|b| b.map(|(from, to)| Band { from, to })).collect();
            let prefix_bytes: Vec<&[u8]> = prefixes.iter().map(|p| p.as_bytes()).collect();
            RateTable::new(&prefix_bytes, &bands).map_err(|reason| Error::Input { source: "rates".into(), reason })
        })?;
        Ok(Self { table })
    }

    /// The table row of each number (a String Series; null where no
    /// prefix matches or the number is null), choosing among a prefix's
    /// rows by `minutes` (an Int32 Series of minutes of the day; null:
    /// only all-day rows apply). Column `row`.
    #[pyo3(signature = (numbers, minutes = None))]
    fn __call__(
        &self,
        py: Python<'_>,
        numbers: &Bound<'_, PyAny>,
        minutes: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<ArrowStream> {
        let numbers = one_array(numbers, DataType::Utf8View)?;
        let minutes = minutes.map(|m| one_array(m, DataType::Int32)).transpose()?;
        if let Some(m) = &minutes
            && (m.data_type() != &DataType::Int32 || m.len() != numbers.len())
        {
            return Err(CdrqError::new_err("analytics kernel: minutes must be Int32, one per number"));
        }
        let table = &self.table;
        let rows = super::guarded(py, || {
            let minute = |i: usize| -> Option<u16> {
                let m = minutes.as_ref()?.as_primitive::<Int32Type>();
                (m.is_valid(i) && (0..i32::from(u16::MAX)).contains(&m.value(i))).then(|| m.value(i) as u16)
            };
            Ok(match numbers.data_type() {
                DataType::Utf8View => {
                    let a = numbers.as_string_view();
                    table.lookup_all(a.len(), &|i| a.is_valid(i).then(|| a.value(i).as_bytes()), &minute)
                }
                DataType::Utf8 => {
                    let a = numbers.as_string::<i32>();
                    table.lookup_all(a.len(), &|i| a.is_valid(i).then(|| a.value(i).as_bytes()), &minute)
                }
                DataType::LargeUtf8 => {
                    let a = numbers.as_string::<i64>();
                    table.lookup_all(a.len(), &|i| a.is_valid(i).then(|| a.value(i).as_bytes()), &minute)
                }
                other => return Err(input_error(format!("numbers must be text, not {other}"))),
            })
        })?;
        stream(vec![("row", Arc::new(UInt32Array::from(rows)))])
    }
}
