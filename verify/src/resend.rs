//! Building a captured request again for sending: verbatim (the captured headers, minus the
//! ones that describe one hop) or re-signed (the same body bytes, the captured `webhook-id`,
//! fresh authentication), and whether a captured signature is too old to pass verbatim. Pure:
//! `sender replay` and the receiver inspector's Send again both build their requests here and
//! send them through one client (`common::client`).

use crate::scheme::{signed_timestamp, SCHEME_NAMES};
use crate::{BasicCredentials, Keyring, Scheme};

/// Headers that describe one hop or the framing, never sent again: the client sets its own.
pub const HOP_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "proxy-connection",
];

/// The credentials a re-signed request carries.
#[derive(Debug, Clone, Default)]
pub struct ResendAuth {
    /// `Authorization: Basic` credentials.
    pub basic: Option<BasicCredentials>,
    /// Keyrings to sign with (each adds its scheme's headers, signed by its secrets in force).
    pub keyrings: Vec<Keyring>,
}

/// The captured headers to send verbatim: in their order, repeats kept, hop headers left
/// out. A source without headers (a bare envelope) gets [`resign_base_headers`].
pub fn verbatim_headers(captured: Vec<(String, String)>) -> Vec<(String, String)> {
    if captured.is_empty() {
        return resign_base_headers();
    }
    captured
        .into_iter()
        .filter(|(name, _)| !HOP_HEADERS.contains(&name.to_ascii_lowercase().as_str()))
        .collect()
}

/// The headers of a re-signed request before its authentication: the content type alone
/// (the captured signature and credentials would be stale or redacted).
pub fn resign_base_headers() -> Vec<(String, String)> {
    vec![("content-type".to_owned(), "application/json".to_owned())]
}

/// The captured `webhook-id`, kept when re-signing so the receiver sees the same message.
pub fn captured_message_id(captured: &[(String, String)]) -> Option<String> {
    captured
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(crate::headers::WEBHOOK_ID))
        .map(|(_, value)| value.clone())
}

/// A fresh `webhook-id`: `msg_` and 24 alphanumerics.
pub fn new_message_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let tail: String = (0..24)
        .map(|_| char::from(ALPHABET[fastrand::usize(..ALPHABET.len())]))
        .collect();
    format!("msg_{tail}")
}

/// Adds fresh authentication to `headers`: Basic credentials, then each keyring's signature
/// headers for `message_id`, `now_secs` and `body`.
pub fn add_authentication(
    headers: &mut Vec<(String, String)>,
    auth: &ResendAuth,
    message_id: &str,
    now_secs: i64,
    body: &[u8],
) {
    if let Some(basic) = &auth.basic {
        headers.push((
            crate::headers::AUTHORIZATION.to_owned(),
            basic.authorization_header(),
        ));
    }
    for keyring in &auth.keyrings {
        headers.extend(keyring.sign_headers(message_id, now_secs, body));
    }
}

/// A captured signature too old to pass again: a verbatim resend of it is refused
/// `timestamp_too_old` by a receiver that checks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaleSignature {
    /// Seconds between the signed timestamp and now.
    pub age_secs: i64,
    /// The replay window of the scheme that signed it.
    pub tolerance_secs: i64,
}

/// The schemes that sign a timestamp (Standard Webhooks, Svix, Stripe, Slack), each with the
/// default tolerance: what a verbatim resend is judged by when no signature file says more.
pub fn timestamped_schemes() -> Vec<Scheme> {
    SCHEME_NAMES
        .iter()
        .filter_map(|name| Scheme::from_name(name))
        .filter(|scheme| scheme.tolerance_secs().is_some())
        .collect()
}

/// Whether `headers` (as captured) carry a signed timestamp older than its window at
/// `now_secs`: the first of `schemes` whose timestamp header they carry decides, with its own
/// tolerance. `None` when none is carried, or it is still within the window (a timestamp
/// ahead of the clock is not judged here: it passes sooner or later).
pub fn stale_signature(
    headers: &[(String, String)],
    schemes: &[Scheme],
    now_secs: i64,
) -> Option<StaleSignature> {
    schemes.iter().find_map(|scheme| {
        let tolerance_secs = scheme.tolerance_secs()?;
        let signed_at = signed_timestamp(scheme, headers)?;
        // Saturating: a capture may carry any timestamp.
        let age_secs = now_secs.saturating_sub(signed_at);
        (age_secs > tolerance_secs).then_some(StaleSignature {
            age_secs,
            tolerance_secs,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_signatures_are_judged_by_the_scheme_that_signed_them() {
        const NOW: i64 = 1_795_000_000;
        let check =
            |headers: &[(&str, String)], schemes: &[Scheme], expected: Option<(i64, i64)>| {
                let headers: Vec<(String, String)> = headers
                    .iter()
                    .map(|(name, value)| ((*name).to_owned(), value.clone()))
                    .collect();
                let found = stale_signature(&headers, schemes, NOW)
                    .map(|stale| (stale.age_secs, stale.tolerance_secs));
                assert_eq!(found, expected, "{headers:?}");
            };
        let defaults = timestamped_schemes();
        let names: Vec<&str> = defaults.iter().map(Scheme::name).collect();
        assert_eq!(names, ["standard-webhooks", "svix", "stripe", "slack"]);
        let ago = |secs: i64| (NOW - secs).to_string();
        check(
            &[("webhook-timestamp", ago(3600))],
            &defaults,
            Some((3600, 300)),
        );
        check(
            &[("Webhook-Timestamp", ago(301))],
            &defaults,
            Some((301, 300)),
        );
        check(&[("webhook-timestamp", ago(300))], &defaults, None);
        check(&[("webhook-timestamp", ago(-3600))], &defaults, None);
        check(&[("svix-timestamp", ago(900))], &defaults, Some((900, 300)));
        check(
            &[("x-slack-request-timestamp", ago(900))],
            &defaults,
            Some((900, 300)),
        );
        check(
            &[("stripe-signature", format!("t={},v1=ab", ago(900)))],
            &defaults,
            Some((900, 300)),
        );
        check(&[("webhook-timestamp", "soon".to_owned())], &defaults, None);
        check(
            &[("x-hub-signature-256", "sha256=ab".to_owned())],
            &defaults,
            None,
        );
        check(&[], &defaults, None);
        // A signature file's tolerance decides for its scheme; other schemes are not looked at.
        let wide = [Scheme::default().with_tolerance(7200)];
        check(&[("webhook-timestamp", ago(3600))], &wide, None);
        check(
            &[("webhook-timestamp", ago(7201))],
            &wide,
            Some((7201, 7200)),
        );
        check(&[("svix-timestamp", ago(9000))], &wide, None);
        check(&[("webhook-timestamp", ago(9000))], &[Scheme::Github], None);
    }

    #[test]
    fn verbatim_drops_hop_headers_and_keeps_order_and_repeats() {
        let captured = vec![
            ("Host".to_owned(), "a".to_owned()),
            ("x-a".to_owned(), "1".to_owned()),
            ("content-length".to_owned(), "9".to_owned()),
            ("x-b".to_owned(), "2".to_owned()),
            ("x-a".to_owned(), "3".to_owned()),
        ];
        let kept = verbatim_headers(captured);
        let expected = [("x-a", "1"), ("x-b", "2"), ("x-a", "3")];
        assert_eq!(kept.len(), expected.len());
        for ((name, value), (want_name, want_value)) in kept.iter().zip(expected) {
            assert_eq!((name.as_str(), value.as_str()), (want_name, want_value));
        }
        assert_eq!(verbatim_headers(Vec::new()), resign_base_headers());
        assert_eq!(
            captured_message_id(&[("Webhook-Id".to_owned(), "msg_1".to_owned())]).as_deref(),
            Some("msg_1")
        );
        assert!(new_message_id().starts_with("msg_"));
    }
}
