//! Webhook registrations (SPEC section 5): the record and its validation.
//!
//! Secrets (a Basic password, signing secrets) live in the state database, which is created
//! with mode 0600, sealed under `--secret-key-file` when one is given (see
//! [`crate::sealing`]). They never leave it except through `webhooks signature`, which writes
//! the signature file the receiving team needs: `Debug`, `list` and `--json` records leave
//! them out.

use std::fmt;

use common::target_guard::TargetPolicy;
use common::target_url::TargetUrl;
use serde_json::{json, Value};
use verify::{BasicCredentials, Scheme, SignatureFile};

use crate::UsageError;

/// Most webhooks one account may register, as in Learning Manager.
pub const MAX_WEBHOOKS: usize = 5;

/// A webhook's id, `wh_` followed by random letters and digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WebhookId(pub String);

impl WebhookId {
    /// A fresh random id.
    pub fn generate() -> Self {
        Self(format!("wh_{}", random_token(16)))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for WebhookId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `len` random ASCII letters and digits (ids, not secrets: fastrand is enough).
pub fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..len)
        .map(|_| char::from(ALPHABET[fastrand::usize(..ALPHABET.len())]))
        .collect()
}

/// A fresh `webhook-id` for a request: `msg_` and 24 alphanumerics.
pub fn new_msg_id() -> String {
    verify::resend::new_message_id()
}

/// Which events a webhook receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventSelection {
    /// Every catalogue event, including ones added later.
    All,
    /// These catalogue names.
    Names(Vec<String>),
}

impl EventSelection {
    /// Parses `all` or a comma-separated list of catalogue names.
    ///
    /// # Errors
    /// A [`UsageError`] naming the unknown event and suggesting close catalogue names.
    pub fn parse(text: &str) -> Result<Self, UsageError> {
        let names: Vec<&str> = text
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .collect();
        if names.is_empty() {
            return Err(UsageError(
                "--events needs catalogue names separated by commas, or `all`".into(),
            ));
        }
        if names.iter().any(|n| n.eq_ignore_ascii_case("all")) {
            return Ok(Self::All);
        }
        let mut chosen: Vec<String> = Vec::new();
        for name in names {
            check_event_name(name)?;
            if !chosen.iter().any(|c| c == name) {
                chosen.push(name.to_owned());
            }
        }
        Ok(Self::Names(chosen))
    }

    /// Whether an event of this name goes to the webhook.
    pub fn includes(&self, name: &str) -> bool {
        match self {
            Self::All => true,
            Self::Names(names) => names.iter().any(|n| n == name),
        }
    }

    /// The stored and printed form: `all` or `A,B,C`.
    pub fn to_text(&self) -> String {
        match self {
            Self::All => "all".into(),
            Self::Names(names) => names.join(","),
        }
    }
}

/// Refuses a name the catalogue lacks, suggesting the closest names.
///
/// # Errors
/// A [`UsageError`] such as `unknown event "COURSE_ENROLMENT"; did you mean COURSE_ENROLLMENT?`.
pub fn check_event_name(name: &str) -> Result<&'static verify::EventKind, UsageError> {
    verify::lookup(name).ok_or_else(|| {
        let suggestions = close_event_names(name);
        let hint = if suggestions.is_empty() {
            "; `sender events` lists the catalogue".to_owned()
        } else {
            format!("; did you mean {}?", suggestions.join(" or "))
        };
        UsageError(format!("unknown event {name:?}{hint}"))
    })
}

/// Catalogue names within a small edit distance of `name` (case ignored), closest first.
pub fn close_event_names(name: &str) -> Vec<&'static str> {
    let wanted = name.to_ascii_uppercase();
    let mut scored: Vec<(usize, &'static str)> = verify::CATALOG
        .iter()
        .map(|kind| (edit_distance(&wanted, kind.name), kind.name))
        .filter(|(distance, candidate)| {
            *distance <= (candidate.len() / 4).max(2) || candidate.contains(wanted.as_str())
        })
        .collect();
    scored.sort();
    scored.into_iter().take(3).map(|(_, name)| name).collect()
}

/// Levenshtein distance over bytes (catalogue names are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, &left) in a.iter().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, &right) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(left != right);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

/// A Basic username and password as stored. `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct BasicAuth {
    /// The username (no `:`).
    pub username: String,
    /// The password. Never log it.
    pub password: String,
}

impl fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicAuth")
            .field("username", &self.username)
            .field("password", &"[redacted]")
            .finish()
    }
}

impl BasicAuth {
    /// The `Authorization` header value.
    pub fn header_value(&self) -> String {
        match BasicCredentials::new(self.username.clone(), self.password.clone()) {
            Ok(credentials) => credentials.authorization_header(),
            // Validation refuses a username with ':' before it is stored.
            Err(_) => String::new(),
        }
    }
}

/// A webhook's authentication method with its material.
#[derive(Debug, Clone)]
pub enum Auth {
    /// Nothing added.
    None,
    /// `Authorization: Basic`.
    Basic(BasicAuth),
    /// Signed; the signature file holds the scheme and the secrets with their expiry.
    Signature(SignatureFile),
}

impl Auth {
    /// `none`, `basic` or `signature`.
    pub fn method(&self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Basic(_) => "basic",
            Self::Signature(_) => "signature",
        }
    }

    /// The headers this method adds to a request with `body`, sent as `msg_id` at
    /// `timestamp_secs`.
    ///
    /// # Errors
    /// When a stored signature file no longer parses (the database was edited by hand).
    pub fn headers(
        &self,
        msg_id: &str,
        timestamp_secs: i64,
        body: &[u8],
    ) -> anyhow::Result<Vec<(String, String)>> {
        Ok(self.signer()?.headers(msg_id, timestamp_secs, body))
    }

    /// The method prepared for many requests: credentials encoded and keys parsed once.
    ///
    /// # Errors
    /// When a stored signature file no longer parses (the database was edited by hand).
    pub fn signer(&self) -> anyhow::Result<Signer> {
        Ok(match self {
            Self::None => Signer::None,
            Self::Basic(basic) => Signer::Basic(basic.header_value()),
            Self::Signature(file) => Signer::Signature(file.keyring().map_err(|error| {
                anyhow::anyhow!("the stored signature file is unusable: {error}")
            })?),
        })
    }
}

/// A webhook's authentication ready to apply to requests. `Debug` hides the secrets.
#[derive(Clone)]
pub enum Signer {
    /// Nothing added.
    None,
    /// The `Authorization` value.
    Basic(String),
    /// The keyring (its `Debug` redacts the keys).
    Signature(verify::Keyring),
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("Signer::None"),
            Self::Basic(_) => f.write_str("Signer::Basic([redacted])"),
            Self::Signature(keyring) => write!(f, "Signer::Signature({keyring:?})"),
        }
    }
}

impl Signer {
    /// The headers for `body` sent as `msg_id` at `timestamp_secs`: signed with every secret
    /// in force then.
    pub fn headers(&self, msg_id: &str, timestamp_secs: i64, body: &[u8]) -> Vec<(String, String)> {
        match self {
            Self::None => Vec::new(),
            Self::Basic(value) => vec![("authorization".into(), value.clone())],
            Self::Signature(keyring) => keyring.sign_headers(msg_id, timestamp_secs, body),
        }
    }
}

/// Whether deliveries go to a webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Activation Status on.
    Active,
    /// Switched off by an admin (`retire`); `activate` switches it back on.
    Retired,
    /// Switched off by the sender itself, with the reason (retention ended).
    Disabled(String),
}

impl Status {
    /// `active`, `retired` or `disabled`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Retired => "retired",
            Self::Disabled(_) => "disabled",
        }
    }
}

/// One registration.
#[derive(Debug, Clone)]
pub struct Webhook {
    /// `wh_…`.
    pub id: WebhookId,
    /// Display name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// The Target URL (`http` or `https`).
    pub url: TargetUrl,
    /// Trigger events.
    pub events: EventSelection,
    /// Authentication method.
    pub auth: Auth,
    /// Activation status.
    pub status: Status,
    /// Epoch milliseconds of registration.
    pub created_at_ms: i64,
    /// Epoch milliseconds of the last change.
    pub updated_at_ms: i64,
    /// Where its deliveries and tests may connect: [`TargetPolicy::PublicOnly`] when its
    /// Target URL was last given through pages reachable from other hosts (`sender admin`
    /// beyond loopback without `--allow-private-targets`), so that every transport (`sender
    /// run`, `trigger`, `webhooks test` as well as the admin's own worker) refuses internal
    /// addresses for it at connect time, whatever its DNS says by then;
    /// [`TargetPolicy::AnyAddress`] when the operator gave it (the command line, pages on
    /// loopback).
    pub target_policy: TargetPolicy,
}

impl Webhook {
    /// The record printed by `list`/`show --json`: every field but the secrets.
    pub fn to_json(&self) -> Value {
        let events: Value = match &self.events {
            EventSelection::All => json!(["all"]),
            EventSelection::Names(names) => json!(names),
        };
        let mut record = json!({
            "id": self.id.as_str(),
            "name": self.name,
            "description": self.description,
            "url": self.url.as_str(),
            "events": events,
            "auth": self.auth.method(),
            "status": self.status.as_str(),
            "active": self.status == Status::Active,
            "createdAt": verify::timestamp::format_iso_millis(self.created_at_ms),
            "updatedAt": verify::timestamp::format_iso_millis(self.updated_at_ms),
        });
        if let (Value::Object(map), Status::Disabled(reason)) = (&mut record, &self.status) {
            map.insert("disabledReason".into(), json!(reason));
        }
        match (&mut record, &self.auth) {
            (Value::Object(map), Auth::Basic(basic)) => {
                map.insert("username".into(), json!(basic.username));
            }
            (Value::Object(map), Auth::Signature(file)) => {
                map.insert("scheme".into(), json!(file.scheme));
                map.insert("secrets".into(), json!(file.secrets.len()));
            }
            _ => {}
        }
        record
    }
}

/// The authentication method named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMethod {
    /// No authentication.
    None,
    /// HTTP Basic.
    Basic,
    /// A signature (Standard Webhooks by default).
    Signature,
}

/// The signature scheme named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SchemeName {
    /// Standard Webhooks v1 (HMAC-SHA256, `whsec_` secret).
    StandardWebhooks,
    /// Standard Webhooks v1a (Ed25519: the sender keeps `whsk_`, the receiver gets `whpk_`).
    StandardWebhooksV1a,
    /// Svix: Standard Webhooks under `svix-` header names.
    Svix,
    /// HMAC-SHA256 of the body in one header.
    BodyHmacSha256,
    /// GitHub: `X-Hub-Signature-256: sha256=<hex>`.
    Github,
    /// Shopify: `X-Shopify-Hmac-Sha256: <base64>`.
    Shopify,
    /// Stripe: `Stripe-Signature: t=…,v1=<hex>`.
    Stripe,
    /// Slack: `X-Slack-Signature: v0=<hex>` and `X-Slack-Request-Timestamp`.
    Slack,
}

impl SchemeName {
    /// The scheme of a signature file: its name there (v1a is `standard-webhooks`).
    pub(crate) fn file_scheme(self) -> &'static str {
        match self {
            Self::StandardWebhooks | Self::StandardWebhooksV1a => "standard-webhooks",
            Self::Svix => "svix",
            Self::BodyHmacSha256 => "body-hmac-sha256",
            Self::Github => "github",
            Self::Shopify => "shopify",
            Self::Stripe => "stripe",
            Self::Slack => "slack",
        }
    }

    /// The name a stored file's scheme and newest key amount to.
    pub(crate) fn of_file(file: &SignatureFile) -> Option<Self> {
        let keyring = file.keyring().ok()?;
        let ed25519 = matches!(
            keyring.entries().last().map(|entry| &entry.key),
            Some(verify::Key::Ed25519Secret(_) | verify::Key::Ed25519Public(_))
        );
        Some(match keyring.scheme() {
            Scheme::StandardWebhooks { .. } if ed25519 => Self::StandardWebhooksV1a,
            Scheme::StandardWebhooks { .. } => Self::StandardWebhooks,
            Scheme::Svix { .. } => Self::Svix,
            Scheme::BodyHmacSha256(_) => Self::BodyHmacSha256,
            Scheme::Github => Self::Github,
            Scheme::Shopify => Self::Shopify,
            Scheme::Stripe { .. } => Self::Stripe,
            Scheme::Slack { .. } => Self::Slack,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_cases() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
        assert!(close_event_names("QWERTY").is_empty());
    }
}
