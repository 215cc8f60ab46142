//! ISO-8601 and epoch time conversions used by payloads, signature files and captures.

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::OffsetDateTime;

/// Below this, an integer timestamp is read as epoch seconds; from it on, as milliseconds.
/// 10^11 seconds is the year 5138, 10^11 milliseconds is March 1973: no real event is
/// ambiguous.
pub const EPOCH_SECONDS_LIMIT: i64 = 100_000_000_000;

/// Parses an ISO-8601 / RFC 3339 date-time (`2024-11-08T03:49:52.000Z`, any offset) into epoch
/// milliseconds.
pub fn parse_iso_millis(text: &str) -> Option<i64> {
    let parsed = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    i64::try_from(parsed.unix_timestamp_nanos() / 1_000_000).ok()
}

/// Formats epoch milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ`, today's Learning Manager form.
pub fn format_iso_millis(epoch_ms: i64) -> String {
    let at = datetime(epoch_ms);
    at.format(format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    ))
    .unwrap_or_else(|_| epoch_ms.to_string())
}

/// Formats epoch seconds as `YYYY-MM-DDTHH:MM:SSZ`, the form of signature files.
pub fn format_iso_seconds(epoch_secs: i64) -> String {
    let at = datetime(epoch_secs.saturating_mul(1000));
    at.format(format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
    ))
    .unwrap_or_else(|_| epoch_secs.to_string())
}

/// Reads an integer timestamp as seconds or milliseconds (see [`EPOCH_SECONDS_LIMIT`]) and
/// gives epoch milliseconds.
pub fn epoch_to_millis(value: i64) -> i64 {
    if value.unsigned_abs() < EPOCH_SECONDS_LIMIT.unsigned_abs() {
        value.saturating_mul(1000)
    } else {
        value
    }
}

/// The system clock in epoch milliseconds (0 if it reads before 1970).
pub fn unix_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

/// Reads a time a person types on a command line (`--since`, `--until`): an integer of epoch
/// seconds or milliseconds (see [`EPOCH_SECONDS_LIMIT`]), an RFC 3339 date-time, or a bare
/// date `YYYY-MM-DD` meaning its midnight UTC. Gives epoch milliseconds.
pub fn parse_instant_millis(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(number) = text.parse::<i64>() {
        return Some(epoch_to_millis(number));
    }
    if text.len() == 10 {
        return parse_iso_millis(&format!("{text}T00:00:00Z"));
    }
    parse_iso_millis(text)
}

fn datetime(epoch_ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(epoch_ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_round_trip_and_forms() {
        assert_eq!(
            parse_iso_millis("2024-11-08T03:49:52.000Z"),
            Some(1_731_037_792_000)
        );
        assert_eq!(
            parse_iso_millis("2024-11-08T03:49:52Z"),
            Some(1_731_037_792_000)
        );
        assert_eq!(
            parse_iso_millis("2024-11-08T04:49:52.5+01:00"),
            Some(1_731_037_792_500)
        );
        assert_eq!(parse_iso_millis("2024-11-08"), None);
        assert_eq!(parse_iso_millis("yesterday"), None);
        assert_eq!(
            format_iso_millis(1_731_037_792_007),
            "2024-11-08T03:49:52.007Z"
        );
        assert_eq!(format_iso_seconds(1_731_037_792), "2024-11-08T03:49:52Z");
    }

    #[test]
    fn command_line_instants() {
        let check = |text: &str, expected: Option<i64>| {
            assert_eq!(parse_instant_millis(text), expected, "{text}");
        };
        check("1731037792", Some(1_731_037_792_000));
        check("1731037792000", Some(1_731_037_792_000));
        check(" 2024-11-08T03:49:52Z ", Some(1_731_037_792_000));
        check("2024-11-08", Some(1_731_024_000_000));
        check("2024-13-08", None);
        check("last week", None);
    }

    #[test]
    fn epoch_seconds_and_millis_are_told_apart() {
        assert_eq!(epoch_to_millis(1_727_414_643), 1_727_414_643_000);
        assert_eq!(epoch_to_millis(1_727_414_643_000), 1_727_414_643_000);
    }
}
