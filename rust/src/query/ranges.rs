//! Digit ranges: `LO-HI` items over a value's digits, as unbounded
//! integers. (Polars can only do this with a regex strip per item, about a
//! second per 5 M values here.)

/// Integers of up to this many digits compare as `u128`.
const NUMERIC_DIGITS: usize = 38;

/// A range as digit strings without leading zeros (`""` is zero), and as
/// numbers where they fit.
#[derive(Debug)]
pub struct DigitRange {
    lo: Vec<u8>,
    hi: Vec<u8>,
    lo_n: Option<u128>,
    hi_n: Option<u128>,
}

/// The digits of a value, leading zeros dropped: as bytes, and as a number
/// when there are at most [`NUMERIC_DIGITS`].
pub struct Digits<'a> {
    bytes: std::borrow::Cow<'a, [u8]>,
    number: Option<u128>,
}

impl<'a> Digits<'a> {
    /// The digits of `value`, using `buf` for the common short case.
    #[inline]
    pub fn of(value: &[u8], buf: &'a mut [u8; 64]) -> Self {
        let mut n = 0;
        for (i, &b) in value.iter().enumerate() {
            if b.is_ascii_digit() && (n > 0 || b != b'0') {
                if n == buf.len() {
                    let rest = value[i..].iter().copied().filter(u8::is_ascii_digit);
                    let all: Vec<u8> = buf.iter().copied().chain(rest).collect();
                    return Self { bytes: all.into(), number: None };
                }
                buf[n] = b;
                n += 1;
            }
        }
        let bytes = &buf[..n];
        Self { number: number(bytes), bytes: bytes.into() }
    }
}

fn number(digits: &[u8]) -> Option<u128> {
    (digits.len() <= NUMERIC_DIGITS).then(|| digits.iter().fold(0u128, |n, &d| n * 10 + u128::from(d - b'0')))
}

impl DigitRange {
    pub fn new(lo: &str, hi: &str) -> Self {
        let norm = |s: &str| -> Vec<u8> { s.bytes().filter(u8::is_ascii_digit).skip_while(|&b| b == b'0').collect() };
        let (lo, hi) = (norm(lo), norm(hi));
        Self { lo_n: number(&lo), hi_n: number(&hi), lo, hi }
    }

    /// `lo <= digits <= hi`: as numbers where all fit, else by length,
    /// then bytes.
    #[inline]
    pub fn contains(&self, digits: &Digits<'_>) -> bool {
        if let Some(v) = digits.number {
            return self.contains_number(v);
        }
        let cmp = |a: &[u8], b: &[u8]| a.len().cmp(&b.len()).then_with(|| a.cmp(b));
        cmp(&digits.bytes, &self.lo).is_ge() && cmp(&digits.bytes, &self.hi).is_le()
    }

    /// `lo <= v <= hi` for digits that are the number `v`.
    #[inline]
    pub fn contains_number(&self, v: u128) -> bool {
        // A bound too long for a number is above every number.
        self.lo_n.is_some_and(|lo| v >= lo) && self.hi_n.is_none_or(|hi| v <= hi)
    }

    /// Whether the digits of `value` fall in the range; a value without
    /// digits is zero.
    pub fn contains_value(&self, value: &[u8]) -> bool {
        self.contains(&Digits::of(value, &mut [0; 64]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_unbounded_and_strip_non_digits() {
        let ranges = [
            DigitRange::new("6300", "6399"),
            DigitRange::new("0", "0"),
            DigitRange::new("1234567890123456789012344", "1234567890123456789012346"),
        ];
        let any = |v: &str| ranges.iter().any(|r| r.contains_value(v.as_bytes()));
        let values = ["6345", "x-6300", "", "0", "1234567890123456789012345", "007", "abc"];
        let got: Vec<bool> = values.iter().map(|v| any(v)).collect();
        assert_eq!(got, [true, true, true, true, true, false, true]);
        let long = "9".repeat(40);
        assert!(DigitRange::new(&long, &long).contains_value(format!("+{long}").as_bytes()));
        assert!(!DigitRange::new("0", &"9".repeat(39)).contains_value(long.as_bytes()));
        let past_numbers = "9".repeat(70);
        assert!(DigitRange::new("1", &past_numbers).contains_value(long.as_bytes()));
        assert!(!DigitRange::new(&long, &past_numbers).contains_value(b"12"));
        assert!(DigitRange::new(&long, &past_numbers).contains_value(past_numbers.as_bytes()));
        assert!(DigitRange::new("5", "0010").contains_value(b"007"));
        assert!(!DigitRange::new("9", "1").contains_value(b"6345")); // LO > HI
    }
}
