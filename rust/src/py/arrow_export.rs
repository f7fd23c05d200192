//! Record batches → Python through the Arrow PyCapsule stream interface.
//!
//! `polars.DataFrame(stream)` calls `__arrow_c_stream__`, moves the
//! `FFI_ArrowArrayStream` out of the capsule and takes the buffers as they
//! are: nothing is copied.

use std::sync::Mutex;

use arrow_array::ffi_stream::FFI_ArrowArrayStream;
use arrow_array::{RecordBatch, RecordBatchIterator};
use arrow_schema::SchemaRef;
use pyo3::prelude::*;
use pyo3::types::PyCapsule;

use super::errors::CdrqError;

/// A one-shot stream of record batches.
#[pyclass(frozen, module = "cdrq._core")]
pub struct ArrowStream {
    inner: Mutex<Option<(SchemaRef, Vec<RecordBatch>)>>,
}

impl ArrowStream {
    pub fn new(schema: SchemaRef, batches: Vec<RecordBatch>) -> Self {
        Self { inner: Mutex::new(Some((schema, batches))) }
    }
}

#[pymethods]
impl ArrowStream {
    #[pyo3(signature = (requested_schema = None))]
    fn __arrow_c_stream__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        // Casting to a requested schema is not offered: the cdrq schema is fixed.
        let _ = requested_schema;
        let taken = self.inner.lock().map_err(|_| CdrqError::new_err("stream lock poisoned"))?.take();
        let (schema, batches) = taken.ok_or_else(|| CdrqError::new_err("Cannot read from closed stream"))?;
        let reader = RecordBatchIterator::new(batches.into_iter().map(Ok), schema);
        PyCapsule::new_with_value(py, FFI_ArrowArrayStream::new(Box::new(reader)), c"arrow_array_stream")
    }

    /// Number of rows not yet handed over.
    fn __len__(&self) -> usize {
        self.inner
            .lock()
            .ok()
            .and_then(|g| g.as_ref().map(|(_, b)| b.iter().map(RecordBatch::num_rows).sum()))
            .unwrap_or(0)
    }
}
