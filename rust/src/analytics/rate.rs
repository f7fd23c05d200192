//! Longest-prefix match of called (or calling) numbers against a rate
//! table, with optional time-of-day bands.
//!
//! The distinct prefixes are sorted, and each knows its longest proper
//! prefix in the table (its parent). For a number, the greatest prefix
//! `p <= number` is found by binary search; every table prefix of the
//! number is `p` or one of `p`'s ancestors (anything sorting between a
//! prefix of the number and the number starts with that prefix), so the
//! walk up from `p` meets them longest first. The search compares each
//! prefix's first eight bytes as one big-endian integer (a table of
//! 100 000 prefixes is then 800 KB of keys) and the rest only on a tie.

use rayon::prelude::*;

/// Minutes in a day: band bounds lie in `0..=MINUTES_PER_DAY`.
pub const MINUTES_PER_DAY: u16 = 1440;
const NONE: u32 = u32::MAX;
/// Numbers per parallel task.
const TASK_ROWS: usize = 16 * 1024;

/// A time-of-day band `[from, to)` in minutes; `from > to` wraps past
/// midnight; `from == to` is the whole day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Band {
    pub from: u16,
    pub to: u16,
}

impl Band {
    fn contains(self, minute: u16) -> bool {
        match self.from.cmp(&self.to) {
            std::cmp::Ordering::Equal => true,
            std::cmp::Ordering::Less => self.from <= minute && minute < self.to,
            std::cmp::Ordering::Greater => minute >= self.from || minute < self.to,
        }
    }

    /// The band as at most two plain `[a, b)` ranges within the day.
    fn ranges(band: Option<Band>) -> Vec<(u16, u16)> {
        match band {
            None => vec![(0, MINUTES_PER_DAY)],
            Some(b) if b.from == b.to => vec![(0, MINUTES_PER_DAY)],
            Some(b) if b.from < b.to => vec![(b.from, b.to)],
            Some(b) => vec![(b.from, MINUTES_PER_DAY), (0, b.to)],
        }
    }

    fn overlaps(a: Option<Band>, b: Option<Band>) -> bool {
        let (a, b) = (Self::ranges(a), Self::ranges(b));
        a.iter().any(|&(a0, a1)| b.iter().any(|&(b0, b1)| a0 < b1 && b0 < a1))
    }
}

/// A rate table's prefixes, ready for matching.
pub struct RateTable {
    /// Distinct prefixes, sorted: bytes in `text[offsets[k]..offsets[k + 1]]`.
    text: Vec<u8>,
    offsets: Vec<usize>,
    /// The first eight bytes of each, big-endian, zero-padded.
    keys: Vec<u64>,
    /// Index of the longest proper prefix in the table, or `NONE`.
    parent: Vec<u32>,
    /// The table rows of prefix `k`: `rows[row_offsets[k]..row_offsets[k + 1]]`.
    rows: Vec<u32>,
    row_offsets: Vec<usize>,
    /// Each table row's band (`None`: all day).
    bands: Vec<Option<Band>>,
    /// Where the binary search starts: see [`Buckets`].
    buckets: Buckets,
}

/// A first step before the binary search: keys by the digits that follow
/// the bytes every key shares (`00` of international numbers), up to
/// [`BUCKET_DIGITS`] of them, a byte ranked as below `0`, a digit, or
/// above `9` (and those after such a byte as 0). The bucket keeps byte
/// order (never reverses it), so a key in a lower bucket is
/// below every number of a higher one: a number's search runs within its
/// bucket only (100 000 prefixes: about one key a bucket instead of 17
/// steps through 800 KB).
#[derive(Default)]
struct Buckets {
    /// Key bytes (from the top) all keys share.
    shared: u32,
    /// Digits a bucket is told by (0: no buckets).
    digits: u32,
    /// Keys in buckets below `b`: `starts[b]`.
    starts: Vec<u32>,
}

const BUCKET_DIGITS: u32 = 5;

impl Buckets {
    fn new(keys: &[u64]) -> Self {
        let (Some(&first), Some(&last)) = (keys.first(), keys.last()) else { return Self::default() };
        let shared = (first ^ last).leading_zeros() / 8;
        let digits = (8 - shared).min(BUCKET_DIGITS);
        let mut buckets = Self { shared, digits, starts: Vec::new() };
        if digits == 0 {
            return buckets;
        }
        let count = 12usize.pow(digits);
        let mut starts = vec![0u32; count + 1];
        for &k in keys {
            starts[buckets.of(k) + 1] += 1;
        }
        for b in 0..count {
            starts[b + 1] += starts[b];
        }
        buckets.starts = starts;
        buckets
    }

    fn of(&self, key: u64) -> usize {
        let bytes = key.to_be_bytes();
        let (mut bucket, mut other) = (0, false);
        for &b in &bytes[self.shared as usize..(self.shared + self.digits) as usize] {
            // Past a byte that is no digit every rank is 0: its rank stands
            // for many bytes, and the bytes after it must not reorder them.
            let rank = match b {
                _ if other => 0,
                b'0'..=b'9' => 1 + usize::from(b - b'0'),
                ..b'0' => 0,
                _ => 11,
            };
            other |= !b.is_ascii_digit();
            bucket = bucket * 12 + rank;
        }
        bucket
    }

    /// The range of `keys` (those the buckets were built of) that may hold
    /// the last key at or below `key`'s place: the keys before it are all
    /// below `key`, those after it all above.
    fn range(&self, keys: &[u64], key: u64) -> (usize, usize) {
        if self.digits == 0 {
            return (0, keys.len());
        }
        let top = |k: u64| k.checked_shr(64 - 8 * self.shared).unwrap_or(0);
        if top(key) != top(keys[0]) {
            // Off the shared bytes: below or above every key.
            let at = if key < keys[0] { 0 } else { keys.len() };
            return (at, at);
        }
        let b = self.of(key);
        (self.starts[b] as usize, self.starts[b + 1] as usize)
    }
}

fn key(bytes: &[u8]) -> u64 {
    let mut padded = [0u8; 8];
    let n = bytes.len().min(8);
    padded[..n].copy_from_slice(&bytes[..n]);
    u64::from_be_bytes(padded)
}

impl RateTable {
    /// The table of `prefixes[i]` in force during `bands[i]`. The same
    /// prefix twice is an error unless its bands do not overlap; so is a
    /// band bound past the day. Errors name the rows 1-based.
    pub fn new(prefixes: &[&[u8]], bands: &[Option<Band>]) -> Result<Self, String> {
        assert_eq!(prefixes.len(), bands.len(), "prefixes and bands differ in length");
        for (i, band) in bands.iter().enumerate() {
            if let Some(b) = band
                && (b.from >= MINUTES_PER_DAY || b.to > MINUTES_PER_DAY)
            {
                return Err(format!("row {}: a time band lies within 00:00 and 24:00", i + 1));
            }
        }
        let mut order: Vec<u32> = (0..prefixes.len() as u32).collect();
        order.par_sort_by(|&a, &b| prefixes[a as usize].cmp(prefixes[b as usize]).then(a.cmp(&b)));
        let mut table = RateTable {
            text: Vec::new(),
            offsets: vec![0],
            keys: Vec::new(),
            parent: Vec::new(),
            rows: Vec::with_capacity(order.len()),
            row_offsets: vec![0],
            bands: bands.to_vec(),
            buckets: Buckets::default(),
        };
        // Ancestors of the prefix being added, shortest first (the sorted
        // order is a depth-first walk of the prefixes' trie).
        let mut stack: Vec<u32> = Vec::new();
        for &row in &order {
            let prefix = prefixes[row as usize];
            let last = table.keys.len().checked_sub(1);
            if let Some(k) = last.filter(|&k| table.prefix(k) == prefix) {
                for &other in &table.rows[table.row_offsets[k]..] {
                    if Band::overlaps(bands[other as usize], bands[row as usize]) {
                        return Err(format!(
                            "prefix {:?} is in rows {} and {} with overlapping times (give each a time band of its own, or one row)",
                            String::from_utf8_lossy(prefix),
                            other + 1,
                            row + 1
                        ));
                    }
                }
                table.rows.push(row);
                *table.row_offsets.last_mut().expect("one offset per prefix") += 1;
                continue;
            }
            while let Some(&top) = stack.last() {
                if prefix.starts_with(table.prefix(top as usize)) {
                    break;
                }
                stack.pop();
            }
            let k = table.keys.len() as u32;
            table.parent.push(stack.last().copied().unwrap_or(NONE));
            stack.push(k);
            table.text.extend_from_slice(prefix);
            table.offsets.push(table.text.len());
            table.keys.push(key(prefix));
            table.rows.push(row);
            let rows = table.rows.len();
            table.row_offsets.push(rows);
        }
        table.buckets = Buckets::new(&table.keys);
        Ok(table)
    }

    fn prefix(&self, k: usize) -> &[u8] {
        &self.text[self.offsets[k]..self.offsets[k + 1]]
    }

    /// The table row for `number` at `minute` of its day: that of the
    /// longest prefix with a row in force then (a `None` minute: only
    /// all-day rows are).
    pub fn lookup(&self, number: &[u8], minute: Option<u16>) -> Option<u32> {
        // Count the prefixes sorting at or before the number. A smaller key
        // is a smaller prefix (zero padding sorts a shorter prefix first, as
        // byte order does), a greater one greater; equal keys need the bytes.
        let number_key = key(number);
        let (mut lo, mut hi) = self.buckets.range(&self.keys, number_key);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let k = self.keys[mid];
            if k < number_key || (k == number_key && self.prefix(mid) <= number) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let after = lo;
        let mut k = if after == 0 { NONE } else { after as u32 - 1 };
        while k != NONE {
            if number.starts_with(self.prefix(k as usize)) {
                let rows = &self.rows[self.row_offsets[k as usize]..self.row_offsets[k as usize + 1]];
                let in_force = rows.iter().find(|&&row| match (self.bands[row as usize], minute) {
                    (None, _) => true,
                    (Some(band), Some(m)) => band.contains(m),
                    (Some(band), None) => band.from == band.to,
                });
                if let Some(&row) = in_force {
                    return Some(row);
                }
            }
            k = self.parent[k as usize];
        }
        None
    }

    /// The row of each number (`None`: no prefix matched, or the number is
    /// null), numbers and minutes given by position; in parallel.
    pub fn lookup_all<'a>(
        &'a self,
        len: usize,
        number: &(dyn Fn(usize) -> Option<&'a [u8]> + Sync),
        minute: &(dyn Fn(usize) -> Option<u16> + Sync),
    ) -> Vec<Option<u32>> {
        let mut out = vec![None; len];
        out.par_chunks_mut(TASK_ROWS).enumerate().for_each(|(task, slots)| {
            let from = task * TASK_ROWS;
            for (j, slot) in slots.iter_mut().enumerate() {
                *slot = number(from + j).and_then(|n| self.lookup(n, minute(from + j)));
            }
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small seeded generator: `next(m)` in `0..m`.
    fn lcg(mut seed: u64) -> impl FnMut(u64) -> u64 {
        move |m| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % m
        }
    }

    fn brute(prefixes: &[&[u8]], bands: &[Option<Band>], number: &[u8], minute: Option<u16>) -> Option<u32> {
        (0..prefixes.len())
            .filter(|&i| number.starts_with(prefixes[i]))
            .filter(|&i| match (bands[i], minute) {
                (None, _) => true,
                (Some(b), Some(m)) => b.contains(m),
                (Some(b), None) => b.from == b.to,
            })
            .max_by_key(|&i| (prefixes[i].len(), std::cmp::Reverse(i)))
            .map(|i| i as u32)
    }

    #[test]
    fn longest_prefix_wins() {
        let prefixes: Vec<&[u8]> = vec![b"4", b"49", b"4930", b"", b"49301234567", b"1"];
        let table = RateTable::new(&prefixes, &[None; 6]).unwrap();
        assert_eq!(table.lookup(b"4930123", None), Some(2));
        assert_eq!(table.lookup(b"4930123456789", None), Some(4));
        assert_eq!(table.lookup(b"4940", None), Some(1));
        assert_eq!(table.lookup(b"44", None), Some(0));
        assert_eq!(table.lookup(b"7", None), Some(3));
        assert_eq!(table.lookup(b"", None), Some(3));
    }

    #[test]
    fn bands_pick_the_row_in_force_and_fall_back_to_shorter_prefixes() {
        let prefixes: Vec<&[u8]> = vec![b"49", b"49", b"4"];
        let day = Some(Band { from: 8 * 60, to: 18 * 60 });
        let night = Some(Band { from: 20 * 60, to: 6 * 60 });
        let table = RateTable::new(&prefixes, &[day, night, None]).unwrap();
        assert_eq!(table.lookup(b"491", Some(9 * 60)), Some(0));
        assert_eq!(table.lookup(b"491", Some(23 * 60)), Some(1));
        assert_eq!(table.lookup(b"491", Some(2 * 60)), Some(1));
        assert_eq!(table.lookup(b"491", Some(19 * 60)), Some(2));
        assert_eq!(table.lookup(b"491", None), Some(2));
    }

    #[test]
    fn duplicates_with_overlapping_times_are_an_error() {
        let err = RateTable::new(&[b"49", b"1", b"49"], &[None, None, None]).err().unwrap();
        assert!(err.contains("\"49\" is in rows 1 and 3"), "{err}");
        let a = Some(Band { from: 22 * 60, to: 7 * 60 });
        let b = Some(Band { from: 6 * 60, to: 8 * 60 });
        assert!(RateTable::new(&[b"49", b"49"], &[a, b]).is_err());
        let b = Some(Band { from: 7 * 60, to: 22 * 60 });
        assert!(RateTable::new(&[b"49", b"49"], &[a, b]).is_ok());
        assert!(RateTable::new(&[b"49"], &[Some(Band { from: 1440, to: 0 })]).is_err());
    }

    #[test]
    fn agrees_with_a_brute_force_loop() {
        let mut next = lcg(11);
        let alphabet = b"0129\x00+";
        let word = |max: u64, next: &mut dyn FnMut(u64) -> u64| -> Vec<u8> {
            (0..next(max)).map(|_| alphabet[next(alphabet.len() as u64) as usize]).collect()
        };
        let owned: Vec<Vec<u8>> = (0..300).map(|_| word(11, &mut next)).collect();
        matches_brute_force(owned, 3000, |_, _| word(14, &mut next));
    }

    /// `count` numbers (made from the sorted prefixes and their index)
    /// looked up in a table of `owned`, each as the brute force finds it.
    fn matches_brute_force(
        mut owned: Vec<Vec<u8>>,
        count: usize,
        mut number: impl FnMut(&[Vec<u8>], usize) -> Vec<u8>,
    ) {
        owned.sort();
        owned.dedup();
        let prefixes: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
        let bands = vec![None; prefixes.len()];
        let table = RateTable::new(&prefixes, &bands).unwrap();
        for i in 0..count {
            let number = number(&owned, i);
            assert_eq!(table.lookup(&number, None), brute(&prefixes, &bands, &number, None), "{number:?}");
        }
    }

    #[test]
    fn buckets_agree_with_brute_force_on_shared_heads() {
        // International prefixes (`00` then digits, some past 8 bytes and
        // some sharing all 8) and numbers around them, some off the head.
        let mut next = lcg(5);
        let mut owned: Vec<Vec<u8>> = (0..2000)
            .map(|_| {
                let digits = 1 + next(12);
                let mut p = b"00".to_vec();
                p.extend((0..digits).map(|_| b"0123456789#"[next(11) as usize]));
                p
            })
            .collect();
        owned.extend([b"0012345678".to_vec(), b"00123456789".to_vec(), b"001234567890".to_vec()]);
        matches_brute_force(owned, 5000, |owned, i| {
            let mut number = owned[next(owned.len() as u64) as usize].clone();
            number.extend((0..next(6)).map(|_| b"0123456789"[next(10) as usize]));
            if i % 7 == 0 {
                number[next(2) as usize] = [b'1', b'+', b'/'][next(3) as usize];
            }
            if i % 11 == 0 {
                number.truncate(next(4) as usize);
            }
            number
        });
    }
}
