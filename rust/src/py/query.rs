//! The query compiler's Python face: the compiled plan as a typed object,
//! the pattern kernel, and rendering.

use std::sync::Arc;

use arrow_array::RecordBatchReader;
use arrow_array::ffi_stream::{ArrayStreamReader, RecordBatchStreamReader};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyCapsule, PyList};

use super::arrow_export::ArrowStream;
use super::errors::CdrqError;
use crate::error::Error;
use crate::query::compile::{Surface, compile};
use crate::query::filter::ItemList;
use crate::query::mask;
use crate::query::pattern::{self, Item};
use crate::query::{QueryError, plan::Plan};

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

/// A compiled query: what `compile_query` returns and every consumer takes
/// (the Polars filter, the scanner's pushdown, SQL, Spark, render, serve),
/// so a query is compiled once, with one `now` and its extension groups.
#[pyclass(frozen, module = "cdrq._core")]
pub struct QueryPlan {
    pub plan: Plan,
    text: String,
    now_us: i64,
    library: bool,
    /// `extGroup` names → members, as given.
    groups: Vec<(String, Vec<String>)>,
    masks: [Option<Py<ItemsMask>>; 4],
}

/// The item lists of a plan, by the key Python knows them under.
fn lists(plan: &Plan) -> [(&'static str, &Option<Vec<Item>>); 4] {
    [
        ("caller", &plan.caller),
        ("callee", &plan.callee),
        ("caller_number", &plan.caller_number),
        ("callee_number", &plan.callee_number),
    ]
}

#[pymethods]
impl QueryPlan {
    /// The query text it was compiled from.
    #[getter]
    fn text(&self) -> &str {
        &self.text
    }
    /// The instant `now` meant, UTC microseconds.
    #[getter]
    fn now_us(&self) -> i64 {
        self.now_us
    }
    /// Compiled with the library's rules (web UI filters) rather than the UCM's.
    #[getter]
    fn library(&self) -> bool {
        self.library
    }
    /// `csv`, `json`, `xml`, or `None` when the query gave no `format`.
    #[getter]
    fn format(&self) -> Option<&'static str> {
        self.plan.format.map(|f| f.name())
    }
    #[getter]
    fn num_records(&self) -> Option<u64> {
        self.plan.num_records
    }
    #[getter]
    fn offset(&self) -> Option<u64> {
        self.plan.offset
    }
    #[getter]
    fn caller<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        items(py, &self.plan.caller)
    }
    #[getter]
    fn callee<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        items(py, &self.plan.callee)
    }
    #[getter]
    fn caller_number<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        items(py, &self.plan.caller_number)
    }
    #[getter]
    fn callee_number<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        items(py, &self.plan.callee_number)
    }
    /// Bounds on `start`, inclusive, UTC microseconds.
    #[getter]
    fn start_time(&self) -> Option<i64> {
        self.plan.start_time
    }
    #[getter]
    fn end_time(&self) -> Option<i64> {
        self.plan.end_time
    }
    /// Bounds on `billsec`, inclusive.
    #[getter]
    fn min_dur(&self) -> Option<i64> {
        self.plan.min_dur
    }
    #[getter]
    fn max_dur(&self) -> Option<i64> {
        self.plan.max_dur
    }
    /// Lower-cased name fragments.
    #[getter]
    fn caller_name(&self) -> Option<Vec<String>> {
        self.plan.caller_name.clone()
    }
    /// The `status` words asked for.
    #[getter]
    fn status(&self) -> Option<Vec<&'static str>> {
        self.plan.status.as_ref().map(|s| s.iter().map(|w| w.name()).collect())
    }
    /// The `disposition` values those words select (upper case).
    #[getter]
    fn dispositions(&self) -> Option<Vec<&'static str>> {
        self.plan.status.as_ref().map(|s| s.iter().flat_map(|w| w.dispositions().iter().copied()).collect())
    }
    #[getter]
    fn call_type(&self) -> Option<Vec<&'static str>> {
        self.plan.call_type.as_ref().map(|c| c.iter().map(|w| w.name()).collect())
    }
    #[getter]
    fn src_trunk(&self) -> Option<Vec<String>> {
        self.plan.src_trunk.clone()
    }
    #[getter]
    fn dst_trunk(&self) -> Option<Vec<String>> {
        self.plan.dst_trunk.clone()
    }
    /// Normalised: upper case, spaces and `_` removed.
    #[getter]
    fn action_type(&self) -> Option<Vec<String>> {
        self.plan.action_type.clone()
    }
    #[getter]
    fn account_code(&self) -> Option<Vec<String>> {
        self.plan.account_code.clone()
    }
    /// The extension groups `extGroup` names.
    #[getter]
    fn ext_group(&self) -> Option<Vec<String>> {
        self.plan.ext_group.clone()
    }
    /// The members of the groups `extGroup` names, sorted, once each.
    #[getter]
    fn ext_members(&self) -> Option<Vec<String>> {
        let names = self.plan.ext_group.as_ref()?;
        let mut members: Vec<String> = self
            .groups
            .iter()
            .filter(|(name, _)| names.contains(name))
            .flat_map(|(_, members)| members.iter().cloned())
            .collect();
        members.sort();
        members.dedup();
        Some(members)
    }
    /// `order=desc`: newest first.
    #[getter]
    fn descending(&self) -> bool {
        self.plan.descending
    }
    /// The extension groups it was compiled with.
    #[getter]
    fn groups(&self) -> Vec<(String, Vec<String>)> {
        self.groups.clone()
    }
    /// The kernel of an item list's ranges and wildcards (`caller`,
    /// `callee`, `caller_number`, `callee_number`), or `None`.
    fn mask(&self, py: Python<'_>, key: &str) -> PyResult<Option<Py<ItemsMask>>> {
        let i = lists(&self.plan)
            .iter()
            .position(|(k, _)| *k == key)
            .ok_or_else(|| CdrqError::new_err(format!("no item list {key:?}")))?;
        Ok(self.masks[i].as_ref().map(|m| m.clone_ref(py)))
    }
    fn __repr__(&self) -> String {
        format!(
            "QueryPlan({:?}, now_us={}, library={})",
            self.text,
            self.now_us,
            if self.library { "True" } else { "False" }
        )
    }
}

/// The kernel for a pattern list's digit ranges and general wildcards over
/// a Polars Series (taken through the Arrow PyCapsule stream interface, no
/// copy): a one-column stream of booleans, null values read as empty.
#[pyclass(frozen, module = "cdrq._core")]
pub struct ItemsMask {
    list: ItemList,
}

impl ItemsMask {
    /// The kernel for every item of a list: what `Pattern.matches` asks.
    fn for_all_items(items: &[Item]) -> Self {
        Self { list: ItemList::new(items) }
    }

    /// The kernel for the items Polars has no cheap primitive for, if any.
    fn for_hard_items(items: &[Item]) -> Option<Self> {
        let hard: Vec<Item> =
            items.iter().filter(|i| matches!(i, Item::Range { .. } | Item::Wildcard(_))).cloned().collect();
        (!hard.is_empty()).then(|| Self { list: ItemList::new(&hard) })
    }
}

#[pymethods]
impl ItemsMask {
    /// Whether one value (`None` is the empty string) matches: the same
    /// test the readers and the kernel run.
    #[pyo3(signature = (value))]
    fn matches(&self, value: Option<&str>) -> bool {
        self.list.matches(value.unwrap_or("").as_bytes())
    }

    fn __call__(&self, py: Python<'_>, series: &Bound<'_, PyAny>) -> PyResult<ArrowStream> {
        let chunks = import_arrays(series)?;
        let arrays = super::guarded(py, || {
            mask::mask(&self.list, &chunks).map_err(|reason| Error::Input { source: "pattern kernel".into(), reason })
        })?;
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
pub(super) fn import_arrays(series: &Bound<'_, PyAny>) -> PyResult<Vec<ArrayRef>> {
    let capsule = stream_capsule(series)?;
    let pointer = capsule.pointer_checked(Some(c"arrow_array_stream"))?;
    // SAFETY: the capsule holds a valid stream; `from_raw` takes it over and
    // leaves the capsule's copy released.
    let reader = unsafe { ArrayStreamReader::from_raw(pointer.as_ptr().cast()) }
        .map_err(|e| CdrqError::new_err(e.to_string()))?;
    reader.collect::<Result<Vec<_>, _>>().map_err(|e| CdrqError::new_err(e.to_string()))
}

/// Compiles a query string into a [`QueryPlan`]; `library` admits the web
/// UI filters, `groups` names the extension groups (name → members).
/// Raises `QueryError`.
#[pyfunction]
#[pyo3(signature = (query, *, now_us, library, groups = Vec::new()))]
pub fn compile_query(
    py: Python<'_>,
    query: &str,
    now_us: i64,
    library: bool,
    groups: Vec<(String, Vec<String>)>,
) -> PyResult<QueryPlan> {
    let surface = if library { Surface::Library } else { Surface::Cdrapi };
    let names: Vec<String> = groups.iter().map(|(name, _)| name.clone()).collect();
    let (plan, kernels) = super::guarded(py, || {
        let plan = compile(query, now_us, surface, &names)?;
        let kernels = lists(&plan).map(|(_, list)| list.as_deref().and_then(ItemsMask::for_hard_items));
        Ok((plan, kernels))
    })?;
    let mut masks: [Option<Py<ItemsMask>>; 4] = Default::default();
    for (slot, kernel) in masks.iter_mut().zip(kernels) {
        *slot = kernel.map(|k| Py::new(py, k)).transpose()?;
    }
    Ok(QueryPlan { plan, text: query.to_string(), now_us, library, groups, masks })
}

/// Compiles one pattern list (`cdrapi` or `webui` dialect) into its items,
/// the kernel for its ranges and wildcards (`None` if it has none) and the
/// kernel for all of them (one value at a time).
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
    let (list, mask, all) = super::guarded(py, || {
        let list = compiled?;
        let (mask, all) = (ItemsMask::for_hard_items(&list), ItemsMask::for_all_items(&list));
        Ok((list, mask, all))
    })?;
    (items(py, &Some(list))?, mask, all).into_pyobject(py).map(|t| t.into_any())
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
/// records (same columns; None: none), as `csv`, `json` or `xml`, in
/// docs/query-language.md §5's layout or in the layout of `firmware`
/// (`1.0.2.5`, `1.0.11`). UTF-8 bytes: what a server sends, with no `str`
/// built and encoded again on the way.
#[pyfunction]
#[pyo3(signature = (legs, mains, format, firmware=None))]
pub fn render<'py>(
    py: Python<'py>,
    legs: &Bound<'py, PyAny>,
    mains: Option<&Bound<'py, PyAny>>,
    format: &str,
    firmware: Option<&str>,
) -> PyResult<Bound<'py, PyBytes>> {
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
    let main_batches = match mains {
        Some(mains) => import_batches(mains)?.1,
        None => Vec::new(),
    };
    let text = super::guarded(py, || {
        let (legs, mains) = (crate::render::Rows::new(&leg_batches), crate::render::Rows::new(&main_batches));
        Ok(crate::render::render(format, layout, &names, &legs, &mains))
    })?;
    Ok(PyBytes::new(py, text.as_bytes()))
}
