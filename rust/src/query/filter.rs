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
    /// `tests` as masked comparisons of an ASCII value's view, when every
    /// one has that form (a prefix, a suffix, `@`, a wildcard without
    /// middle segments); else empty.
    inline: Vec<Inline>,
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

/// The high bit of each of an Arrow view's 12 inline bytes (view bytes
/// 4..16; the view is a little-endian `u128`, its length in bytes 0..4).
const HIGH: u128 = 0x8080_8080_8080_8080_8080_8080_0000_0000;
/// `0x01` in each inline byte.
const ONES: u128 = HIGH >> 7;

/// For each length up to 12, the bits of a view that an inline value of
/// that length fills (its length and its bytes).
const KEEP: [u128; 13] = {
    let mut keep = [0; 13];
    let mut len = 0;
    while len < 13 {
        keep[len] = u128::MAX >> (96 - 8 * len);
        len += 1;
    }
    keep
};

/// An inline view (length up to 12) with the bytes past its value zeroed,
/// as the Arrow format asks but not every writer may leave them.
#[inline]
fn inline(view: u128) -> u128 {
    view & KEEP[(view as u32 as usize).min(12)]
}

/// The high bit of each inline byte of an ASCII view that is a digit: with
/// every byte below 0x80, adding 0x50 sets it from `0` up and adding 0x46
/// from past `9`, no carry crossing bytes.
#[inline]
fn digit_bytes(view: u128) -> u128 {
    view.wrapping_add(0x50 * ONES) & !view.wrapping_add(0x46 * ONES) & HIGH
}

/// An item's fixed head and tail as a test on an ASCII value inline in a
/// view (zero-padded), for each value length up to 12: the bytes they fix
/// (`view & mask == want`) and the bytes that must be digits (their high
/// bits in `digits`). A length no value of which matches: mask 0, want 1.
#[derive(Clone, Debug)]
struct Inline([Fixed; 13]);

#[derive(Clone, Copy, Debug)]
struct Fixed {
    mask: u128,
    want: u128,
    digits: u128,
}

impl Inline {
    /// `head` at the start and `tail` at the end of the value, `None`
    /// without a run between them (the head is the whole value). A
    /// character stands for its low byte: the literals are ASCII, or bytes.
    fn new(head: &[Token], tail: Option<&[Token]>) -> Self {
        let place = |fixed: &mut Fixed, segment: &[Token], from: usize| {
            for (i, t) in segment.iter().enumerate() {
                let at = 8 * (4 + from + i);
                match *t {
                    Token::Char(c) => {
                        fixed.mask |= 0xff << at;
                        fixed.want |= u128::from(c as u8) << at;
                    }
                    Token::Digit => fixed.digits |= 0x80 << at,
                    Token::One | Token::Run => {}
                }
            }
        };
        Self(std::array::from_fn(|len| {
            let tail_len = tail.map_or(0, <[Token]>::len);
            let fits = if tail.is_some() { len >= head.len() + tail_len } else { len == head.len() };
            let mut fixed = Fixed { mask: 0, want: u128::from(!fits), digits: 0 };
            if fits {
                place(&mut fixed, head, 0);
                place(&mut fixed, tail.unwrap_or(&[]), len - tail_len);
            }
            fixed
        }))
    }

    fn bytes(head: &[u8], tail: Option<&[u8]>) -> Self {
        let tokens = |bytes: &[u8]| -> Vec<Token> { bytes.iter().map(|&b| Token::Char(char::from(b))).collect() };
        Self::new(&tokens(head), tail.map(tokens).as_deref())
    }

    /// Whether `view`, an ASCII value of `len` bytes (up to 12), fits.
    #[inline]
    fn matches(&self, view: u128, len: usize) -> bool {
        let fixed = &self.0[len];
        view & fixed.mask == fixed.want && (fixed.digits == 0 || digit_bytes(view) & fixed.digits == fixed.digits)
    }
}

/// A wildcard item split at its runs (`@`): a head anchored at the start,
/// a tail anchored at the end and middle segments found leftmost in turn,
/// each a fixed-length run of byte tests. For ASCII values, which phone
/// numbers are, this tests a few bytes instead of walking token by token;
/// for values inline in an Arrow view (up to 12 bytes), head and tail are
/// one masked comparison of the view ([`Inline`]).
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
    inline: Box<Inline>,
}

impl Wildcard {
    fn new(tokens: &[Token]) -> Self {
        let ascii = tokens.iter().all(|t| !matches!(t, Token::Char(c) if !c.is_ascii()));
        let mut parts: Vec<Vec<Token>> = tokens.split(|t| *t == Token::Run).map(<[Token]>::to_vec).collect();
        let segments = ascii.then(|| {
            let head = parts.remove(0);
            let tail = parts.pop();
            let inline = Box::new(Inline::new(&head, tail.as_deref()));
            Segments { head, middle: parts.into_iter().filter(|p| !p.is_empty()).collect(), tail, inline }
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

    /// [`Self::matches`] for an inline value: `view` (zero-padded) holds
    /// `value`; `ascii` says whether it is ASCII.
    #[inline]
    fn matches_inline(&self, view: u128, ascii: bool, value: &[u8]) -> bool {
        match &self.segments {
            Some(s) if ascii => {
                let tail = s.tail.as_ref().map_or(0, Vec::len);
                s.inline.matches(view, value.len())
                    && (s.middle.is_empty() || s.middle_matches(&value[s.head.len()..value.len() - tail]))
            }
            _ => self.matches(value),
        }
    }
}

/// Whether `segment` fits the start of `at` (ASCII, one byte a character).
#[inline]
fn fits(segment: &[Token], at: &[u8]) -> bool {
    segment.iter().zip(at).all(|(t, &b)| match *t {
        Token::Char(c) => c as u32 == u32::from(b),
        Token::One => true,
        Token::Digit => b.is_ascii_digit(),
        Token::Run => false,
    })
}

impl Segments {
    /// `value` is ASCII: one byte is one character.
    #[inline]
    fn matches(&self, value: &[u8]) -> bool {
        let head = self.head.len();
        let Some(tail) = &self.tail else { return value.len() == head && fits(&self.head, value) };
        value.len() >= head + tail.len()
            && fits(&self.head, value)
            && fits(tail, &value[value.len() - tail.len()..])
            && self.middle_matches(&value[head..value.len() - tail.len()])
    }

    /// Whether the middle segments are found in turn in `rest`, what lies
    /// between head and tail.
    #[inline]
    fn middle_matches(&self, mut rest: &[u8]) -> bool {
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
        let mut list =
            Self { short: Vec::new(), long: Vec::new(), ranges: Vec::new(), tests: Vec::new(), inline: Vec::new() };
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
        let inline: Option<Vec<Inline>> = list
            .tests
            .iter()
            .map(|test| match test {
                Test::Prefix(v) => Some(Inline::bytes(v, Some(&[]))),
                Test::Suffix(v) => Some(Inline::bytes(&[], Some(v))),
                Test::Wildcard(w) => w.segments.as_ref().filter(|s| s.middle.is_empty()).map(|s| (*s.inline).clone()),
                Test::Any => Some(Inline::new(&[], Some(&[]))),
                Test::Contains(_) => None,
            })
            .collect();
        list.inline = inline.unwrap_or_default();
        list
    }

    /// Whether `value` matches any item, decided on its bytes (what the
    /// readers ask, and values past 12 bytes in a view).
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

    /// Whether the value of an Arrow string view matches any item: one of
    /// up to 12 bytes is tested on the view itself (whatever its padding),
    /// a longer one on the bytes `long` gives.
    #[inline]
    pub fn matches_view<'a>(&self, view: u128, long: impl FnOnce() -> &'a [u8]) -> bool {
        if view as u32 <= 12 { self.matches_inline(inline(view)) } else { self.matches(long()) }
    }

    /// The test on an inline view, zero-padded: exact items by binary
    /// search of the view, all-digit values against the ranges as a
    /// number, and for an ASCII value the [`Inline`] tests if the list has
    /// them.
    #[inline]
    fn matches_inline(&self, view: u128) -> bool {
        let len = (view as u32 as usize).min(12);
        (!self.short.is_empty() && self.short.binary_search(&view).is_ok())
            || (!self.ranges.is_empty() && self.ranges_match_inline(view, len))
            || if !self.inline.is_empty() && view & HIGH == 0 {
                self.inline.iter().any(|t| t.matches(view, len))
            } else {
                !self.tests.is_empty() && self.tests_inline(view, len)
            }
    }

    /// The tests on an inline value the [`Inline`] tests do not decide.
    #[inline(never)]
    fn tests_inline(&self, view: u128, len: usize) -> bool {
        let bytes = view.to_le_bytes();
        let value = &bytes[4..4 + len];
        let ascii = view & HIGH == 0;
        self.tests.iter().any(|t| match t {
            Test::Wildcard(wildcard) => wildcard.matches_inline(view, ascii, value),
            other => other.matches(value),
        })
    }

    #[inline]
    fn ranges_match_inline(&self, view: u128, len: usize) -> bool {
        let high = HIGH & KEEP[len];
        if view & HIGH == 0 && digit_bytes(view) & high == high {
            let bytes = view.to_le_bytes();
            let n = bytes[4..4 + len].iter().fold(0u64, |n, &b| n * 10 + u64::from(b - b'0'));
            return self.ranges.iter().any(|r| r.contains_number(u128::from(n)));
        }
        self.ranges_match_other(view, len)
    }

    /// [`Self::ranges_match_inline`] for a value that is not all digits.
    #[inline(never)]
    fn ranges_match_other(&self, view: u128, len: usize) -> bool {
        let bytes = view.to_le_bytes();
        let mut buf = [0; 64];
        let digits = Digits::of(&bytes[4..4 + len], &mut buf);
        self.ranges.iter().any(|r| r.contains(&digits))
    }
}

impl Test {
    #[inline]
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
pub(crate) mod tests {
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

    /// Some values of up to 12 bytes and past it, ASCII or not, for the
    /// agreement tests (also `mask`'s).
    pub(crate) fn sample_values() -> Vec<String> {
        let mut values: Vec<String> = Vec::new();
        // Every string of up to 4 characters over a small alphabet.
        let alphabet = ["1", "5", "3", "0", "x", "é", "-"];
        let mut level = vec![String::new()];
        for _ in 0..4 {
            values.extend(level.iter().cloned());
            level = level.iter().flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}"))).collect();
        }
        values.extend(level);
        for base in ["615", "6125", "07000000000", "6100", "6399", "63-45", "x1y5", "1é5", "3999", "aXbYbZc", "a"] {
            for fill in ["", "1", "0000000", "12345678", "123456789", "éé", "\u{80}"] {
                values.push(format!("{base}{fill}"));
                values.push(format!("{fill}{base}"));
                values.push(format!("{}{fill}{}", &base[..1], &base[1..]));
            }
        }
        values.extend(
            ["123456789012", "1234567890123", "1234567890125", "617890123455", "6178901234565"].map(String::from),
        );
        values.push("9".repeat(40));
        values.extend(["\u{10348}1\u{10348}5", "_1@5", "\u{7f}1\u{7f}5"].map(String::from));
        values
    }

    /// Item lists for the agreement tests: each item kind alone, then mixed.
    pub(crate) fn sample_lists() -> Vec<Vec<Item>> {
        use crate::query::pattern::Token::{Char, Digit, One, Run};
        let range = |lo: &str, hi: &str| Item::Range { lo: lo.into(), hi: hi.into() };
        let wildcard = |t: &[Token]| Item::Wildcard(t.to_vec());
        let mut lists: Vec<Vec<Item>> = vec![
            vec![wildcard(&[One, Char('1'), Run, Char('5')])],
            vec![wildcard(&[One, Run])],
            vec![wildcard(&[Run, One])],
            vec![wildcard(&[Char('3'), Digit, Digit, Digit])],
            vec![wildcard(&[Char('3'), Digit, Run])],
            vec![wildcard(&[Run, Digit, Char('5')])],
            vec![wildcard(&[Digit, Digit, One])],
            vec![wildcard(&[Run, Char('5'), Run, Char('5')])],
            vec![wildcard(&[Run, Char('1'), One, Run, Char('2'), Run])],
            vec![wildcard(&[Char('a'), Run, Char('b'), Run, Char('c')])],
            vec![wildcard(&[Char('é'), Run])],
            vec![wildcard(&[One, Char('é'), One])],
            vec![wildcard(&[One; 12])],
            vec![wildcard(&[One; 13])],
            vec![wildcard(&[[One; 7].as_slice(), &[Run], &[Char('5'); 6]].concat())],
            vec![wildcard(&[Char('6'), One, Run, One, Char('5')])],
            vec![range("6100", "6199"), range("6300", "6349")],
            vec![range("0", "0")],
            vec![range("1", "99999999999999999999999999")],
            vec![range("123456789012", "123456789012")],
            vec![Item::Exact("615".into()), Item::Exact("".into()), Item::Exact("1234567890123".into())],
            vec![Item::Exact("123456789012".into()), Item::Exact("1é5".into())],
            vec![Item::Prefix("61".into()), Item::Suffix("5".into())],
            vec![Item::Prefix("é".into()), Item::Suffix("123456789012x".into())],
            vec![Item::Contains("1".into())],
            vec![Item::Any],
            vec![],
        ];
        let all: Vec<Item> = lists.iter().flatten().cloned().collect();
        lists.push(all);
        lists.push(vec![range("6100", "6199"), wildcard(&[One, Char('1'), Run, Char('5')]), Item::Exact("3".into())]);
        lists.push(vec![Item::Prefix("07".into()), wildcard(&[Run, Char('5'), Run, Char('5')])]);
        lists
    }

    /// Each item decided on its own, the plainest way.
    fn naive(items: &[Item], value: &str) -> bool {
        items.iter().any(|item| match item {
            Item::Exact(v) => value == v,
            Item::Prefix(v) => value.starts_with(v.as_str()),
            Item::Suffix(v) => value.ends_with(v.as_str()),
            Item::Contains(v) => value.contains(v.as_str()),
            Item::Any => true,
            Item::Wildcard(tokens) => wildcard_matches(tokens, value),
            Item::Range { lo, hi } => DigitRange::new(lo, hi).contains_value(value.as_bytes()),
        })
    }

    #[test]
    fn views_agree_with_bytes() {
        let values = sample_values();
        for items in sample_lists() {
            let list = ItemList::new(&items);
            for value in &values {
                let bytes = value.as_bytes();
                let want = naive(&items, value);
                assert_eq!(list.matches(bytes), want, "bytes: {items:?} {value:?}");
                if bytes.len() <= 12 {
                    let view = short_view(bytes);
                    // Whatever a writer left in the padding.
                    for padding in [0, u128::MAX, HIGH, ONES * 0x30] {
                        let view = view | (padding & !KEEP[bytes.len()]);
                        assert_eq!(list.matches_view(view, || unreachable!()), want, "view: {items:?} {value:?}");
                    }
                } else {
                    let view = bytes.len() as u128 | 0xdead_beef << 32;
                    assert_eq!(list.matches_view(view, || bytes), want, "long: {items:?} {value:?}");
                }
            }
        }
    }

    #[test]
    fn inline_digits_and_lengths() {
        // The digit test at every inline position, and its edges.
        for len in 1..=12 {
            for at in 0..len {
                let mut tokens = vec![Token::One; len];
                tokens[at] = Token::Digit;
                let list = ItemList::new(&[Item::Wildcard(tokens)]);
                for c in ['/', '0', '5', '9', ':', 'a', '\u{7f}'] {
                    let mut value = vec![b'x'; len];
                    value[at] = c as u8;
                    let view = inline(short_view(&value));
                    assert_eq!(list.matches_view(view, || unreachable!()), c.is_ascii_digit(), "{len} {at} {c:?}");
                }
            }
        }
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
