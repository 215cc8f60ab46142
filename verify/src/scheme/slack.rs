//! Slack: `X-Slack-Signature: v0=<hex HMAC-SHA256 of "v0:" timestamp ":" body>` with the
//! timestamp in `X-Slack-Request-Timestamp`, keyed with the app's signing secret text. Slack
//! asks receivers to refuse timestamps more than five minutes away (the default tolerance).
//! Slack sends one signature; during a rotation this toolkit's sender lists one `v0=` per
//! secret, comma-separated, and the verifier accepts any of them.

use super::{hex_signatures, hex_tags, verify_timed_tags};
use crate::headers::{self, Headers};
use crate::key::{Key, KeyEntry, Verified};
use crate::VerifyError;

/// The signature header, lowercase.
pub const SIGNATURE_HEADER: &str = "x-slack-signature";
/// The timestamp header, lowercase.
pub const TIMESTAMP_HEADER: &str = "x-slack-request-timestamp";
/// The version tag before each signature.
const VERSION: &[u8] = b"v0";

/// Verifies a Slack request.
///
/// # Errors
/// `missing_header:x-slack-signature` / `missing_header:x-slack-request-timestamp`;
/// `malformed_signature` (no `v0=`, not 64 hex digits); `invalid_timestamp`;
/// `timestamp_too_old:<s>` / `timestamp_too_new:<s>`; `no_matching_signature`;
/// `secret_expired`.
pub(crate) fn verify(
    key_entries: &[KeyEntry],
    headers: &(impl Headers + ?Sized),
    body: &[u8],
    now_secs: i64,
    tolerance_secs: i64,
) -> Result<Verified, VerifyError> {
    let value = headers::required(headers, SIGNATURE_HEADER)?;
    let timestamp = headers::required(headers, TIMESTAMP_HEADER)?;
    let entries = value
        .split(|byte| *byte == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            entry
                .strip_prefix(VERSION)
                .and_then(|rest| rest.strip_prefix(b"="))
                .ok_or(VerifyError::MalformedSignature(
                    "X-Slack-Signature does not start with v0=",
                ))
        });
    let tags = hex_tags(
        entries,
        "the v0= signature is not 64 hex digits",
        "X-Slack-Signature holds no v0= signature",
    )?;
    verify_timed_tags(
        key_entries,
        tags.as_slice(),
        timestamp,
        &[VERSION, b":", timestamp, b":", body],
        now_secs,
        tolerance_secs,
    )
}

/// `x-slack-signature` (one `v0=` per secret) and `x-slack-request-timestamp`.
pub(crate) fn sign<'k>(
    keys: impl Iterator<Item = &'k Key>,
    timestamp_secs: i64,
    body: &[u8],
) -> Vec<(String, String)> {
    let timestamp = timestamp_secs.to_string();
    let signatures: Vec<String> =
        hex_signatures(keys, &[VERSION, b":", timestamp.as_bytes(), b":", body])
            .into_iter()
            .map(|signature| format!("v0={signature}"))
            .collect();
    vec![
        (SIGNATURE_HEADER.to_owned(), signatures.join(",")),
        (TIMESTAMP_HEADER.to_owned(), timestamp),
    ]
}
