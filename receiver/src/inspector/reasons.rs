//! Reason codes in words, shown beside the codes themselves (`timestamp_too_old:96653011`
//! reads "signed 3 years before it arrived"): the code stays, for logs, metrics and searches;
//! the words are for the person looking.

/// The words of a reason code (SPEC section 2, and the receiver's own answers), or `None`
/// for a code this receiver does not give.
pub(super) fn words(code: &str) -> Option<String> {
    let (name, detail) = code.split_once(':').unwrap_or((code, ""));
    let seconds = || detail.parse::<i64>().ok().map(approximate_duration);
    Some(match name {
        "missing_header" => format!("the header {detail} is missing"),
        "invalid_timestamp" => "the signed timestamp is not a number of seconds".to_owned(),
        "timestamp_too_old" => format!(
            "signed {} before it arrived: longer ago than the window allows",
            seconds()?
        ),
        "timestamp_too_new" => format!(
            "signed {} after it arrived: the sender's clock is ahead",
            seconds()?
        ),
        "no_matching_signature" => {
            "no signature matches a secret of this receiver (another secret, or a changed body)"
                .to_owned()
        }
        "malformed_signature" => "the signature header cannot be read".to_owned(),
        "secret_expired" => "signed with a secret that has expired".to_owned(),
        "basic_missing" => "no Basic credentials were sent".to_owned(),
        "basic_malformed" => "the Authorization header is not Basic credentials".to_owned(),
        "basic_mismatch" => "the username or password does not match".to_owned(),
        "invalid_json" => "the body is not JSON".to_owned(),
        "invalid_envelope" => "the body is not a webhook envelope".to_owned(),
        "body_too_large" => "the body is larger than --max-body".to_owned(),
        "body_timeout" => "the body did not arrive in time".to_owned(),
        "body_unreadable" => "the connection broke while the body was read".to_owned(),
        "not_found" => "sent to another path than the webhook's".to_owned(),
        "method_not_allowed" => "not a POST".to_owned(),
        "unsupported_media_type" => "the content type is not JSON".to_owned(),
        "unsupported_content_encoding" => "the body is compressed, which is refused".to_owned(),
        "ambiguous_length" => {
            "both Content-Length and Transfer-Encoding: its length is ambiguous".to_owned()
        }
        "store_unavailable" => "the store could not commit: the sender retries".to_owned(),
        _ => return None,
    })
}

/// A duration in the largest unit that keeps it at least 1, rounded: `657` is "11 minutes",
/// `96653011` is "3 years".
pub(super) fn approximate_duration(seconds: i64) -> String {
    const UNITS: [(i64, &str); 6] = [
        (365 * 86_400 + 21_600, "year"),
        (2_629_800, "month"),
        (86_400, "day"),
        (3_600, "hour"),
        (60, "minute"),
        (1, "second"),
    ];
    let seconds = seconds.saturating_abs();
    let (size, unit) = UNITS
        .iter()
        .copied()
        .find(|(size, _)| seconds >= *size)
        .unwrap_or((1, "second"));
    // Years and months are rounded down (3.9 years is "3 years"): a reader rounds them so.
    let count = if size >= 2_629_800 {
        seconds / size
    } else {
        (seconds + size / 2) / size
    };
    format!("{count} {unit}{}", if count == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_read_as_words_and_durations_as_a_person_says_them() {
        assert_eq!(
            words("timestamp_too_old:96653011").as_deref(),
            Some("signed 3 years before it arrived: longer ago than the window allows")
        );
        assert_eq!(
            words("timestamp_too_new:657").as_deref(),
            Some("signed 11 minutes after it arrived: the sender's clock is ahead")
        );
        assert_eq!(
            words("missing_header:webhook-signature").as_deref(),
            Some("the header webhook-signature is missing")
        );
        assert!(words("no_matching_signature").is_some());
        assert_eq!(words("timestamp_too_old:soon"), None);
        assert_eq!(words("something_else"), None);
        for (seconds, said) in [
            (0, "0 seconds"),
            (1, "1 second"),
            (59, "59 seconds"),
            (60, "1 minute"),
            (89, "1 minute"),
            (90, "2 minutes"),
            (3_600, "1 hour"),
            (86_399, "24 hours"),
            (86_400, "1 day"),
            (40 * 86_400, "1 month"),
            (400 * 86_400, "1 year"),
            (-120, "2 minutes"),
        ] {
            assert_eq!(approximate_duration(seconds), said, "{seconds}");
        }
    }
}
