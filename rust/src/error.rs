//! Errors of the core, free of any Python type: the `py` module turns them
//! into the `cdrq.CdrqError` family at the boundary.

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

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {} (record: {:?})", self.source, self.line, self.column, self.reason, self.raw)
    }
}

/// Every failure of the core.
#[derive(Debug)]
pub enum Error {
    /// A record that cannot be read, in strict mode.
    Parse(Box<Reject>),
    /// The input as a whole cannot be read (I/O, unknown format, bad option).
    Input { source: String, reason: String },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Parse(r) => r.fmt(f),
            Error::Input { source, reason } => write!(f, "{source}: {reason}"),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;
