//! Secrets at rest: with `--secret-key-file FILE` (env `SENDER_SECRET_KEY_FILE`), the Basic
//! passwords and signature files (the HMAC secrets and Ed25519 keys) of the state are sealed
//! with AES-256-GCM, so a copy of the database file or a dump of its tables does not give
//! them away.
//!
//! - The key is 32 random bytes, kept in a file as one line of base64 (what
//!   `sender secret-key generate` writes, mode 0600; `openssl rand -base64 32` makes one too).
//!   A key file other users may read is refused, as ssh refuses such a private key.
//!   [`SecretKey`]'s `Debug` shows nothing of it, and no message quotes the file.
//! - A sealed value is `sealed:v2:` and the base64 of a random 96-bit nonce, the ciphertext
//!   and the tag. The associated data binds it to where it belongs ([`Binding`]): the column
//!   and the webhook's id, so a value moved to another row or column does not open; and for
//!   the Basic password also the Target URL and the username, so that someone with write
//!   access to the database who points a webhook's URL elsewhere (or changes its username)
//!   is not sent the password: it no longer opens, and nothing is sent. Every write seals the
//!   password again, under the URL and username it is written with.
//! - The state records which key seals it (a value sealed under the key, see [`admit`]), and
//!   that record, not the look of a value, decides what is sealed: without a record every
//!   value is plain text, whatever it starts with (a password may be `sealed:…`); with one, a
//!   value that starts with `sealed:` is sealed. A state with a record refuses to open
//!   without the key, or with another key, with a usage error (exit 2) that names the flag,
//!   instead of signing with garbage; and every write of a webhook checks the record in its
//!   transaction ([`confirm`]), so a process still holding a key the state was rotated away
//!   from writes nothing rather than a value nobody can open.
//! - Giving a key to a state holding plain secrets seals them, in one transaction, when the
//!   state is opened ([`SecretColumns::bring_up`]); [`SecretColumns::reseal`] moves them to a
//!   new key (`sender secret-key rotate`). A plain value met later (written meanwhile by a
//!   process without the key) is still read, and sealed at the next opening with the key.
//! - `sealed:v1:` was the first layout (issue 20): bound to the column and the webhook only.
//!   A state whose record is of that layout is brought to `v2` at its first opening with the
//!   key by this build (the record too); once it is, `v1` values no longer open, so an old
//!   value copied back from a backup cannot bring an unbound password back.
//!
//! What the key does not protect (the README says it too): a thief with the key file and the
//! database, a running process's memory (the key and the opened secrets are not wiped from
//! it: ring keeps the expanded key in its own type, and an opened password or signing secret
//! lives in the registration the worker signs with; only the key file's text and bytes are
//! wiped once read), the signature files handed out, and the password of a PostgreSQL
//! connection string. A thief with write access to the database and a copy of it from before
//! the URL was changed can still replay an old sealed value with its old URL: sealing binds a
//! secret to where it is, not to when.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom as _, SystemRandom};
use zeroize::Zeroizing;

use crate::UsageError;

/// Bytes of a key (AES-256).
pub const KEY_LEN: usize = 32;

/// How every sealed value starts, whatever its layout.
const SEALED_MARK: &str = "sealed:";

/// The layouts of a sealed value: nonce, ciphertext and tag under AES-256-GCM; `v1` bound to
/// the column and the webhook, `v2` also to where the secret goes ([`Binding`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    V1,
    V2,
}

impl Layout {
    fn prefix(self) -> &'static str {
        match self {
            Self::V1 => "sealed:v1:",
            Self::V2 => "sealed:v2:",
        }
    }

    /// The layout a stored value (or key record) is sealed in, if any.
    fn of(stored: &str) -> Option<Layout> {
        [Self::V2, Self::V1]
            .into_iter()
            .find(|layout| stored.starts_with(layout.prefix()))
    }
}

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
            Self::SignatureFile => "signature file",
        }
    }
}

/// Where a secret belongs, which its sealed value is bound to: the webhook and the column,
/// and for the Basic password the Target URL and the username it is sent to.
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    /// The webhook's id.
    pub webhook_id: &'a str,
    /// The column.
    pub field: Field,
    /// The webhook's Target URL, as stored.
    pub url: &'a str,
    /// The Basic username (empty for other methods).
    pub username: &'a str,
}

impl Binding<'_> {
    /// The associated data of this layout: column, webhook, and for the password the URL and
    /// username, apart by NULs (which none of them can hold: the URL and the username are
    /// checked, the column and id are ours).
    fn associated_data(&self) -> Vec<u8> {
        let mut data = format!("sender/v2/{}\0{}", self.field.column(), self.webhook_id);
        if self.field == Field::BasicPassword {
            data.push_str(&format!("\0{}\0{}", self.url, self.username));
        }
        data.into_bytes()
    }

    /// The associated data of the `v1` layout: the column and the webhook.
    fn associated_data_v1(&self) -> Vec<u8> {
        format!("sender/{}\0{}", self.field.column(), self.webhook_id).into_bytes()
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
    pub fn generate() -> anyhow::Result<(Self, Zeroizing<String>)> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        SystemRandom::new()
            .fill(bytes.as_mut())
            .map_err(|_| anyhow::anyhow!("the system's random source failed"))?;
        let text = Zeroizing::new(format!("{}\n", STANDARD.encode(bytes.as_ref())));
        let key = Self::from_bytes(bytes.as_ref(), Path::new("(new key)"))?;
        Ok((key, text))
    }

    /// Reads the key file at `path`, given with `flag` (for messages). The file's text and
    /// bytes are wiped from memory once the key is made.
    ///
    /// # Errors
    /// A [`UsageError`] when the file cannot be read, other users may read or change it (as
    /// ssh refuses such a private key: anyone who reads it opens every sealed secret), or it
    /// holds no key; the message names the flag and the file, and never quotes the file.
    pub fn read(flag: &str, path: &Path) -> Result<Self, UsageError> {
        if common::files::readable_by_others(path) {
            return Err(UsageError(format!(
                "{flag} {}: other users of this machine may read it, and with it every sealed \
                 secret: `chmod 600 {}` first",
                path.display(),
                path.display()
            )));
        }
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|error| {
            UsageError(format!(
                "{flag} {}: cannot read it: {error}",
                path.display()
            ))
        })?);
        let bytes = STANDARD
            .decode(text.trim())
            .ok()
            .map(Zeroizing::new)
            .filter(|bytes| bytes.len() == KEY_LEN)
            .ok_or_else(|| {
                UsageError(format!(
                    "{flag} {}: not a key (one line of base64 holding {KEY_LEN} bytes, as \
                     `sender secret-key generate` writes)",
                    path.display()
                ))
            })?;
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

    /// `plaintext` sealed for `binding`, under a fresh nonce.
    ///
    /// # Errors
    /// The system's random source fails.
    pub fn seal(&self, plaintext: &str, binding: &Binding<'_>) -> anyhow::Result<String> {
        self.seal_bound(plaintext, &binding.associated_data())
    }

    /// The text of a value sealed by [`SecretKey::seal`] for the same binding.
    ///
    /// # Errors
    /// A [`UsageError`] when it does not open: sealed under another key, moved from another
    /// row or column, the URL or username changed without it, in an older layout, or changed.
    pub fn open(&self, sealed: &str, binding: &Binding<'_>) -> Result<String, UsageError> {
        let opened = (Layout::of(sealed) == Some(Layout::V2))
            .then(|| self.open_bound(sealed, Layout::V2, &binding.associated_data()))
            .flatten();
        opened.ok_or_else(|| {
            let bound = if binding.field == Field::BasicPassword {
                ", its Target URL or username changed in the database"
            } else {
                ""
            };
            UsageError(format!(
                "webhook {}: its sealed {} does not open with {KEY_FLAGS} {} (sealed under \
                 another key{bound}, or changed in the database); nothing was sent",
                binding.webhook_id,
                binding.field.what(),
                self.source.display()
            ))
        })
    }

    /// The state's key record for this key.
    ///
    /// # Errors
    /// The system's random source fails.
    pub fn key_check(&self) -> anyhow::Result<String> {
        self.seal_bound(KEY_CHECK_TEXT, &key_check_data(Layout::V2))
    }

    /// Whether `record` is this key's record, and in which layout.
    fn opens_key_check(&self, record: &str) -> Option<Layout> {
        let layout = Layout::of(record)?;
        self.open_bound(record, layout, &key_check_data(layout))
            .is_some_and(|text| text == KEY_CHECK_TEXT)
            .then_some(layout)
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
        Ok(format!(
            "{}{}",
            Layout::V2.prefix(),
            STANDARD.encode(stored)
        ))
    }

    fn open_bound(&self, sealed: &str, layout: Layout, associated: &[u8]) -> Option<String> {
        let mut bytes = sealed_bytes(sealed, layout)?;
        let (nonce, ciphertext) = bytes.split_at_mut(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let plaintext = self
            .key
            .open_in_place(nonce, Aad::from(associated), ciphertext)
            .ok()?;
        String::from_utf8(plaintext.to_vec()).ok()
    }
}

/// The associated data of the key record in `layout`.
fn key_check_data(layout: Layout) -> Vec<u8> {
    match layout {
        Layout::V1 => format!("sender/{KEY_CHECK_FIELD}\0").into_bytes(),
        Layout::V2 => format!("sender/v2/{KEY_CHECK_FIELD}\0").into_bytes(),
    }
}

/// The nonce, ciphertext and tag of a value sealed in `layout`; `None` for anything else.
fn sealed_bytes(stored: &str, layout: Layout) -> Option<Vec<u8>> {
    let bytes = STANDARD
        .decode(stored.strip_prefix(layout.prefix())?)
        .ok()?;
    (bytes.len() >= NONCE_LEN + AES_256_GCM.tag_len()).then_some(bytes)
}

/// Whether a value stored in a state with a key record is sealed (rather than plain text
/// written by a process without the key). Without a record nothing is sealed, whatever it
/// looks like: the record decides, see the module.
fn is_sealed(stored: &str) -> bool {
    stored.starts_with(SEALED_MARK)
}

/// A stored secret as its owner reads it: in a state with a key record (`keyed`), a sealed
/// value opened with `key`; anything else as it is.
///
/// # Errors
/// A [`UsageError`] for a sealed value without a key (naming the flag), or one that does not
/// open with it.
pub fn read(
    stored: String,
    key: Option<&SecretKey>,
    keyed: bool,
    binding: &Binding<'_>,
) -> Result<String, UsageError> {
    if !keyed || !is_sealed(&stored) {
        return Ok(stored);
    }
    match key {
        Some(key) => key.open(&stored, binding),
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
    binding: &Binding<'_>,
) -> anyhow::Result<String> {
    match key {
        Some(key) => key.seal(&plaintext, binding),
        None => Ok(plaintext),
    }
}

fn sealed_without_key() -> UsageError {
    UsageError(format!(
        "the secrets in this state are sealed: give the key with {KEY_FLAGS}"
    ))
}

fn another_key(key: &SecretKey) -> UsageError {
    UsageError(format!(
        "{KEY_FLAGS} {}: the secrets in this state are sealed under another key",
        key.source.display()
    ))
}

/// What opening a state with `key` writes to its key record (`recorded`): `Some` for the
/// first key a state is given, or a record of the `v1` layout brought to this one; `None`
/// when the record stands.
///
/// # Errors
/// A [`UsageError`] for a sealed state without a key, or with another key.
pub fn admit(recorded: Option<&str>, key: Option<&SecretKey>) -> anyhow::Result<Option<String>> {
    match (recorded, key) {
        (None, None) => Ok(None),
        (None, Some(key)) => Ok(Some(key.key_check()?)),
        (Some(_), None) => Err(sealed_without_key().into()),
        (Some(record), Some(key)) => match key.opens_key_check(record) {
            Some(Layout::V2) => Ok(None),
            Some(Layout::V1) => Ok(Some(key.key_check()?)),
            None => Err(another_key(key).into()),
        },
    }
}

/// Whether a process opened with `key` may write secrets into a state whose key record is
/// `recorded` now: checked inside each write's transaction, since the state may have been
/// given a key, or rotated to another, since this process opened it.
///
/// # Errors
/// The state was sealed, rotated to another key, or lost its record meanwhile: nothing may be
/// written (the message says "meanwhile", as a webhook changed under an edit does, and what
/// to do: start the process again with the state's key).
pub fn confirm(recorded: Option<&str>, key: Option<&SecretKey>) -> anyhow::Result<()> {
    let why = match (recorded, key) {
        (None, None) => return Ok(()),
        (Some(record), Some(key)) if key.opens_key_check(record) == Some(Layout::V2) => {
            return Ok(())
        }
        (Some(_), None) => "were sealed meanwhile (a command was given a key)",
        (Some(_), Some(_)) => "were moved to another key meanwhile (sender secret-key rotate)",
        (None, Some(_)) => "lost their key record meanwhile (changed in the database?)",
    };
    anyhow::bail!(
        "the secrets of this state {why}: nothing was written; start this process again with \
         the state's key ({KEY_FLAGS})"
    )
}

/// A webhook's secret columns as stored, with what they are bound to.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretColumns {
    /// The webhook's id.
    pub webhook_id: String,
    /// Its Target URL.
    pub url: String,
    /// `basic_username`.
    pub basic_username: Option<String>,
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
    fn binding(&self, field: Field) -> Binding<'_> {
        Binding {
            webhook_id: &self.webhook_id,
            field,
            url: &self.url,
            username: self.basic_username.as_deref().unwrap_or_default(),
        }
    }

    /// Each secret column with `change` applied to its value (absent values stay absent).
    fn map(
        &self,
        mut change: impl FnMut(&str, &Binding<'_>) -> anyhow::Result<String>,
    ) -> anyhow::Result<Self> {
        let mut apply = |value: &Option<String>, field| -> anyhow::Result<Option<String>> {
            value
                .as_deref()
                .map(|value| change(value, &self.binding(field)))
                .transpose()
        };
        Ok(Self {
            basic_password: apply(&self.basic_password, Field::BasicPassword)?,
            signature_file: apply(&self.signature_file, Field::SignatureFile)?,
            ..self.clone()
        })
    }

    /// At an opening with `key`, in a state whose key record was `recorded`: the columns in
    /// this layout, sealed under `key`; `None` when they are already. Without a record, every
    /// value is plain text and gets sealed; with a `v1` record, `v1` values are opened and
    /// sealed again in this layout; with a record of this layout, values that are not sealed
    /// (plain text written meanwhile by a process without the key) get sealed, and the rest
    /// stays as it is.
    ///
    /// # Errors
    /// A `v1` value that does not open; the system's random source fails.
    pub fn bring_up(
        &self,
        key: &SecretKey,
        recorded: Option<&str>,
    ) -> anyhow::Result<Option<Self>> {
        let record = recorded.and_then(Layout::of);
        let brought = self.map(|value, binding| match (record, Layout::of(value)) {
            (Some(_), Some(Layout::V2)) => Ok(value.to_owned()),
            (Some(Layout::V1), Some(Layout::V1)) => {
                let plaintext = key
                    .open_bound(value, Layout::V1, &binding.associated_data_v1())
                    .ok_or_else(|| {
                        UsageError(format!(
                            "webhook {}: its sealed {} does not open with {KEY_FLAGS} {}",
                            binding.webhook_id,
                            binding.field.what(),
                            key.source.display()
                        ))
                    })?;
                key.seal(&plaintext, binding)
            }
            // A `v1` value after the state was brought to `v2`: left as it is (it does not
            // open, and is refused when read).
            (Some(Layout::V2), Some(Layout::V1)) => Ok(value.to_owned()),
            _ => key.seal(value, binding),
        })?;
        Ok((brought != *self).then_some(brought))
    }

    /// The columns with every value sealed under `to`: in a state with a key record
    /// (`keyed`), sealed values opened with `from`; plain ones taken as they are.
    ///
    /// # Errors
    /// A sealed value without `from`, or one that does not open with it; the random source
    /// fails.
    pub fn reseal(
        &self,
        from: Option<&SecretKey>,
        keyed: bool,
        to: &SecretKey,
    ) -> anyhow::Result<Self> {
        self.map(|value, binding| {
            let plaintext = read(value.to_owned(), from, keyed, binding)?;
            to.seal(&plaintext, binding)
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

    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn key() -> SecretKey {
        SecretKey::generate().unwrap().0
    }

    fn password_of<'a>(webhook_id: &'a str, url: &'a str, username: &'a str) -> Binding<'a> {
        Binding {
            webhook_id,
            field: Field::BasicPassword,
            url,
            username,
        }
    }

    fn file_of(webhook_id: &str) -> Binding<'_> {
        Binding {
            webhook_id,
            field: Field::SignatureFile,
            url: "http://crm.example/hook",
            username: "",
        }
    }

    const URL: &str = "https://crm.example/hook";

    /// A value sealed in the `v1` layout, as the build before this one sealed it.
    fn seal_v1(key: &SecretKey, plaintext: &str, webhook_id: &str, field: Field) -> String {
        let binding = Binding {
            webhook_id,
            field,
            url: "",
            username: "",
        };
        key.seal_bound(plaintext, &binding.associated_data_v1())
            .unwrap()
            .replacen("sealed:v2:", "sealed:v1:", 1)
    }

    #[test]
    fn a_sealed_value_opens_only_where_it_belongs_under_its_key() {
        let key = key();
        let here = password_of("wh_a", URL, "crm");
        let sealed = key.seal("hunter22", &here).unwrap();
        assert!(sealed.starts_with("sealed:v2:"), "{sealed}");
        assert!(!sealed.contains("hunter22"));
        assert_eq!(key.open(&sealed, &here).unwrap(), "hunter22");
        // A fresh nonce each time: the same secret never seals to the same text.
        assert_ne!(sealed, key.seal("hunter22", &here).unwrap());
        // Moved to another row or column, sent elsewhere, to another user, or opened under
        // another key: refused.
        for elsewhere in [
            password_of("wh_b", URL, "crm"),
            file_of("wh_a"),
            password_of("wh_a", "https://attacker.example/hook", "crm"),
            password_of("wh_a", URL, "admin"),
        ] {
            let error = key.open(&sealed, &elsewhere).unwrap_err().0;
            assert!(error.contains("does not open"), "{error}");
        }
        let error = self::key().open(&sealed, &here).unwrap_err();
        assert!(error.0.contains("webhook wh_a"), "{error}");
        assert!(error.0.contains("--secret-key-file"), "{error}");
        assert!(error.0.contains("Basic password does not open"), "{error}");
        // The signature file is bound to its webhook and column, not to the URL.
        let file = key.seal("{}", &file_of("wh_a")).unwrap();
        let moved = Binding {
            url: "https://elsewhere.example/",
            ..file_of("wh_a")
        };
        assert_eq!(key.open(&file, &moved).unwrap(), "{}");
        // One changed character and it no longer opens.
        let mut tampered = sealed.into_bytes();
        let last = tampered.len() - 3;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert!(key.open(&tampered, &here).is_err());
    }

    #[test]
    fn the_key_record_decides_what_is_sealed_not_the_look_of_a_value() {
        let key = key();
        let binding = password_of("wh_a", URL, "crm");
        // A password that looks sealed, in a state without a key record: plain text.
        let lookalike = "sealed:v2:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_owned();
        assert_eq!(
            read(lookalike.clone(), None, false, &binding).unwrap(),
            lookalike
        );
        assert_eq!(
            read(lookalike.clone(), Some(&key), false, &binding).unwrap(),
            lookalike
        );
        // With a record, a sealed value needs the key; plain text stays readable.
        let sealed = write("hunter22".into(), Some(&key), &binding).unwrap();
        let error = read(sealed.clone(), None, true, &binding).unwrap_err();
        assert!(error.0.contains("--secret-key-file"), "{error}");
        assert_eq!(
            read(sealed, Some(&key), true, &binding).unwrap(),
            "hunter22"
        );
        assert_eq!(read("plain".into(), None, true, &binding).unwrap(), "plain");
        // Given a key, such a state seals the look-alike like any plain value.
        let columns = SecretColumns {
            webhook_id: "wh_a".into(),
            url: URL.into(),
            basic_username: Some("crm".into()),
            basic_password: Some(lookalike.clone()),
            signature_file: None,
        };
        let sealed = columns.bring_up(&key, None).unwrap().unwrap();
        let password = sealed.basic_password.unwrap();
        assert_eq!(key.open(&password, &binding).unwrap(), lookalike);
    }

    #[test]
    fn the_key_record_admits_its_key_only_and_writes_check_it() {
        let key = key();
        assert_eq!(admit(None, None).unwrap(), None);
        let record = admit(None, Some(&key)).unwrap().unwrap();
        assert_eq!(admit(Some(&record), Some(&key)).unwrap(), None);
        let without = admit(Some(&record), None).unwrap_err().to_string();
        assert!(without.contains("sealed") && without.contains("--secret-key-file"));
        let other = self::key();
        let error = admit(Some(&record), Some(&other)).unwrap_err().to_string();
        assert!(error.contains("another key"), "{error}");
        // A write checks the record as it is now.
        confirm(None, None).unwrap();
        confirm(Some(&record), Some(&key)).unwrap();
        let rotated = confirm(Some(&other.key_check().unwrap()), Some(&key))
            .unwrap_err()
            .to_string();
        assert!(
            rotated.contains("another key meanwhile") && rotated.contains("nothing was written"),
            "{rotated}"
        );
        assert!(confirm(Some(&record), None).is_err());
        assert!(confirm(None, Some(&key)).is_err());
    }

    #[test]
    fn a_state_of_the_first_layout_is_brought_to_this_one_and_only_once() {
        let key = key();
        let record_v1 = key
            .seal_bound(KEY_CHECK_TEXT, &key_check_data(Layout::V1))
            .unwrap()
            .replacen("sealed:v2:", "sealed:v1:", 1);
        // The record of the first layout admits its key and is written anew.
        let record = admit(Some(&record_v1), Some(&key)).unwrap().unwrap();
        assert!(record.starts_with("sealed:v2:"));
        assert!(
            confirm(Some(&record_v1), Some(&key)).is_err(),
            "write after bring-up"
        );
        let columns = SecretColumns {
            webhook_id: "wh_a".into(),
            url: URL.into(),
            basic_username: Some("crm".into()),
            basic_password: Some(seal_v1(&key, "hunter22", "wh_a", Field::BasicPassword)),
            signature_file: None,
        };
        let brought = columns.bring_up(&key, Some(&record_v1)).unwrap().unwrap();
        let password = brought.basic_password.clone().unwrap();
        assert!(password.starts_with("sealed:v2:"));
        assert_eq!(
            key.open(&password, &password_of("wh_a", URL, "crm"))
                .unwrap(),
            "hunter22"
        );
        assert_eq!(brought.bring_up(&key, Some(&record)).unwrap(), None, "done");
        // Once the state is of this layout, a first-layout value copied back is left
        // unopened (and refused when read): it cannot bring an unbound password back.
        assert_eq!(columns.bring_up(&key, Some(&record)).unwrap(), None);
        let error = read(
            columns.basic_password.clone().unwrap(),
            Some(&key),
            true,
            &password_of("wh_a", URL, "crm"),
        )
        .unwrap_err();
        assert!(error.0.contains("does not open"), "{error}");
    }

    #[test]
    fn columns_are_sealed_once_and_moved_to_a_new_key() {
        let (old, new) = (key(), key());
        let plain = SecretColumns {
            webhook_id: "wh_a".into(),
            url: URL.into(),
            basic_username: Some("crm".into()),
            basic_password: Some("hunter22".into()),
            signature_file: None,
        };
        let binding = password_of("wh_a", URL, "crm");
        let sealed = plain.bring_up(&old, None).unwrap().unwrap();
        assert!(is_sealed(sealed.basic_password.as_deref().unwrap()));
        assert_eq!(sealed.signature_file, None);
        let record = old.key_check().unwrap();
        assert_eq!(
            sealed.bring_up(&old, Some(&record)).unwrap(),
            None,
            "sealed already"
        );
        let moved = sealed.reseal(Some(&old), true, &new).unwrap();
        let password = moved.basic_password.clone().unwrap();
        assert_eq!(new.open(&password, &binding).unwrap(), "hunter22");
        assert!(old.open(&password, &binding).is_err());
        assert!(
            sealed.reseal(Some(&new), true, &old).is_err(),
            "not sealed under new"
        );
        assert!(
            sealed.reseal(None, true, &new).is_err(),
            "sealed: needs the key"
        );
        let first = plain.reseal(None, false, &new).unwrap();
        let password = first.basic_password.unwrap();
        assert_eq!(new.open(&password, &binding).unwrap(), "hunter22");
    }

    #[test]
    fn key_files_are_read_private_only_and_never_quoted() {
        let dir = tempfile::tempdir().unwrap();
        let (key, text) = SecretKey::generate().unwrap();
        let path = dir.path().join("key");
        let write = |content: &str, mode: u32| {
            std::fs::write(&path, content).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        write(&text, 0o600);
        let read_back = SecretKey::read("--secret-key-file", &path).unwrap();
        let binding = file_of("wh_a");
        let sealed = key.seal("x", &binding).unwrap();
        assert_eq!(read_back.open(&sealed, &binding).unwrap(), "x");
        let debug = format!("{read_back:?}");
        assert!(!debug.contains(text.trim()), "{debug}");
        // Other users may read it: refused, as ssh refuses such a private key.
        for mode in [0o644, 0o640, 0o604, 0o620] {
            write(&text, mode);
            let error = SecretKey::read("--secret-key-file", &path).unwrap_err().0;
            assert!(
                error.contains("other users") && error.contains("chmod 600"),
                "{mode:o}: {error}"
            );
            assert!(!error.contains(text.trim()), "{error}");
        }
        for bad in ["short", "bm90IDMyIGJ5dGVz\n", ""] {
            write(bad, 0o600);
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
