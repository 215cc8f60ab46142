//! A keyring: the keys of one webhook with their validity, and the scheme they sign with.
//!
//! The keys themselves and the walk over them (which key matched, which had expired) are in
//! [`crate::key`], below the schemes; each scheme module in [`crate::scheme`] says how one
//! key is checked against one request; the keyring picks the module of its scheme.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::headers::Headers;
use crate::key::{Key, KeyEntry, Verified};
pub use crate::scheme::Scheme;
use crate::scheme::{body_hmac, github, shopify, slack, standard_webhooks, stripe};
use crate::VerifyError;

/// The keys a receiver accepts (or a sender signs with) for one scheme.
///
/// A request is accepted when any of its signatures matches any key in force, and, for the
/// schemes that sign a timestamp, that timestamp is within the tolerance of the verifier's
/// clock.
#[derive(Debug, Clone)]
pub struct Keyring {
    scheme: Scheme,
    entries: Vec<KeyEntry>,
}

impl Keyring {
    /// A keyring of the given scheme.
    pub fn new(scheme: Scheme, entries: Vec<KeyEntry>) -> Self {
        Self { scheme, entries }
    }

    /// A Standard Webhooks keyring with one key that never expires and the default tolerance.
    pub fn single(key: impl Into<Key>) -> Self {
        Self::new(Scheme::default(), vec![KeyEntry::new(key)])
    }

    /// The scheme.
    pub fn scheme(&self) -> &Scheme {
        &self.scheme
    }

    /// The keys, in the order given.
    pub fn entries(&self) -> &[KeyEntry] {
        &self.entries
    }

    /// Adds the keys of `other` when it uses the same scheme; gives `other` back otherwise.
    ///
    /// # Errors
    /// `Err(other)` when the schemes differ, so the caller can keep it as a separate keyring.
    pub fn merge(&mut self, other: Keyring) -> Result<(), Keyring> {
        if self.scheme != other.scheme {
            return Err(other);
        }
        self.entries.extend(other.entries);
        Ok(())
    }

    /// Verifies against the system clock. See [`Keyring::verify_at`].
    ///
    /// # Errors
    /// The refusal, with its reason code.
    pub fn verify(
        &self,
        headers: &(impl Headers + ?Sized),
        body: &[u8],
    ) -> Result<Verified, VerifyError> {
        self.verify_at(headers, body, unix_now())
    }

    /// Verifies a request as a receiver whose clock reads `now_secs` (Unix seconds).
    ///
    /// # Errors
    /// The refusal, with its reason code: a missing header, a timestamp outside the tolerance,
    /// a malformed signature, a signature that matches only an expired key, or none at all.
    pub fn verify_at(
        &self,
        headers: &(impl Headers + ?Sized),
        body: &[u8],
        now_secs: i64,
    ) -> Result<Verified, VerifyError> {
        match &self.scheme {
            Scheme::StandardWebhooks { tolerance_secs } => standard_webhooks::verify(
                &self.entries,
                &standard_webhooks::STANDARD,
                headers,
                body,
                now_secs,
                *tolerance_secs,
            ),
            Scheme::Svix { tolerance_secs } => standard_webhooks::verify(
                &self.entries,
                &standard_webhooks::SVIX,
                headers,
                body,
                now_secs,
                *tolerance_secs,
            ),
            Scheme::BodyHmacSha256(format) => {
                body_hmac::verify(&self.entries, format, headers, body, now_secs)
            }
            // The presets are body-HMAC formats fixed by the vendor.
            Scheme::Github => {
                body_hmac::verify(&self.entries, &github::FORMAT, headers, body, now_secs)
            }
            Scheme::Shopify => {
                body_hmac::verify(&self.entries, &shopify::FORMAT, headers, body, now_secs)
            }
            Scheme::Stripe { tolerance_secs } => {
                stripe::verify(&self.entries, headers, body, now_secs, *tolerance_secs)
            }
            Scheme::Slack { tolerance_secs } => {
                slack::verify(&self.entries, headers, body, now_secs, *tolerance_secs)
            }
        }
    }

    /// Whether any key in force at `now_secs` can sign (a receiver's keyring of `whpk_` keys
    /// cannot).
    pub fn can_sign_at(&self, now_secs: i64) -> bool {
        self.entries
            .iter()
            .any(|entry| entry.in_force_at(now_secs) && entry.key.can_sign())
    }

    /// The headers a sender adds for `body`, signed with every key in force at
    /// `timestamp_secs` that can sign. `msg_id` is used by the schemes that carry an id
    /// (Standard Webhooks, Svix) and ignored by the others.
    pub fn sign_headers(
        &self,
        msg_id: &str,
        timestamp_secs: i64,
        body: &[u8],
    ) -> Vec<(String, String)> {
        let keys = self
            .entries
            .iter()
            .filter(|entry| entry.in_force_at(timestamp_secs))
            .map(|entry| &entry.key);
        match &self.scheme {
            Scheme::StandardWebhooks { .. } => standard_webhooks::sign(
                keys,
                &standard_webhooks::STANDARD,
                msg_id,
                timestamp_secs,
                body,
            ),
            Scheme::Svix { .. } => standard_webhooks::sign(
                keys,
                &standard_webhooks::SVIX,
                msg_id,
                timestamp_secs,
                body,
            ),
            Scheme::BodyHmacSha256(format) => body_hmac::sign(keys, format, body),
            Scheme::Github => body_hmac::sign(keys, &github::FORMAT, body),
            Scheme::Shopify => body_hmac::sign(keys, &shopify::FORMAT, body),
            Scheme::Stripe { .. } => stripe::sign(keys, timestamp_secs, body),
            Scheme::Slack { .. } => slack::sign(keys, timestamp_secs, body),
        }
    }
}

/// The system clock in Unix seconds (0 if it reads before 1970).
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::{WEBHOOK_ID, WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP};
    use crate::signature::{self, BodyHmacFormat, Encoding, SigningSecret};

    const NOW: i64 = 1_700_000_000;
    const BODY: &[u8] = br#"{"accountId":1010,"events":[]}"#;

    fn secret(fill: u8) -> SigningSecret {
        SigningSecret::from_bytes(vec![fill; 32]).expect("valid length")
    }

    fn headers(id: &str, timestamp: &str, signature: &str) -> Vec<(String, String)> {
        vec![
            (WEBHOOK_ID.into(), id.into()),
            (WEBHOOK_TIMESTAMP.into(), timestamp.into()),
            (WEBHOOK_SIGNATURE.into(), signature.into()),
        ]
    }

    fn code(result: Result<Verified, VerifyError>) -> String {
        match result {
            Ok(_) => "accepted".into(),
            Err(error) => error.reason_code().into_owned(),
        }
    }

    #[test]
    fn standard_webhooks_refusals() {
        let keyring = Keyring::single(secret(1));
        let good = signature::sign(&secret(1), "msg_1", NOW, BODY);
        let check = |headers: Vec<(String, String)>, body: &[u8], expected: &str| {
            assert_eq!(
                code(keyring.verify_at(&headers, body, NOW)),
                expected,
                "{headers:?}"
            );
        };
        let now = NOW.to_string();
        check(headers("msg_1", &now, &good), BODY, "accepted");
        check(
            headers("msg_1", &now, &good),
            b"{}",
            "no_matching_signature",
        );
        check(headers("msg_2", &now, &good), BODY, "no_matching_signature");
        check(headers("", &now, &good), BODY, "missing_header:webhook-id");
        check(
            headers("msg_1", "", &good),
            BODY,
            "missing_header:webhook-timestamp",
        );
        check(
            headers("msg_1", &now, ""),
            BODY,
            "missing_header:webhook-signature",
        );
        check(headers("msg_1", "17e8", &good), BODY, "invalid_timestamp");
        check(headers("msg_1", "-5", &good), BODY, "invalid_timestamp");
        check(
            headers("msg_1", &now, "v1,AAAA"),
            BODY,
            "malformed_signature",
        );
        let other_version = good.replacen("v1,", "v2,", 1);
        check(
            headers("msg_1", &now, &other_version),
            BODY,
            "no_matching_signature",
        );
        let several = format!("v1,{} {good}", "A".repeat(43) + "=");
        check(headers("msg_1", &now, &several), BODY, "accepted");
    }

    #[test]
    fn tolerance_holds_both_ways_at_the_edge() {
        let keyring = Keyring::single(secret(1));
        for (offset, expected) in [
            (-300, "accepted"),
            (300, "accepted"),
            (-301, "timestamp_too_old:301"),
            (301, "timestamp_too_new:301"),
        ] {
            let timestamp = NOW + offset;
            let signed = signature::sign(&secret(1), "msg_1", timestamp, BODY);
            let headers = headers("msg_1", &timestamp.to_string(), &signed);
            assert_eq!(code(keyring.verify_at(&headers, BODY, NOW)), expected);
        }
    }

    #[test]
    fn rotation_accepts_both_until_the_old_secret_expires() {
        let keyring = Keyring::new(
            Scheme::default(),
            vec![
                KeyEntry {
                    expires_at: Some(NOW + 10),
                    ..KeyEntry::new(secret(1))
                },
                KeyEntry::new(secret(2)),
            ],
        );
        for fill in [1, 2] {
            let signed = signature::sign(&secret(fill), "m", NOW, BODY);
            let found = keyring.verify_at(&headers("m", &NOW.to_string(), &signed), BODY, NOW);
            assert_eq!(
                found,
                Ok(Verified {
                    key_index: usize::from(fill - 1)
                })
            );
        }
        let later = NOW + 10;
        let old = signature::sign(&secret(1), "m", later, BODY);
        let result = keyring.verify_at(&headers("m", &later.to_string(), &old), BODY, later);
        assert_eq!(code(result), "secret_expired");

        // The sender signs with both while both are in force, and only the new one after.
        assert_eq!(
            keyring.sign_headers("m", NOW, BODY)[2].1.split(' ').count(),
            2
        );
        assert_eq!(
            keyring.sign_headers("m", later, BODY)[2]
                .1
                .split(' ')
                .count(),
            1
        );
    }

    #[test]
    fn body_hmac_scheme() {
        let format = BodyHmacFormat {
            header: "x-sig".into(),
            encoding: Encoding::Base64,
            prefix: "sha256=".into(),
        };
        let keyring = Keyring::new(
            Scheme::BodyHmacSha256(format.clone()),
            vec![KeyEntry::new(secret(3))],
        );
        let signed = keyring.sign_headers("unused", NOW, BODY);
        assert_eq!(signed.len(), 1);
        assert_eq!(code(keyring.verify_at(&signed, BODY, NOW)), "accepted");
        // No replay window: a year later the same request still verifies.
        assert_eq!(
            code(keyring.verify_at(&signed, BODY, NOW + 31_536_000)),
            "accepted"
        );
        assert_eq!(
            code(keyring.verify_at(&signed, b"tampered", NOW)),
            "no_matching_signature"
        );
        let unprefixed = vec![("x-sig".to_owned(), signed[0].1.replace("sha256=", ""))];
        assert_eq!(
            code(keyring.verify_at(&unprefixed, BODY, NOW)),
            "malformed_signature"
        );
        let none: Vec<(String, String)> = Vec::new();
        assert_eq!(
            code(keyring.verify_at(&none, BODY, NOW)),
            "missing_header:x-sig"
        );
    }
}
