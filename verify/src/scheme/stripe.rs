//! Stripe: `Stripe-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">[,v1=…]`, keyed
//! with the endpoint's `whsec_…` text used byte for byte (Stripe does not decode it). Several
//! `v1` entries come during a secret roll; `v0` and unknown entries are ignored, as Stripe's
//! libraries do. The timestamp must lie within the tolerance (Stripe's default: 300 s).

use super::{hex_signatures, hex_tags, verify_timed_tags};
use crate::headers::{self, Headers};
use crate::key::{Key, KeyEntry, Verified};
use crate::VerifyError;

/// The signature header, lowercase.
pub const HEADER: &str = "stripe-signature";

/// The `key=value` elements of the header.
fn elements(value: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    value.split(|byte| *byte == b',').filter_map(|element| {
        let element = element.trim_ascii();
        let equals = element.iter().position(|byte| *byte == b'=')?;
        Some((&element[..equals], &element[equals + 1..]))
    })
}

/// The `t=` value of a header, if any.
pub(crate) fn timestamp_field(value: &[u8]) -> Option<&[u8]> {
    elements(value)
        .find(|(key, _)| *key == b"t")
        .map(|(_, t)| t)
}

/// Verifies a Stripe event delivery.
///
/// # Errors
/// `missing_header:stripe-signature`; `malformed_signature` when `t=` or every `v1=` is
/// missing or a `v1` is not 64 hex digits; `invalid_timestamp`; `timestamp_too_old:<s>` /
/// `timestamp_too_new:<s>`; `no_matching_signature`; `secret_expired`.
pub(crate) fn verify(
    key_entries: &[KeyEntry],
    headers: &(impl Headers + ?Sized),
    body: &[u8],
    now_secs: i64,
    tolerance_secs: i64,
) -> Result<Verified, VerifyError> {
    let value = headers::required(headers, HEADER)?;
    let timestamp = timestamp_field(value).ok_or(VerifyError::MalformedSignature(
        "Stripe-Signature has no t= timestamp",
    ))?;
    let tags = hex_tags(
        elements(value)
            .filter(|(key, _)| *key == b"v1")
            .map(|(_, encoded)| Ok(encoded)),
        "a v1= signature is not 64 hex digits",
        "Stripe-Signature has no v1= signature",
    )?;
    verify_timed_tags(
        key_entries,
        tags.as_slice(),
        timestamp,
        &[timestamp, b".", body],
        now_secs,
        tolerance_secs,
    )
}

/// `stripe-signature: t=…,v1=…` with one `v1` per secret.
pub(crate) fn sign<'k>(
    keys: impl Iterator<Item = &'k Key>,
    timestamp_secs: i64,
    body: &[u8],
) -> Vec<(String, String)> {
    let timestamp = timestamp_secs.to_string();
    let mut value = format!("t={timestamp}");
    for signature in hex_signatures(keys, &[timestamp.as_bytes(), b".", body]) {
        value.push_str(",v1=");
        value.push_str(&signature);
    }
    vec![(HEADER.to_owned(), value)]
}
