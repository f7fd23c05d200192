//! What a scan asks of a reader beyond "everything": the columns to build
//! (projection) and a row filter from a compiled query (predicate), both
//! applied after a record is parsed and checked but before its values are
//! built into columns.
//!
//! The row filter keeps a superset of the rows the query selects: the
//! Python layer applies the exact filter afterwards. Items that need a
//! regex keep every row, and time bounds are widened by the archive zone's
//! greatest offset unless the zone is UTC (the reader sees wall-clock
//! times; the zone rules live in Polars). What it drops, the exact filter
//! would have dropped too, so pushdown changes cost, never results.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::query::pattern::Item;
use crate::query::plan::Plan;
use crate::query::ranges::DigitRange;

/// Projection and row filter of a scan.
#[derive(Debug, Default)]
pub struct Pushdown {
    /// Names of the columns to build; `None` builds them all.
    pub columns: Option<Vec<String>>,
    pub filter: Option<RowFilter>,
}

impl Pushdown {
    /// Which of `names` to build.
    pub fn wanted(pushdown: Option<&Self>, names: &[String]) -> Vec<bool> {
        match pushdown.and_then(|p| p.columns.as_ref()) {
            None => vec![true; names.len()],
            Some(columns) => names.iter().map(|n| columns.contains(n)).collect(),
        }
    }
}

/// The part of a query a reader can decide per record.
#[derive(Debug)]
pub struct RowFilter {
    /// Each list must match `src` (`caller`, `callerNumber`) or `dst`.
    src: Vec<Vec<Test>>,
    dst: Vec<Vec<Test>>,
    /// Inclusive bounds on `start` as read (wall clock, microseconds).
    start_min: Option<i64>,
    start_max: Option<i64>,
    billsec_min: Option<i64>,
    billsec_max: Option<i64>,
}

/// One pattern item as a byte test; `Maybe` keeps every row.
#[derive(Debug)]
enum Test {
    Exact(Vec<u8>),
    Prefix(Vec<u8>),
    Suffix(Vec<u8>),
    Contains(Vec<u8>),
    Range(DigitRange),
    Maybe,
}

impl Test {
    fn new(item: &Item) -> Self {
        match item {
            Item::Exact(v) => Self::Exact(v.as_bytes().to_vec()),
            Item::Prefix(v) => Self::Prefix(v.as_bytes().to_vec()),
            Item::Suffix(v) => Self::Suffix(v.as_bytes().to_vec()),
            Item::Contains(v) => Self::Contains(v.as_bytes().to_vec()),
            Item::Range { lo, hi } => Self::Range(DigitRange::new(lo, hi)),
            Item::Any | Item::Regex(_) => Self::Maybe,
        }
    }

    fn matches(&self, value: &[u8]) -> bool {
        match self {
            Self::Exact(v) => value == v.as_slice(),
            Self::Prefix(v) => value.starts_with(v),
            Self::Suffix(v) => value.ends_with(v),
            Self::Contains(v) => memchr::memmem::find(value, v).is_some(),
            Self::Range(r) => r.contains_value(value),
            Self::Maybe => true,
        }
    }
}

/// Largest distance between a zone's wall clock and UTC, with room to spare
/// (zones run from UTC−12 to UTC+14).
pub const ZONE_MARGIN_US: i64 = 26 * 3_600_000_000;

impl RowFilter {
    /// The filter of `plan`; `margin_us` widens its time bounds (0 when the
    /// archive zone is UTC, [`ZONE_MARGIN_US`] otherwise).
    pub fn from_plan(plan: &Plan, margin_us: i64) -> Self {
        let lists = |lists: [&Option<Vec<Item>>; 2]| -> Vec<Vec<Test>> {
            lists.into_iter().flatten().map(|items| items.iter().map(Test::new).collect()).collect()
        };
        Self {
            src: lists([&plan.caller, &plan.caller_number]),
            dst: lists([&plan.callee, &plan.callee_number]),
            start_min: plan.start_time.map(|t| t.saturating_sub(margin_us)),
            start_max: plan.end_time.map(|t| t.saturating_add(margin_us)),
            billsec_min: plan.min_dur,
            billsec_max: plan.max_dur,
        }
    }

    /// A filter no record passes: a parse that builds nothing.
    pub fn nothing() -> Self {
        Self {
            src: Vec::new(),
            dst: Vec::new(),
            start_min: None,
            start_max: None,
            billsec_min: Some(1),
            billsec_max: Some(0),
        }
    }

    /// Whether a record may match. Null text is the empty string; a null
    /// `start` or `billsec` fails any bound on it; a call's `main` summary
    /// row never matches (queries select legs).
    pub fn keep(&self, src: Option<&[u8]>, dst: Option<&[u8]>, start: Option<i64>, billsec: Option<i64>) -> bool {
        let list_ok = |lists: &[Vec<Test>], value: Option<&[u8]>| {
            let value = value.unwrap_or(b"");
            lists.iter().all(|tests| tests.iter().any(|t| t.matches(value)))
        };
        let bound_ok = |value: Option<i64>, min: Option<i64>, max: Option<i64>| match (min, max) {
            (None, None) => true,
            _ => value.is_some_and(|v| min.is_none_or(|m| v >= m) && max.is_none_or(|m| v <= m)),
        };
        bound_ok(start, self.start_min, self.start_max)
            && bound_ok(billsec, self.billsec_min, self.billsec_max)
            && list_ok(&self.src, src)
            && list_ok(&self.dst, dst)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::compile::{Surface, compile};

    fn filter(query: &str, margin: i64) -> RowFilter {
        RowFilter::from_plan(&compile(query, 0, Surface::Library, &[]).unwrap(), margin)
    }

    #[test]
    fn items_nulls_and_bounds() {
        let f = filter("caller=5300,61@,@99,6300-6399&callee=@", 0);
        for (src, keep) in [("5300", true), ("6100", true), ("1299", true), ("63-45", true), ("5301", false)] {
            assert_eq!(f.keep(Some(src.as_bytes()), None, None, None), keep, "{src}");
        }
        assert!(!f.keep(None, None, None, None), "null is empty, which no caller item matches");
        assert!(filter("caller=0-9", 0).keep(None, None, None, None), "empty has digits 0");
        assert!(filter("caller=_1@5", 0).keep(Some(b"x"), None, None, None), "regex items keep everything");
        let billsec = filter("minDur=10&maxDur=20", 0);
        assert!(billsec.keep(None, None, None, Some(10)) && !billsec.keep(None, None, None, Some(21)));
        assert!(!billsec.keep(None, None, None, None), "null billsec fails a bound");
    }

    #[test]
    fn time_bounds_are_widened_by_the_margin() {
        let f = filter("startTime=1970-01-02T00:00:00", ZONE_MARGIN_US);
        let day = 86_400_000_000;
        assert!(f.keep(None, None, Some(day - ZONE_MARGIN_US), None));
        assert!(!f.keep(None, None, Some(day - ZONE_MARGIN_US - 1), None));
        assert!(!f.keep(None, None, None, None));
    }
}
