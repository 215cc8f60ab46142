//! Headers as `Debug` output shows them: no credential or signature.

/// Headers for `Debug` output: credentials and signatures replaced, so that a request printed
/// while debugging never carries a password or a token that could be replayed.
pub(crate) fn redacted_headers(headers: &[(String, String)]) -> Vec<(&str, &str)> {
    headers
        .iter()
        .map(|(name, value)| {
            let hidden = name.eq_ignore_ascii_case("authorization")
                || name.eq_ignore_ascii_case("proxy-authorization")
                || name.to_ascii_lowercase().contains("signature");
            (
                name.as_str(),
                if hidden { "[redacted]" } else { value.as_str() },
            )
        })
        .collect()
}
