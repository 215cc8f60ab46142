//! Slack: `X-Slack-Signature: v0=<hex HMAC-SHA256 of "v0:" timestamp ":" body>` with the
//! timestamp in `X-Slack-Request-Timestamp`, keyed with the app's signing secret text. Slack
//! asks receivers to refuse timestamps more than five minutes away (the default tolerance).
//! Slack sends one signature; during a rotation this toolkit's sender lists one `v0=` per
//! secret, comma-separated, and the verifier accepts any of them.

use super::{check_timestamp, parse_unix_secs};
use crate::headers::{self, Headers};
use crate::keyring::{Key, Keyring, Verified};
use crate::signature::{decode_tag, matches_any, tag_of, Encoding, SIGNATURE_LEN};
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
    keyring: &Keyring,
    headers: &(impl Headers + ?Sized),
    body: &[u8],
    now_secs: i64,
    tolerance_secs: i64,
) -> Result<Verified, VerifyError> {
    let value = headers::required(headers, SIGNATURE_HEADER)?;
    let timestamp = headers::required(headers, TIMESTAMP_HEADER)?;
    let mut tags: Vec<[u8; SIGNATURE_LEN]> = Vec::new();
    for entry in value
        .split(|byte| *byte == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|entry| !entry.is_empty())
    {
        let encoded = entry
            .strip_prefix(VERSION)
            .and_then(|rest| rest.strip_prefix(b"="))
            .ok_or(VerifyError::MalformedSignature(
                "X-Slack-Signature does not start with v0=",
            ))?;
        tags.push(
            decode_tag(encoded, Encoding::Hex).ok_or(VerifyError::MalformedSignature(
                "the v0= signature is not 64 hex digits",
            ))?,
        );
    }
    if tags.is_empty() {
        return Err(VerifyError::MalformedSignature(
            "X-Slack-Signature holds no v0= signature",
        ));
    }
    check_timestamp(parse_unix_secs(timestamp)?, now_secs, tolerance_secs)?;
    keyring.find_match(
        now_secs,
        |key| {
            key.hmac().is_some_and(|secret| {
                matches_any(
                    &tag_of(secret, &[VERSION, b":", timestamp, b":", body]),
                    &tags,
                )
            })
        },
        || Ok(()),
    )
}

/// `x-slack-signature` (one `v0=` per secret) and `x-slack-request-timestamp`.
pub(crate) fn sign<'k>(
    keys: impl Iterator<Item = &'k Key>,
    timestamp_secs: i64,
    body: &[u8],
) -> Vec<(String, String)> {
    let timestamp = timestamp_secs.to_string();
    let signatures: Vec<String> = keys
        .filter_map(Key::hmac)
        .map(|secret| {
            let tag = tag_of(secret, &[VERSION, b":", timestamp.as_bytes(), b":", body]);
            format!("v0={}", Encoding::Hex.encode(&tag))
        })
        .collect();
    vec![
        (SIGNATURE_HEADER.to_owned(), signatures.join(",")),
        (TIMESTAMP_HEADER.to_owned(), timestamp),
    ]
}
