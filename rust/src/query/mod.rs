//! The cdrapi query language: query string → [`plan::Plan`].
//!
//! `python/cdrq/grammar/cdrapi.lark` is the readable, normative grammar;
//! this is the fast implementation, and `tests/test_grammar_agreement.py`
//! proves the two agree. Semantics: `query-language.md` §1–§3 and §6.
//!
//! Stages: [`params`] splits and percent-decodes the query string, checking
//! names and duplicates; [`pattern`] and [`time`] compile values;
//! [`compile`] assembles the plan. [`filter`] decides a record from its
//! values and [`mask`] runs that over Arrow columns.

pub mod compile;
pub mod filter;
pub mod mask;
pub mod params;
pub mod pattern;
pub mod plan;
pub mod ranges;
pub mod time;

/// A query that cannot be compiled: which parameter, the offending text,
/// where it stands in the query string (0-based character offset) and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryError {
    pub param: String,
    pub text: String,
    pub position: usize,
    pub reason: String,
}

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.param.is_empty() {
            write!(f, "at {}: {} ({:?})", self.position, self.reason, self.text)
        } else {
            write!(f, "{} at {}: {} ({:?})", self.param, self.position, self.reason, self.text)
        }
    }
}

impl std::error::Error for QueryError {}
