//! cdrq's core: PBX call detail records → Apache Arrow, and the pattern and
//! query compiler. Everything outside `py` is plain Rust; `py` (feature
//! `python`) is the only place that knows about Python.

pub mod analytics;
pub mod error;
pub mod query;
pub mod read;
pub mod render;
pub mod schema;
pub mod values;

#[cfg(feature = "python")]
mod py;
