//! The `cdrq.CdrqError` family and the conversion of core errors into it.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::error::Error;

pyo3::create_exception!(cdrq, CdrqError, PyValueError, "Every error cdrq raises.");
pyo3::create_exception!(
    cdrq,
    ParseError,
    CdrqError,
    "A record that cannot be read; has `source`, `line`, `column`, `reason`, `raw`."
);
pyo3::create_exception!(
    cdrq,
    QueryError,
    CdrqError,
    "A query that cannot be compiled; has `param`, `text`, `position` (0-based character offset) and `reason`."
);

/// The one conversion of a core error into a Python exception: the
/// exception's attributes carry the error's fields.
pub fn to_pyerr(py: Python<'_>, error: Error) -> PyErr {
    match error {
        Error::Parse(r) => with_attributes(py, ParseError::new_err(r.to_string()), |value| {
            value.setattr("source", &r.source)?;
            value.setattr("line", r.line)?;
            value.setattr("column", r.column)?;
            value.setattr("reason", &r.reason)?;
            value.setattr("raw", &r.raw)
        }),
        Error::Query(q) => with_attributes(py, QueryError::new_err(q.to_string()), |value| {
            value.setattr("param", &q.param)?;
            value.setattr("text", &q.text)?;
            value.setattr("position", q.position)?;
            value.setattr("reason", &q.reason)
        }),
        Error::Input { .. } | Error::Internal(_) => CdrqError::new_err(error.to_string()),
    }
}

/// `err` with attributes set on its value by `set` (or the error setting
/// them raised).
fn with_attributes(py: Python<'_>, err: PyErr, set: impl FnOnce(&Bound<'_, PyAny>) -> PyResult<()>) -> PyErr {
    match set(err.value(py)) {
        Ok(()) => err,
        Err(e) => e,
    }
}

/// Turns a panic that escaped the core into an internal error.
pub fn panic_error(payload: Box<dyn std::any::Any + Send>) -> Error {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    Error::Internal(message)
}
