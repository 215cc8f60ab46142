//! Ed25519 keys of Standard Webhooks asymmetric (`v1a`) signatures.
//!
//! The spec serialises a key pair's halves as `whpk_<base64>` (the 32-byte public key, all a
//! receiver needs) and `whsk_<base64>` (the secret key, the sender's alone). A secret key is read
//! in either layout libraries use: the 32-byte seed, or libsodium's 64 bytes of seed followed
//! by the public key (checked against the seed); it is written in the 64-byte layout, so the
//! public key can be read off it without curve arithmetic.
//!
//! The arithmetic is `ring`'s, already in the build for TLS.

use std::fmt;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ring::signature::{Ed25519KeyPair, KeyPair as _, UnparsedPublicKey, ED25519};

use crate::VerifyError;

/// Every Standard Webhooks public key starts with this.
pub const PUBLIC_PREFIX: &str = "whpk_";
/// Every Standard Webhooks secret (signing) key starts with this.
pub const SECRET_PREFIX: &str = "whsk_";
/// The version tag of asymmetric signatures.
pub const SIGNATURE_VERSION: &str = "v1a";
/// Bytes of a public key and of a seed.
pub const KEY_LEN: usize = 32;
/// Bytes of a signature.
pub const SIGNATURE_LEN: usize = 64;

/// A public key: verifies `v1a` signatures, cannot make them. Not secret, but `Debug` still
/// prints only a fingerprint-free marker so logs stay uniform.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    bytes: [u8; KEY_LEN],
}

impl PublicKey {
    /// Parses `whpk_<base64 of 32 bytes>`.
    ///
    /// # Errors
    /// [`VerifyError::InvalidSecret`] saying which rule the text breaks.
    pub fn parse(text: &str) -> Result<Self, VerifyError> {
        let bytes = decode_prefixed(text, PUBLIC_PREFIX)?;
        let bytes: [u8; KEY_LEN] = bytes.try_into().map_err(|_| {
            VerifyError::InvalidSecret("a whpk_ public key must hold 32 bytes".into())
        })?;
        Ok(Self { bytes })
    }

    /// The key as `whpk_<base64>`.
    pub fn to_text(&self) -> String {
        format!("{PUBLIC_PREFIX}{}", BASE64.encode(self.bytes))
    }

    /// The 32 raw bytes.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }

    /// Whether `signature` is this key's Ed25519 signature of `message`.
    pub fn verifies(&self, message: &[u8], signature: &[u8; SIGNATURE_LEN]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.bytes)
            .verify(message, signature)
            .is_ok()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PublicKey(whpk_…)")
    }
}

/// A secret key: signs `v1a` signatures (and verifies them through its public half). The key
/// pair is expanded once, when the key is read; `Debug` never shows it.
#[derive(Clone)]
pub struct SecretKey {
    seed: [u8; KEY_LEN],
    pair: Arc<Ed25519KeyPair>,
    public: PublicKey,
}

impl SecretKey {
    /// Parses `whsk_<base64>` of the 32-byte seed or of seed and public key (64 bytes).
    ///
    /// # Errors
    /// [`VerifyError::InvalidSecret`] for another prefix, bad base64, another length, or a
    /// public half that does not belong to the seed. The error never quotes the key.
    pub fn parse(text: &str) -> Result<Self, VerifyError> {
        let bytes = decode_prefixed(text, SECRET_PREFIX)?;
        let wrong_length = || {
            VerifyError::InvalidSecret(
                "a whsk_ secret key must hold 32 bytes (seed) or 64 (seed and public key)".into(),
            )
        };
        let seed: [u8; KEY_LEN] = bytes
            .get(..KEY_LEN)
            .and_then(|seed| seed.try_into().ok())
            .ok_or_else(wrong_length)?;
        let key = Self::from_seed(seed);
        match bytes.len() {
            KEY_LEN => Ok(key),
            SIGNATURE_LEN if bytes[KEY_LEN..] == key.public.bytes => Ok(key),
            SIGNATURE_LEN => Err(VerifyError::InvalidSecret(
                "the public half of this whsk_ key does not belong to its seed".into(),
            )),
            _ => Err(wrong_length()),
        }
    }

    /// A fresh key from the operating system's CSPRNG.
    pub fn generate() -> Self {
        Self::from_seed(crate::random::random_bytes())
    }

    fn from_seed(seed: [u8; KEY_LEN]) -> Self {
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed)
            // Any 32 bytes are a valid seed; ring checks only the length.
            .unwrap_or_else(|_| unreachable!("a 32-byte seed is always accepted"));
        let mut public = [0u8; KEY_LEN];
        public.copy_from_slice(pair.public_key().as_ref());
        Self {
            seed,
            pair: Arc::new(pair),
            public: PublicKey { bytes: public },
        }
    }

    /// The key as `whsk_<base64 of seed and public key>`. Never log this.
    pub fn expose_text(&self) -> String {
        let mut both = [0u8; SIGNATURE_LEN];
        both[..KEY_LEN].copy_from_slice(&self.seed);
        both[KEY_LEN..].copy_from_slice(&self.public.bytes);
        format!("{SECRET_PREFIX}{}", BASE64.encode(both))
    }

    /// The public half, for the receiver's signature file.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The Ed25519 signature of `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        let mut signature = [0u8; SIGNATURE_LEN];
        signature.copy_from_slice(self.pair.sign(message).as_ref());
        signature
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey([redacted])")
    }
}

fn decode_prefixed(text: &str, prefix: &'static str) -> Result<Vec<u8>, VerifyError> {
    let encoded = text.trim().strip_prefix(prefix).ok_or_else(|| {
        VerifyError::InvalidSecret(format!("the key must start with {prefix:?}").into())
    })?;
    BASE64.decode(encoded).map_err(|_| {
        VerifyError::InvalidSecret(
            format!("the text after {prefix:?} is not standard base64").into(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8032 section 7.1, TEST 2: a published key pair and its signature of one byte.
    #[test]
    fn rfc8032_test_2() {
        let hex = |text: &str| -> Vec<u8> {
            (0..text.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
                .collect()
        };
        let seed = hex("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb");
        let public = hex("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c");
        let expected = hex("92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00");
        let key = SecretKey::parse(&format!("{SECRET_PREFIX}{}", BASE64.encode(&seed)))
            .expect("seed form");
        assert_eq!(key.public_key().as_bytes().as_slice(), public.as_slice());
        let signature = key.sign(&[0x72]);
        assert_eq!(signature.as_slice(), expected.as_slice());
        let public = PublicKey::parse(&key.public_key().to_text()).expect("round trip");
        assert!(public.verifies(&[0x72], &signature));
        assert!(!public.verifies(&[0x73], &signature));
        let again = SecretKey::parse(&key.expose_text()).expect("64-byte form");
        assert_eq!(again.sign(&[0x72]), signature);
    }

    #[test]
    fn key_rules_and_redaction() {
        let key = SecretKey::generate();
        let mut text = key.expose_text();
        assert!(
            PublicKey::parse(&text).is_err(),
            "a secret key is not a public key"
        );
        assert!(SecretKey::parse(&key.public_key().to_text()).is_err());
        assert!(SecretKey::parse("whsk_AAAA").is_err());
        assert!(PublicKey::parse("whpk_not base64").is_err());
        // A 64-byte key whose public half belongs to another seed.
        text = format!(
            "{SECRET_PREFIX}{}",
            BASE64.encode(
                [
                    &[1u8; 32][..],
                    SecretKey::generate().public_key().as_bytes()
                ]
                .concat()
            )
        );
        let error = SecretKey::parse(&text).expect_err("mismatched halves");
        assert!(error.to_string().contains("does not belong"), "{error}");
        assert_eq!(format!("{key:?}"), "SecretKey([redacted])");
    }
}
