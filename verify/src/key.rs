//! Keys and their validity: what every signature scheme checks a request against.
//!
//! A [`Key`] is an HMAC secret or an Ed25519 key; a [`KeyEntry`] adds the span in which it is
//! in force; `find_match` is the walk over a keyring's entries, written once, that says
//! which key matched or why none did. The scheme modules ([`crate::scheme`]) check one key
//! against one request and stand above this module; [`crate::keyring`] holds the keys of one
//! scheme together and picks the scheme's module, above both.

use crate::ed25519;
use crate::signature::SigningSecret;
use crate::VerifyError;

/// The algorithm of every HMAC scheme, as a signature file names it.
pub const HMAC_ALGORITHM: &str = "HMAC-SHA256";
/// The algorithm of Standard Webhooks `v1a` keys. Informative: each key's prefix decides how
/// it is used, so one file may mix both during a migration.
pub const ED25519_ALGORITHM: &str = "Ed25519";

/// One key: an HMAC secret, or an Ed25519 key of Standard Webhooks `v1a`.
#[derive(Debug, Clone)]
pub enum Key {
    /// A shared secret for HMAC-SHA256 (every scheme).
    Hmac(SigningSecret),
    /// `whpk_`: verifies `v1a` signatures only (what a receiver holds).
    Ed25519Public(ed25519::PublicKey),
    /// `whsk_`: signs `v1a` signatures, and verifies them (what a sender holds).
    Ed25519Secret(ed25519::SecretKey),
}

impl Key {
    /// Parses a Standard Webhooks key: `whsec_` (v1), `whpk_` or `whsk_` (v1a).
    ///
    /// # Errors
    /// [`VerifyError::InvalidSecret`] saying which rule the text breaks (never quoting it).
    pub fn parse_standard(text: &str) -> Result<Self, VerifyError> {
        let text = text.trim();
        if text.starts_with(ed25519::PUBLIC_PREFIX) {
            ed25519::PublicKey::parse(text).map(Self::Ed25519Public)
        } else if text.starts_with(ed25519::SECRET_PREFIX) {
            ed25519::SecretKey::parse(text).map(Self::Ed25519Secret)
        } else if text.starts_with(crate::signature::SECRET_PREFIX) {
            SigningSecret::parse(text).map(Self::Hmac)
        } else {
            Err(VerifyError::InvalidSecret(
                "a Standard Webhooks key must start with \"whsec_\", \"whpk_\" or \"whsk_\"".into(),
            ))
        }
    }

    /// The key as a signature file writes it (`whsec_…`, plain text, `whpk_…` or `whsk_…`).
    /// Never log this.
    pub fn expose_text(&self) -> String {
        match self {
            Self::Hmac(secret) => secret.expose_text(),
            Self::Ed25519Public(public) => public.to_text(),
            Self::Ed25519Secret(secret) => secret.expose_text(),
        }
    }

    /// The HMAC secret, when this is one.
    pub fn hmac(&self) -> Option<&SigningSecret> {
        match self {
            Self::Hmac(secret) => Some(secret),
            Self::Ed25519Public(_) | Self::Ed25519Secret(_) => None,
        }
    }

    /// Whether a sender can sign with this key (everything but a public key).
    pub fn can_sign(&self) -> bool {
        !matches!(self, Self::Ed25519Public(_))
    }

    /// What a receiver needs of this key: the public half of an Ed25519 secret key, else the
    /// key itself (an HMAC secret is shared by nature).
    pub fn for_receiver(&self) -> Self {
        match self {
            Self::Ed25519Secret(secret) => Self::Ed25519Public(secret.public_key().clone()),
            other => other.clone(),
        }
    }

    /// `HMAC-SHA256` or `Ed25519`.
    pub fn algorithm(&self) -> &'static str {
        match self {
            Self::Hmac(_) => HMAC_ALGORITHM,
            Self::Ed25519Public(_) | Self::Ed25519Secret(_) => ED25519_ALGORITHM,
        }
    }
}

impl From<SigningSecret> for Key {
    fn from(secret: SigningSecret) -> Self {
        Self::Hmac(secret)
    }
}

impl From<&SigningSecret> for Key {
    fn from(secret: &SigningSecret) -> Self {
        Self::Hmac(secret.clone())
    }
}

impl From<ed25519::SecretKey> for Key {
    fn from(secret: ed25519::SecretKey) -> Self {
        Self::Ed25519Secret(secret)
    }
}

/// One key of a keyring and the time span in which it is in force.
#[derive(Debug, Clone)]
pub struct KeyEntry {
    /// The key.
    pub key: Key,
    /// Unix seconds when the key was made, if known (informative only).
    pub created_at: Option<i64>,
    /// Unix seconds from which the key is no longer accepted; `None` for never.
    pub expires_at: Option<i64>,
}

impl KeyEntry {
    /// A key with no expiry.
    pub fn new(key: impl Into<Key>) -> Self {
        Self {
            key: key.into(),
            created_at: None,
            expires_at: None,
        }
    }

    /// Whether the key is accepted at `now_secs`.
    pub fn in_force_at(&self, now_secs: i64) -> bool {
        self.expires_at.is_none_or(|expiry| now_secs < expiry)
    }
}

/// What a successful verification found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// Index in the keyring of the key whose signature matched.
    pub key_index: usize,
}

/// Asks `signed_with` once per key of `entries` and says which key matched; when none in
/// force did, `check_shape` decides between a malformed header and a wrong or expired
/// signature.
pub(crate) fn find_match(
    entries: &[KeyEntry],
    now_secs: i64,
    signed_with: impl Fn(&Key) -> bool,
    check_shape: impl Fn() -> Result<(), VerifyError>,
) -> Result<Verified, VerifyError> {
    let mut matched_expired = false;
    for (key_index, entry) in entries.iter().enumerate() {
        if !signed_with(&entry.key) {
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
