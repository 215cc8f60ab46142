//! Standard Webhooks, symmetric `v1` and asymmetric `v1a`, under its own header names or
//! Svix's.
//!
//! Both sign `msg_id "." timestamp "." body`: `v1` with HMAC-SHA256 (`whsec_` secrets), `v1a`
//! with Ed25519 (`whsk_` to sign, `whpk_` to verify). `webhook-signature` lists
//! space-separated `version,<base64>` entries; a request passes when any entry matches any key
//! in force, so one keyring may hold `v1` and `v1a` keys during a migration.

use std::cell::OnceCell;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use super::{check_timestamp, parse_unix_secs};
use crate::headers::{self, Headers};
use crate::key::{find_match, Key, KeyEntry, Verified};
use crate::signature::{standard_tag, StandardSignatures};
use crate::{ed25519, VerifyError};

/// The three header names of one flavour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderNames {
    /// The message id, kept across retries.
    pub id: &'static str,
    /// Unix seconds of the attempt.
    pub timestamp: &'static str,
    /// The signatures.
    pub signature: &'static str,
}

impl HeaderNames {
    /// The three names, signature first.
    pub fn all(&self) -> [&'static str; 3] {
        [self.signature, self.id, self.timestamp]
    }
}

/// `webhook-id`, `webhook-timestamp`, `webhook-signature`.
pub const STANDARD: HeaderNames = HeaderNames {
    id: headers::WEBHOOK_ID,
    timestamp: headers::WEBHOOK_TIMESTAMP,
    signature: headers::WEBHOOK_SIGNATURE,
};

/// `svix-id`, `svix-timestamp`, `svix-signature`.
pub const SVIX: HeaderNames = HeaderNames {
    id: "svix-id",
    timestamp: "svix-timestamp",
    signature: "svix-signature",
};

/// Verifies a request against the keys of a keyring at `now_secs`.
///
/// # Errors
/// A missing header, a timestamp that is not digits or outside the tolerance, a malformed
/// signature header, or no entry matching a key in force.
pub(crate) fn verify(
    key_entries: &[KeyEntry],
    names: &HeaderNames,
    headers: &(impl Headers + ?Sized),
    body: &[u8],
    now_secs: i64,
    tolerance_secs: i64,
) -> Result<Verified, VerifyError> {
    let [msg_id, timestamp, signatures] = if *names == STANDARD {
        headers.standard_webhook_headers()
    } else {
        [
            headers.header(names.id),
            headers.header(names.timestamp),
            headers.header(names.signature),
        ]
    };
    let msg_id = headers::present(msg_id, names.id)?;
    let timestamp = headers::present(timestamp, names.timestamp)?;
    let signatures = headers::present(signatures, names.signature)?;
    check_timestamp(parse_unix_secs(timestamp)?, now_secs, tolerance_secs)?;
    let signatures = StandardSignatures::new(signatures);
    // Ed25519 takes its message in one piece: it is assembled once, and only when a v1a key
    // is tried. The body is copied verbatim, never re-encoded.
    let message = OnceCell::new();
    let message = || message.get_or_init(|| signed_message(msg_id, timestamp, body));
    find_match(
        key_entries,
        now_secs,
        |key| match key {
            Key::Hmac(secret) => signatures.matches(&standard_tag(secret, msg_id, timestamp, body)),
            Key::Ed25519Public(public) => signatures.matches_v1a(public, message()),
            Key::Ed25519Secret(secret) => signatures.matches_v1a(secret.public_key(), message()),
        },
        || signatures.check_well_formed(),
    )
}

/// The headers of a request signed by every key that can sign: one `v1,` or `v1a,` entry per
/// key, space-separated. Public keys cannot sign and are skipped.
pub(crate) fn sign<'k>(
    keys: impl Iterator<Item = &'k Key>,
    names: &HeaderNames,
    msg_id: &str,
    timestamp_secs: i64,
    body: &[u8],
) -> Vec<(String, String)> {
    let timestamp = timestamp_secs.to_string();
    let message = OnceCell::new();
    let signatures: Vec<String> = keys
        .filter_map(|key| match key {
            Key::Hmac(secret) => Some(crate::signature::sign(secret, msg_id, timestamp_secs, body)),
            Key::Ed25519Secret(secret) => {
                let message = message
                    .get_or_init(|| signed_message(msg_id.as_bytes(), timestamp.as_bytes(), body));
                Some(format!(
                    "{},{}",
                    ed25519::SIGNATURE_VERSION,
                    BASE64.encode(secret.sign(message))
                ))
            }
            Key::Ed25519Public(_) => None,
        })
        .collect();
    vec![
        (names.id.to_owned(), msg_id.to_owned()),
        (names.timestamp.to_owned(), timestamp),
        (names.signature.to_owned(), signatures.join(" ")),
    ]
}

/// `msg_id "." timestamp "." body` in one buffer, for Ed25519.
fn signed_message(msg_id: &[u8], timestamp: &[u8], body: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(msg_id.len() + timestamp.len() + body.len() + 2);
    message.extend_from_slice(msg_id);
    message.push(b'.');
    message.extend_from_slice(timestamp);
    message.push(b'.');
    message.extend_from_slice(body);
    message
}
