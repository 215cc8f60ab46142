//! Webhook registrations (SPEC section 5): the record and its validation.
//!
//! Secrets (a Basic password, signing secrets) live in the state database, which is created
//! with mode 0600, sealed under `--secret-key-file` when one is given (see
//! [`crate::sealing`]). They never leave it except through `webhooks signature`, which writes
//! the signature file the receiving team needs: `Debug`, `list` and `--json` records leave
//! them out.

use std::fmt;

use serde_json::{json, Value};
use verify::{BasicCredentials, BodyHmacFormat, Encoding, Scheme, SignatureFile};

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
    pub url: String,
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
            "url": self.url,
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
    fn file_scheme(self) -> &'static str {
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

/// The fields `webhooks add` and `webhooks edit` may set; `None` leaves a field as it is.
/// `Debug` hides the password.
#[derive(Debug, Clone, Default)]
pub struct WebhookChanges {
    /// `--name`.
    pub name: Option<String>,
    /// `--description`.
    pub description: Option<String>,
    /// `--url`.
    pub url: Option<String>,
    /// `--events`.
    pub events: Option<String>,
    /// `--auth`.
    pub auth: Option<AuthMethod>,
    /// `--username`.
    pub username: Option<String>,
    /// `--password`.
    pub password: Option<verify::RedactedString>,
    /// `--scheme`.
    pub scheme: Option<SchemeName>,
    /// `--signature-header` (body-hmac-sha256).
    pub signature_header: Option<String>,
    /// `--signature-encoding` (body-hmac-sha256).
    pub signature_encoding: Option<String>,
    /// `--signature-prefix` (body-hmac-sha256).
    pub signature_prefix: Option<String>,
    /// `--tolerance` in seconds (standard-webhooks), written into the signature file.
    pub tolerance_secs: Option<i64>,
    /// `--inactive` (add) or nothing.
    pub active: Option<bool>,
}

impl WebhookChanges {
    /// A new registration from `add`'s flags.
    ///
    /// # Errors
    /// A [`UsageError`] saying which flag is missing or wrong and what to give instead.
    pub fn create(self, now_ms: i64) -> Result<Webhook, UsageError> {
        let id = WebhookId::generate();
        let name = self
            .name
            .clone()
            .ok_or_else(|| UsageError("--name is required".into()))?;
        let url = self
            .url
            .clone()
            .ok_or_else(|| UsageError("--url is required (the Target URL)".into()))?;
        let events = self.events.clone().ok_or_else(|| {
            UsageError("--events is required: catalogue names separated by commas, or `all`".into())
        })?;
        let mut webhook = Webhook {
            id,
            name,
            description: String::new(),
            url,
            events: EventSelection::parse(&events)?,
            auth: Auth::None,
            status: Status::Active,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
        };
        let changes = WebhookChanges {
            auth: Some(self.auth.unwrap_or(AuthMethod::None)),
            ..self
        };
        changes.apply(&mut webhook, now_ms)?;
        Ok(webhook)
    }

    /// Applies the changes to `webhook`, validating the result as a whole.
    ///
    /// # Errors
    /// A [`UsageError`] for a bad URL, an unknown event, Basic without a password, signature
    /// flags without `--auth signature`, and the like.
    pub fn apply(self, webhook: &mut Webhook, now_ms: i64) -> Result<(), UsageError> {
        if let Some(name) = self.name {
            if name.trim().is_empty() {
                return Err(UsageError("--name must not be empty".into()));
            }
            webhook.name = name;
        }
        if let Some(description) = self.description {
            webhook.description = description;
        }
        if let Some(url) = self.url {
            check_url(&url)?;
            webhook.url = url;
        }
        if let Some(events) = self.events {
            webhook.events = EventSelection::parse(&events)?;
        }
        if let Some(active) = self.active {
            webhook.status = if active {
                Status::Active
            } else {
                Status::Retired
            };
        }
        let method = self.auth.unwrap_or(match webhook.auth {
            Auth::None => AuthMethod::None,
            Auth::Basic(_) => AuthMethod::Basic,
            Auth::Signature(_) => AuthMethod::Signature,
        });
        let signature_flag = [
            self.scheme.map(|_| "--scheme"),
            self.signature_header.as_ref().map(|_| "--signature-header"),
            self.signature_encoding
                .as_ref()
                .map(|_| "--signature-encoding"),
            self.signature_prefix.as_ref().map(|_| "--signature-prefix"),
            self.tolerance_secs.map(|_| "--tolerance"),
        ]
        .into_iter()
        .flatten()
        .next();
        let basic_flag = [
            self.username.as_ref().map(|_| "--username"),
            self.password.as_ref().map(|_| "--password"),
        ]
        .into_iter()
        .flatten()
        .next();
        if let (Some(flag), false) = (signature_flag, method == AuthMethod::Signature) {
            return Err(UsageError(format!(
                "{flag} applies to signature webhooks; add --auth signature"
            )));
        }
        if let (Some(flag), false) = (basic_flag, method == AuthMethod::Basic) {
            return Err(UsageError(format!(
                "{flag} applies to Basic authentication; add --auth basic"
            )));
        }
        webhook.auth = match method {
            AuthMethod::None => Auth::None,
            AuthMethod::Basic => {
                let previous = match &webhook.auth {
                    Auth::Basic(basic) => Some(basic.clone()),
                    _ => None,
                };
                let username = self
                    .username
                    .or_else(|| previous.as_ref().map(|b| b.username.clone()))
                    .ok_or_else(|| UsageError("--auth basic needs --username".into()))?;
                let password = self
                    .password
                    .map(|password| password.expose().to_owned())
                    .or_else(|| previous.as_ref().map(|b| b.password.clone()))
                    .filter(|p| !p.is_empty())
                    .ok_or_else(|| {
                        UsageError("--auth basic needs a non-empty --password".into())
                    })?;
                if username.contains(':') {
                    return Err(UsageError(
                        "--username must not contain ':' (RFC 7617)".into(),
                    ));
                }
                Auth::Basic(BasicAuth { username, password })
            }
            AuthMethod::Signature => {
                let current = match &webhook.auth {
                    Auth::Signature(file) => Some(file.clone()),
                    _ => None,
                };
                let current_scheme = current.as_ref().and_then(|file| file.scheme().ok());
                let current_name = current.as_ref().and_then(SchemeName::of_file);
                let name = self
                    .scheme
                    .or(current_name)
                    .unwrap_or(SchemeName::StandardWebhooks);
                let scheme = build_scheme(
                    name,
                    current_scheme,
                    self.signature_header,
                    self.signature_encoding,
                    self.signature_prefix,
                    self.tolerance_secs,
                )?;
                // Another scheme reads secrets another way (and v1a needs a key pair), so a
                // change of scheme issues a fresh key of the new kind.
                let mut file = match current {
                    Some(file) if current_name == Some(name) => file,
                    _ => {
                        let key: verify::Key = if name == SchemeName::StandardWebhooksV1a {
                            verify::ed25519::SecretKey::generate().into()
                        } else {
                            scheme.generate_secret().into()
                        };
                        SignatureFile::with_key(
                            webhook.id.as_str(),
                            &webhook.name,
                            &scheme,
                            key,
                            now_ms.div_euclid(1000),
                        )
                    }
                };
                file.set_scheme(&scheme);
                file.webhook_name = webhook.name.clone();
                Auth::Signature(file)
            }
        };
        webhook.updated_at_ms = now_ms;
        check_url(&webhook.url)?;
        Ok(())
    }
}

/// The scheme after applying flags to the current one (or the default).
fn build_scheme(
    name: SchemeName,
    current: Option<Scheme>,
    header: Option<String>,
    encoding: Option<String>,
    prefix: Option<String>,
    tolerance_secs: Option<i64>,
) -> Result<Scheme, UsageError> {
    let current = current.filter(|scheme| scheme.name() == name.file_scheme());
    match name {
        SchemeName::BodyHmacSha256 => {
            build_body_hmac(current, header, encoding, prefix, tolerance_secs)
        }
        _ => {
            if let Some(flag) = [
                header.as_ref().map(|_| "--signature-header"),
                encoding.as_ref().map(|_| "--signature-encoding"),
                prefix.as_ref().map(|_| "--signature-prefix"),
            ]
            .into_iter()
            .flatten()
            .next()
            {
                return Err(UsageError(format!(
                    "{flag} applies to --scheme body-hmac-sha256 only"
                )));
            }
            let scheme = current
                .or_else(|| Scheme::from_name(name.file_scheme()))
                .ok_or_else(|| UsageError(format!("unknown scheme {}", name.file_scheme())))?;
            match (scheme.tolerance_secs(), tolerance_secs) {
                (None, Some(_)) => Err(UsageError(format!(
                    "--tolerance does not apply to {}: it signs no timestamp, so it has no replay window",
                    scheme.name()
                ))),
                (Some(_), Some(secs)) if secs < 0 => {
                    Err(UsageError("--tolerance must not be negative".into()))
                }
                (Some(_), Some(secs)) => Ok(scheme.with_tolerance(secs)),
                (_, None) => Ok(scheme),
            }
        }
    }
}

/// The `body-hmac-sha256` format after applying its flags to the current one.
fn build_body_hmac(
    current: Option<Scheme>,
    header: Option<String>,
    encoding: Option<String>,
    prefix: Option<String>,
    tolerance_secs: Option<i64>,
) -> Result<Scheme, UsageError> {
    if tolerance_secs.is_some() {
        return Err(UsageError(
            "--tolerance does not apply to body-hmac-sha256: it has no replay window".into(),
        ));
    }
    let mut format = match current {
        Some(Scheme::BodyHmacSha256(format)) => format,
        _ => BodyHmacFormat::default(),
    };
    if let Some(header) = header {
        let valid = !header.is_empty()
            && header
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return Err(UsageError(format!(
                "--signature-header {header:?} is not a header name (letters, digits, '-')"
            )));
        }
        let header = header.to_ascii_lowercase();
        // Headers the HTTP layer or the other auth methods own would be overwritten,
        // duplicated or misread.
        const RESERVED: &[&str] = &[
            "host",
            "content-length",
            "content-type",
            "transfer-encoding",
            "connection",
            "authorization",
            "user-agent",
            "webhook-id",
            "webhook-timestamp",
            "webhook-signature",
        ];
        if RESERVED.contains(&header.as_str()) {
            return Err(UsageError(format!(
                        "--signature-header {header} is reserved; pick a header of its own such as x-alm-signature"
                    )));
        }
        format.header = header;
    }
    if let Some(encoding) = encoding {
        format.encoding = Encoding::from_name(&encoding).ok_or_else(|| {
            UsageError(format!(
                "--signature-encoding {encoding:?}: use hex or base64"
            ))
        })?;
    }
    if let Some(prefix) = prefix {
        // The receiver splits several signatures on commas and spaces, and a header
        // value cannot hold control characters.
        if prefix
            .chars()
            .any(|c| c.is_control() || c == ',' || c == ' ')
        {
            return Err(UsageError(
                        "--signature-prefix must not hold spaces, commas or control characters (e.g. sha256=)".into(),
                    ));
        }
        format.prefix = prefix;
    }
    Ok(Scheme::BodyHmacSha256(format))
}

/// Refuses anything but an absolute `http` or `https` URL with a host.
///
/// # Errors
/// A [`UsageError`] saying what is wrong and showing the expected shape.
pub fn check_url(url: &str) -> Result<(), UsageError> {
    // Credentials in the URL would travel in the Host header and land in logs and listings;
    // the URL is not quoted back, since it holds them.
    if url_has_credentials(url) {
        return Err(UsageError(
            "--url carries credentials (user:password@host); give them with --auth basic --username U --password P instead".into(),
        ));
    }
    let wrong = |why: &str| {
        UsageError(format!(
            "--url {url:?}: {why}; expected an absolute URL such as https://crm.example.com/webhook"
        ))
    };
    if !url.contains("://") {
        return Err(wrong("it has no http:// or https:// scheme"));
    }
    let uri: http::Uri = url.parse().map_err(|_| wrong("not a valid URL"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => return Err(wrong(&format!("scheme {other:?} is not http or https"))),
        None => return Err(wrong("it has no http:// or https:// scheme")),
    }
    match uri.host() {
        Some(host) if !host.is_empty() => Ok(()),
        _ => Err(wrong("it has no host")),
    }
}

/// Whether a URL's authority holds `user[:password]@`.
pub fn url_has_credentials(url: &str) -> bool {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = after_scheme.split(['/', '?', '#']).next().unwrap_or("");
    authority.contains('@')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(flags: WebhookChanges) -> Result<Webhook, String> {
        flags.create(0).map_err(|e| e.0)
    }

    #[test]
    fn body_hmac_header_and_prefix_are_checked() {
        let body_hmac = |header: Option<&str>, prefix: Option<&str>| {
            add(WebhookChanges {
                auth: Some(AuthMethod::Signature),
                scheme: Some(SchemeName::BodyHmacSha256),
                signature_header: header.map(str::to_owned),
                signature_prefix: prefix.map(str::to_owned),
                ..base()
            })
        };
        assert!(body_hmac(Some("X-Sig"), Some("sha256=")).is_ok());
        assert!(body_hmac(Some("Host"), None)
            .expect_err("reserved")
            .contains("reserved"));
        assert!(body_hmac(Some("authorization"), None).is_err());
        assert!(body_hmac(None, Some("a,b")).is_err());
        assert!(body_hmac(None, Some("x\r\ny")).is_err());
    }

    #[test]
    fn debug_hides_the_password() {
        let changes = WebhookChanges {
            password: Some("hunter22".into()),
            ..base()
        };
        let shown = format!("{changes:?}");
        assert!(
            !shown.contains("hunter22") && shown.contains("[redacted]"),
            "{shown}"
        );
    }

    #[test]
    fn urls_with_credentials_are_refused_without_echoing_them() {
        for url in [
            "https://crm:s3cret@crm.example.com/hook",
            "http://u@127.0.0.1:9/",
        ] {
            let error = check_url(url).expect_err(url).0;
            assert!(error.contains("carries credentials"), "{error}");
            assert!(!error.contains("s3cret"), "{error}");
        }
        assert!(check_url("https://crm.example.com/hook?to=a@b").is_ok());
    }

    fn base() -> WebhookChanges {
        WebhookChanges {
            name: Some("CRM".into()),
            url: Some("http://127.0.0.1:9/hook".into()),
            events: Some("all".into()),
            ..WebhookChanges::default()
        }
    }

    #[test]
    fn validation_errors_say_what_to_do() {
        let check = |flags: WebhookChanges, expected: &str| {
            let error = add(flags).expect_err(expected);
            assert!(error.contains(expected), "{error:?} lacks {expected:?}");
        };
        check(
            WebhookChanges {
                url: Some("ftp://x/y".into()),
                ..base()
            },
            "scheme \"ftp\" is not http or https",
        );
        check(
            WebhookChanges {
                url: Some("crm.example.com/hook".into()),
                ..base()
            },
            "no http:// or https:// scheme",
        );
        check(
            WebhookChanges {
                events: Some("COURSE_ENROLMENT".into()),
                ..base()
            },
            "did you mean COURSE_ENROLLMENT",
        );
        check(
            WebhookChanges {
                events: Some("course_completed_batch".into()),
                ..base()
            },
            "did you mean COURSE_COMPLETED_BATCH",
        );
        check(
            WebhookChanges {
                auth: Some(AuthMethod::Basic),
                username: Some("crm".into()),
                ..base()
            },
            "--auth basic needs a non-empty --password",
        );
        check(
            WebhookChanges {
                scheme: Some(SchemeName::BodyHmacSha256),
                ..base()
            },
            "--scheme applies to signature webhooks; add --auth signature",
        );
        check(
            WebhookChanges {
                auth: Some(AuthMethod::Signature),
                signature_prefix: Some("sha256=".into()),
                ..base()
            },
            "--signature-prefix applies to --scheme body-hmac-sha256 only",
        );
        check(
            WebhookChanges {
                password: Some("p".into()),
                ..base()
            },
            "add --auth basic",
        );
    }

    #[test]
    fn signature_webhooks_get_a_secret_and_records_hide_it() {
        let webhook = add(WebhookChanges {
            auth: Some(AuthMethod::Signature),
            scheme: Some(SchemeName::BodyHmacSha256),
            signature_prefix: Some("sha256=".into()),
            ..base()
        })
        .expect("valid");
        let Auth::Signature(file) = &webhook.auth else {
            panic!("signature auth expected")
        };
        assert_eq!(file.scheme, "body-hmac-sha256");
        assert_eq!(file.prefix.as_deref(), Some("sha256="));
        assert_eq!(file.webhook_id, webhook.id.as_str());
        let secret = &file.secrets[0].secret;
        assert!(secret.starts_with("whsec_"));
        let shown = format!("{} {:?}", webhook.to_json(), webhook);
        assert!(!shown.contains(secret.as_str()), "{shown}");

        let basic = add(WebhookChanges {
            auth: Some(AuthMethod::Basic),
            username: Some("crm".into()),
            password: Some("hunter22".into()),
            ..base()
        })
        .expect("valid");
        let shown = format!("{} {:?}", basic.to_json(), basic);
        assert!(!shown.contains("hunter22"), "{shown}");
        assert!(shown.contains("crm"));
    }

    #[test]
    fn edit_keeps_what_is_not_named() {
        let mut webhook = add(WebhookChanges {
            auth: Some(AuthMethod::Basic),
            username: Some("crm".into()),
            password: Some("pw".into()),
            events: Some("COURSE_ENROLLMENT,COURSE_COMPLETED".into()),
            ..base()
        })
        .expect("valid");
        WebhookChanges {
            password: Some("pw2".into()),
            ..WebhookChanges::default()
        }
        .apply(&mut webhook, 5)
        .expect("edit");
        let Auth::Basic(basic) = &webhook.auth else {
            panic!("still basic")
        };
        assert_eq!(
            (basic.username.as_str(), basic.password.as_str()),
            ("crm", "pw2")
        );
        assert!(webhook.events.includes("COURSE_COMPLETED"));
        assert!(!webhook.events.includes("CI_STATS"));
        assert_eq!(webhook.updated_at_ms, 5);
    }

    #[test]
    fn edit_distance_cases() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
        assert!(close_event_names("QWERTY").is_empty());
    }
}
