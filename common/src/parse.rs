//! The values the command lines and HTTP answers carry as text, each read by a well-kept crate:
//! durations by `humantime`, byte sizes by `bytesize`, HTTP dates by `httpdate` (already in the
//! tree through hyper), instants by `verify::timestamp`.
//!
//! The functions return `Result<_, String>` so that clap can use them as value parsers and
//! print the message after the flag's name (`invalid value 'soon' for '--wait <WAIT>': …`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A duration such as `250ms`, `5s`, `1.5s`, `5m`, `5 min`, `24h`, `7d` or `1h 30m`; a bare
/// number (`30`, `0.5`) is seconds.
///
/// # Errors
/// A message naming the accepted forms.
pub fn duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    // A bare number is seconds, as both programs have always read it; humantime asks for a
    // unit.
    if let Ok(seconds) = text.parse::<f64>() {
        if text.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
            return Duration::try_from_secs_f64(seconds)
                .map_err(|_| format!("{text:?} is out of range"));
        }
    }
    humantime::parse_duration(text).map_err(|error| {
        format!("{text:?} is not a duration such as 250ms, 5s, 5m, 24h or 7d ({error})")
    })
}

/// A byte size such as `1MiB`, `512KiB`, `64 kb`, `1.5MiB` or `1000` (bytes). Units are
/// case-insensitive; `K`, `KB`, `M`, `MB`, `G`, `GB` are powers of 1000 and `KiB`, `MiB`, `GiB`
/// powers of 1024.
///
/// # Errors
/// Text that does not start with a number, or an unknown unit.
pub fn byte_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    // bytesize reads "-1" as a number it cannot hold and "" as zero; neither is a size.
    if !text.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return Err(format!(
            "{text:?} is not a size such as 1MiB, 512KiB or 1000"
        ));
    }
    text.parse::<bytesize::ByteSize>()
        .map(|size| size.as_u64())
        // bytesize's own message names its internals ("SI unit"); ours names the forms.
        .map_err(|_| format!("{text:?} is not a size such as 1MiB, 512KiB, 64kb or 1000"))
}

/// A `Retry-After` value (RFC 9110 section 10.2.3) as a delay from `now`: delay-seconds, or an
/// HTTP-date in any of the three forms recipients must read (IMF-fixdate, RFC 850, asctime).
/// A date in the past means "now"; anything unreadable is `None`, so the caller's own schedule
/// applies.
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|byte| byte.is_ascii_digit()) {
        // More digits than a u64 holds still means "very long": the caller bounds it.
        return Some(Duration::from_secs(
            value.parse::<u64>().unwrap_or(u64::MAX),
        ));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let now = now.duration_since(UNIX_EPOCH).ok()?;
    let at = at.duration_since(UNIX_EPOCH).ok()?;
    // Whole seconds: an HTTP date has no finer grain, and `now` should not shave one off.
    Some(Duration::from_secs(
        at.as_secs().saturating_sub(now.as_secs()),
    ))
}

/// An instant for `--since` / `--until`, in epoch milliseconds: RFC 3339, a date (midnight
/// UTC), or epoch milliseconds or seconds.
///
/// # Errors
/// A message naming the accepted forms.
pub fn instant_ms(text: &str) -> Result<i64, String> {
    verify::timestamp::parse_instant_millis(text).ok_or_else(|| {
        format!("{text:?} is not a time (use 2026-11-27T10:00:00Z, 2026-11-27 or epoch ms)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_old_and_new_forms() {
        let check = |text: &str, expected: Option<u64>| {
            assert_eq!(
                duration(text).ok().map(|d| d.as_millis() as u64),
                expected,
                "{text}"
            );
        };
        // Every form either program accepted before.
        check("250ms", Some(250));
        check("5s", Some(5000));
        check("5", Some(5000));
        check("30", Some(30_000));
        check("1.5s", Some(1500));
        check("5m", Some(300_000));
        check("5min", Some(300_000));
        check("5 min", Some(300_000));
        check("30 s", Some(30_000));
        check("24h", Some(86_400_000));
        check("7d", Some(604_800_000));
        check(" 10s ", Some(10_000));
        // Wider now.
        check("0.5", Some(500));
        check("1h 30m", Some(5_400_000));
        check("2 hours", Some(7_200_000));
        // Still refused.
        check("5x", None);
        check("ms", None);
        check("-1s", None);
        check("-1", None);
        check("soon", None);
        check("", None);
        check("inf", None);
        check("NaN", None);
    }

    #[test]
    fn sizes_old_and_new_forms() {
        let check = |text: &str, expected: Option<u64>| {
            assert_eq!(byte_size(text).ok(), expected, "{text}");
        };
        check("1MiB", Some(1_048_576));
        check("512KiB", Some(524_288));
        check("1000", Some(1000));
        check("64 kb", Some(64_000));
        check("64k", Some(64_000));
        check("1m", Some(1_000_000));
        check("1mib", Some(1_048_576));
        check("10B", Some(10));
        check("2GiB", Some(2_147_483_648));
        // Wider now: a fraction.
        check("1.5MiB", Some(1_572_864));
        check("MiB", None);
        check("1 parsec", None);
        check("-1", None);
        check("", None);
    }

    #[test]
    fn retry_after_forms() {
        // 2026-11-28T00:00:00Z
        let now = UNIX_EPOCH + Duration::from_secs(1_795_824_000);
        let check = |value: &str, expected: Option<u64>| {
            assert_eq!(
                retry_after(value, now).map(|d| d.as_secs()),
                expected,
                "{value}"
            );
        };
        check("120", Some(120));
        check(" 0 ", Some(0));
        check("99999999999999999999999", Some(u64::MAX));
        check("Sat, 28 Nov 2026 00:01:30 GMT", Some(90));
        check("Saturday, 28-Nov-26 00:00:10 GMT", Some(10));
        check("Sat Nov 28 00:00:05 2026", Some(5));
        check("Fri, 27 Nov 2026 23:00:00 GMT", Some(0));
        check("-5", None);
        check("soon", None);
        check("", None);
        check("1.5", None);
    }

    #[test]
    fn instants() {
        assert_eq!(instant_ms("1795824000000"), Ok(1_795_824_000_000));
        assert_eq!(instant_ms("1795824000"), Ok(1_795_824_000_000));
        assert_eq!(instant_ms("2026-11-28T00:00:00Z"), Ok(1_795_824_000_000));
        assert_eq!(instant_ms("2026-11-28"), Ok(1_795_824_000_000));
        let message = instant_ms("soon").unwrap_err();
        assert!(message.starts_with("\"soon\" is not a time"), "{message}");
    }
}
