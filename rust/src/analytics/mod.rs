//! Kernels behind `cdrq.concurrency` and `cdrq.rate` (python/cdrq/analytics.py):
//! the calls-in-progress sweep and the longest-prefix match of a rate table.
//! Plain slices in, plain vectors out; the Arrow side is `py/analytics.rs`.

pub mod concurrency;
pub mod rate;
