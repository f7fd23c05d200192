//! Scans: a source read window by window, with projection and a query's
//! row filter pushed into the reader.

use std::sync::{Arc, Mutex};

use pyo3::prelude::*;

use super::arrow_export::ArrowStream;
use super::errors::CdrqError;
use super::query::QueryPlan;
use super::{Options, RejectRow, Source, guarded, parse_format, parse_on_error, reject_rows};
use crate::read::pushdown::{COUNTERS, Pushdown, RowFilter};
use crate::read::stream::{self, Stream};
use crate::read::{Format, OnError, ReadOptions, json};

/// One source being read a window at a time.
#[pyclass(module = "cdrq._core")]
pub struct Scanner {
    stream: Mutex<Stream>,
}

#[pymethods]
impl Scanner {
    /// Opens `source` (a path or bytes). `columns` limits the columns built;
    /// `layout`: an `asterisk-custom` file's columns (`read`'s `columns`);
    /// `plan` (a compiled query) filters records before they are built, its
    /// time bounds widened by `margin_us` (see `pushdown.rs`). `byte_range`
    /// reads only the CSV records starting in it.
    #[new]
    #[allow(clippy::too_many_arguments)] // keyword-only options of one Python call
    #[pyo3(signature = (source, *, name = None, format = "auto", threads = None, on_error = "raise", tz_label = None, columns = None, plan = None, margin_us = 0, window_bytes = None, byte_range = None, encoding = "utf8", gaps = None, memory_map = false, layout = None))]
    fn new(
        py: Python<'_>,
        source: &Bound<'_, PyAny>,
        name: Option<String>,
        format: &str,
        threads: Option<usize>,
        on_error: &str,
        tz_label: Option<String>,
        columns: Option<Vec<String>>,
        plan: Option<PyRef<'_, QueryPlan>>,
        margin_us: i64,
        window_bytes: Option<usize>,
        byte_range: Option<(usize, usize)>,
        encoding: &str,
        gaps: Option<(String, Vec<(i64, i64)>)>,
        memory_map: bool,
        layout: Option<Vec<String>>,
    ) -> PyResult<Self> {
        let format = parse_format(format)?;
        let on_error = parse_on_error(on_error)?;
        let Options { encoding, gaps } = Options::extract(encoding, gaps)?;
        let plan = plan.as_deref().map(|p| &p.plan);
        let source = Source::extract(source, name)?;
        let stream = guarded(py, || {
            let filter = plan.map(|plan| RowFilter::from_plan(plan, margin_us));
            let pushdown = Some(Arc::new(Pushdown::new(columns, filter)));
            let options = ReadOptions {
                threads,
                on_error,
                tz: tz_label,
                chunk_bytes: None,
                pushdown,
                encoding,
                gaps,
                columns: layout.map(Arc::from),
            };
            Stream::open_range(source.open(memory_map)?, format, options, window_bytes, byte_range)
        })?;
        Ok(Self { stream: Mutex::new(stream) })
    }

    /// The next window as an Arrow stream and its rejects, or `None` at the end.
    fn next_window(&self, py: Python<'_>) -> PyResult<Option<(ArrowStream, Vec<RejectRow>)>> {
        let mut stream = self.stream.lock().map_err(|_| CdrqError::new_err("scanner lock poisoned"))?;
        let stream: &mut Stream = &mut stream;
        let output = guarded(py, || stream.next_window())?;
        Ok(output.map(|o| (ArrowStream::new(o.schema, o.batches), reject_rows(o.rejects))))
    }

    /// From now on JSON and XML rows are checked, not built: the windows
    /// still name every column met (a scan learning only its columns).
    fn build_names_only(&self) -> PyResult<()> {
        let stream = self.stream.lock().map_err(|_| CdrqError::new_err("scanner lock poisoned"))?;
        stream.build_names_only();
        Ok(())
    }

    /// (bytes read, bytes in all) of the decompressed input.
    fn progress(&self) -> PyResult<(usize, usize)> {
        let stream = self.stream.lock().map_err(|_| CdrqError::new_err("scanner lock poisoned"))?;
        Ok(stream.progress())
    }

    /// A CSV's columns once its header is read (at open; a compressed
    /// file's after its first window), else `None`: JSON and XML name
    /// theirs only once all is read.
    #[getter]
    fn header_names(&self) -> PyResult<Option<Vec<String>>> {
        let stream = self.stream.lock().map_err(|_| CdrqError::new_err("scanner lock poisoned"))?;
        Ok(stream.header_names())
    }

    /// The format being read (`auto` resolved).
    #[getter]
    fn format(&self) -> PyResult<&'static str> {
        let stream = self.stream.lock().map_err(|_| CdrqError::new_err("scanner lock poisoned"))?;
        Ok(stream.format().name())
    }
}

/// The names of every column of a source, and its format.
#[pyfunction]
#[pyo3(signature = (source, *, name = None, format = "auto", encoding = "utf8", layout = None))]
pub fn column_names(
    py: Python<'_>,
    source: &Bound<'_, PyAny>,
    name: Option<String>,
    format: &str,
    encoding: &str,
    layout: Option<Vec<String>>,
) -> PyResult<(Vec<String>, &'static str)> {
    let format = parse_format(format)?;
    let source = Source::extract(source, name)?;
    let encoding = Options::extract(encoding, None)?.encoding;
    let columns = layout.map(Arc::from);
    let options = ReadOptions { on_error: OnError::Collect, encoding, columns, ..ReadOptions::default() };
    let (names, format) = guarded(py, || stream::column_names(source.open(false)?, format, &options))?;
    Ok((names, format.name()))
}

/// (records parsed, rows built, values built) since the last call: how
/// tests see that pushdown happened.
#[pyfunction]
pub fn take_counters() -> (u64, u64, u64) {
    COUNTERS.take()
}

/// Byte ranges splitting a JSON source's one record array at element starts
/// (about `target_bytes` each), or `None` when it cannot be split.
#[pyfunction]
#[pyo3(signature = (source, *, format = "auto", target_bytes = 128 << 20))]
pub fn json_ranges(
    py: Python<'_>,
    source: &Bound<'_, PyAny>,
    format: &str,
    target_bytes: usize,
) -> PyResult<Option<Vec<(usize, usize)>>> {
    let format = parse_format(format)?;
    let source = Source::extract(source, None)?;
    guarded(py, || {
        let input = source.open(false)?;
        let format = if format == Format::Auto { Format::sniff(input.bytes()) } else { format };
        match format {
            Format::UcmJson | Format::PortsipJson => {
                json::element_ranges(&input, format == Format::PortsipJson, target_bytes)
            }
            _ => Ok(None),
        }
    })
}
