//! The `cdrq.CdrqError` family and the conversion of core errors into it.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::error::{Error, Reject};

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

pub fn to_pyerr(py: Python<'_>, error: Error) -> PyErr {
    match error {
        Error::Parse(reject) => parse_error(py, &reject),
        Error::Input { .. } => CdrqError::new_err(error.to_string()),
    }
}

fn parse_error(py: Python<'_>, r: &Reject) -> PyErr {
    let err = ParseError::new_err(r.to_string());
    let value = err.value(py);
    let set = || -> PyResult<()> {
        value.setattr("source", &r.source)?;
        value.setattr("line", r.line)?;
        value.setattr("column", r.column)?;
        value.setattr("reason", &r.reason)?;
        value.setattr("raw", &r.raw)
    };
    match set() {
        Ok(()) => err,
        Err(e) => e,
    }
}

/// Turns a panic that escaped the core into a `CdrqError`.
pub fn panic_error(payload: Box<dyn std::any::Any + Send>) -> Error {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    Error::Input { source: "cdrq".into(), reason: format!("internal error (please report): {message}") }
}
