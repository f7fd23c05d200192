//! Typed values from field text: integers and PBX wall-clock timestamps.

/// Parses a decimal integer (optional leading `-`), nothing else.
#[inline]
pub fn parse_int(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut v: i64 = 0;
    for &b in digits {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(i64::from(d))?;
    }
    Some(if neg { -v } else { v })
}

/// What a timestamp field holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timestamp {
    /// Microseconds since 1970-01-01 00:00:00 of the wall clock.
    At(i64),
    /// `0000-00-00 00:00:00`: Asterisk's "never happened".
    Unset,
}

/// Parses `YYYY-MM-DD HH:MM:SS` (calendar-checked) as wall-clock time.
#[inline]
pub fn parse_timestamp(s: &[u8]) -> Option<Timestamp> {
    if s.len() != 19 || s[4] != b'-' || s[7] != b'-' || s[10] != b' ' || s[13] != b':' || s[16] != b':' {
        return None;
    }
    if s == b"0000-00-00 00:00:00" {
        return Some(Timestamp::Unset);
    }
    let num = |a: usize, b: usize| -> Option<i64> {
        s[a..b].iter().try_fold(0i64, |acc, &c| {
            let d = c.wrapping_sub(b'0');
            (d <= 9).then(|| acc * 10 + i64::from(d))
        })
    };
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    Some(Timestamp::At(secs * 1_000_000))
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ints() {
        assert_eq!(parse_int(b"62"), Some(62));
        assert_eq!(parse_int(b"-5"), Some(-5));
        assert_eq!(parse_int(b"9223372036854775807"), Some(i64::MAX));
        for bad in [&b""[..], b"-", b"1.0", b" 1", b"1a", b"99999999999999999999"] {
            assert_eq!(parse_int(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn timestamps() {
        let at = |s: &str| match parse_timestamp(s.as_bytes()) {
            Some(Timestamp::At(us)) => Some(us / 1_000_000),
            _ => None,
        };
        assert_eq!(at("1970-01-01 00:00:00"), Some(0));
        // 2013-12-03 11:46:40 UTC, the first record of the fw 1.0.2.5 sample.
        assert_eq!(at("2013-12-03 11:46:40"), Some(1_386_071_200));
        assert_eq!(at("2024-02-29 23:59:59"), Some(1_709_251_199));
        assert_eq!(at("1969-12-31 23:59:59"), Some(-1));
        for bad in [
            "2023-02-29 00:00:00",
            "2013-13-03 11:46:40",
            "2013-12-03 24:00:00",
            "2013-12-03T11:46:40",
            "2013-12-03 11:46",
            "2013-1a-03 11:46:40",
        ] {
            assert_eq!(parse_timestamp(bad.as_bytes()), None, "{bad}");
        }
        assert_eq!(parse_timestamp(b"0000-00-00 00:00:00"), Some(Timestamp::Unset));
    }
}
