//! GitHub: `X-Hub-Signature-256: sha256=<lowercase hex HMAC-SHA256 of the body>`, keyed with
//! the webhook's secret text. No timestamp is signed: no replay window (GitHub's
//! `X-GitHub-Delivery` id is for deduplication, not signed).

use std::sync::LazyLock;

use super::body_hmac;
use crate::headers::Headers;
use crate::keyring::{Key, Keyring, Verified};
use crate::signature::{BodyHmacFormat, Encoding};
use crate::VerifyError;

/// The signature header, lowercase.
pub const HEADER: &str = "x-hub-signature-256";

/// GitHub's format, built once.
pub(crate) static FORMAT: LazyLock<BodyHmacFormat> = LazyLock::new(|| BodyHmacFormat {
    header: HEADER.to_owned(),
    encoding: Encoding::Hex,
    prefix: "sha256=".to_owned(),
});

/// Verifies a GitHub delivery.
///
/// # Errors
/// As [`body_hmac`]: `missing_header:x-hub-signature-256`, `malformed_signature` (no
/// `sha256=`, not 64 hex digits), `no_matching_signature`, `secret_expired`.
pub(crate) fn verify(
    keyring: &Keyring,
    headers: &(impl Headers + ?Sized),
    body: &[u8],
    now_secs: i64,
) -> Result<Verified, VerifyError> {
    body_hmac::verify(keyring, &FORMAT, headers, body, now_secs)
}

/// The `x-hub-signature-256` header.
pub(crate) fn sign<'k>(keys: impl Iterator<Item = &'k Key>, body: &[u8]) -> Vec<(String, String)> {
    body_hmac::sign(keys, &FORMAT, body)
}
