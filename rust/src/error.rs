//! Errors of the core, free of any Python type: the `py` module turns them
//! into the `cdrq.CdrqError` family at the boundary. A leaf: readers and the
//! query compiler both build on it.

use std::fmt;

/// A record that could not be read, with everything needed to find it again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reject {
    /// Path of the file, or `<bytes>` / the file object's name.
    pub source: String,
    /// 1-based line of the offending position.
    pub line: u64,
    /// 1-based column (in characters) of the offending position.
    pub column: u64,
    pub reason: String,
    /// The record's text as it stands in the input (lossy if not UTF-8).
    pub raw: String,
}

/// Characters of a record an error's message shows (`raw` keeps it all): a
/// 50 MB field made a 50 MB message.
const SHOWN_CHARS: usize = 300;

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {} (record: ", self.source, self.line, self.column, self.reason)?;
        match self.raw.char_indices().nth(SHOWN_CHARS) {
            None => write!(f, "{:?})", self.raw),
            Some((cut, _)) => write!(f, "{:?}… {} more bytes)", &self.raw[..cut], self.raw.len() - cut),
        }
    }
}

/// A query that cannot be compiled: which parameter, the offending text,
/// where it stands in the query string (0-based character offset) and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryError {
    pub param: String,
    pub text: String,
    pub position: usize,
    pub reason: String,
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.param.is_empty() {
            write!(f, "at {}: {} ({:?})", self.position, self.reason, self.text)
        } else {
            write!(f, "{} at {}: {} ({:?})", self.param, self.position, self.reason, self.text)
        }
    }
}

impl std::error::Error for QueryError {}

/// Every failure of the core: the one type `py` turns into Python
/// exceptions, in one place. The query compiler returns its [`QueryError`]
/// alone (it can fail no other way); it converts into this.
#[derive(Debug)]
pub enum Error {
    /// A record that cannot be read, in strict mode.
    Parse(Box<Reject>),
    /// The input as a whole cannot be read (I/O, unknown format, bad option).
    Input { source: String, reason: String },
    /// A query that cannot be compiled.
    Query(Box<QueryError>),
    /// A bug: a panic caught at the boundary, with its message.
    Internal(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Parse(r) => r.fmt(f),
            Error::Input { source, reason } => write!(f, "{source}: {reason}"),
            Error::Query(q) => q.fmt(f),
            Error::Internal(message) => write!(f, "cdrq: internal error (please report): {message}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<QueryError> for Error {
    fn from(e: QueryError) -> Self {
        Error::Query(Box::new(e))
    }
}

pub type Result<T> = std::result::Result<T, Error>;
