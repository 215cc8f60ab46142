//! The refusals of SPEC section 2, one variant each, and the payload errors.

use std::borrow::Cow;

/// Why a request's authentication was refused, or why a secret could not be used.
///
/// Every refusal variant maps to one stable reason code ([`VerifyError::reason_code`]) that
/// receivers put in 401 bodies, logs and metrics. The `Display` text adds the detail a person
/// needs to fix the cause; it never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A header the scheme needs is absent (or empty).
    #[error("missing header {0}")]
    MissingHeader(Cow<'static, str>),
    /// The signed timestamp (`webhook-timestamp`, `t=`, `X-Slack-Request-Timestamp`) is not a
    /// whole number of Unix seconds.
    #[error("the signed timestamp is not a whole number of unix seconds")]
    InvalidTimestamp,
    /// The signed timestamp lies further in the past than the tolerance allows.
    #[error("timestamp is {age_secs} s old, more than the {tolerance_secs} s tolerance")]
    TimestampTooOld {
        /// How many seconds before the verifier's clock the timestamp lies.
        age_secs: i64,
        /// The tolerance in force.
        tolerance_secs: i64,
    },
    /// The signed timestamp lies further in the future than the tolerance allows.
    #[error(
        "timestamp is {ahead_secs} s in the future, more than the {tolerance_secs} s tolerance"
    )]
    TimestampTooNew {
        /// How many seconds after the verifier's clock the timestamp lies.
        ahead_secs: i64,
        /// The tolerance in force.
        tolerance_secs: i64,
    },
    /// Signatures were well formed but none matches a secret in force.
    #[error("no signature matches a secret in force")]
    NoMatchingSignature,
    /// The signature header holds nothing this scheme can read.
    #[error("signature header is malformed: {0}")]
    MalformedSignature(&'static str),
    /// A signature matches, but only a secret whose `expiresAt` has passed.
    #[error("the signature matches a secret that has expired")]
    SecretExpired,
    /// Basic authentication is configured but no `Authorization: Basic` header came.
    #[error("no Authorization: Basic header")]
    BasicMissing,
    /// The `Authorization` header is not `Basic base64(user:password)`.
    #[error("Authorization header is malformed: {0}")]
    BasicMalformed(&'static str),
    /// The username or the password differs.
    #[error("username or password does not match")]
    BasicMismatch,
    /// A secret could not be used (configuration, not a refusal of a request).
    #[error("invalid secret: {0}")]
    InvalidSecret(Cow<'static, str>),
}

impl VerifyError {
    /// The stable reason code of SPEC section 2, such as `missing_header:webhook-id` or
    /// `timestamp_too_old:412`. [`VerifyError::InvalidSecret`] gives `invalid_secret`.
    pub fn reason_code(&self) -> Cow<'static, str> {
        match self {
            Self::MissingHeader(name) => Cow::Owned(format!("missing_header:{name}")),
            Self::InvalidTimestamp => Cow::Borrowed("invalid_timestamp"),
            Self::TimestampTooOld { age_secs, .. } => {
                Cow::Owned(format!("timestamp_too_old:{age_secs}"))
            }
            Self::TimestampTooNew { ahead_secs, .. } => {
                Cow::Owned(format!("timestamp_too_new:{ahead_secs}"))
            }
            Self::NoMatchingSignature => Cow::Borrowed("no_matching_signature"),
            Self::MalformedSignature(_) => Cow::Borrowed("malformed_signature"),
            Self::SecretExpired => Cow::Borrowed("secret_expired"),
            Self::BasicMissing => Cow::Borrowed("basic_missing"),
            Self::BasicMalformed(_) => Cow::Borrowed("basic_malformed"),
            Self::BasicMismatch => Cow::Borrowed("basic_mismatch"),
            Self::InvalidSecret(_) => Cow::Borrowed("invalid_secret"),
        }
    }
}

/// Why a body is not the documented envelope (SPEC section 1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// The body is not JSON at all.
    #[error("body is not valid JSON: {0}")]
    InvalidJson(String),
    /// The body is JSON but not `{"accountId": …, "events": […]}` with valid events.
    #[error("body is not a webhook envelope: {0}")]
    InvalidEnvelope(String),
}

impl PayloadError {
    /// `invalid_json` or `invalid_envelope`, as in the receiver's 400 answers.
    pub fn reason_code(&self) -> &'static str {
        match self {
            Self::InvalidJson(_) => "invalid_json",
            Self::InvalidEnvelope(_) => "invalid_envelope",
        }
    }

    /// The detail without the prefix, for the `detail` field of a 400 answer.
    pub fn detail(&self) -> &str {
        match self {
            Self::InvalidJson(detail) | Self::InvalidEnvelope(detail) => detail,
        }
    }
}

/// serde_json's message for a file that holds secrets, without the values it quotes: it
/// quotes the offending value (`invalid type: string "whsec_…"`), and field names it puts in
/// backticks, which stay.
pub(crate) fn json_error_detail(error: &serde_json::Error) -> String {
    redact_quoted(&error.to_string())
}

/// The text with every double-quoted part replaced by `"[redacted]"`: serde_json quotes the
/// offending value in its messages (`invalid type: string "whsec_…"`), field names it puts in
/// backticks, which stay.
fn redact_quoted(message: &str) -> String {
    let mut redacted = String::with_capacity(message.len());
    let mut parts = message.split('"');
    if let Some(first) = parts.next() {
        redacted.push_str(first);
    }
    let mut inside = true;
    for part in parts {
        if inside {
            redacted.push_str("\"[redacted]");
        } else {
            redacted.push('"');
            redacted.push_str(part);
        }
        inside = !inside;
    }
    redacted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_codes_match_the_spec() {
        let cases: &[(VerifyError, &str)] = &[
            (
                VerifyError::MissingHeader("webhook-id".into()),
                "missing_header:webhook-id",
            ),
            (VerifyError::InvalidTimestamp, "invalid_timestamp"),
            (
                VerifyError::TimestampTooOld {
                    age_secs: 412,
                    tolerance_secs: 300,
                },
                "timestamp_too_old:412",
            ),
            (
                VerifyError::TimestampTooNew {
                    ahead_secs: 301,
                    tolerance_secs: 300,
                },
                "timestamp_too_new:301",
            ),
            (VerifyError::NoMatchingSignature, "no_matching_signature"),
            (VerifyError::MalformedSignature("x"), "malformed_signature"),
            (VerifyError::SecretExpired, "secret_expired"),
            (VerifyError::BasicMissing, "basic_missing"),
            (VerifyError::BasicMalformed("x"), "basic_malformed"),
            (VerifyError::BasicMismatch, "basic_mismatch"),
        ];
        for (error, code) in cases {
            assert_eq!(error.reason_code(), *code, "{error}");
        }
    }
}
