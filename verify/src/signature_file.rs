//! The signature file an Integration Admin downloads and hands to the receiving team
//! (SPEC section 2): read, write, rotate, and turn into a [`Keyring`].

use serde::{Deserialize, Serialize};

use crate::key::{Key, KeyEntry, ED25519_ALGORITHM, HMAC_ALGORITHM};
use crate::keyring::{Keyring, Scheme};
use crate::signature::{BodyHmacFormat, Encoding, SigningSecret};
use crate::timestamp::{format_iso_seconds, parse_iso_millis};
use crate::VerifyError;

/// The only version of the format so far.
pub const SIGNATURE_FILE_VERSION: u32 = 1;

/// Why a signature file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SignatureFileError {
    /// Not JSON, or a field of the wrong type. The parser's message is kept without the
    /// values it quotes, since a misplaced secret would be one of them.
    #[error("not a signature file: {0}")]
    Json(String),
    /// A `version` this code does not know.
    #[error("signature file version {0} is not supported (expected 1)")]
    UnsupportedVersion(u32),
    /// A `scheme` this code does not know.
    #[error("unknown scheme {0:?} (expected one of standard-webhooks, svix, body-hmac-sha256, github, shopify, stripe, slack)")]
    UnknownScheme(String),
    /// An `algorithm` other than `HMAC-SHA256` or `Ed25519`.
    #[error("unsupported algorithm {0:?} (expected \"HMAC-SHA256\" or \"Ed25519\")")]
    UnsupportedAlgorithm(String),
    /// An Ed25519 key in a file of a scheme that only knows HMAC.
    #[error("secrets[{0}]: an Ed25519 key (whpk_/whsk_) signs only standard-webhooks v1a")]
    Ed25519ForHmacScheme(usize),
    /// An `encoding` other than `hex` or `base64`.
    #[error("unknown encoding {0:?} (expected \"hex\" or \"base64\")")]
    UnknownEncoding(String),
    /// `secrets` is empty.
    #[error("the file lists no secrets")]
    NoSecrets,
    /// A secret that does not parse.
    #[error("secrets[{index}]: {source}")]
    InvalidSecret {
        /// Position in `secrets`.
        index: usize,
        /// What is wrong with it.
        source: VerifyError,
    },
    /// A `createdAt` or `expiresAt` that is not an RFC 3339 date-time.
    #[error("secrets[{index}].{field} is not an RFC 3339 date-time")]
    InvalidTime {
        /// Position in `secrets`.
        index: usize,
        /// `createdAt` or `expiresAt`.
        field: &'static str,
    },
    /// A negative `toleranceSeconds`.
    #[error("toleranceSeconds must not be negative")]
    NegativeTolerance,
}

/// One secret of the file. `Debug` hides it.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretRecord {
    /// `whsec_…`, `whpk_…` / `whsk_…` (Standard Webhooks v1a), or the plain text of a vendor
    /// preset's or `body-hmac-sha256`'s shared secret.
    pub secret: String,
    /// RFC 3339 date-time the secret was made.
    pub created_at: String,
    /// RFC 3339 date-time from which the secret is no longer accepted, or `null`.
    pub expires_at: Option<String>,
}

impl std::fmt::Debug for SecretRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretRecord")
            .field("secret", &"[redacted]")
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// The signature file of SPEC section 2.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignatureFile {
    /// Format version, 1.
    pub version: u32,
    /// The webhook's id (`wh_…`).
    pub webhook_id: String,
    /// The webhook's name.
    pub webhook_name: String,
    /// One of [`crate::scheme::SCHEME_NAMES`].
    pub scheme: String,
    /// `HMAC-SHA256`, or `Ed25519` for a file of `v1a` keys.
    pub algorithm: String,
    /// Replay window of the schemes that sign a timestamp; absent means
    /// [`crate::signature::DEFAULT_TOLERANCE_SECS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance_seconds: Option<i64>,
    /// `body-hmac-sha256` only: the header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// `body-hmac-sha256` only: `hex` or `base64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// `body-hmac-sha256` only: the text before the tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// The secrets, oldest first.
    pub secrets: Vec<SecretRecord>,
}

impl SignatureFile {
    /// A new file for a webhook whose secrets sign with `scheme`, holding one HMAC secret
    /// made at `now_secs`. See [`SignatureFile::with_key`] for any kind of key.
    pub fn new(
        webhook_id: &str,
        webhook_name: &str,
        scheme: &Scheme,
        secret: &SigningSecret,
        now_secs: i64,
    ) -> Self {
        Self::with_key(
            webhook_id,
            webhook_name,
            scheme,
            Key::from(secret),
            now_secs,
        )
    }

    /// A new file for a webhook whose keys sign with `scheme`, holding one key (an HMAC
    /// secret or an Ed25519 key) made at `now_secs`.
    pub fn with_key(
        webhook_id: &str,
        webhook_name: &str,
        scheme: &Scheme,
        key: Key,
        now_secs: i64,
    ) -> Self {
        let mut file = Self {
            version: SIGNATURE_FILE_VERSION,
            webhook_id: webhook_id.to_owned(),
            webhook_name: webhook_name.to_owned(),
            scheme: String::new(),
            algorithm: key.algorithm().to_owned(),
            tolerance_seconds: None,
            header: None,
            encoding: None,
            prefix: None,
            secrets: vec![SecretRecord {
                secret: key.expose_text(),
                created_at: format_iso_seconds(now_secs),
                expires_at: None,
            }],
        };
        file.set_scheme(scheme);
        file
    }

    /// Writes `scheme`'s name and settings, keeping the keys.
    pub fn set_scheme(&mut self, scheme: &Scheme) {
        self.scheme = scheme.name().to_owned();
        self.tolerance_seconds = scheme.tolerance_secs();
        (self.header, self.encoding, self.prefix) = match scheme {
            Scheme::BodyHmacSha256(format) => (
                Some(format.header.clone()),
                Some(format.encoding.as_str().to_owned()),
                Some(format.prefix.clone()),
            ),
            _ => (None, None, None),
        };
    }

    /// The file to hand to a receiver: every `whsk_` secret key replaced by its `whpk_`
    /// public key (an HMAC secret is shared by nature and stays).
    ///
    /// # Errors
    /// As [`SignatureFile::keyring`].
    pub fn for_receiver(&self) -> Result<Self, SignatureFileError> {
        let keyring = self.keyring()?;
        let mut file = self.clone();
        for (record, entry) in file.secrets.iter_mut().zip(keyring.entries()) {
            record.secret = entry.key.for_receiver().expose_text();
        }
        Ok(file)
    }

    /// A fresh key like the newest one of this file: an Ed25519 secret key after one, else
    /// an HMAC secret of the form the scheme's senders hand out.
    ///
    /// # Errors
    /// As [`SignatureFile::keyring`].
    pub fn fresh_key(&self) -> Result<Key, SignatureFileError> {
        let keyring = self.keyring()?;
        Ok(match keyring.entries().last().map(|entry| &entry.key) {
            Some(Key::Ed25519Public(_) | Key::Ed25519Secret(_)) => {
                Key::Ed25519Secret(crate::ed25519::SecretKey::generate())
            }
            _ => Key::Hmac(keyring.scheme().generate_secret()),
        })
    }

    /// Reads and checks a file's bytes.
    ///
    /// # Errors
    /// Any [`SignatureFileError`]: the file is checked whole, so a bad secret is reported when
    /// the file is read, not at the first request.
    pub fn from_json(bytes: &[u8]) -> Result<Self, SignatureFileError> {
        let file: Self = serde_json::from_slice(bytes)
            .map_err(|error| SignatureFileError::Json(crate::error::json_error_detail(&error)))?;
        file.keyring()?;
        Ok(file)
    }

    /// The file as pretty JSON. It holds secrets: write it with mode 0600.
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }

    /// The scheme and its settings.
    ///
    /// # Errors
    /// An unknown version, scheme, algorithm or encoding.
    pub fn scheme(&self) -> Result<Scheme, SignatureFileError> {
        if self.version != SIGNATURE_FILE_VERSION {
            return Err(SignatureFileError::UnsupportedVersion(self.version));
        }
        if !self.algorithm.eq_ignore_ascii_case(HMAC_ALGORITHM)
            && !self.algorithm.eq_ignore_ascii_case(ED25519_ALGORITHM)
        {
            return Err(SignatureFileError::UnsupportedAlgorithm(shown(
                &self.algorithm,
            )));
        }
        let scheme = Scheme::from_name(&self.scheme)
            .ok_or_else(|| SignatureFileError::UnknownScheme(shown(&self.scheme)))?;
        if let Some(default) = scheme.tolerance_secs() {
            let tolerance_secs = self.tolerance_seconds.unwrap_or(default);
            if tolerance_secs < 0 {
                return Err(SignatureFileError::NegativeTolerance);
            }
            return Ok(scheme.with_tolerance(tolerance_secs));
        }
        if let Scheme::BodyHmacSha256(defaults) = scheme {
            let encoding = match &self.encoding {
                None => defaults.encoding,
                Some(name) => Encoding::from_name(name)
                    .ok_or_else(|| SignatureFileError::UnknownEncoding(shown(name)))?,
            };
            return Ok(Scheme::BodyHmacSha256(BodyHmacFormat {
                header: self
                    .header
                    .as_deref()
                    .map_or(defaults.header, str::to_ascii_lowercase),
                encoding,
                prefix: self.prefix.clone().unwrap_or_default(),
            }));
        }
        Ok(scheme)
    }

    /// The keyring the file describes.
    ///
    /// # Errors
    /// As [`SignatureFile::scheme`], plus no secrets, a secret that does not parse, or a date
    /// that is not RFC 3339.
    pub fn keyring(&self) -> Result<Keyring, SignatureFileError> {
        let scheme = self.scheme()?;
        if self.secrets.is_empty() {
            return Err(SignatureFileError::NoSecrets);
        }
        let entries = self
            .secrets
            .iter()
            .enumerate()
            .map(|(index, record)| {
                let text = record.secret.trim();
                let ed25519 = text.starts_with(crate::ed25519::PUBLIC_PREFIX)
                    || text.starts_with(crate::ed25519::SECRET_PREFIX);
                if ed25519 && !matches!(scheme, Scheme::StandardWebhooks { .. }) {
                    return Err(SignatureFileError::Ed25519ForHmacScheme(index));
                }
                let key = scheme
                    .parse_key(&record.secret)
                    .map_err(|source| SignatureFileError::InvalidSecret { index, source })?;
                let seconds = |field: &'static str, text: &str| {
                    parse_iso_millis(text)
                        .map(|ms| ms.div_euclid(1000))
                        .ok_or(SignatureFileError::InvalidTime { index, field })
                };
                Ok(KeyEntry {
                    key,
                    created_at: Some(seconds("createdAt", &record.created_at)?),
                    expires_at: record
                        .expires_at
                        .as_deref()
                        .map(|text| seconds("expiresAt", text))
                        .transpose()?,
                })
            })
            .collect::<Result<Vec<_>, SignatureFileError>>()?;
        Ok(Keyring::new(scheme, entries))
    }

    /// Rotates: every secret still in force at `now_secs + overlap_secs` is set to expire
    /// then, and `new_secret` is added. Until then a sender signs with both, and a receiver
    /// accepts either.
    pub fn rotate(&mut self, new_secret: &SigningSecret, now_secs: i64, overlap_secs: i64) {
        self.rotate_key(Key::from(new_secret), now_secs, overlap_secs);
    }

    /// [`SignatureFile::rotate`] with any kind of key (an Ed25519 key after Ed25519 keys).
    pub fn rotate_key(&mut self, new_key: Key, now_secs: i64, overlap_secs: i64) {
        let ends = now_secs.saturating_add(overlap_secs);
        for record in &mut self.secrets {
            let expires = record
                .expires_at
                .as_deref()
                .and_then(parse_iso_millis)
                .map(|ms| ms.div_euclid(1000));
            if expires.is_none_or(|at| at > ends) {
                record.expires_at = Some(format_iso_seconds(ends));
            }
        }
        self.secrets.push(SecretRecord {
            secret: new_key.expose_text(),
            created_at: format_iso_seconds(now_secs),
            expires_at: None,
        });
    }
}

/// A configuration value as an error may quote it: short plain words only, so a secret pasted
/// into the wrong field is never echoed.
fn shown(value: &str) -> String {
    let plain = value.len() <= 24
        && !value.contains(crate::signature::SECRET_PREFIX)
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if plain {
        value.to_owned()
    } else {
        "[redacted]".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_misplaced_secret_is_not_echoed_in_the_error() {
        let text = r#"{"version":1,"webhookId":"w","webhookName":"n","scheme":"standard-webhooks","algorithm":"HMAC-SHA256","secrets":["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]}"#;
        let error = SignatureFile::from_json(text.as_bytes()).expect_err("strings, not objects");
        let message = error.to_string();
        assert!(!message.contains("MfKQ9r8"), "{message}");
        assert!(
            message.contains("invalid type: string \"[redacted]\""),
            "{message}"
        );
        let missing = SignatureFile::from_json(br#"{"version":1}"#).expect_err("missing fields");
        assert!(
            missing.to_string().contains("missing field `webhookId`"),
            "{missing}"
        );
    }

    const NOW: i64 = 1_795_000_000;

    #[test]
    fn reads_the_spec_example() {
        let text = r#"{"version": 1, "webhookId": "wh_1", "webhookName": "CRM sync",
 "scheme": "standard-webhooks", "algorithm": "HMAC-SHA256", "toleranceSeconds": 300,
 "secrets": [{"secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "createdAt": "2026-11-27T10:00:00Z", "expiresAt": null}]}"#;
        let file = SignatureFile::from_json(text.as_bytes()).expect("spec example");
        let keyring = file.keyring().expect("keyring");
        assert_eq!(
            keyring.scheme(),
            &Scheme::StandardWebhooks {
                tolerance_secs: 300
            }
        );
        assert_eq!(keyring.entries().len(), 1);
        assert!(
            !format!("{file:?}").contains("whsec_"),
            "Debug hides secrets"
        );
    }

    #[test]
    fn refuses_what_it_cannot_use() {
        let base = r#"{"version":1,"webhookId":"w","webhookName":"n","scheme":"standard-webhooks","algorithm":"HMAC-SHA256","secrets":[{"secret":"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw","createdAt":"2026-11-27T10:00:00Z","expiresAt":null}]}"#;
        let check = |from: &str, to: &str, expected: &str| {
            let text = base.replacen(from, to, 1);
            let error = SignatureFile::from_json(text.as_bytes()).expect_err(to);
            assert_eq!(error.to_string(), expected);
        };
        check(
            "\"version\":1",
            "\"version\":2",
            "signature file version 2 is not supported (expected 1)",
        );
        check(
            "standard-webhooks",
            "rsa",
            "unknown scheme \"rsa\" (expected one of standard-webhooks, svix, body-hmac-sha256, github, shopify, stripe, slack)",
        );
        check(
            "HMAC-SHA256",
            "HMAC-SHA1",
            "unsupported algorithm \"HMAC-SHA1\" (expected \"HMAC-SHA256\" or \"Ed25519\")",
        );
        check(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "secrets[0]: invalid secret: a Standard Webhooks key must start with \"whsec_\", \"whpk_\" or \"whsk_\"",
        );
        check(
            "\"expiresAt\":null",
            "\"expiresAt\":\"tomorrow\"",
            "secrets[0].expiresAt is not an RFC 3339 date-time",
        );
        assert!(SignatureFile::from_json(b"{").is_err());
    }

    #[test]
    fn rotation_round_trips_through_json() {
        let scheme = Scheme::default();
        let first = SigningSecret::generate();
        let mut file = SignatureFile::new("wh_1", "CRM", &scheme, &first, NOW);
        let second = SigningSecret::generate();
        file.rotate(&second, NOW + 60, 3600);
        let reread = SignatureFile::from_json(file.to_json_pretty().as_bytes()).expect("reads");
        let keyring = reread.keyring().expect("keyring");
        let entries = keyring.entries();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].expires_at, Some(NOW + 60 + 3600));
        assert_eq!(entries[1].expires_at, None);
        assert_eq!(entries[1].created_at, Some(NOW + 60));
        assert_eq!(entries[1].key.expose_text(), second.expose_whsec());
    }

    #[test]
    fn body_hmac_file_carries_its_format() {
        let scheme = Scheme::BodyHmacSha256(BodyHmacFormat {
            header: "x-alm-signature".into(),
            encoding: Encoding::Base64,
            prefix: "sha256=".into(),
        });
        let file = SignatureFile::new("wh_2", "Reports", &scheme, &SigningSecret::generate(), NOW);
        let json = file.to_json_pretty();
        assert!(
            json.contains("\"encoding\": \"base64\"") && json.contains("\"prefix\": \"sha256=\"")
        );
        assert!(!json.contains("toleranceSeconds"));
        let keyring = SignatureFile::from_json(json.as_bytes()).and_then(|f| f.keyring());
        assert_eq!(keyring.expect("reads").scheme(), &scheme);
    }

    #[test]
    fn v1a_files_hand_out_public_keys_and_ed25519_stays_in_standard_webhooks() {
        let key = crate::ed25519::SecretKey::generate();
        let mut file = SignatureFile::with_key("wh_3", "v1a", &Scheme::default(), key.into(), NOW);
        assert_eq!(file.algorithm, ED25519_ALGORITHM);
        file.rotate_key(file.fresh_key().expect("fresh"), NOW + 1, 60);
        assert!(file.secrets.iter().all(|r| r.secret.starts_with("whsk_")));
        let public = file.for_receiver().expect("public form");
        let json = public.to_json_pretty();
        assert!(
            !json.contains("whsk_") && json.matches("whpk_").count() == 2,
            "{json}"
        );
        let keyring = SignatureFile::from_json(json.as_bytes()).and_then(|f| f.keyring());
        let keyring = keyring.expect("reads");
        assert!(!keyring.can_sign_at(NOW));
        let signed = file.keyring().expect("k").sign_headers("m", NOW, b"{}");
        assert!(keyring.verify_at(&signed, b"{}", NOW).is_ok());

        let mut github = SignatureFile::new(
            "wh_4",
            "gh",
            &Scheme::Github,
            &SigningSecret::generate_text(""),
            NOW,
        );
        github.secrets[0].secret = public.secrets[0].secret.clone();
        let error = github.keyring().expect_err("Ed25519 in a github file");
        assert!(
            error.to_string().contains("only standard-webhooks v1a"),
            "{error}"
        );
    }
}
