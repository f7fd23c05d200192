//! Typed values from field text: integers and PBX wall-clock timestamps.
//! A leaf: the readers type fields with it and the query compiler parses
//! its time bounds with it, so neither depends on the other for this.

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

/// The wall-clock times a zone skips when its clocks jump forward, as
/// sorted `[start, end)` microsecond ranges of wall time: a PBX cannot have
/// written one, so a record holding one is rejected rather than moved.
#[derive(Clone, Debug, Default)]
pub struct Gaps {
    pub zone: String,
    pub ranges: Vec<(i64, i64)>,
}

impl Gaps {
    /// Whether wall time `us` falls in a gap.
    pub fn skips(&self, us: i64) -> bool {
        let i = self.ranges.partition_point(|&(_, end)| end <= us);
        self.ranges.get(i).is_some_and(|&(start, _)| start <= us)
    }

    /// The reason a record with time `text` in column `name` is rejected.
    pub fn reason(&self, name: &str, text: &[u8]) -> String {
        let shown = String::from_utf8_lossy(text);
        format!("{name} {shown:?} does not exist in {}: the clocks skip it (daylight saving)", self.zone)
    }
}

/// Parses `YYYY-MM-DD HH:MM:SS` (calendar-checked) as wall-clock time.
#[inline]
pub fn parse_timestamp(s: &[u8]) -> Option<Timestamp> {
    if s.len() > 20 && s[19] == b'.' {
        // Fractional seconds (PortSIP instants, rendered by cdrq).
        let frac = &s[20..];
        if frac.len() > 9 || !frac.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let micros = (0..6).fold(0i64, |acc, i| acc * 10 + frac.get(i).map_or(0, |d| i64::from(d - b'0')));
        return match parse_timestamp(&s[..19])? {
            Timestamp::At(us) => Some(Timestamp::At(us + micros)),
            Timestamp::Unset => None,
        };
    }
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

#[cfg(test)]
#[test]
fn gaps_are_half_open() {
    let gaps = Gaps { zone: "Z".into(), ranges: vec![(10, 20), (30, 40)] };
    let skipped: Vec<i64> = (0..45).filter(|&us| gaps.skips(us)).collect();
    assert_eq!(skipped, (10..20).chain(30..40).collect::<Vec<_>>());
}

/// Parses an RFC 3339 instant (`2024-08-20T06:00:59.457188Z`, or with an
/// offset `+02:00`) to microseconds since the epoch, UTC.
pub fn parse_rfc3339(s: &[u8]) -> Option<i64> {
    if s.len() < 20 || (s[10] != b'T' && s[10] != b't' && s[10] != b' ') {
        return None;
    }
    let mut wall = [0u8; 19];
    wall.copy_from_slice(&s[..19]);
    wall[10] = b' ';
    let Timestamp::At(mut us) = parse_timestamp(&wall)? else { return None };
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix(b".") {
        let digits = frac.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        let mut micros = 0i64;
        for i in 0..6 {
            micros = micros * 10 + frac.get(i).filter(|_| i < digits).map_or(0, |d| i64::from(d - b'0'));
        }
        us += micros;
        rest = &frac[digits..];
    }
    let offset_minutes = match rest {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let h = parse_int(&[*h1, *h2])?;
            let m = parse_int(&[*m1, *m2])?;
            if h > 23 || m > 59 {
                return None;
            }
            if *sign == b'+' { h * 60 + m } else { -(h * 60 + m) }
        }
        _ => return None,
    };
    Some(us - offset_minutes * 60_000_000)
}

/// Formats microseconds since the epoch as `YYYY-MM-DD HH:MM:SS.ffffff`.
pub fn format_timestamp(us: i64) -> String {
    let (secs, micros) = (us.div_euclid(1_000_000), us.rem_euclid(1_000_000));
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{micros:06}", rem / 3600, rem / 60 % 60, rem % 60)
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
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
    fn rfc3339() {
        let utc = |s: &str| parse_rfc3339(s.as_bytes());
        let at = |s: &str| match parse_timestamp(s.as_bytes()) {
            Some(Timestamp::At(us)) => Some(us),
            _ => None,
        };
        assert_eq!(utc("2024-08-20T06:00:59.457188Z"), at("2024-08-20 06:00:59.457188"));
        assert_eq!(utc("2024-08-20T06:00:59Z"), at("2024-08-20 06:00:59"));
        assert_eq!(utc("2024-08-20T08:00:59.5+02:00"), at("2024-08-20 06:00:59.500000"));
        assert_eq!(utc("2024-08-20T06:00:59.1234567891Z"), None);
        assert_eq!(utc("2024-08-20 06:00:59"), None);
        for us in [0, 1_724_133_659_457_188, -1, 951_782_400_000_000] {
            assert_eq!(at(&format_timestamp(us)), Some(us));
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
