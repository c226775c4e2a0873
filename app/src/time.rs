//! When a message was published, as a person reads it: "12 s ago", and the exact time.
//!
//! Pure functions of two Unix-millisecond times, the same on the server (first paint) and in
//! the browser, so the page's text does not depend on where it was rendered; only `unix_now`
//! reads a clock.

/// How long before `now` the time `then` was, in words: "just now", "12 s ago", "3 min ago",
/// "2 h ago", "4 d ago". A `then` after `now` (clocks apart) reads "just now".
pub fn ago(now: u64, then: u64) -> String {
    let s = now.saturating_sub(then) / 1000;
    match s {
        0..=4 => "just now".to_owned(),
        5..=59 => format!("{s} s ago"),
        60..=3599 => format!("{} min ago", s / 60),
        3600..=86_399 => format!("{} h ago", s / 3600),
        _ => format!("{} d ago", s / 86_400),
    }
}

/// The exact time, `YYYY-MM-DD hh:mm:ss UTC`.
pub fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The calendar date of a day counted from 1970-01-01 (Howard Hinnant's `civil_from_days`, for
/// days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Now, in Unix milliseconds: the browser's clock on the page, the server's when rendering.
pub fn unix_now() -> u64 {
    #[cfg(feature = "hydrate")]
    {
        // Milliseconds since the epoch fit a u64 for the next 500 million years.
        js_sys::Date::now() as u64
    }
    #[cfg(not(feature = "hydrate"))]
    {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_as_words() {
        let t = 1_795_000_000_000;
        assert_eq!(ago(t, t), "just now");
        assert_eq!(ago(t + 4_999, t), "just now");
        assert_eq!(ago(t + 12_000, t), "12 s ago");
        assert_eq!(ago(t + 60_000, t), "1 min ago");
        assert_eq!(ago(t + 3 * 3_600_000 + 5, t), "3 h ago");
        assert_eq!(ago(t + 4 * 86_400_000, t), "4 d ago");
        assert_eq!(
            ago(t, t + 10_000),
            "just now",
            "a clock behind the server's"
        );
    }

    #[test]
    fn exact_times_are_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_795_000_000_999), "2026-11-18 11:06:40 UTC");
    }
}
