//! Kernels behind `cdrq.calls`, `cdrq.concurrency` and `cdrq.rate`
//! (python/cdrq/analytics.py): the row closing each call of a stream, the
//! calls-in-progress sweep and the longest-prefix match of a rate table.
//! Plain slices in, plain vectors out; the Arrow side is `py/analytics.rs`.

pub mod calls;
pub mod concurrency;
pub mod rate;
