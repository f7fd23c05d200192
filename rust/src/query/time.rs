//! Time forms of `startTime`/`endTime` (docs/query-language.md §3) → UTC microseconds.

use crate::values::{Timestamp, parse_timestamp};

/// Characters a time value may hold.
pub fn allowed(c: char) -> bool {
    c.is_ascii_digit() || "-:T.Z+now".contains(c)
}

/// Parses a time: `YYYY-MM-DD[THH:MM[:SS[.f]]][zone]`, `HH:MM[:SS[.f]][zone]`
/// (on 2000-01-01), `now`, or ten digits of Unix seconds. Without a zone the
/// time is UTC; the fraction has 1 to 6 digits.
pub fn parse(s: &str, now_us: i64) -> Option<i64> {
    if s == "now" {
        return Some(now_us);
    }
    if s.len() == 10 && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse::<i64>().ok().map(|secs| secs * 1_000_000);
    }
    let (date, clock) = if s.len() >= 10 && s.as_bytes().get(4) == Some(&b'-') {
        match s.split_at(10) {
            (date, "") => (date, None),
            (date, rest) => (date, Some(rest.strip_prefix('T')?)),
        }
    } else {
        ("2000-01-01", Some(s))
    };
    let midnight = match parse_timestamp(format!("{date} 00:00:00").as_bytes())? {
        Timestamp::At(us) => us,
        Timestamp::Unset => return None,
    };
    let Some(clock) = clock else { return Some(midnight) };
    let (clock, offset_minutes) = split_zone(clock)?;
    let mut parts = clock.splitn(3, ':');
    let hour = two_digits(parts.next()?)?;
    let minute = two_digits(parts.next()?)?;
    let (second, micros) = match parts.next() {
        None => (0, 0),
        Some(sec) => {
            let (whole, frac) = sec.split_once('.').map_or((sec, None), |(w, f)| (w, Some(f)));
            let micros = match frac {
                None => 0,
                Some(f) if (1..=6).contains(&f.len()) && f.bytes().all(|b| b.is_ascii_digit()) => {
                    format!("{f:0<6}").parse::<i64>().ok()?
                }
                Some(_) => return None,
            };
            (two_digits(whole)?, micros)
        }
    };
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    Some(midnight + ((hour * 60 + minute - offset_minutes) * 60 + second) * 1_000_000 + micros)
}

fn two_digits(s: &str) -> Option<i64> {
    (s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok()).flatten()
}

/// Splits a trailing `Z`, `+HH:MM` or `-HH:MM`; returns the clock and the
/// zone's offset east of UTC in minutes.
fn split_zone(clock: &str) -> Option<(&str, i64)> {
    if let Some(c) = clock.strip_suffix('Z') {
        return Some((c, 0));
    }
    if clock.len() > 6 {
        let (c, zone) = clock.split_at(clock.len() - 6);
        let sign = match zone.as_bytes()[0] {
            b'+' => 1,
            b'-' => -1,
            _ => return Some((clock, 0)),
        };
        let (h, m) = zone[1..].split_once(':')?;
        let (h, m) = (two_digits(h)?, two_digits(m)?);
        if h > 23 || m > 59 {
            return None;
        }
        return Some((c, sign * (h * 60 + m)));
    }
    Some((clock, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000_000;

    #[test]
    fn forms() {
        let t = |s: &str| parse(s, 42);
        let july = 1_372_636_800_000_000; // 2013-07-01 00:00 UTC
        assert_eq!(t("2013-07-01"), Some(july));
        assert_eq!(t("2013-07-01T08:30"), Some(july + 30_600_000_000));
        assert_eq!(t("2013-07-01T08:30:15"), Some(july + 30_615_000_000));
        assert_eq!(t("2013-07-01T08:30:15.25"), Some(july + 30_615_250_000));
        assert_eq!(t("2013-07-01T08:30:15.000001Z"), Some(july + 30_615_000_001));
        assert_eq!(t("2013-07-01T10:30+02:00"), Some(july + 30_600_000_000));
        assert_eq!(t("2013-07-01T06:30-02:00"), Some(july + 30_600_000_000));
        assert_eq!(t("08:30"), Some(10_957 * DAY + 30_600_000_000));
        assert_eq!(t("now"), Some(42));
        assert_eq!(t("1372636800"), Some(july));
    }

    #[test]
    fn invalid() {
        for bad in [
            "2013-02-30",
            "2013-07-01T24:00",
            "2013-07-01T08:60",
            "2013-07-01 08:30",
            "2013-7-01",
            "08:30:15.1234567",
            "8:30",
            "2013-07-01T08:30+2:00",
            "137263680",
            "now2",
            "",
            "2013-07-01T",
        ] {
            assert_eq!(parse(bad, 0), None, "{bad}");
        }
    }
}
