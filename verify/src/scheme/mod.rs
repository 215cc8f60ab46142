//! The signature schemes a receiver meets, one module each, all of the same shape:
//! `verify(key_entries, …, headers, body, now_secs) -> Result<Verified, VerifyError>` and
//! `sign(keys, …, msg_id, timestamp_secs, body) -> headers`. GitHub and Shopify are fixed
//! formats of [`body_hmac`], so their modules hold only that format.
//!
//! What they share is written once: the walk over the keys with expiry
//! (`crate::key::find_match`), HMAC and the constant-time compare ([`crate::signature`]),
//! the timestamp rules and the hex tags of the timestamped HMAC schemes below.
//!
//! | scheme | signed bytes | headers | replay window |
//! |---|---|---|---|
//! | `standard-webhooks` | `id.timestamp.body`, HMAC (`v1`) or Ed25519 (`v1a`) | `webhook-id`, `webhook-timestamp`, `webhook-signature` | ±tolerance |
//! | `svix` | as `standard-webhooks` | `svix-id`, `svix-timestamp`, `svix-signature` | ±tolerance |
//! | `body-hmac-sha256` | body | one configurable header | none |
//! | `github` | body | `x-hub-signature-256: sha256=<hex>` | none |
//! | `shopify` | body | `x-shopify-hmac-sha256: <base64>` | none |
//! | `stripe` | `t.body` | `stripe-signature: t=…,v1=<hex>[,v1=…]` | ±tolerance |
//! | `slack` | `v0:timestamp:body` | `x-slack-signature: v0=<hex>`, `x-slack-request-timestamp` | ±tolerance |

pub mod body_hmac;
pub mod github;
pub mod shopify;
pub mod slack;
pub mod standard_webhooks;
pub mod stripe;

use crate::key::{find_match, Key, KeyEntry, Verified};
use crate::signature::{
    decode_tag, matches_any, tag_of, BodyHmacFormat, Encoding, SigningSecret, Tags,
    DEFAULT_TOLERANCE_SECS, SIGNATURE_LEN,
};
use crate::VerifyError;

/// A signature scheme with its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheme {
    /// Standard Webhooks: `v1` (HMAC-SHA256, `whsec_` secrets) and `v1a` (Ed25519, `whpk_` /
    /// `whsk_` keys), mixed freely in one keyring.
    StandardWebhooks {
        /// Largest accepted distance, either way, between the signed timestamp and the clock.
        tolerance_secs: i64,
    },
    /// Svix: Standard Webhooks under `svix-` header names.
    Svix {
        /// As for Standard Webhooks.
        tolerance_secs: i64,
    },
    /// HMAC-SHA256 of the body alone in one header. It has no replay window: a captured
    /// request stays valid for as long as its secret does.
    BodyHmacSha256(BodyHmacFormat),
    /// GitHub: `X-Hub-Signature-256: sha256=<hex HMAC of the body>`. No replay window.
    Github,
    /// Shopify: `X-Shopify-Hmac-Sha256: <base64 HMAC of the body>`. No replay window.
    Shopify,
    /// Stripe: `Stripe-Signature: t=<unix>,v1=<hex HMAC of "t.body">`, several `v1` allowed.
    Stripe {
        /// Largest accepted distance, either way, between `t` and the clock.
        tolerance_secs: i64,
    },
    /// Slack: `X-Slack-Signature: v0=<hex HMAC of "v0:ts:body">` with
    /// `X-Slack-Request-Timestamp`.
    Slack {
        /// Largest accepted distance, either way, between the timestamp and the clock.
        tolerance_secs: i64,
    },
}

/// Every scheme name a signature file or `--scheme` may give.
pub const SCHEME_NAMES: &[&str] = &[
    "standard-webhooks",
    "svix",
    "body-hmac-sha256",
    "github",
    "shopify",
    "stripe",
    "slack",
];

impl Scheme {
    /// The scheme's name in signature files.
    pub fn name(&self) -> &'static str {
        match self {
            Self::StandardWebhooks { .. } => "standard-webhooks",
            Self::Svix { .. } => "svix",
            Self::BodyHmacSha256(_) => "body-hmac-sha256",
            Self::Github => "github",
            Self::Shopify => "shopify",
            Self::Stripe { .. } => "stripe",
            Self::Slack { .. } => "slack",
        }
    }

    /// The scheme of this name with default settings, or `None` for an unknown name.
    pub fn from_name(name: &str) -> Option<Self> {
        let tolerance_secs = DEFAULT_TOLERANCE_SECS;
        Some(match name {
            "standard-webhooks" => Self::StandardWebhooks { tolerance_secs },
            "svix" => Self::Svix { tolerance_secs },
            "body-hmac-sha256" => Self::BodyHmacSha256(BodyHmacFormat::default()),
            "github" => Self::Github,
            "shopify" => Self::Shopify,
            "stripe" => Self::Stripe { tolerance_secs },
            "slack" => Self::Slack { tolerance_secs },
            _ => return None,
        })
    }

    /// The replay window, for the schemes that sign a timestamp; `None` for those that do not.
    pub fn tolerance_secs(&self) -> Option<i64> {
        match self {
            Self::StandardWebhooks { tolerance_secs }
            | Self::Svix { tolerance_secs }
            | Self::Stripe { tolerance_secs }
            | Self::Slack { tolerance_secs } => Some(*tolerance_secs),
            Self::BodyHmacSha256(_) | Self::Github | Self::Shopify => None,
        }
    }

    /// The same scheme with another tolerance (unchanged for schemes without a window).
    pub fn with_tolerance(self, secs: i64) -> Self {
        match self {
            Self::StandardWebhooks { .. } => Self::StandardWebhooks {
                tolerance_secs: secs,
            },
            Self::Svix { .. } => Self::Svix {
                tolerance_secs: secs,
            },
            Self::Stripe { .. } => Self::Stripe {
                tolerance_secs: secs,
            },
            Self::Slack { .. } => Self::Slack {
                tolerance_secs: secs,
            },
            other => other,
        }
    }

    /// The headers this scheme reads, lowercase, signature header first.
    pub fn header_names(&self) -> Vec<&str> {
        match self {
            Self::StandardWebhooks { .. } => standard_webhooks::STANDARD.all().to_vec(),
            Self::Svix { .. } => standard_webhooks::SVIX.all().to_vec(),
            Self::BodyHmacSha256(format) => vec![format.header.as_str()],
            Self::Github => vec![github::HEADER],
            Self::Shopify => vec![shopify::HEADER],
            Self::Stripe { .. } => vec![stripe::HEADER],
            Self::Slack { .. } => vec![slack::SIGNATURE_HEADER, slack::TIMESTAMP_HEADER],
        }
    }

    /// Reads one secret of a signature file of this scheme.
    ///
    /// Standard Webhooks and Svix take `whsec_` secrets, and Standard Webhooks also `whpk_`
    /// and `whsk_` Ed25519 keys; `body-hmac-sha256` takes `whsec_` or plain text; the vendor
    /// presets take plain text used byte for byte (a Stripe `whsec_…` secret included).
    ///
    /// # Errors
    /// [`VerifyError::InvalidSecret`] saying which rule the text breaks (never quoting it).
    pub fn parse_key(&self, text: &str) -> Result<Key, VerifyError> {
        match self {
            Self::StandardWebhooks { .. } => Key::parse_standard(text),
            Self::Svix { .. } => SigningSecret::parse(text).map(Key::Hmac),
            Self::BodyHmacSha256(_) => SigningSecret::parse_lenient(text).map(Key::Hmac),
            Self::Github | Self::Shopify | Self::Stripe { .. } | Self::Slack { .. } => {
                SigningSecret::parse_text(text).map(Key::Hmac)
            }
        }
    }

    /// A fresh HMAC secret of the form this scheme's senders hand out.
    pub fn generate_secret(&self) -> SigningSecret {
        match self {
            Self::StandardWebhooks { .. } | Self::Svix { .. } | Self::BodyHmacSha256(_) => {
                SigningSecret::generate()
            }
            Self::Stripe { .. } => SigningSecret::generate_text(crate::signature::SECRET_PREFIX),
            Self::Github | Self::Shopify | Self::Slack { .. } => SigningSecret::generate_text(""),
        }
    }
}

impl Default for Scheme {
    fn default() -> Self {
        Self::StandardWebhooks {
            tolerance_secs: DEFAULT_TOLERANCE_SECS,
        }
    }
}

/// Parses a signed Unix timestamp: ASCII digits only.
pub(crate) fn parse_unix_secs(value: &[u8]) -> Result<i64, VerifyError> {
    if value.is_empty() || value.len() > 12 || !value.iter().all(u8::is_ascii_digit) {
        return Err(VerifyError::InvalidTimestamp);
    }
    // Up to 12 ASCII digits always fit in an i64.
    Ok(value
        .iter()
        .fold(0i64, |total, digit| total * 10 + i64::from(digit - b'0')))
}

/// Refuses a timestamp further than `tolerance_secs` from `now_secs`, either way.
pub(crate) fn check_timestamp(
    timestamp_secs: i64,
    now_secs: i64,
    tolerance_secs: i64,
) -> Result<(), VerifyError> {
    let age_secs = now_secs.saturating_sub(timestamp_secs);
    if age_secs > tolerance_secs {
        return Err(VerifyError::TimestampTooOld {
            age_secs,
            tolerance_secs,
        });
    }
    if -age_secs > tolerance_secs {
        return Err(VerifyError::TimestampTooNew {
            ahead_secs: -age_secs,
            tolerance_secs,
        });
    }
    Ok(())
}

/// Decodes the hex tags of a header's entries (Stripe's `v1=`, Slack's `v0=`).
///
/// # Errors
/// The first entry's own error, [`VerifyError::MalformedSignature`] with `not_hex` for an
/// entry that is not 64 hex digits, or with `none` when there is no entry.
pub(crate) fn hex_tags<'a>(
    entries: impl Iterator<Item = Result<&'a [u8], VerifyError>>,
    not_hex: &'static str,
    none: &'static str,
) -> Result<Tags, VerifyError> {
    let mut tags = Tags::default();
    for entry in entries {
        tags.push(
            decode_tag(entry?, Encoding::Hex).ok_or(VerifyError::MalformedSignature(not_hex))?,
        )?;
    }
    if tags.as_slice().is_empty() {
        return Err(VerifyError::MalformedSignature(none));
    }
    Ok(tags)
}

/// The timestamped HMAC schemes' last step (Stripe, Slack): the timestamp within the
/// tolerance, then the key in force whose HMAC of `parts` is one of `tags`.
///
/// # Errors
/// `invalid_timestamp`, `timestamp_too_old` / `timestamp_too_new`, `no_matching_signature`,
/// `secret_expired`.
pub(crate) fn verify_timed_tags(
    key_entries: &[KeyEntry],
    tags: &[[u8; SIGNATURE_LEN]],
    timestamp: &[u8],
    parts: &[&[u8]],
    now_secs: i64,
    tolerance_secs: i64,
) -> Result<Verified, VerifyError> {
    check_timestamp(parse_unix_secs(timestamp)?, now_secs, tolerance_secs)?;
    find_match(
        key_entries,
        now_secs,
        |key| {
            key.hmac()
                .is_some_and(|secret| matches_any(&tag_of(secret, parts), tags))
        },
        || Ok(()),
    )
}

/// The lowercase hex HMAC of `parts` under each HMAC key (Ed25519 keys are skipped).
pub(crate) fn hex_signatures<'k>(
    keys: impl Iterator<Item = &'k Key>,
    parts: &[&[u8]],
) -> Vec<String> {
    keys.filter_map(Key::hmac)
        .map(|secret| Encoding::Hex.encode(&tag_of(secret, parts)))
        .collect()
}

/// The timestamp a request carries for its scheme, if it has one that parses (for diagnosis).
pub(crate) fn signed_timestamp(
    scheme: &Scheme,
    headers: &(impl crate::Headers + ?Sized),
) -> Option<i64> {
    let value = match scheme {
        Scheme::StandardWebhooks { .. } => headers.header(standard_webhooks::STANDARD.timestamp)?,
        Scheme::Svix { .. } => headers.header(standard_webhooks::SVIX.timestamp)?,
        Scheme::Slack { .. } => headers.header(slack::TIMESTAMP_HEADER)?,
        Scheme::Stripe { .. } => stripe::timestamp_field(headers.header(stripe::HEADER)?)?,
        Scheme::BodyHmacSha256(_) | Scheme::Github | Scheme::Shopify => return None,
    };
    parse_unix_secs(value).ok()
}
