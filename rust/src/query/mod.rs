//! The cdrapi query language: query string → [`plan::Plan`].
//!
//! `python/cdrq/grammar/cdrapi.lark` is the readable, normative grammar;
//! this is the fast implementation, and `tests/test_grammar_agreement.py`
//! proves the two agree. Semantics: `docs/query-language.md` §1–§3 and §6.
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

/// Defined with the core's other errors, which it converts into.
pub use crate::error::QueryError;
