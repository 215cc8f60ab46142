//! Secrets at rest: with `--secret-key-file FILE` (env `SENDER_SECRET_KEY_FILE`), the Basic
//! passwords and signature files (the HMAC secrets and Ed25519 keys) of the state are sealed
//! with AES-256-GCM, so a copy of the database file or a dump of its tables does not give
//! them away.
//!
//! - The key is 32 random bytes, kept in a file as one line of base64 (what
//!   `sender secret-key generate` writes, mode 0600; `openssl rand -base64 32` makes one too).
//!   [`SecretKey`]'s `Debug` shows nothing of it, and no message quotes the file.
//! - A sealed value is `sealed:v1:` and the base64 of a random 96-bit nonce, the ciphertext and
//!   the tag. The associated data is the column's name and the webhook's id, so a value moved
//!   to another row or column does not open: nobody with write access to the database can
//!   make the sender sign for one webhook with another's secret.
//! - The state records which key seals it (a value sealed under the key, see
//!   [`admit`]): a state with sealed secrets refuses to open without the key, or with another
//!   key, with a usage error (exit 2) that names the flag, instead of signing with garbage.
//! - Giving a key to a state holding plain secrets seals them, in one transaction, when the
//!   state is opened ([`SecretColumns::seal_plain`]); [`SecretColumns::reseal`] moves them
//!   to a new key (`sender secret-key rotate`). A plain value met later (written meanwhile by
//!   a process without the key) is still read, and sealed at the next opening with the key.
//!
//! What the key does not protect (the README says it too): a thief with the key file and the
//! database, a running process's memory, the signature files handed out, and the password of
//! a PostgreSQL connection string.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom as _, SystemRandom};

use crate::UsageError;

/// Bytes of a key (AES-256).
pub const KEY_LEN: usize = 32;

/// How a sealed value starts; `v1` is this layout (nonce, ciphertext, tag; AES-256-GCM).
const SEALED_PREFIX: &str = "sealed:v1:";

/// What the state's key record seals: opening it proves a key is the state's.
const KEY_CHECK_TEXT: &str = "sender secret key";

/// The associated data's column name for the key record (no webhook has this id).
const KEY_CHECK_FIELD: &str = "key_check";

/// Where a command takes the key from, for messages.
const KEY_FLAGS: &str = "--secret-key-file (or SENDER_SECRET_KEY_FILE)";

/// A secret column of a webhook: part of what a sealed value is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The Basic password.
    BasicPassword,
    /// The signature file (scheme and every secret or key).
    SignatureFile,
}

impl Field {
    /// The column's name, as in both stores.
    pub fn column(self) -> &'static str {
        match self {
            Self::BasicPassword => "basic_password",
            Self::SignatureFile => "signature_file",
        }
    }

    /// What it is, for messages.
    fn what(self) -> &'static str {
        match self {
            Self::BasicPassword => "Basic password",
            Self::SignatureFile => "signature secrets",
        }
    }
}

/// The key that seals the state's secrets. `Debug` shows only the file it came from.
#[derive(Clone)]
pub struct SecretKey {
    key: LessSafeKey,
    /// The file it was read from, for messages (never its content).
    source: PathBuf,
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKey")
            .field("source", &self.source)
            .field("key", &"[redacted]")
            .finish()
    }
}

impl SecretKey {
    /// A new random key and the text of its file (base64 and a newline).
    ///
    /// # Errors
    /// The system's random source fails.
    pub fn generate() -> anyhow::Result<(Self, String)> {
        let mut bytes = [0u8; KEY_LEN];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| anyhow::anyhow!("the system's random source failed"))?;
        let text = format!("{}\n", STANDARD.encode(bytes));
        let key = Self::from_bytes(&bytes, Path::new("(new key)"))?;
        Ok((key, text))
    }

    /// Reads the key file at `path`, given with `flag` (for messages).
    ///
    /// # Errors
    /// A [`UsageError`] when the file cannot be read or holds no key; the message names the
    /// flag and the file, and never quotes the file.
    pub fn read(flag: &str, path: &Path) -> Result<Self, UsageError> {
        let text = std::fs::read_to_string(path).map_err(|error| {
            UsageError(format!(
                "{flag} {}: cannot read it: {error}",
                path.display()
            ))
        })?;
        let bytes = STANDARD
            .decode(text.trim())
            .ok()
            .filter(|bytes| bytes.len() == KEY_LEN)
            .ok_or_else(|| {
                UsageError(format!(
                    "{flag} {}: not a key (one line of base64 holding {KEY_LEN} bytes, as \
                     `sender secret-key generate` writes)",
                    path.display()
                ))
            })?;
        if common::files::readable_by_others(path) {
            tracing::warn!(
                file = %path.display(),
                "the secret key file can be read by other users of this machine: `chmod 600` it"
            );
        }
        Self::from_bytes(&bytes, path).map_err(|error| UsageError(format!("{error:#}")))
    }

    fn from_bytes(bytes: &[u8], source: &Path) -> anyhow::Result<Self> {
        let key = UnboundKey::new(&AES_256_GCM, bytes)
            .map_err(|_| anyhow::anyhow!("{}: not an AES-256 key", source.display()))?;
        Ok(Self {
            key: LessSafeKey::new(key),
            source: source.to_owned(),
        })
    }

    /// The file the key came from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// `plaintext` sealed for `field` of the webhook `webhook_id`, under a fresh nonce.
    ///
    /// # Errors
    /// The system's random source fails.
    pub fn seal(&self, plaintext: &str, webhook_id: &str, field: Field) -> anyhow::Result<String> {
        self.seal_bound(plaintext, &associated_data(field.column(), webhook_id))
    }

    /// The text of a value sealed by [`SecretKey::seal`] for the same webhook and field.
    ///
    /// # Errors
    /// A [`UsageError`] when it does not open: sealed under another key, moved from another
    /// row or column, or changed.
    pub fn open(&self, sealed: &str, webhook_id: &str, field: Field) -> Result<String, UsageError> {
        self.open_bound(sealed, &associated_data(field.column(), webhook_id))
            .ok_or_else(|| {
                UsageError(format!(
                    "webhook {webhook_id}: its sealed {} do not open with {KEY_FLAGS} {} (sealed \
                     under another key, or changed in the database)",
                    field.what(),
                    self.source.display()
                ))
            })
    }

    /// The state's key record for this key.
    ///
    /// # Errors
    /// The system's random source fails.
    pub fn key_check(&self) -> anyhow::Result<String> {
        self.seal_bound(KEY_CHECK_TEXT, &associated_data(KEY_CHECK_FIELD, ""))
    }

    /// Whether `record` is this key's record.
    fn opens_key_check(&self, record: &str) -> bool {
        self.open_bound(record, &associated_data(KEY_CHECK_FIELD, ""))
            .is_some_and(|text| text == KEY_CHECK_TEXT)
    }

    fn seal_bound(&self, plaintext: &str, associated: &[u8]) -> anyhow::Result<String> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| anyhow::anyhow!("the system's random source failed"))?;
        let mut sealed = plaintext.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(associated),
                &mut sealed,
            )
            .map_err(|_| anyhow::anyhow!("sealing a secret failed"))?;
        let mut stored = nonce.to_vec();
        stored.extend_from_slice(&sealed);
        Ok(format!("{SEALED_PREFIX}{}", STANDARD.encode(stored)))
    }

    fn open_bound(&self, sealed: &str, associated: &[u8]) -> Option<String> {
        let mut bytes = sealed_bytes(sealed)?;
        let (nonce, ciphertext) = bytes.split_at_mut(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let plaintext = self
            .key
            .open_in_place(nonce, Aad::from(associated), ciphertext)
            .ok()?;
        String::from_utf8(plaintext.to_vec()).ok()
    }
}

/// The associated data of a sealed value: the column and the webhook, apart by a NUL that
/// neither can hold.
fn associated_data(column: &str, webhook_id: &str) -> Vec<u8> {
    format!("sender/{column}\0{webhook_id}").into_bytes()
}

/// The nonce, ciphertext and tag of a sealed value; `None` for anything else.
fn sealed_bytes(stored: &str) -> Option<Vec<u8>> {
    let bytes = STANDARD.decode(stored.strip_prefix(SEALED_PREFIX)?).ok()?;
    (bytes.len() >= NONCE_LEN + AES_256_GCM.tag_len()).then_some(bytes)
}

/// Whether a stored value is sealed (rather than plain text from before the key).
pub fn is_sealed(stored: &str) -> bool {
    sealed_bytes(stored).is_some()
}

/// A stored secret as its owner reads it: opened with `key` when sealed, as it is when plain.
///
/// # Errors
/// A [`UsageError`] for a sealed value without a key (naming the flag), or one that does not
/// open with it.
pub fn read(
    stored: String,
    key: Option<&SecretKey>,
    webhook_id: &str,
    field: Field,
) -> Result<String, UsageError> {
    if !is_sealed(&stored) {
        return Ok(stored);
    }
    match key {
        Some(key) => key.open(&stored, webhook_id, field),
        None => Err(sealed_without_key()),
    }
}

/// A secret as it is stored: sealed under `key` when there is one.
///
/// # Errors
/// The system's random source fails.
pub fn write(
    plaintext: String,
    key: Option<&SecretKey>,
    webhook_id: &str,
    field: Field,
) -> anyhow::Result<String> {
    match key {
        Some(key) => key.seal(&plaintext, webhook_id, field),
        None => Ok(plaintext),
    }
}

fn sealed_without_key() -> UsageError {
    UsageError(format!(
        "the secrets in this state are sealed: give the key with {KEY_FLAGS}"
    ))
}

/// What opening a state with `key` writes to its key record (`recorded`): `Some` for the
/// first key a state is given, `None` when the record stands.
///
/// # Errors
/// A [`UsageError`] for a sealed state without a key, or with another key.
pub fn admit(recorded: Option<&str>, key: Option<&SecretKey>) -> anyhow::Result<Option<String>> {
    match (recorded, key) {
        (None, None) => Ok(None),
        (None, Some(key)) => Ok(Some(key.key_check()?)),
        (Some(_), None) => Err(sealed_without_key().into()),
        (Some(record), Some(key)) if key.opens_key_check(record) => Ok(None),
        (Some(_), Some(key)) => Err(UsageError(format!(
            "{KEY_FLAGS} {}: the secrets in this state are sealed under another key",
            key.source.display()
        ))
        .into()),
    }
}

/// A webhook's secret columns as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretColumns {
    /// The webhook's id (part of the associated data).
    pub webhook_id: String,
    /// `basic_password`.
    pub basic_password: Option<String>,
    /// `signature_file`.
    pub signature_file: Option<String>,
}

impl fmt::Debug for SecretColumns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretColumns")
            .field("webhook_id", &self.webhook_id)
            .finish_non_exhaustive()
    }
}

impl SecretColumns {
    /// The columns with their plain values sealed under `key`; `None` when every value is
    /// sealed already (or absent).
    ///
    /// # Errors
    /// The system's random source fails.
    pub fn seal_plain(&self, key: &SecretKey) -> anyhow::Result<Option<Self>> {
        let seal = |value: &Option<String>, field| -> anyhow::Result<Option<String>> {
            value
                .as_ref()
                .map(|value| {
                    if is_sealed(value) {
                        Ok(value.clone())
                    } else {
                        key.seal(value, &self.webhook_id, field)
                    }
                })
                .transpose()
        };
        let sealed = Self {
            webhook_id: self.webhook_id.clone(),
            basic_password: seal(&self.basic_password, Field::BasicPassword)?,
            signature_file: seal(&self.signature_file, Field::SignatureFile)?,
        };
        Ok((sealed != *self).then_some(sealed))
    }

    /// The columns with every value sealed under `to`: opened with `from` when sealed, taken
    /// as they are when plain.
    ///
    /// # Errors
    /// A sealed value without `from`, or one that does not open with it; the random source
    /// fails.
    pub fn reseal(&self, from: Option<&SecretKey>, to: &SecretKey) -> anyhow::Result<Self> {
        let reseal = |value: &Option<String>, field| -> anyhow::Result<Option<String>> {
            value
                .clone()
                .map(|value| {
                    let plaintext = read(value, from, &self.webhook_id, field)?;
                    to.seal(&plaintext, &self.webhook_id, field)
                })
                .transpose()
        };
        Ok(Self {
            webhook_id: self.webhook_id.clone(),
            basic_password: reseal(&self.basic_password, Field::BasicPassword)?,
            signature_file: reseal(&self.signature_file, Field::SignatureFile)?,
        })
    }

    /// Whether the webhook has a secret at all.
    pub fn holds_secrets(&self) -> bool {
        self.basic_password.is_some() || self.signature_file.is_some()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn key() -> SecretKey {
        SecretKey::generate().unwrap().0
    }

    #[test]
    fn a_sealed_value_opens_only_for_its_webhook_and_field_under_its_key() {
        let key = key();
        let sealed = key.seal("hunter22", "wh_a", Field::BasicPassword).unwrap();
        assert!(is_sealed(&sealed), "{sealed}");
        assert!(!sealed.contains("hunter22"));
        assert_eq!(
            key.open(&sealed, "wh_a", Field::BasicPassword).unwrap(),
            "hunter22"
        );
        // A fresh nonce each time: the same secret never seals to the same text.
        assert_ne!(
            sealed,
            key.seal("hunter22", "wh_a", Field::BasicPassword).unwrap()
        );
        // Moved to another row or column, or opened under another key: refused.
        assert!(key.open(&sealed, "wh_b", Field::BasicPassword).is_err());
        assert!(key.open(&sealed, "wh_a", Field::SignatureFile).is_err());
        let error = self::key()
            .open(&sealed, "wh_a", Field::BasicPassword)
            .unwrap_err();
        assert!(error.0.contains("webhook wh_a"), "{error}");
        assert!(error.0.contains("--secret-key-file"), "{error}");
        // One changed character and it no longer opens.
        let mut tampered = sealed.into_bytes();
        let last = tampered.len() - 3;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert!(key.open(&tampered, "wh_a", Field::BasicPassword).is_err());
    }

    #[test]
    fn plain_values_are_read_as_they_are_and_sealed_ones_need_the_key() {
        let key = key();
        let plain = "{\"version\":1}".to_owned();
        assert!(!is_sealed(&plain));
        assert!(!is_sealed("sealed:v1:not base64!"));
        assert_eq!(
            read(plain.clone(), None, "wh_a", Field::SignatureFile).unwrap(),
            plain
        );
        assert_eq!(
            read(plain.clone(), Some(&key), "wh_a", Field::SignatureFile).unwrap(),
            plain
        );
        let sealed = write(plain.clone(), Some(&key), "wh_a", Field::SignatureFile).unwrap();
        let error = read(sealed.clone(), None, "wh_a", Field::SignatureFile).unwrap_err();
        assert!(error.0.contains("--secret-key-file"), "{error}");
        assert_eq!(
            read(sealed, Some(&key), "wh_a", Field::SignatureFile).unwrap(),
            plain
        );
    }

    #[test]
    fn the_key_record_admits_its_key_only() {
        let key = key();
        assert_eq!(admit(None, None).unwrap(), None);
        let record = admit(None, Some(&key)).unwrap().unwrap();
        assert_eq!(admit(Some(&record), Some(&key)).unwrap(), None);
        let without = admit(Some(&record), None).unwrap_err().to_string();
        assert!(without.contains("sealed") && without.contains("--secret-key-file"));
        let other = admit(Some(&record), Some(&self::key()))
            .unwrap_err()
            .to_string();
        assert!(other.contains("another key"), "{other}");
    }

    #[test]
    fn columns_are_sealed_once_and_moved_to_a_new_key() {
        let (old, new) = (key(), key());
        let plain = SecretColumns {
            webhook_id: "wh_a".into(),
            basic_password: Some("hunter22".into()),
            signature_file: None,
        };
        let sealed = plain.seal_plain(&old).unwrap().unwrap();
        assert!(is_sealed(sealed.basic_password.as_deref().unwrap()));
        assert_eq!(sealed.signature_file, None);
        assert_eq!(sealed.seal_plain(&old).unwrap(), None, "sealed already");
        let moved = sealed.reseal(Some(&old), &new).unwrap();
        let password = moved.basic_password.clone().unwrap();
        assert_eq!(
            new.open(&password, "wh_a", Field::BasicPassword).unwrap(),
            "hunter22"
        );
        assert!(old.open(&password, "wh_a", Field::BasicPassword).is_err());
        assert!(
            sealed.reseal(Some(&new), &old).is_err(),
            "not sealed under new"
        );
        assert!(sealed.reseal(None, &new).is_err(), "sealed: needs the key");
        let first = plain.reseal(None, &new).unwrap();
        let password = first.basic_password.unwrap();
        assert_eq!(
            new.open(&password, "wh_a", Field::BasicPassword).unwrap(),
            "hunter22"
        );
    }

    #[test]
    fn key_files_are_read_and_never_quoted() {
        let dir = tempfile::tempdir().unwrap();
        let (key, text) = SecretKey::generate().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, &text).unwrap();
        let read_back = SecretKey::read("--secret-key-file", &path).unwrap();
        let sealed = key.seal("x", "wh_a", Field::BasicPassword).unwrap();
        assert_eq!(
            read_back
                .open(&sealed, "wh_a", Field::BasicPassword)
                .unwrap(),
            "x"
        );
        let debug = format!("{read_back:?}");
        assert!(!debug.contains(text.trim()), "{debug}");
        for bad in ["short", "bm90IDMyIGJ5dGVz\n", ""] {
            std::fs::write(&path, bad).unwrap();
            let error = SecretKey::read("--secret-key-file", &path).unwrap_err().0;
            assert!(error.contains("not a key"), "{error}");
            assert!(
                bad.trim().is_empty() || !error.contains(bad.trim()),
                "{error}"
            );
        }
        let error = SecretKey::read("--secret-key-file", &dir.path().join("missing"))
            .unwrap_err()
            .0;
        assert!(error.contains("cannot read it"), "{error}");
    }
}
