//! Signing secrets and the two signature schemes of SPEC section 2.
//!
//! Standard Webhooks v1 signs `id "." timestamp "." body` with HMAC-SHA256 and sends
//! `v1,<base64>` in `webhook-signature`; `body-hmac-sha256` signs the body alone into one
//! configurable header. Both feed the body to the HMAC in place: it is never copied or
//! re-encoded, so what is verified is exactly the bytes received.

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::random::random_bytes;
use crate::{ed25519, VerifyError};

/// HMAC-SHA256, the only algorithm either scheme uses.
pub(crate) type HmacSha256 = Hmac<Sha256>;

/// Length in bytes of an HMAC-SHA256 tag.
pub const SIGNATURE_LEN: usize = 32;
/// Every Standard Webhooks secret starts with this.
pub const SECRET_PREFIX: &str = "whsec_";
/// Fewest key bytes a secret may carry.
pub const MIN_SECRET_BYTES: usize = 24;
/// Most key bytes a secret may carry.
pub const MAX_SECRET_BYTES: usize = 64;
/// Key bytes of a secret the sender generates.
pub const GENERATED_SECRET_BYTES: usize = 32;
/// The receiver's default clock tolerance, both ways.
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;
/// The version tag of Standard Webhooks signatures.
pub const SIGNATURE_VERSION: &str = "v1";
/// Default header of the `body-hmac-sha256` scheme.
pub const DEFAULT_BODY_HMAC_HEADER: &str = "x-alm-signature";

/// A key for HMAC-SHA256, checked once when it is built.
///
/// The keyed HMAC state is computed at construction, so signing or verifying costs only the
/// hash of the message. `Debug` never shows the key.
#[derive(Clone)]
pub struct SigningSecret {
    key: Vec<u8>,
    keyed: HmacSha256,
    form: SecretForm,
}

/// How a secret is written down: which decides how its text becomes the HMAC key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SecretForm {
    /// `whsec_<base64>`: the key is the decoded bytes (Standard Webhooks, Svix).
    Whsec,
    /// Plain text used as the key byte for byte (GitHub, Stripe, Slack, Shopify): Stripe's
    /// `whsec_…` secrets are of this kind, prefix included.
    Text,
}

impl SigningSecret {
    /// Parses a Standard Webhooks secret: `whsec_` followed by the base64 of 24 to 64 bytes.
    ///
    /// # Errors
    /// [`VerifyError::InvalidSecret`] saying which rule the text breaks (never quoting it).
    pub fn parse(text: &str) -> Result<Self, VerifyError> {
        let encoded = text.trim().strip_prefix(SECRET_PREFIX).ok_or_else(|| {
            VerifyError::InvalidSecret("a secret must start with \"whsec_\"".into())
        })?;
        let key = BASE64.decode(encoded).map_err(|_| {
            VerifyError::InvalidSecret("the text after \"whsec_\" is not standard base64".into())
        })?;
        Self::from_bytes(key)
    }

    /// Builds a secret from raw key bytes (24 to 64 of them).
    ///
    /// # Errors
    /// [`VerifyError::InvalidSecret`] when the length is out of range.
    pub fn from_bytes(key: Vec<u8>) -> Result<Self, VerifyError> {
        if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&key.len()) {
            return Err(VerifyError::InvalidSecret(
                format!(
                    "a secret must hold {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes, this one holds {}",
                    key.len()
                )
                .into(),
            ));
        }
        Ok(Self::from_key_unchecked(key, SecretForm::Whsec))
    }

    /// A secret whose text is the key byte for byte, as GitHub, Stripe (prefix included),
    /// Slack and Shopify use theirs.
    ///
    /// # Errors
    /// [`VerifyError::InvalidSecret`] for an empty text, or an Ed25519 key (`whpk_`, `whsk_`),
    /// which only Standard Webhooks can use.
    pub fn parse_text(text: &str) -> Result<Self, VerifyError> {
        if text.is_empty() {
            return Err(VerifyError::InvalidSecret(
                "a secret must not be empty".into(),
            ));
        }
        if text.starts_with(crate::ed25519::PUBLIC_PREFIX)
            || text.starts_with(crate::ed25519::SECRET_PREFIX)
        {
            return Err(VerifyError::InvalidSecret(
                "an Ed25519 key (whpk_/whsk_) signs only standard-webhooks v1a".into(),
            ));
        }
        Ok(Self::from_key_unchecked(
            text.as_bytes().to_vec(),
            SecretForm::Text,
        ))
    }

    /// A fresh plain-text secret: `prefix` and the hex of [`GENERATED_SECRET_BYTES`] random
    /// bytes (GitHub, Slack and Shopify secrets look like this; Stripe's start `whsec_`).
    pub fn generate_text(prefix: &str) -> Self {
        let text = format!(
            "{prefix}{}",
            Encoding::Hex.encode(&random_bytes::<GENERATED_SECRET_BYTES>())
        );
        Self::from_key_unchecked(text.into_bytes(), SecretForm::Text)
    }

    /// Parses a secret for `body-hmac-sha256`: a `whsec_` secret, or else the text's own bytes
    /// used as the key, as senders that sign the body alone often hand out plain strings.
    ///
    /// # Errors
    /// [`VerifyError::InvalidSecret`] for an invalid `whsec_` secret or an empty text.
    pub fn parse_lenient(text: &str) -> Result<Self, VerifyError> {
        if text.trim().starts_with(SECRET_PREFIX) {
            return Self::parse(text);
        }
        if text.is_empty() {
            return Err(VerifyError::InvalidSecret(
                "a secret must not be empty".into(),
            ));
        }
        Ok(Self::from_key_unchecked(
            text.as_bytes().to_vec(),
            SecretForm::Text,
        ))
    }

    /// A fresh secret of [`GENERATED_SECRET_BYTES`] bytes from the operating system's CSPRNG.
    ///
    /// # Panics
    /// When the operating system has no random source, which leaves no safe way to go on.
    pub fn generate() -> Self {
        Self::from_key_unchecked(
            random_bytes::<GENERATED_SECRET_BYTES>().to_vec(),
            SecretForm::Whsec,
        )
    }

    fn from_key_unchecked(key: Vec<u8>, form: SecretForm) -> Self {
        #[allow(clippy::expect_used)] // HMAC accepts keys of any length
        let keyed = HmacSha256::new_from_slice(&key).expect("HMAC takes any key length");
        Self { key, keyed, form }
    }

    /// The secret as `whsec_<base64>` of its key bytes. Never log this.
    pub fn expose_whsec(&self) -> String {
        format!("{SECRET_PREFIX}{}", BASE64.encode(&self.key))
    }

    /// The secret as it is written in a signature file: `whsec_<base64>`, or the plain text
    /// it was read from. Never log this.
    pub fn expose_text(&self) -> String {
        match self.form {
            SecretForm::Whsec => self.expose_whsec(),
            SecretForm::Text => String::from_utf8_lossy(&self.key).into_owned(),
        }
    }

    /// The same secret read the other way (a plain-text `whsec_…` decoded, or a decoded
    /// secret's `whsec_` text used as bytes), for telling a person that the sender treats the
    /// secret as another scheme's. `None` when the other reading is not a valid secret.
    pub fn other_reading(&self) -> Option<Self> {
        match self.form {
            SecretForm::Whsec => Some(Self::from_key_unchecked(
                self.expose_whsec().into_bytes(),
                SecretForm::Text,
            )),
            SecretForm::Text => Self::parse(std::str::from_utf8(&self.key).ok()?).ok(),
        }
    }

    /// Whether the key is the base64 decoding of a `whsec_` text (Standard Webhooks' reading),
    /// rather than the text's own bytes.
    pub fn is_base64_decoded(&self) -> bool {
        self.form == SecretForm::Whsec
    }

    /// The raw key bytes, for comparing with a baseline in benchmarks and cross-checks.
    /// Never log this.
    pub fn expose_key_bytes(&self) -> &[u8] {
        &self.key
    }

    /// A fresh HMAC state already keyed with this secret.
    pub(crate) fn mac(&self) -> HmacSha256 {
        self.keyed.clone()
    }
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret([redacted])")
    }
}

/// The raw Standard Webhooks tag: HMAC-SHA256 of `msg_id "." timestamp "." body`.
pub fn standard_tag(
    secret: &SigningSecret,
    msg_id: &[u8],
    timestamp: &[u8],
    body: &[u8],
) -> [u8; SIGNATURE_LEN] {
    let mut mac = secret.mac();
    mac.update(msg_id);
    mac.update(b".");
    mac.update(timestamp);
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// Signs for Standard Webhooks v1, giving one `v1,<base64>` entry of `webhook-signature`.
pub fn sign(secret: &SigningSecret, msg_id: &str, timestamp_secs: i64, body: &[u8]) -> String {
    let timestamp = timestamp_secs.to_string();
    let tag = standard_tag(secret, msg_id.as_bytes(), timestamp.as_bytes(), body);
    format!("{SIGNATURE_VERSION},{}", BASE64.encode(tag))
}

/// The `webhook-signature` value of one request, read in place.
///
/// Verifying compares our tag, base64-encoded once per secret, with each `v1` entry as sent:
/// the accepted path decodes nothing and allocates nothing, so verifying costs little more than
/// the HMAC itself. Only when nothing matches is the value decoded, to tell a malformed header
/// from a wrong signature.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StandardSignatures<'a> {
    value: &'a [u8],
}

/// Length of a 32-byte tag in padded base64.
const BASE64_TAG_LEN: usize = 44;

impl<'a> StandardSignatures<'a> {
    /// Wraps a `webhook-signature` value.
    pub(crate) fn new(value: &'a [u8]) -> Self {
        Self { value }
    }

    /// The space-separated `version,signature` entries.
    fn entries(self) -> impl Iterator<Item = &'a [u8]> {
        self.value
            .split(|byte| *byte == b' ')
            .filter(|e| !e.is_empty())
    }

    /// Whether any `v1` entry carries `tag`. Each entry is compared in constant time.
    pub(crate) fn matches(self, tag: &[u8; SIGNATURE_LEN]) -> bool {
        let mut expected = [0u8; BASE64_TAG_LEN];
        if BASE64.encode_slice(tag, &mut expected) != Ok(BASE64_TAG_LEN) {
            return false;
        }
        let version = SIGNATURE_VERSION.as_bytes();
        self.entries()
            .filter_map(|entry| {
                let (entry_version, rest) = entry.split_at_checked(version.len())?;
                (entry_version == version).then(|| rest.strip_prefix(b","))?
            })
            // Lengths are public (44 for every real tag); only the content is compared in
            // constant time, and every entry is compared.
            .filter(|encoded| encoded.len() == BASE64_TAG_LEN)
            .fold(subtle::Choice::from(0), |found, encoded| {
                found | bytes_equal(&expected, encoded)
            })
            .into()
    }

    /// Whether any `v1a` entry is `public`'s Ed25519 signature of `message`. Signatures are
    /// public, so no constant-time compare is needed; the curve check decides.
    pub(crate) fn matches_v1a(self, public: &ed25519::PublicKey, message: &[u8]) -> bool {
        let version = ed25519::SIGNATURE_VERSION.as_bytes();
        self.entries()
            .filter_map(|entry| {
                let (entry_version, rest) = entry.split_at_checked(version.len())?;
                (entry_version == version).then(|| rest.strip_prefix(b","))?
            })
            .filter_map(decode_v1a)
            .any(|signature| public.verifies(message, &signature))
    }

    /// Checks the shape of the header, after no signature matched.
    ///
    /// Entries of other versions are skipped, as the Standard Webhooks libraries do.
    ///
    /// # Errors
    /// [`VerifyError::MalformedSignature`] when no entry has the `version,signature` shape, or
    /// a `v1` entry is not the base64 of 32 bytes.
    pub(crate) fn check_well_formed(self) -> Result<(), VerifyError> {
        let mut saw_entry = false;
        for entry in self.entries() {
            let Some(comma) = entry.iter().position(|byte| *byte == b',') else {
                continue;
            };
            saw_entry = true;
            let (version, encoded) = (&entry[..comma], &entry[comma + 1..]);
            if version == SIGNATURE_VERSION.as_bytes()
                && decode_tag(encoded, Encoding::Base64).is_none()
            {
                return Err(VerifyError::MalformedSignature(
                    "a v1 signature is not the base64 of 32 bytes",
                ));
            }
            if version == ed25519::SIGNATURE_VERSION.as_bytes() && decode_v1a(encoded).is_none() {
                return Err(VerifyError::MalformedSignature(
                    "a v1a signature is not the base64 of 64 bytes",
                ));
            }
        }
        if saw_entry {
            Ok(())
        } else {
            Err(VerifyError::MalformedSignature(
                "expected space-separated \"v1,<base64>\" or \"v1a,<base64>\" entries",
            ))
        }
    }
}

/// How the `body-hmac-sha256` tag is written in its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    /// Lowercase hexadecimal (uppercase is accepted when reading).
    #[default]
    Hex,
    /// Standard base64 with padding.
    Base64,
}

impl Encoding {
    /// The name used in signature files: `hex` or `base64`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hex => "hex",
            Self::Base64 => "base64",
        }
    }

    /// Parses `hex` or `base64`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "hex" => Some(Self::Hex),
            "base64" => Some(Self::Base64),
            _ => None,
        }
    }

    /// The tag written in this encoding.
    pub fn encode(self, tag: &[u8]) -> String {
        match self {
            Self::Hex => {
                use fmt::Write as _;
                let mut out = String::with_capacity(tag.len() * 2);
                for byte in tag {
                    let _ = write!(out, "{byte:02x}");
                }
                out
            }
            Self::Base64 => BASE64.encode(tag),
        }
    }
}

/// Decodes a tag of exactly 32 bytes, or `None`.
pub(crate) fn decode_tag(encoded: &[u8], encoding: Encoding) -> Option<[u8; SIGNATURE_LEN]> {
    let mut tag = [0u8; SIGNATURE_LEN];
    match encoding {
        Encoding::Base64 => {
            // A 32-byte tag is 44 base64 characters; checking first keeps decode_slice from
            // failing on a too-small buffer and bounds the work an attacker can ask for.
            if encoded.len() != 44 {
                return None;
            }
            let written = BASE64.decode_slice(encoded, &mut tag).ok()?;
            (written == SIGNATURE_LEN).then_some(tag)
        }
        Encoding::Hex => {
            if encoded.len() != SIGNATURE_LEN * 2 {
                return None;
            }
            // Table lookups without a branch per digit; one check at the end says whether any
            // digit was invalid (its table entry has the high bit set).
            let mut invalid = 0u8;
            for (byte, pair) in tag.iter_mut().zip(encoded.chunks_exact(2)) {
                let (high, low) = (
                    HEX_VALUES[usize::from(pair[0])],
                    HEX_VALUES[usize::from(pair[1])],
                );
                invalid |= high | low;
                *byte = (high << 4) | (low & 0x0f);
            }
            (invalid & 0x80 == 0).then_some(tag)
        }
    }
}

/// Decodes a `v1a` signature: the padded base64 of exactly 64 bytes, or `None`.
fn decode_v1a(encoded: &[u8]) -> Option<[u8; ed25519::SIGNATURE_LEN]> {
    // 64 bytes are 88 base64 characters; checking first bounds the work asked for.
    if encoded.len() != 88 {
        return None;
    }
    let mut signature = [0u8; ed25519::SIGNATURE_LEN];
    let written = BASE64.decode_slice(encoded, &mut signature).ok()?;
    (written == ed25519::SIGNATURE_LEN).then_some(signature)
}

/// The value of each hex digit (either case); 0x80 marks a byte that is not one.
const HEX_VALUES: [u8; 256] = {
    let mut table = [0x80u8; 256];
    let mut digit = 0;
    while digit < 10 {
        table[b'0' as usize + digit] = digit as u8;
        digit += 1;
    }
    let mut letter = 0;
    while letter < 6 {
        table[b'a' as usize + letter] = 10 + letter as u8;
        table[b'A' as usize + letter] = 10 + letter as u8;
        letter += 1;
    }
    table
};

/// Where and how the `body-hmac-sha256` scheme writes its tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyHmacFormat {
    /// Lowercase header name, [`DEFAULT_BODY_HMAC_HEADER`] unless configured.
    pub header: String,
    /// Hex or base64.
    pub encoding: Encoding,
    /// Text before the encoded tag, such as `sha256=`; empty for none.
    pub prefix: String,
}

impl Default for BodyHmacFormat {
    fn default() -> Self {
        Self {
            header: DEFAULT_BODY_HMAC_HEADER.to_owned(),
            encoding: Encoding::Hex,
            prefix: String::new(),
        }
    }
}

impl BodyHmacFormat {
    /// The header value for one secret: prefix followed by the encoded HMAC-SHA256 of the body.
    pub fn sign(&self, secret: &SigningSecret, body: &[u8]) -> String {
        format!(
            "{}{}",
            self.prefix,
            self.encoding.encode(&body_tag(secret, body))
        )
    }

    /// Reads the tags of a header value. Several tags (during a rotation) are separated by
    /// commas or spaces, each with the prefix.
    ///
    /// # Errors
    /// [`VerifyError::MalformedSignature`] when an entry lacks the prefix or does not decode to
    /// 32 bytes.
    pub(crate) fn parse_tags(&self, value: &[u8]) -> Result<Tags, VerifyError> {
        let mut tags = Tags::default();
        for entry in value
            .split(|byte| *byte == b',' || *byte == b' ')
            .filter(|entry| !entry.is_empty())
        {
            let encoded = entry.strip_prefix(self.prefix.as_bytes()).ok_or(
                VerifyError::MalformedSignature("the signature lacks its configured prefix"),
            )?;
            tags.push(decode_tag(encoded, self.encoding).ok_or(
                VerifyError::MalformedSignature(
                    "the signature is not 32 bytes in the configured encoding",
                ),
            )?)?;
        }
        if tags.as_slice().is_empty() {
            return Err(VerifyError::MalformedSignature(
                "the signature header is empty",
            ));
        }
        Ok(tags)
    }
}

/// Most signatures one header may carry. A rotation needs two; the bound keeps the tags on
/// the stack (no allocation per request) and limits the work a request can ask for.
pub const MAX_SIGNATURES: usize = 8;

/// The decoded tags of one header, at most [`MAX_SIGNATURES`], held on the stack.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Tags {
    tags: [[u8; SIGNATURE_LEN]; MAX_SIGNATURES],
    len: usize,
}

impl Tags {
    /// Adds a tag.
    ///
    /// # Errors
    /// [`VerifyError::MalformedSignature`] beyond [`MAX_SIGNATURES`].
    pub(crate) fn push(&mut self, tag: [u8; SIGNATURE_LEN]) -> Result<(), VerifyError> {
        let slot = self
            .tags
            .get_mut(self.len)
            .ok_or(VerifyError::MalformedSignature(
                "more than 8 signatures in one header",
            ))?;
        *slot = tag;
        self.len += 1;
        Ok(())
    }

    /// The tags read so far.
    pub(crate) fn as_slice(&self) -> &[[u8; SIGNATURE_LEN]] {
        &self.tags[..self.len]
    }
}

/// HMAC-SHA256 of `parts` one after the other, fed in place (the body is never copied).
pub(crate) fn tag_of(secret: &SigningSecret, parts: &[&[u8]]) -> [u8; SIGNATURE_LEN] {
    let mut mac = secret.mac();
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// HMAC-SHA256 of the body alone.
pub fn body_tag(secret: &SigningSecret, body: &[u8]) -> [u8; SIGNATURE_LEN] {
    let mut mac = secret.mac();
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// True when `expected` equals any of `candidates`, comparing every candidate in constant time.
pub(crate) fn matches_any(
    expected: &[u8; SIGNATURE_LEN],
    candidates: &[[u8; SIGNATURE_LEN]],
) -> bool {
    // Fold with a non-short-circuiting `|` so the time taken does not say which entry matched.
    candidates
        .iter()
        .fold(subtle::Choice::from(0), |found, candidate| {
            found | bytes_equal(expected, candidate)
        })
        .into()
}

/// Constant-time equality of two byte strings of the same, public, length.
///
/// `subtle`'s slice comparison passes every byte through an optimisation barrier, which costs
/// more than a tenth of a 1 KiB verification. Here the bytes are XOR-ed and OR-ed eight at a
/// time without a branch, and only the final word goes through `subtle`'s barrier.
pub(crate) fn bytes_equal(left: &[u8], right: &[u8]) -> subtle::Choice {
    if left.len() != right.len() {
        return subtle::Choice::from(0);
    }
    let words = left.chunks(8).zip(right.chunks(8));
    let difference = words.fold(0u64, |acc, (l, r)| acc | (word(l) ^ word(r)));
    difference.ct_eq(&0)
}

/// Up to eight bytes as a little-endian word, zero-padded.
fn word(bytes: &[u8]) -> u64 {
    let mut array = [0u8; 8];
    array[..bytes.len()].copy_from_slice(bytes);
    u64::from_le_bytes(array)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[test]
    fn standard_webhooks_published_vector() {
        let secret = SigningSecret::parse(SW_SECRET).expect("valid secret");
        let signature = sign(
            &secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn secret_rules() {
        let check = |text: &str, ok: bool| {
            assert_eq!(SigningSecret::parse(text).is_ok(), ok, "{text}");
        };
        check(SW_SECRET, true);
        check("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", false);
        check("whsec_not base64!", false);
        check(&format!("whsec_{}", BASE64.encode([7u8; 23])), false);
        check(&format!("whsec_{}", BASE64.encode([7u8; 24])), true);
        check(&format!("whsec_{}", BASE64.encode([7u8; 64])), true);
        check(&format!("whsec_{}", BASE64.encode([7u8; 65])), false);
    }

    #[test]
    fn secret_debug_and_errors_do_not_show_the_key() {
        let secret = SigningSecret::parse(SW_SECRET).expect("valid secret");
        assert_eq!(format!("{secret:?}"), "SigningSecret([redacted])");
        let error = SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8!").expect_err("bad base64");
        assert!(!error.to_string().contains("MfKQ9r8"), "{error}");
    }

    #[test]
    fn generated_secrets_round_trip_and_differ() {
        let first = SigningSecret::generate();
        let second = SigningSecret::generate();
        assert_ne!(first.expose_whsec(), second.expose_whsec());
        let again = SigningSecret::parse(&first.expose_whsec()).expect("round trip");
        assert_eq!(again.expose_whsec(), first.expose_whsec());
    }

    #[test]
    fn body_hmac_known_answer() {
        // HMAC-SHA256(key = "key", "The quick brown fox jumps over the lazy dog"), RFC 4231 style.
        let secret = SigningSecret::parse_lenient("key").expect("plain secret");
        let format = BodyHmacFormat {
            prefix: "sha256=".into(),
            ..BodyHmacFormat::default()
        };
        assert_eq!(
            format.sign(&secret, b"The quick brown fox jumps over the lazy dog"),
            "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }

    #[test]
    fn signature_header_parsing() {
        let tag = [1u8; 32];
        let encoded = BASE64.encode(tag);
        let check = |value: String, expected: Result<bool, &str>| {
            let signatures = StandardSignatures::new(value.as_bytes());
            let got = if signatures.matches(&tag) {
                Ok(true)
            } else {
                signatures
                    .check_well_formed()
                    .map(|()| false)
                    .map_err(|error| error.reason_code().into_owned())
            };
            assert_eq!(got, expected.map_err(str::to_owned), "{value}");
        };
        check(format!("v1,{encoded}"), Ok(true));
        check(
            format!("v1,{} v1,{encoded}", BASE64.encode([2u8; 32])),
            Ok(true),
        );
        check(format!("v2,{encoded}  v1,{encoded}"), Ok(true));
        check(format!("v1a,{encoded}"), Err("malformed_signature"));
        check(format!("v1a,{}", BASE64.encode([1u8; 64])), Ok(false));
        check(format!("v2,{encoded}"), Ok(false));
        check(format!("v1,{}", BASE64.encode([2u8; 32])), Ok(false));
        check("garbage".into(), Err("malformed_signature"));
        check("v1,notbase64".into(), Err("malformed_signature"));
        check(
            format!("v1,{}", BASE64.encode([1u8; 31])),
            Err("malformed_signature"),
        );
    }

    #[test]
    fn constant_time_equality_is_equality() {
        for (left, right) in [
            (&b"abcdefghij"[..], &b"abcdefghij"[..]),
            (b"", b""),
            (b"abc", b"abd"),
            (b"abc", b"ab"),
            (b"0123456789", b"0123456788"),
        ] {
            assert_eq!(bool::from(bytes_equal(left, right)), left == right);
        }
    }
}
