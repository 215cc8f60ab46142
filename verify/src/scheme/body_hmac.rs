//! HMAC-SHA256 of the body alone in one header: `body-hmac-sha256`, and the base of the GitHub
//! and Shopify presets. No timestamp is signed, so there is no replay window.

use crate::headers::{self, Headers};
use crate::key::{find_match, Key, KeyEntry, Verified};
use crate::signature::{body_tag, matches_any, BodyHmacFormat};
use crate::VerifyError;

/// Verifies a request whose header `format.header` carries the body's HMAC.
///
/// # Errors
/// A missing header, an entry without the prefix or not 32 bytes in the encoding, or no tag
/// matching a secret in force.
pub(crate) fn verify(
    key_entries: &[KeyEntry],
    format: &BodyHmacFormat,
    headers: &(impl Headers + ?Sized),
    body: &[u8],
    now_secs: i64,
) -> Result<Verified, VerifyError> {
    let value = headers::required(headers, &format.header)?;
    let tags = format.parse_tags(value)?;
    find_match(
        key_entries,
        now_secs,
        |key| match key {
            Key::Hmac(secret) => matches_any(&body_tag(secret, body), tags.as_slice()),
            Key::Ed25519Public(_) | Key::Ed25519Secret(_) => false,
        },
        || Ok(()),
    )
}

/// The one header, with one tag per secret, comma-separated.
pub(crate) fn sign<'k>(
    keys: impl Iterator<Item = &'k Key>,
    format: &BodyHmacFormat,
    body: &[u8],
) -> Vec<(String, String)> {
    let tags: Vec<String> = keys
        .filter_map(Key::hmac)
        .map(|secret| format.sign(secret, body))
        .collect();
    vec![(format.header.clone(), tags.join(","))]
}
