//! The query compiler's Python face: a plan as plain Python data.

use std::sync::Arc;

use arrow_array::RecordBatchReader;
use arrow_array::ffi_stream::{ArrayStreamReader, RecordBatchStreamReader};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use pyo3::prelude::*;
use pyo3::types::{PyCapsule, PyDict, PyList};

use super::arrow_export::ArrowStream;
use super::errors::{CdrqError, to_pyerr};
use crate::query::compile::{Surface, compile};
use crate::query::filter::ItemList;
use crate::query::mask;
use crate::query::pattern::{self, Item};
use crate::query::{QueryError, plan::Plan};

pub fn query_error(py: Python<'_>, e: &QueryError) -> PyErr {
    to_pyerr(py, e.clone().into())
}

/// An item as `(kind, value)`: `("exact", "5300")`, `("range", ("6300", "6399"))`, …
fn item<'py>(py: Python<'py>, item: &Item) -> PyResult<Bound<'py, PyAny>> {
    Ok(match item {
        Item::Exact(v) => ("exact", v).into_pyobject(py)?.into_any(),
        Item::Prefix(v) => ("prefix", v).into_pyobject(py)?.into_any(),
        Item::Suffix(v) => ("suffix", v).into_pyobject(py)?.into_any(),
        Item::Contains(v) => ("contains", v).into_pyobject(py)?.into_any(),
        Item::Any => ("any", "").into_pyobject(py)?.into_any(),
        Item::Wildcard(tokens) => ("regex", pattern::wildcard_regex(tokens)).into_pyobject(py)?.into_any(),
        Item::Range { lo, hi } => ("range", (lo, hi)).into_pyobject(py)?.into_any(),
    })
}

fn items<'py>(py: Python<'py>, list: &Option<Vec<Item>>) -> PyResult<Bound<'py, PyAny>> {
    match list {
        None => Ok(py.None().into_bound(py)),
        Some(list) => Ok(PyList::new(py, list.iter().map(|i| item(py, i)).collect::<PyResult<Vec<_>>>()?)?.into_any()),
    }
}

fn plan_dict<'py>(py: Python<'py>, plan: &Plan) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("format", plan.format.map(|f| f.name()))?;
    d.set_item("num_records", plan.num_records)?;
    d.set_item("offset", plan.offset)?;
    d.set_item("caller", items(py, &plan.caller)?)?;
    d.set_item("callee", items(py, &plan.callee)?)?;
    d.set_item("start_time", plan.start_time)?;
    d.set_item("end_time", plan.end_time)?;
    d.set_item("min_dur", plan.min_dur)?;
    d.set_item("max_dur", plan.max_dur)?;
    d.set_item("caller_number", items(py, &plan.caller_number)?)?;
    d.set_item("callee_number", items(py, &plan.callee_number)?)?;
    d.set_item("caller_name", &plan.caller_name)?;
    d.set_item("status", plan.status.as_ref().map(|s| s.iter().map(|w| w.name()).collect::<Vec<_>>()))?;
    d.set_item("call_type", plan.call_type.as_ref().map(|c| c.iter().map(|w| w.name()).collect::<Vec<_>>()))?;
    d.set_item("src_trunk", &plan.src_trunk)?;
    d.set_item("dst_trunk", &plan.dst_trunk)?;
    d.set_item("action_type", &plan.action_type)?;
    d.set_item("account_code", &plan.account_code)?;
    d.set_item("ext_group", &plan.ext_group)?;
    d.set_item("descending", plan.descending)?;
    let masks = PyDict::new(py);
    for (key, list) in [
        ("caller", &plan.caller),
        ("callee", &plan.callee),
        ("caller_number", &plan.caller_number),
        ("callee_number", &plan.callee_number),
    ] {
        masks.set_item(key, list.as_deref().and_then(ItemsMask::for_hard_items))?;
    }
    d.set_item("masks", masks)?;
    Ok(d)
}

/// The kernel for a pattern list's digit ranges and general wildcards over
/// a Polars Series (taken through the Arrow PyCapsule stream interface, no
/// copy): a one-column stream of booleans, null values read as empty.
#[pyclass(frozen, module = "cdrq._core")]
pub struct ItemsMask {
    list: ItemList,
}

impl ItemsMask {
    /// The kernel for the items Polars has no cheap primitive for, if any.
    fn for_hard_items(items: &[Item]) -> Option<Self> {
        let hard: Vec<Item> =
            items.iter().filter(|i| matches!(i, Item::Range { .. } | Item::Wildcard(_))).cloned().collect();
        (!hard.is_empty()).then(|| Self { list: ItemList::new(&hard) })
    }
}

#[pymethods]
impl ItemsMask {
    fn __call__(&self, py: Python<'_>, series: &Bound<'_, PyAny>) -> PyResult<ArrowStream> {
        let chunks = import_arrays(series)?;
        let arrays = py.detach(|| mask::mask(&self.list, &chunks)).map_err(CdrqError::new_err)?;
        let schema = Arc::new(Schema::new(vec![Field::new("mask", DataType::Boolean, false)]));
        let batches = arrays
            .into_iter()
            .map(|a| RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(a)]))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CdrqError::new_err(e.to_string()))?;
        Ok(ArrowStream::new(schema, batches))
    }
}

/// The `arrow_array_stream` capsule of anything with `__arrow_c_stream__`.
fn stream_capsule<'py>(source: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyCapsule>> {
    Ok(source.call_method0("__arrow_c_stream__")?.cast_into::<PyCapsule>()?)
}

/// The chunks of anything with `__arrow_c_stream__` holding one array per
/// chunk (a Polars Series).
fn import_arrays(series: &Bound<'_, PyAny>) -> PyResult<Vec<ArrayRef>> {
    let capsule = stream_capsule(series)?;
    let pointer = capsule.pointer_checked(Some(c"arrow_array_stream"))?;
    // SAFETY: the capsule holds a valid stream; `from_raw` takes it over and
    // leaves the capsule's copy released.
    let reader = unsafe { ArrayStreamReader::from_raw(pointer.as_ptr().cast()) }
        .map_err(|e| CdrqError::new_err(e.to_string()))?;
    reader.collect::<Result<Vec<_>, _>>().map_err(|e| CdrqError::new_err(e.to_string()))
}

/// Compiles a query string into a plan (a dict); `library` admits the web
/// UI filters. Raises `QueryError`.
#[pyfunction]
#[pyo3(signature = (query, *, now_us, library, groups = Vec::new()))]
pub fn compile_query<'py>(
    py: Python<'py>,
    query: &str,
    now_us: i64,
    library: bool,
    groups: Vec<String>,
) -> PyResult<Bound<'py, PyDict>> {
    let surface = if library { Surface::Library } else { Surface::Cdrapi };
    let plan = compile(query, now_us, surface, &groups).map_err(|e| query_error(py, &e))?;
    plan_dict(py, &plan)
}

/// Compiles one pattern list (`cdrapi` or `webui` dialect) into its items
/// and the kernel for its ranges and wildcards (`None` if it has none).
#[pyfunction]
#[pyo3(signature = (text, dialect = "cdrapi"))]
pub fn compile_pattern<'py>(py: Python<'py>, text: &str, dialect: &str) -> PyResult<Bound<'py, PyAny>> {
    let err = |i: usize, t: &str, reason: &str| QueryError {
        param: String::new(),
        text: t.to_string(),
        position: text[..i.min(text.len())].chars().count(),
        reason: reason.to_string(),
    };
    let compiled = match dialect {
        "cdrapi" => pattern::cdrapi_list(text, &err),
        "webui" => pattern::items(text, &err)
            .and_then(|list| list.into_iter().map(|(at, i)| pattern::webui_item(i, at, &err)).collect()),
        other => Err(QueryError {
            param: String::new(),
            text: other.to_string(),
            position: 0,
            reason: "dialect must be cdrapi or webui".into(),
        }),
    };
    let list = compiled.map_err(|e| query_error(py, &e))?;
    let mask = ItemsMask::for_hard_items(&list);
    (items(py, &Some(list))?, mask).into_pyobject(py).map(|t| t.into_any())
}

/// Record batches of anything with `__arrow_c_stream__` (a Polars frame).
fn import_batches(frame: &Bound<'_, PyAny>) -> PyResult<(Vec<String>, Vec<RecordBatch>)> {
    let capsule = stream_capsule(frame)?;
    let pointer = capsule.pointer_checked(Some(c"arrow_array_stream"))?;
    // SAFETY: as in `import_arrays`: the reader takes the stream over.
    let reader = unsafe { RecordBatchStreamReader::from_raw(pointer.as_ptr().cast()) }
        .map_err(|e| CdrqError::new_err(e.to_string()))?;
    let names = reader.schema().fields().iter().map(|f| f.name().clone()).collect();
    let batches = reader.collect::<Result<Vec<_>, _>>().map_err(|e| CdrqError::new_err(e.to_string()))?;
    Ok((names, batches))
}

/// Renders text-only frames: `legs` in order, `mains` the stored main
/// records (same columns), as `csv`, `json` or `xml`, in docs/query-language.md §5's layout or in
/// the layout of `firmware` (`1.0.2.5`, `1.0.11`).
#[pyfunction]
#[pyo3(signature = (legs, mains, format, firmware=None))]
pub fn render(
    py: Python<'_>,
    legs: &Bound<'_, PyAny>,
    mains: &Bound<'_, PyAny>,
    format: &str,
    firmware: Option<&str>,
) -> PyResult<String> {
    use crate::render::{Format, Layout};
    let format = match format {
        "csv" => Format::Csv,
        "json" => Format::Json,
        "xml" => Format::Xml,
        other => return Err(CdrqError::new_err(format!("format must be csv, json or xml, not {other:?}"))),
    };
    let layout = match firmware {
        None => Layout::Spec,
        Some("1.0.2.5") => Layout::Firmware1025,
        Some("1.0.11") => Layout::Firmware1011,
        Some(other) => {
            return Err(CdrqError::new_err(format!(
                "firmware must be one of 1.0.2.5, 1.0.11 (or None), not {other:?}"
            )));
        }
    };
    let (names, leg_batches) = import_batches(legs)?;
    let (_, main_batches) = import_batches(mains)?;
    Ok(py.detach(|| {
        let (legs, mains) = (crate::render::Rows::new(&leg_batches), crate::render::Rows::new(&main_batches));
        crate::render::render(format, layout, &names, &legs, &mains)
    }))
}
