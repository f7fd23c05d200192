//! What a scan asks of a reader beyond "everything": the columns to build
//! (projection) and a row filter from a compiled query (predicate), both
//! applied after a record is parsed and checked but before its values are
//! built into columns.
//!
//! The row filter keeps a superset of the rows the query selects: the
//! Python layer applies the exact filter afterwards. Its time bounds are
//! widened by the archive zone's greatest offset unless the zone is UTC
//! (the reader sees wall-clock times; the zone rules live in Polars). What
//! it drops, the exact filter would have dropped too, so pushdown changes
//! cost, never results.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

pub use crate::query::filter::{RowFilter, ZONE_MARGIN_US};

/// Projection and row filter of a scan.
#[derive(Debug, Default)]
pub struct Pushdown {
    /// Names of the columns to build; `None` builds them all.
    pub columns: Option<Vec<String>>,
    pub filter: Option<RowFilter>,
    /// Set while a JSON or XML scan runs once it wants only the columns'
    /// names from then on: later rows are checked but not built, as under
    /// [`RowFilter::nothing`] (windows in flight are built already).
    pub names_only: AtomicBool,
}

impl Pushdown {
    pub fn new(columns: Option<Vec<String>>, filter: Option<RowFilter>) -> Self {
        Self { columns, filter, names_only: AtomicBool::new(false) }
    }

    /// From now on, build no rows (see [`Self::names_only`]).
    pub fn build_names_only(&self) {
        self.names_only.store(true, Ordering::Relaxed);
    }

    pub fn builds_rows(&self) -> bool {
        !self.names_only.load(Ordering::Relaxed)
    }

    /// Which of `names` to build.
    pub fn wanted(pushdown: Option<&Self>, names: &[String]) -> Vec<bool> {
        match pushdown.and_then(|p| p.columns.as_ref()) {
            None => vec![true; names.len()],
            Some(columns) => names.iter().map(|n| columns.contains(n)).collect(),
        }
    }
}

/// What readers built, for tests that check pushdown by its effect rather
/// than by timing. Updated once per chunk, so the cost is nil.
pub struct Counters {
    /// Records parsed and checked (rejects not included).
    pub records: AtomicU64,
    /// Rows built into columns.
    pub rows: AtomicU64,
    /// Column values built (rows × built columns).
    pub cells: AtomicU64,
}

pub static COUNTERS: Counters =
    Counters { records: AtomicU64::new(0), rows: AtomicU64::new(0), cells: AtomicU64::new(0) };

impl Counters {
    pub fn add(&self, records: usize, rows: usize, columns: usize) {
        self.records.fetch_add(records as u64, Ordering::Relaxed);
        self.rows.fetch_add(rows as u64, Ordering::Relaxed);
        self.cells.fetch_add((rows * columns) as u64, Ordering::Relaxed);
    }

    /// (records, rows, cells) so far, and sets them to zero.
    pub fn take(&self) -> (u64, u64, u64) {
        (
            self.records.swap(0, Ordering::Relaxed),
            self.rows.swap(0, Ordering::Relaxed),
            self.cells.swap(0, Ordering::Relaxed),
        )
    }
}
