//! Shopify: `X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256 of the body>`, keyed with the app's
//! secret text. No timestamp is signed: no replay window.

use std::sync::LazyLock;

use super::body_hmac;
use crate::headers::Headers;
use crate::keyring::{Key, Keyring, Verified};
use crate::signature::{BodyHmacFormat, Encoding};
use crate::VerifyError;

/// The signature header, lowercase.
pub const HEADER: &str = "x-shopify-hmac-sha256";

/// Shopify's format, built once.
pub(crate) static FORMAT: LazyLock<BodyHmacFormat> = LazyLock::new(|| BodyHmacFormat {
    header: HEADER.to_owned(),
    encoding: Encoding::Base64,
    prefix: String::new(),
});

/// Verifies a Shopify delivery.
///
/// # Errors
/// As [`body_hmac`]: `missing_header:x-shopify-hmac-sha256`, `malformed_signature` (not the
/// base64 of 32 bytes), `no_matching_signature`, `secret_expired`.
pub(crate) fn verify(
    keyring: &Keyring,
    headers: &(impl Headers + ?Sized),
    body: &[u8],
    now_secs: i64,
) -> Result<Verified, VerifyError> {
    body_hmac::verify(keyring, &FORMAT, headers, body, now_secs)
}

/// The `x-shopify-hmac-sha256` header.
pub(crate) fn sign<'k>(keys: impl Iterator<Item = &'k Key>, body: &[u8]) -> Vec<(String, String)> {
    body_hmac::sign(keys, &FORMAT, body)
}
