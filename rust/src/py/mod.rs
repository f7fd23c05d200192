//! The `cdrq._core` extension: extract arguments, run the core with the GIL
//! released, wrap the result. No logic lives here.

mod analytics;
mod arrow_export;
mod errors;
mod query;
mod scan;

use std::panic::{AssertUnwindSafe, RefUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::ptr::NonNull;
use std::sync::Arc;

use arrow_buffer::Buffer;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

use crate::error::Error;
use crate::read::{Encoding, Format, Input, OnError, ReadOptions};
use crate::values::Gaps;
use arrow_export::ArrowStream;
use errors::{CdrqError, ParseError, QueryError, panic_error, to_pyerr};

/// Keeps a Python `bytes` alive while Arrow buffers point into it.
struct BytesOwner(#[allow(dead_code)] Py<PyBytes>);
// `bytes` is immutable; the owner only ever drops its reference.
impl RefUnwindSafe for BytesOwner {}

/// One rejected record: (source, line, column, reason, raw).
type RejectRow = (String, u64, u64, String, String);

/// A source as Python gave it: a path, or bytes already in memory.
enum Source {
    Path(PathBuf),
    Bytes(Input),
}

impl Source {
    fn extract(source: &Bound<'_, PyAny>, name: Option<String>) -> PyResult<Self> {
        if let Ok(bytes) = source.cast::<PyBytes>() {
            let data = bytes.as_bytes();
            let ptr = NonNull::new(data.as_ptr().cast_mut()).unwrap_or(NonNull::dangling());
            let owner = Arc::new(BytesOwner(bytes.clone().unbind()));
            // SAFETY: the owner keeps the immutable `bytes` object alive.
            let data = unsafe { Buffer::from_custom_allocation(ptr, data.len(), owner) };
            Ok(Self::Bytes(Input::from_buffer(name.unwrap_or_else(|| "<bytes>".into()), data)))
        } else if let Ok(path) = source.cast::<PyString>() {
            Ok(Self::Path(PathBuf::from(path.to_str()?)))
        } else {
            Err(CdrqError::new_err("source must be a path (str) or bytes"))
        }
    }

    /// The input's bytes; run without the GIL. A path is memory-mapped:
    /// the readers parse the mapping, and the frame's columns point into it
    /// only with `memory_map` (otherwise each chunk copies its bytes out).
    fn open(self, memory_map: bool) -> Result<Input, Error> {
        match self {
            Self::Path(path) => Input::from_path(&path).map(|input| Input { share_map: memory_map, ..input }),
            Self::Bytes(input) => Ok(input),
        }
    }
}

/// The options every reader takes, from their Python forms.
struct Options {
    encoding: Encoding,
    gaps: Option<Arc<Gaps>>,
}

impl Options {
    /// `encoding` as Polars and WHATWG name it; `gaps` as (zone, wall-clock
    /// ranges the zone skips), computed by the Python layer from its tzdata.
    fn extract(encoding: &str, gaps: Option<(String, Vec<(i64, i64)>)>) -> PyResult<Self> {
        let encoding = Encoding::parse(encoding).ok_or_else(|| {
            CdrqError::new_err(format!(
                "unknown encoding {encoding:?}; expected utf8, utf8-lossy, latin-1, windows-1252 or another WHATWG label"
            ))
        })?;
        let gaps = gaps.map(|(zone, ranges)| Arc::new(Gaps { zone, ranges }));
        Ok(Self { encoding, gaps })
    }
}

fn parse_format(format: &str) -> PyResult<Format> {
    Format::parse(format).ok_or_else(|| {
        CdrqError::new_err(format!(
            "unknown format {format:?}; expected auto, ucm-csv, ucm-json, ucm-xml, ucm-webui-csv, portsip-json, asterisk-csv, asterisk-custom or freepbx-csv"
        ))
    })
}

fn parse_on_error(on_error: &str) -> PyResult<OnError> {
    match on_error {
        "raise" => Ok(OnError::Raise),
        "collect" => Ok(OnError::Collect),
        other => Err(CdrqError::new_err(format!("on_error must be 'raise' or 'collect', not {other:?}"))),
    }
}

fn reject_rows(rejects: Vec<crate::error::Reject>) -> Vec<RejectRow> {
    rejects.into_iter().map(|r| (r.source, r.line, r.column, r.reason, r.raw)).collect()
}

/// Reads one source: a path (`str`) or the bytes themselves. Returns the
/// batches as an Arrow stream and the rejected records.
#[pyfunction]
#[allow(clippy::too_many_arguments)] // keyword-only options of one Python call
#[pyo3(signature = (source, *, name = None, format = "auto", threads = None, on_error = "raise", tz_label = None, chunk_bytes = None, encoding = "utf8", gaps = None, memory_map = false, columns = None))]
fn read(
    py: Python<'_>,
    source: &Bound<'_, PyAny>,
    name: Option<String>,
    format: &str,
    threads: Option<usize>,
    on_error: &str,
    tz_label: Option<String>,
    chunk_bytes: Option<usize>,
    encoding: &str,
    gaps: Option<(String, Vec<(i64, i64)>)>,
    memory_map: bool,
    columns: Option<Vec<String>>,
) -> PyResult<(ArrowStream, Vec<RejectRow>)> {
    let format = parse_format(format)?;
    let on_error = parse_on_error(on_error)?;
    let Options { encoding, gaps } = Options::extract(encoding, gaps)?;
    let columns = columns.map(Arc::from);
    let options = ReadOptions { threads, on_error, tz: tz_label, chunk_bytes, pushdown: None, encoding, gaps, columns };
    let source = Source::extract(source, name)?;
    let output = guarded(py, || crate::read::read(&source.open(memory_map)?, format, &options))?;
    Ok((ArrowStream::new(output.schema, output.batches), reject_rows(output.rejects)))
}

/// Runs core work with the GIL released; errors and panics (including
/// those of rayon workers, which rayon re-raises here) become `CdrqError`s.
/// Every call into the core goes through here, so that no panic reaches
/// Python as a `PanicException` and errors convert in one place.
pub(crate) fn guarded<T: Send>(py: Python<'_>, work: impl FnOnce() -> Result<T, Error> + Send) -> PyResult<T> {
    py.detach(|| catch_unwind(AssertUnwindSafe(work)).unwrap_or_else(|panic| Err(panic_error(panic))))
        .map_err(|e| to_pyerr(py, e))
}

/// `data` in `encoding` (as `read` takes it) as UTF-8 bytes: how `cdrq
/// listen` stores a unit from a PBX that writes another encoding.
#[pyfunction]
fn decode<'py>(py: Python<'py>, data: &[u8], encoding: &str) -> PyResult<Bound<'py, PyBytes>> {
    let Options { encoding, .. } = Options::extract(encoding, None)?;
    let input = Input::from_vec("<bytes>", data.to_vec());
    let text = crate::read::encoding::decode(&input, encoding).unwrap_or(input);
    Ok(PyBytes::new(py, text.bytes()))
}

/// Panics inside the core, for the test that panics never reach Python as
/// anything but a `CdrqError`.
#[pyfunction]
fn _panic_for_test(py: Python<'_>) -> PyResult<()> {
    guarded(py, || {
        rayon::join(|| (), || panic!("deliberate test panic"));
        Ok(())
    })
}

/// Whether this extension was built without optimisations.
#[pyfunction]
fn is_debug_build() -> bool {
    cfg!(debug_assertions)
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_function(wrap_pyfunction!(read, m)?)?;
    m.add_function(wrap_pyfunction!(decode, m)?)?;
    m.add_function(wrap_pyfunction!(is_debug_build, m)?)?;
    m.add_function(wrap_pyfunction!(_panic_for_test, m)?)?;
    m.add_function(wrap_pyfunction!(query::compile_query, m)?)?;
    m.add_function(wrap_pyfunction!(query::compile_pattern, m)?)?;
    m.add_function(wrap_pyfunction!(query::render, m)?)?;
    m.add_function(wrap_pyfunction!(scan::column_names, m)?)?;
    m.add_function(wrap_pyfunction!(analytics::concurrency_sweep, m)?)?;
    m.add_function(wrap_pyfunction!(analytics::last_of_each, m)?)?;
    m.add_class::<analytics::PrefixTable>()?;
    m.add_function(wrap_pyfunction!(scan::take_counters, m)?)?;
    m.add_function(wrap_pyfunction!(scan::json_ranges, m)?)?;
    m.add_class::<scan::Scanner>()?;
    m.add_class::<ArrowStream>()?;
    m.add_class::<query::ItemsMask>()?;
    m.add_class::<query::QueryPlan>()?;
    m.add("CdrqError", py.get_type::<CdrqError>())?;
    m.add("ParseError", py.get_type::<ParseError>())?;
    m.add("QueryError", py.get_type::<QueryError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    // The data model's field names, for the Python layer (one table: schema.rs).
    m.add("BASE_COLUMNS", pyo3::types::PyTuple::new(py, crate::schema::BASE_COLUMNS)?)?;
    // Each known column's type ("int", "time" or "text"); other names are text.
    let types = pyo3::types::PyDict::new(py);
    for name in crate::schema::BASE_COLUMNS.iter().chain([&crate::schema::CDR_KIND, &crate::schema::LEG]) {
        types.set_item(name, crate::schema::column_type(name).name())?;
    }
    m.add("COLUMN_TYPES", types)?;
    m.add("ZONE_MARGIN_US", crate::query::filter::ZONE_MARGIN_US)?;
    m.add("MAX_COLUMNS", crate::schema::MAX_COLUMNS)?;
    Ok(())
}
