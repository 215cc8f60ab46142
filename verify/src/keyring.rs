//! A keyring: the secrets of one webhook with their validity, and the scheme they sign with.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::headers::{self, Headers, WEBHOOK_ID, WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP};
use crate::signature::{
    self, body_tag, matches_any, standard_tag, BodyHmacFormat, SigningSecret, StandardSignatures,
    DEFAULT_TOLERANCE_SECS,
};
use crate::VerifyError;

/// One secret of a keyring and the time span in which it is in force.
#[derive(Debug, Clone)]
pub struct KeyEntry {
    /// The key.
    pub secret: SigningSecret,
    /// Unix seconds when the secret was made, if known (informative only).
    pub created_at: Option<i64>,
    /// Unix seconds from which the secret is no longer accepted; `None` for never.
    pub expires_at: Option<i64>,
}

impl KeyEntry {
    /// A secret with no expiry.
    pub fn new(secret: SigningSecret) -> Self {
        Self {
            secret,
            created_at: None,
            expires_at: None,
        }
    }

    /// Whether the secret is accepted at `now_secs`.
    pub fn in_force_at(&self, now_secs: i64) -> bool {
        self.expires_at.is_none_or(|expiry| now_secs < expiry)
    }
}

/// The signature scheme of a keyring, with its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheme {
    /// Standard Webhooks v1 (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
    StandardWebhooks {
        /// Largest accepted distance, either way, between the signed timestamp and the clock.
        tolerance_secs: i64,
    },
    /// HMAC-SHA256 of the body alone in one header. It has no replay window: a captured
    /// request stays valid for as long as its secret does.
    BodyHmacSha256(BodyHmacFormat),
}

impl Scheme {
    /// The scheme's name in signature files.
    pub fn name(&self) -> &'static str {
        match self {
            Self::StandardWebhooks { .. } => "standard-webhooks",
            Self::BodyHmacSha256(_) => "body-hmac-sha256",
        }
    }
}

impl Default for Scheme {
    fn default() -> Self {
        Self::StandardWebhooks {
            tolerance_secs: DEFAULT_TOLERANCE_SECS,
        }
    }
}

/// What a successful verification found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// Index in the keyring of the secret whose signature matched.
    pub key_index: usize,
}

/// The secrets a receiver accepts (or a sender signs with) for one scheme.
///
/// A request is accepted when any of its signatures matches any secret in force, and, for
/// Standard Webhooks, its timestamp is within the tolerance of the verifier's clock.
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

    /// A Standard Webhooks keyring with one secret that never expires and the default tolerance.
    pub fn single(secret: SigningSecret) -> Self {
        Self::new(Scheme::default(), vec![KeyEntry::new(secret)])
    }

    /// The scheme.
    pub fn scheme(&self) -> &Scheme {
        &self.scheme
    }

    /// The secrets, in the order given.
    pub fn entries(&self) -> &[KeyEntry] {
        &self.entries
    }

    /// Adds the secrets of `other` when it uses the same scheme; gives `other` back otherwise.
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
    /// a malformed signature, a signature that matches only an expired secret, or none at all.
    pub fn verify_at(
        &self,
        headers: &(impl Headers + ?Sized),
        body: &[u8],
        now_secs: i64,
    ) -> Result<Verified, VerifyError> {
        match &self.scheme {
            Scheme::StandardWebhooks { tolerance_secs } => {
                self.verify_standard(headers, body, now_secs, *tolerance_secs)
            }
            Scheme::BodyHmacSha256(format) => {
                let value = headers::required(headers, &format.header)?;
                let tags = format.parse_tags(value)?;
                self.find_match(
                    now_secs,
                    |secret| matches_any(&body_tag(secret, body), &tags),
                    || Ok(()),
                )
            }
        }
    }

    fn verify_standard(
        &self,
        headers: &(impl Headers + ?Sized),
        body: &[u8],
        now_secs: i64,
        tolerance_secs: i64,
    ) -> Result<Verified, VerifyError> {
        let [msg_id, timestamp, signatures] = headers.standard_webhook_headers();
        let msg_id = headers::present(msg_id, WEBHOOK_ID)?;
        let timestamp = headers::present(timestamp, WEBHOOK_TIMESTAMP)?;
        let signatures = headers::present(signatures, WEBHOOK_SIGNATURE)?;
        check_timestamp(parse_unix_secs(timestamp)?, now_secs, tolerance_secs)?;
        let signatures = StandardSignatures::new(signatures);
        self.find_match(
            now_secs,
            |secret| signatures.matches(&standard_tag(secret, msg_id, timestamp, body)),
            || signatures.check_well_formed(),
        )
    }

    /// Computes the expected tag once per secret (inside `signed_with`) and says which secret
    /// matched; when none in force did, `check_shape` decides between a malformed header and
    /// a wrong or expired signature.
    fn find_match(
        &self,
        now_secs: i64,
        signed_with: impl Fn(&SigningSecret) -> bool,
        check_shape: impl Fn() -> Result<(), VerifyError>,
    ) -> Result<Verified, VerifyError> {
        let mut matched_expired = false;
        for (key_index, entry) in self.entries.iter().enumerate() {
            if !signed_with(&entry.secret) {
                continue;
            }
            if entry.in_force_at(now_secs) {
                return Ok(Verified { key_index });
            }
            matched_expired = true;
        }
        check_shape()?;
        Err(if matched_expired {
            VerifyError::SecretExpired
        } else {
            VerifyError::NoMatchingSignature
        })
    }

    /// The headers a sender adds for `body`, signed with every secret in force at
    /// `timestamp_secs`. For Standard Webhooks: `webhook-id`, `webhook-timestamp` and
    /// `webhook-signature`; for `body-hmac-sha256`, its one header.
    pub fn sign_headers(
        &self,
        msg_id: &str,
        timestamp_secs: i64,
        body: &[u8],
    ) -> Vec<(String, String)> {
        let in_force = self
            .entries
            .iter()
            .filter(|entry| entry.in_force_at(timestamp_secs));
        match &self.scheme {
            Scheme::StandardWebhooks { .. } => {
                let signatures: Vec<String> = in_force
                    .map(|entry| signature::sign(&entry.secret, msg_id, timestamp_secs, body))
                    .collect();
                vec![
                    (WEBHOOK_ID.to_owned(), msg_id.to_owned()),
                    (WEBHOOK_TIMESTAMP.to_owned(), timestamp_secs.to_string()),
                    (WEBHOOK_SIGNATURE.to_owned(), signatures.join(" ")),
                ]
            }
            Scheme::BodyHmacSha256(format) => {
                let signatures: Vec<String> = in_force
                    .map(|entry| format.sign(&entry.secret, body))
                    .collect();
                vec![(format.header.clone(), signatures.join(","))]
            }
        }
    }
}

/// Parses `webhook-timestamp`: ASCII digits only, as Unix seconds.
fn parse_unix_secs(value: &[u8]) -> Result<i64, VerifyError> {
    if value.is_empty() || value.len() > 12 || !value.iter().all(u8::is_ascii_digit) {
        return Err(VerifyError::InvalidTimestamp);
    }
    // Up to 12 ASCII digits always fit in an i64.
    Ok(value
        .iter()
        .fold(0i64, |total, digit| total * 10 + i64::from(digit - b'0')))
}

/// Refuses a timestamp further than `tolerance_secs` from `now_secs`, either way.
pub(crate) fn check_timestamp(
    timestamp_secs: i64,
    now_secs: i64,
    tolerance_secs: i64,
) -> Result<(), VerifyError> {
    let age_secs = now_secs.saturating_sub(timestamp_secs);
    if age_secs > tolerance_secs {
        return Err(VerifyError::TimestampTooOld {
            age_secs,
            tolerance_secs,
        });
    }
    if -age_secs > tolerance_secs {
        return Err(VerifyError::TimestampTooNew {
            ahead_secs: -age_secs,
            tolerance_secs,
        });
    }
    Ok(())
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
    use crate::signature::Encoding;

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
