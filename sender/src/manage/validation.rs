//! The validation of a webhook's changes, written once for the command line's flags, the
//! API's JSON and the pages' forms: [`WebhookChanges`] applied to a registration, checked as a
//! whole; and [`field_error`], which names the field a validation message is about.

use common::target_guard::TargetPolicy;
use common::target_url::{TargetUrl, TargetUrlError};
use verify::{BodyHmacFormat, Encoding, Scheme, SignatureFile};

use crate::registry::{
    Auth, AuthMethod, BasicAuth, EventSelection, SchemeName, Status, Webhook, WebhookId,
};
use crate::UsageError;

/// The fields `webhooks add` and `webhooks edit` may set; `None` leaves a field as it is.
/// `Debug` hides the password.
#[derive(Debug, Clone, Default)]
pub struct WebhookChanges {
    /// `--name`.
    pub name: Option<String>,
    /// `--description`.
    pub description: Option<String>,
    /// `--url`, parsed where it was given ([`target_url`]).
    pub url: Option<TargetUrl>,
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
    /// The rule of whoever gives the URL: a webhook whose Target URL is given here (an add, or
    /// an edit naming a URL) keeps it for its deliveries ([`Webhook::target_policy`]). The
    /// command line leaves the default (any address); the admin pages set their own rule.
    pub target_policy: TargetPolicy,
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
            target_policy: self.target_policy,
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
            webhook.url = url;
            webhook.target_policy = self.target_policy;
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
                let given = self.password.map(|password| password.expose().to_owned());
                // The state tells sealed values by its key record, not by their look; still,
                // a new password that reads as a sealed value would confuse whoever looks at
                // the state, and older senders judged by the look.
                if given.as_ref().is_some_and(|p| p.starts_with("sealed:")) {
                    return Err(UsageError(
                        "--password must not start with `sealed:` (how the state marks a \
                         sealed secret); choose another password"
                            .into(),
                    ));
                }
                let password = given
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

/// The Target URL a `--url` flag, an API body's `url` or the form's **Target URL** gives,
/// parsed by the one rule set ([`TargetUrl`]).
///
/// # Errors
/// A [`UsageError`] saying what is wrong and showing the expected shape; with credentials
/// in the URL, without quoting it (they would land in logs and listings).
pub fn target_url(text: &str) -> Result<TargetUrl, UsageError> {
    TargetUrl::parse(text).map_err(|error| {
        let why = match error {
            TargetUrlError::Credentials => {
                return UsageError(
                    "--url carries credentials (user:password@host); give them with --auth basic --username U --password P instead".into(),
                )
            }
            TargetUrlError::Invalid(_) => "not a valid URL".to_owned(),
            other => other.to_string(),
        };
        UsageError(format!(
            "--url {text:?}: {why}; expected an absolute URL such as https://crm.example.com/webhook"
        ))
    })
}

/// The part of a validation message that names the field, as `(field, message)`: the field is
/// the one whose flag the message names first (`--url` is `url`), for showing the error beside
/// it; the message says the field's label instead of its flag.
pub fn field_error(message: &str) -> (&'static str, String) {
    // (flag, field of the API and form, label on the pages), longer flags first so that
    // `--signature-header` is not read as `--signature`.
    const FIELDS: &[(&str, &str, &str)] = &[
        ("--signature-header", "scheme", "Signature header"),
        ("--signature-encoding", "scheme", "Signature encoding"),
        ("--signature-prefix", "scheme", "Signature prefix"),
        ("--tolerance", "scheme", "Tolerance"),
        ("--scheme", "scheme", "Scheme"),
        ("--name", "name", "Name"),
        ("--description", "description", "Description"),
        ("--url", "url", "Target URL"),
        ("--events", "events", "Trigger events"),
        ("--username", "username", "Username"),
        ("--password", "password", "Password"),
        ("--auth basic", "password", "Basic authentication"),
        ("--auth signature", "auth", "Signature authentication"),
        ("--auth", "auth", "Authentication"),
        ("--overlap", "overlap", "Overlap"),
        ("--count", "count", "Count"),
        ("--set", "set", "Field values"),
        ("--data", "data", "Data"),
    ];
    let first = FIELDS
        .iter()
        .filter_map(|entry| message.find(entry.0).map(|at| (at, entry)))
        .min_by_key(|(at, entry)| (*at, std::cmp::Reverse(entry.0.len())));
    let field = match first {
        Some((_, (_, field, _))) => field,
        None if message.starts_with("unknown event") => "events",
        None => "form",
    };
    let mut readable = message.to_owned();
    for (flag, _, label) in FIELDS {
        readable = readable.replace(flag, label);
    }
    (field, readable)
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
    fn a_new_password_that_looks_sealed_is_refused() {
        let basic = |password: &str| WebhookChanges {
            auth: Some(AuthMethod::Basic),
            username: Some("crm".into()),
            password: Some(password.into()),
            ..base()
        };
        let error = add(basic("sealed:v2:AAAA")).expect_err("looks sealed");
        assert!(
            error.starts_with("--password must not start with `sealed:`"),
            "{error}"
        );
        assert_eq!(field_error(&error).0, "password");
        assert!(add(basic("not-sealed:v2")).is_ok());
    }

    #[test]
    fn the_url_keeps_the_rule_of_whoever_gave_it() {
        let mut webhook = add(base()).expect("valid");
        assert_eq!(webhook.target_policy, TargetPolicy::AnyAddress);
        let pages = |url: Option<&str>| WebhookChanges {
            url: url.map(|url| target_url(url).expect("valid")),
            target_policy: TargetPolicy::PublicOnly,
            ..WebhookChanges::default()
        };
        // Pages that keep the URL change nothing of its rule; pages that give one set theirs.
        pages(None).apply(&mut webhook, 1).expect("applies");
        assert_eq!(webhook.target_policy, TargetPolicy::AnyAddress);
        pages(Some("http://public.example/hook"))
            .apply(&mut webhook, 2)
            .expect("applies");
        assert_eq!(webhook.target_policy, TargetPolicy::PublicOnly);
        // The command line's edit without a URL keeps it; with one, the operator's rule.
        let command_line = |url: Option<&str>| WebhookChanges {
            url: url.map(|url| target_url(url).expect("valid")),
            description: Some("x".into()),
            ..WebhookChanges::default()
        };
        command_line(None).apply(&mut webhook, 3).expect("applies");
        assert_eq!(webhook.target_policy, TargetPolicy::PublicOnly);
        command_line(Some("http://127.0.0.1:9/hook"))
            .apply(&mut webhook, 4)
            .expect("applies");
        assert_eq!(webhook.target_policy, TargetPolicy::AnyAddress);
    }

    #[test]
    fn urls_with_credentials_are_refused_without_echoing_them() {
        for url in [
            "https://crm:s3cret@crm.example.com/hook",
            "http://u@127.0.0.1:9/",
        ] {
            let error = target_url(url).expect_err(url).0;
            assert!(error.contains("carries credentials"), "{error}");
            assert!(!error.contains("s3cret"), "{error}");
        }
        assert!(target_url("https://crm.example.com/hook?to=a@b").is_ok());
    }

    fn base() -> WebhookChanges {
        WebhookChanges {
            name: Some("CRM".into()),
            url: Some(target_url("http://127.0.0.1:9/hook").expect("valid")),
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
        let check_url = |url: &str, expected: &str| {
            let error = target_url(url).expect_err(expected).0;
            assert!(error.contains(expected), "{error:?} lacks {expected:?}");
            assert!(
                error.contains("expected an absolute URL such as"),
                "{error:?}"
            );
        };
        check_url("ftp://x/y", "scheme \"ftp\" is not http or https");
        check_url("crm.example.com/hook", "no http:// or https:// scheme");
        check_url("http://", "\"http://\": not a valid URL;");
        check_url("http:///hook", "not a valid URL");
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
    fn validation_messages_name_their_field() {
        let check = |message: &str, field: &str, readable: &str| {
            let (found, text) = field_error(message);
            assert_eq!(found, field, "{message}");
            assert!(text.contains(readable), "{text:?} lacks {readable:?}");
        };
        check(
            "--url \"ftp://x\": scheme \"ftp\" is not http or https",
            "url",
            "Target URL \"ftp://x\"",
        );
        check(
            "--auth basic needs a non-empty --password",
            "password",
            "Basic authentication needs a non-empty Password",
        );
        check(
            "unknown event \"X\"; did you mean Y?",
            "events",
            "unknown event",
        );
        check(
            "--signature-prefix applies to --scheme body-hmac-sha256 only",
            "scheme",
            "Signature prefix applies to Scheme",
        );
        check("--name must not be empty", "name", "Name must not be empty");
        check("something else", "form", "something else");
    }
}
