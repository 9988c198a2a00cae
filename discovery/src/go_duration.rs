//! Go's duration syntax (`time.ParseDuration`), as Consul speaks it on the wire.
//!
//! Consul reads `?wait=`, check `TTL`s and `DeregisterCriticalServiceAfter` with Go's parser, so
//! both our client (which writes them) and the dev server (which reads them) share this module.

use std::time::Duration;

/// A duration Go's `time.ParseDuration` could not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid Go duration {input:?}")]
pub struct InvalidGoDuration {
    /// The rejected text.
    pub input: String,
}

/// A parsed Go duration: Go durations may be negative, which Consul treats as "unset".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct GoDuration {
    nanos: i128,
}

impl GoDuration {
    /// The duration if it is strictly positive, `None` for zero or negative values.
    pub fn positive(self) -> Option<Duration> {
        if self.nanos <= 0 {
            return None;
        }
        let nanos = u64::try_from(self.nanos).unwrap_or(u64::MAX);
        Some(Duration::from_nanos(nanos))
    }

    /// Signed nanoseconds.
    pub fn as_nanos(self) -> i128 {
        self.nanos
    }
}

/// Parses Go's duration syntax: an optional sign, then one or more `<decimal><unit>` terms with
/// units `ns`, `us`, `µs`, `μs`, `ms`, `s`, `m`, `h`; `"0"` alone is allowed. A bare number such
/// as `"10"` is rejected, as in Go. Values beyond Go's int64 nanoseconds are rejected.
pub fn parse(input: &str) -> Result<GoDuration, InvalidGoDuration> {
    let err = || InvalidGoDuration {
        input: input.to_owned(),
    };
    let (negative, mut rest) = match input.as_bytes().first() {
        Some(b'-') => (true, &input[1..]),
        Some(b'+') => (false, &input[1..]),
        _ => (false, input),
    };
    if rest == "0" {
        return Ok(GoDuration { nanos: 0 });
    }
    if rest.is_empty() {
        return Err(err());
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let (value, after) = take_decimal(rest).ok_or_else(err)?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, tail) = after.split_at(unit_len);
        let scale = unit_nanos(unit).ok_or_else(err)?;
        // value is (integer, fraction digits as integer, fraction scale)
        let (int, frac, frac_scale) = value;
        let term = int
            .checked_mul(scale)
            .and_then(|v| v.checked_add(frac * scale / frac_scale))
            .ok_or_else(err)?;
        total = total.checked_add(term).ok_or_else(err)?;
        if total > i128::from(i64::MAX) {
            return Err(err());
        }
        rest = tail;
    }
    Ok(GoDuration {
        nanos: if negative { -total } else { total },
    })
}

/// Formats a duration so Go parses it back exactly, in the largest unit that divides it
/// (`"60s"`, `"1500ms"`, `"250us"`); zero is `"0s"`.
pub fn format(duration: Duration) -> String {
    let nanos = duration.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    for (unit, scale) in [
        ("h", 3_600_000_000_000u128),
        ("m", 60_000_000_000),
        ("s", 1_000_000_000),
    ] {
        if nanos % scale == 0 {
            return format!("{}{unit}", nanos / scale);
        }
    }
    for (unit, scale) in [("ms", 1_000_000u128), ("us", 1_000)] {
        if nanos % scale == 0 {
            return format!("{}{unit}", nanos / scale);
        }
    }
    format!("{nanos}ns")
}

/// Reads `123`, `1.5` or `.5` from the start of `s`; returns (int, frac, frac_scale) and the rest.
fn take_decimal(s: &str) -> Option<((i128, i128, i128), &str)> {
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut int: i128 = 0;
    let mut int_digits = 0;
    while i < bytes.len() && bytes[i].is_ascii_digit() {
        int = int
            .checked_mul(10)?
            .checked_add(i128::from(bytes[i] - b'0'))?;
        i += 1;
        int_digits += 1;
    }
    let mut frac: i128 = 0;
    let mut frac_scale: i128 = 1;
    let mut frac_digits = 0;
    if i < bytes.len() && bytes[i] == b'.' {
        i += 1;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            // Digits beyond nanosecond precision of an hour cannot matter; stop scaling.
            if frac_scale < 1_000_000_000_000_000_000 {
                frac = frac * 10 + i128::from(bytes[i] - b'0');
                frac_scale *= 10;
            }
            i += 1;
            frac_digits += 1;
        }
    }
    if int_digits == 0 && frac_digits == 0 {
        return None;
    }
    Some(((int, frac, frac_scale), &s[i..]))
}

fn unit_nanos(unit: &str) -> Option<i128> {
    Some(match unit {
        "ns" => 1,
        "us" | "µs" | "μs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return None,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i128 {
        parse(s).unwrap().as_nanos() / 1_000_000
    }

    #[test]
    fn parses_go_syntax() {
        assert_eq!(ms("500ms"), 500);
        assert_eq!(ms("10s"), 10_000);
        assert_eq!(ms("5m"), 300_000);
        assert_eq!(ms("1h2m3.5s"), 3_723_500);
        assert_eq!(ms(".5s"), 500);
        assert_eq!(ms("-5s"), -5_000);
        assert_eq!(parse("0").unwrap().as_nanos(), 0);
        assert_eq!(parse("1µs").unwrap().as_nanos(), 1_000);
        assert_eq!(parse("3ns").unwrap().as_nanos(), 3);
    }

    #[test]
    fn rejects_what_go_rejects() {
        for bad in [
            "", "10", "s", "1x", "1.s.", "--1s", "1 s", "1s2", "3000000h",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(parse("1.s").is_ok(), "Go accepts a trailing dot");
    }

    #[test]
    fn positive_drops_zero_and_negative() {
        assert_eq!(parse("0").unwrap().positive(), None);
        assert_eq!(parse("-1s").unwrap().positive(), None);
        assert_eq!(
            parse("2s").unwrap().positive(),
            Some(Duration::from_secs(2))
        );
    }

    #[test]
    fn format_round_trips() {
        for d in [
            Duration::from_secs(60),
            Duration::from_millis(1500),
            Duration::from_micros(250),
            Duration::from_nanos(7),
            Duration::from_secs(7200),
            Duration::ZERO,
        ] {
            let text = format(d);
            assert_eq!(
                parse(&text).unwrap().positive().unwrap_or_default(),
                d,
                "{text}"
            );
        }
        assert_eq!(format(Duration::from_secs(60)), "1m");
    }

    #[test]
    fn format_round_trips_any_duration() {
        fn prop(nanos: u64) -> bool {
            let d = Duration::from_nanos(nanos % (i64::MAX as u64));
            parse(&format(d)).map(|g| g.positive().unwrap_or_default()) == Ok(d)
        }
        quickcheck::quickcheck(prop as fn(u64) -> bool);
    }
}
