//! The row test of a compiled query: `caller`/`callee` (and the web UI's
//! number patterns), the `start` bounds and the `billsec` bounds, decided
//! per record from plain values. Readers use it to skip records before
//! building them (`read::pushdown`); [`super::mask`] runs one pattern list
//! over an Arrow column.

use super::pattern::{Item, Token, wildcard_matches};
use super::plan::Plan;
use super::ranges::{DigitRange, Digits};

/// Largest distance between a zone's wall clock and UTC, with room to spare
/// (zones run from UTC−12 to UTC+14).
pub const ZONE_MARGIN_US: i64 = 26 * 3_600_000_000;

/// The part of a query decided per record.
#[derive(Debug)]
pub struct RowFilter {
    /// Each list must match `src` (`caller`, `callerNumber`) or `dst`.
    src: Vec<ItemList>,
    dst: Vec<ItemList>,
    /// Inclusive bounds on `start` (microseconds).
    start_min: Option<i64>,
    start_max: Option<i64>,
    billsec_min: Option<i64>,
    billsec_max: Option<i64>,
}

/// One pattern list: a value matches when any item does.
#[derive(Debug)]
pub struct ItemList {
    /// Exact items of up to 12 bytes as Arrow string views (length, then
    /// the bytes, zero-padded), sorted: one binary search on a `u128`.
    short: Vec<u128>,
    /// Longer exact items, sorted.
    long: Vec<Vec<u8>>,
    /// Digit ranges, which share one digit scan of the value.
    ranges: Vec<DigitRange>,
    tests: Vec<Test>,
}

/// One non-exact item as a test on the value's bytes.
#[derive(Debug)]
enum Test {
    Prefix(Vec<u8>),
    Suffix(Vec<u8>),
    Contains(Vec<u8>),
    Wildcard(Wildcard),
    Any,
}

/// A wildcard item split at its runs (`@`): a head anchored at the start,
/// a tail anchored at the end and middle segments found leftmost in turn,
/// each a fixed-length run of byte tests. For ASCII values, which phone
/// numbers are, this tests a few bytes instead of walking token by token.
#[derive(Debug)]
struct Wildcard {
    tokens: Vec<Token>,
    /// `None` when a literal is not ASCII: then only the token walk applies.
    segments: Option<Segments>,
}

#[derive(Debug)]
struct Segments {
    head: Vec<Token>,
    middle: Vec<Vec<Token>>,
    /// `None` without any run: the head is the whole item.
    tail: Option<Vec<Token>>,
}

impl Wildcard {
    fn new(tokens: &[Token]) -> Self {
        let ascii = tokens.iter().all(|t| !matches!(t, Token::Char(c) if !c.is_ascii()));
        let mut parts: Vec<Vec<Token>> = tokens.split(|t| *t == Token::Run).map(<[Token]>::to_vec).collect();
        let segments = ascii.then(|| {
            let head = parts.remove(0);
            let tail = parts.pop();
            Segments { head, middle: parts.into_iter().filter(|p| !p.is_empty()).collect(), tail }
        });
        Self { tokens: tokens.to_vec(), segments }
    }

    #[inline]
    fn matches(&self, value: &[u8]) -> bool {
        match &self.segments {
            Some(segments) if value.is_ascii() => segments.matches(value),
            // Arrow and Polars text is UTF-8; other bytes match no wildcard.
            _ => std::str::from_utf8(value).is_ok_and(|v| wildcard_matches(&self.tokens, v)),
        }
    }
}

impl Segments {
    /// `value` is ASCII: one byte is one character.
    #[inline]
    fn matches(&self, value: &[u8]) -> bool {
        let fits = |segment: &[Token], at: &[u8]| {
            segment.iter().zip(at).all(|(t, &b)| match *t {
                Token::Char(c) => c as u32 == u32::from(b),
                Token::One => true,
                Token::Digit => b.is_ascii_digit(),
                Token::Run => false,
            })
        };
        let head = self.head.len();
        let Some(tail) = &self.tail else { return value.len() == head && fits(&self.head, value) };
        if value.len() < head + tail.len()
            || !fits(&self.head, value)
            || !fits(tail, &value[value.len() - tail.len()..])
        {
            return false;
        }
        let mut rest = &value[head..value.len() - tail.len()];
        for segment in &self.middle {
            if rest.len() < segment.len() {
                return false;
            }
            let Some(at) = (0..=rest.len() - segment.len()).find(|&i| fits(segment, &rest[i..])) else {
                return false;
            };
            rest = &rest[at + segment.len()..];
        }
        true
    }
}

/// A value of up to 12 bytes as the 16 bytes of its Arrow string view.
#[inline]
fn short_view(value: &[u8]) -> u128 {
    let mut view = [0u8; 16];
    view[..4].copy_from_slice(&(value.len() as u32).to_le_bytes());
    view[4..4 + value.len()].copy_from_slice(value);
    u128::from_le_bytes(view)
}

impl ItemList {
    pub fn new(items: &[Item]) -> Self {
        let mut list = Self { short: Vec::new(), long: Vec::new(), ranges: Vec::new(), tests: Vec::new() };
        for item in items {
            match item {
                Item::Exact(v) if v.len() <= 12 => list.short.push(short_view(v.as_bytes())),
                Item::Exact(v) => list.long.push(v.as_bytes().to_vec()),
                Item::Prefix(v) => list.tests.push(Test::Prefix(v.as_bytes().to_vec())),
                Item::Suffix(v) => list.tests.push(Test::Suffix(v.as_bytes().to_vec())),
                Item::Contains(v) => list.tests.push(Test::Contains(v.as_bytes().to_vec())),
                Item::Range { lo, hi } => list.ranges.push(DigitRange::new(lo, hi)),
                Item::Wildcard(tokens) => list.tests.push(Test::Wildcard(Wildcard::new(tokens))),
                Item::Any => list.tests.push(Test::Any),
            }
        }
        list.short.sort_unstable();
        list.long.sort_unstable();
        list
    }

    #[inline]
    pub fn matches(&self, value: &[u8]) -> bool {
        let exact = if value.len() <= 12 {
            !self.short.is_empty() && self.short.binary_search(&short_view(value)).is_ok()
        } else {
            !self.long.is_empty() && self.long.binary_search_by(|v| v.as_slice().cmp(value)).is_ok()
        };
        exact
            || (!self.ranges.is_empty() && {
                let mut buf = [0; 64];
                let digits = Digits::of(value, &mut buf);
                self.ranges.iter().any(|r| r.contains(&digits))
            })
            || self.tests.iter().any(|t| t.matches(value))
    }
}

impl Test {
    fn matches(&self, value: &[u8]) -> bool {
        match self {
            Self::Prefix(v) => value.starts_with(v),
            Self::Suffix(v) => value.ends_with(v),
            Self::Contains(v) => memchr::memmem::find(value, v).is_some(),
            Self::Wildcard(wildcard) => wildcard.matches(value),
            Self::Any => true,
        }
    }
}

impl RowFilter {
    /// The filter of `plan`; `margin_us` widens its time bounds (0 for the
    /// exact filter and for UTC archives, [`ZONE_MARGIN_US`] for readers of
    /// wall-clock times in another zone).
    pub fn from_plan(plan: &Plan, margin_us: i64) -> Self {
        let lists = |lists: [&Option<Vec<Item>>; 2]| -> Vec<ItemList> {
            lists.into_iter().flatten().map(|items| ItemList::new(items)).collect()
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

    /// Whether a record matches. Null text is the empty string; a null
    /// `start` or `billsec` fails any bound on it.
    #[inline]
    pub fn keep(&self, src: Option<&[u8]>, dst: Option<&[u8]>, start: Option<i64>, billsec: Option<i64>) -> bool {
        let list_ok = |lists: &[ItemList], value: Option<&[u8]>| {
            let value = value.unwrap_or(b"");
            lists.iter().all(|list| list.matches(value))
        };
        within(start, self.start_min, self.start_max)
            && within(billsec, self.billsec_min, self.billsec_max)
            && list_ok(&self.src, src)
            && list_ok(&self.dst, dst)
    }
}

/// `min ≤ value ≤ max` for the bounds given; a null value fails any bound.
#[inline]
fn within(value: Option<i64>, min: Option<i64>, max: Option<i64>) -> bool {
    match (min, max) {
        (None, None) => true,
        _ => value.is_some_and(|v| min.is_none_or(|m| v >= m) && max.is_none_or(|m| v <= m)),
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
        let f = filter("caller=5300,61@,@99,6300-6399,1234567890123,_1@5&callee=@", 0);
        for (src, keep) in [
            ("5300", true),
            ("6100", true),
            ("1299", true),
            ("63-45", true),
            ("1234567890123", true),
            ("615", true),
            ("5301", false),
            ("530", false),
            ("1234567890124", false),
        ] {
            assert_eq!(f.keep(Some(src.as_bytes()), None, None, None), keep, "{src}");
        }
        assert!(!f.keep(None, None, None, None), "null is empty, which no caller item matches");
        assert!(filter("caller=0-9", 0).keep(None, None, None, None), "empty has digits 0");
        assert!(filter("callerNumber=3XX", 0).keep(Some(b"312"), None, None, None));
        let billsec = filter("minDur=10&maxDur=20", 0);
        assert!(billsec.keep(None, None, None, Some(10)) && !billsec.keep(None, None, None, Some(21)));
        assert!(!billsec.keep(None, None, None, None), "null billsec fails a bound");
    }

    #[test]
    fn segments_agree_with_the_token_walk() {
        use crate::query::pattern::Token::{Char, Digit, One, Run};
        let items = [
            vec![One, Char('1'), Run, Char('5')],
            vec![Run, Char('1'), One, Run, Char('2'), Run],
            vec![Char('5'), Run, Run, One],
            vec![Run],
            vec![Digit, Digit, One],
            vec![Run, Char('a'), Char('a'), Run, Char('a'), Run],
            vec![Char('é'), Run],
        ];
        let values = ["", "5", "615", "6115", "61x5", "1", "12", "x1y2z", "aaa", "aaaa", "a", "321", "32", "é1", "5xy"];
        for tokens in &items {
            let wildcard = Wildcard::new(tokens);
            for value in values {
                assert_eq!(wildcard.matches(value.as_bytes()), wildcard_matches(tokens, value), "{tokens:?} {value:?}");
            }
        }
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
