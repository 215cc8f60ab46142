//! The validation of a webhook's changes, written once for the command line's flags, the
//! API's JSON and the pages' forms: [`WebhookChanges`] applied to a registration, checked as a
//! whole; [`WebhookChanges::problems`], every mistake at once, one a field, each in the
//! command line's words and in plain words (a [`Problem`], `problem.rs`); the Target URL read
//! by its one rule set; and the signature file a webhook gets, before Save too.

use common::target_guard::TargetPolicy;
use common::target_url::{TargetUrl, TargetUrlError};
use verify::SignatureFile;

use super::problem::{one_a_field, Problem};
use super::signature_file::{build_scheme, signature_file_for};
use crate::registry::{
    Auth, AuthMethod, BasicAuth, EventSelection, SchemeName, Status, Webhook, WebhookId,
};
use crate::UsageError;

/// The fields `webhooks add` and `webhooks edit` may set; `None` leaves a field as it is.
/// `Debug` hides the password (and the pending signature's secrets).
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
    /// A signature file made before Save (the admin pages' Add webhook form, the API's
    /// pending signatures) for the webhook it names: a new webhook takes its id, and where the
    /// changes need a fresh key of its kind, its key is used instead, so the file handed out
    /// before Save keeps verifying after it. The command line has none.
    pub pending_signature: Option<SignatureFile>,
}

impl WebhookChanges {
    /// A new registration from `add`'s flags, under a fresh id (or the id its
    /// [`pending_signature`](Self::pending_signature) was made for).
    ///
    /// # Errors
    /// A [`UsageError`] saying which flag is missing or wrong and what to give instead: the
    /// first of [`WebhookChanges::problems`].
    pub fn create(self, now_ms: i64) -> Result<Webhook, UsageError> {
        if let Some(problem) = self.problems(None).into_iter().next() {
            return Err(problem.usage);
        }
        let id = self
            .pending_signature
            .as_ref()
            .map(|file| WebhookId(file.webhook_id.clone()))
            .unwrap_or_else(WebhookId::generate);
        let (Some(name), Some(url)) = (self.name.clone(), self.url.clone()) else {
            // `problems` named both as required.
            return Err(UsageError("--name and --url are required".into()));
        };
        let mut webhook = Webhook {
            id,
            name,
            description: String::new(),
            url,
            events: EventSelection::All,
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

    /// Every mistake of these changes, applied to `current` (`None`: a new webhook, as `add`
    /// makes it), at once: each field is checked on its own, and the first problem of each
    /// field is kept ([`one_a_field`]), in the order [`WebhookChanges::apply`] meets them, so
    /// the first is the command line's error. Nothing is changed.
    pub fn problems(&self, current: Option<&Webhook>) -> Vec<Problem> {
        let mut found = Vec::new();
        if current.is_none() {
            if self.name.is_none() {
                found.push(Problem::new(
                    "name",
                    "--name is required",
                    "Name is required",
                ));
            }
            if self.url.is_none() {
                found.push(Problem::new(
                    "url",
                    "--url is required (the Target URL)",
                    "Target URL is required",
                ));
            }
            if self.events.is_none() {
                found.push(Problem::new(
                    "events",
                    "--events is required: catalogue names separated by commas, or `all`",
                    "Choose at least one trigger event, or All events",
                ));
            }
        }
        if let Err(usage) = self.checked_name() {
            found.push(usage.into());
        }
        if let Err(usage) = self.parsed_events() {
            found.push(usage.into());
        }
        let (auth, id, name) = match current {
            Some(webhook) => (&webhook.auth, webhook.id.clone(), webhook.name.as_str()),
            None => (&Auth::None, WebhookId("wh_new".into()), ""),
        };
        let method = self.auth.or(current.is_none().then_some(AuthMethod::None));
        if let Err(usage) = self.auth_for(method, auth, &id, name, 0) {
            found.push(usage.into());
        }
        one_a_field(found)
    }

    /// The name, when given, not blank.
    fn checked_name(&self) -> Result<(), UsageError> {
        match &self.name {
            Some(name) if name.trim().is_empty() => {
                Err(UsageError("--name must not be empty".into()))
            }
            _ => Ok(()),
        }
    }

    /// The trigger events, when given.
    fn parsed_events(&self) -> Result<Option<EventSelection>, UsageError> {
        self.events
            .as_deref()
            .map(EventSelection::parse)
            .transpose()
    }

    /// Applies the changes to `webhook`, validating the result as a whole.
    ///
    /// # Errors
    /// A [`UsageError`] for a bad URL, an unknown event, Basic without a password, signature
    /// flags without `--auth signature`, and the like.
    pub fn apply(self, webhook: &mut Webhook, now_ms: i64) -> Result<(), UsageError> {
        self.checked_name()?;
        let events = self.parsed_events()?;
        let name = self.name.clone().unwrap_or_else(|| webhook.name.clone());
        let auth = self.auth_for(self.auth, &webhook.auth, &webhook.id, &name, now_ms)?;
        // Everything is checked: write.
        webhook.name = name;
        if let Some(description) = self.description {
            webhook.description = description;
        }
        if let Some(url) = self.url {
            webhook.url = url;
            webhook.target_policy = self.target_policy;
        }
        if let Some(events) = events {
            webhook.events = events;
        }
        if let Some(active) = self.active {
            webhook.status = if active {
                Status::Active
            } else {
                Status::Retired
            };
        }
        webhook.auth = auth;
        webhook.updated_at_ms = now_ms;
        Ok(())
    }

    /// The authentication these changes give a webhook whose authentication is `current`
    /// (`method` the one asked for, `None` keeps the current one): its checks, and its
    /// material (a signature file is the current one when the scheme's kind stays, else the
    /// pending one made for `id` of that kind, else a fresh key).
    fn auth_for(
        &self,
        method: Option<AuthMethod>,
        current: &Auth,
        id: &WebhookId,
        webhook_name: &str,
        now_ms: i64,
    ) -> Result<Auth, UsageError> {
        let method = method.unwrap_or(match current {
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
        Ok(match method {
            AuthMethod::None => Auth::None,
            AuthMethod::Basic => {
                let previous = match current {
                    Auth::Basic(basic) => Some(basic),
                    _ => None,
                };
                let username = self
                    .username
                    .clone()
                    .or_else(|| previous.map(|b| b.username.clone()))
                    .ok_or_else(|| UsageError("--auth basic needs --username".into()))?;
                let given = self
                    .password
                    .as_ref()
                    .map(|password| password.expose().to_owned());
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
                    .or_else(|| previous.map(|b| b.password.clone()))
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
                let current = match current {
                    Auth::Signature(file) => Some(file),
                    _ => None,
                };
                let current_scheme = current.and_then(|file| file.scheme().ok());
                let current_name = current.and_then(SchemeName::of_file);
                let name = self
                    .scheme
                    .or(current_name)
                    .unwrap_or(SchemeName::StandardWebhooks);
                let scheme = build_scheme(
                    name,
                    current_scheme,
                    self.signature_header.clone(),
                    self.signature_encoding.clone(),
                    self.signature_prefix.clone(),
                    self.tolerance_secs,
                )?;
                let mut file = signature_file_for(
                    current,
                    self.pending_signature.as_ref(),
                    id,
                    name,
                    &scheme,
                    now_ms,
                );
                file.set_scheme(&scheme);
                file.webhook_name = webhook_name.to_owned();
                Auth::Signature(file)
            }
        })
    }
}

/// The Target URL a `--url` flag, an API body's `url` or the form's **Target URL** gives,
/// parsed by the one rule set ([`TargetUrl`]).
///
/// # Errors
/// A [`UsageError`] saying what is wrong and showing the expected shape; with credentials
/// in the URL, without quoting it (they would land in logs and listings).
pub fn target_url(text: &str) -> Result<TargetUrl, UsageError> {
    target_url_checked(text).map_err(|problem| problem.usage)
}

/// [`target_url`] with the mistake in both words: the command line's, and the plain words
/// the pages and the API say beside **Target URL** (which never quote it: the field shows
/// what was typed).
///
/// # Errors
/// The [`Problem`] of the `url` field.
pub fn target_url_checked(text: &str) -> Result<TargetUrl, Problem> {
    const EXAMPLE: &str = "https://crm.example.com/webhook";
    TargetUrl::parse(text).map_err(|error| {
        let plain = match &error {
            _ if text.trim().is_empty() => "Target URL is required".to_owned(),
            TargetUrlError::Credentials => "Target URL must not hold a user name or password \
                 (user:password@host): choose Basic authentication and give them there"
                .to_owned(),
            TargetUrlError::NoScheme => {
                format!("Target URL needs http:// or https:// in front, such as {EXAMPLE}")
            }
            TargetUrlError::Scheme(scheme) => format!(
                "Target URL must start with http:// or https://, not {scheme}://; such as {EXAMPLE}"
            ),
            TargetUrlError::NoHost | TargetUrlError::Invalid(_) => {
                format!("Target URL is not a web address; write it like {EXAMPLE}")
            }
        };
        let usage = match error {
            TargetUrlError::Credentials => "--url carries credentials (user:password@host); give them with --auth basic --username U --password P instead".to_owned(),
            TargetUrlError::Invalid(_) => format!(
                "--url {text:?}: not a valid URL; expected an absolute URL such as {EXAMPLE}"
            ),
            other => format!("--url {text:?}: {other}; expected an absolute URL such as {EXAMPLE}"),
        };
        Problem::new("url", &usage, &plain)
    })
}

#[cfg(test)]
mod tests {
    use super::super::signature_file::signature_file_of;
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
        assert_eq!(crate::manage::field_error(&error).0, "password");
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

    /// Bad changes of every kind the pages and the API can send, each alone and all at once.
    fn bad_changes() -> Vec<WebhookChanges> {
        let basic = |username: Option<&str>, password: Option<&str>| WebhookChanges {
            auth: Some(AuthMethod::Basic),
            username: username.map(str::to_owned),
            password: password.map(verify::RedactedString::from),
            ..base()
        };
        vec![
            WebhookChanges::default(),
            WebhookChanges {
                name: Some(" ".into()),
                events: Some(String::new()),
                ..base()
            },
            WebhookChanges {
                events: Some("COURSE_ENROLMENT".into()),
                ..base()
            },
            WebhookChanges {
                events: Some("NOTHING_LIKE_IT".into()),
                ..base()
            },
            basic(None, None),
            basic(Some("crm"), None),
            basic(Some("a:b"), Some("pw")),
            WebhookChanges {
                scheme: Some(SchemeName::Svix),
                ..base()
            },
            WebhookChanges {
                auth: Some(AuthMethod::Signature),
                signature_prefix: Some("a b".into()),
                scheme: Some(SchemeName::BodyHmacSha256),
                ..base()
            },
        ]
    }

    #[test]
    fn every_problem_is_found_at_once_one_a_field() {
        let problems = WebhookChanges::default().problems(None);
        let fields: Vec<&str> = problems.iter().map(|problem| problem.field).collect();
        assert_eq!(fields, ["name", "url", "events"], "{problems:?}");
        let messages: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "Name is required",
                "Target URL is required",
                "Choose at least one trigger event, or All events"
            ]
        );
        // The first is what the command line says.
        assert_eq!(
            WebhookChanges::default().create(0).expect_err("empty").0,
            problems[0].usage.0
        );

        let problems = WebhookChanges {
            name: Some(String::new()),
            events: Some(",".into()),
            auth: Some(AuthMethod::Basic),
            ..base()
        }
        .problems(None);
        let fields: Vec<&str> = problems.iter().map(|problem| problem.field).collect();
        assert_eq!(fields, ["name", "events", "username"], "{problems:?}");

        // On an edit, what is stored counts: a Basic webhook keeps its password.
        let stored = add(WebhookChanges {
            auth: Some(AuthMethod::Basic),
            username: Some("crm".into()),
            password: Some("pw".into()),
            ..base()
        })
        .expect("valid");
        let rename = WebhookChanges {
            username: Some("other".into()),
            ..WebhookChanges::default()
        };
        assert!(rename.problems(Some(&stored)).is_empty());
        assert!(!rename.problems(None).is_empty(), "a new one needs a name");
    }

    #[test]
    fn problems_are_in_plain_words() {
        for changes in bad_changes() {
            let problems = changes.problems(None);
            assert!(!problems.is_empty(), "{changes:?}");
            assert_eq!(
                changes.clone().create(0).expect_err("bad").0,
                problems[0].usage.0,
                "the command line names the first"
            );
            for problem in problems {
                let message = &problem.message;
                assert!(
                    !message.contains('`')
                        && !message.contains("--")
                        && !message.contains("sender "),
                    "{message:?} is not plain"
                );
                assert_ne!(problem.field, "form", "{message:?} names no field");
            }
        }
        for url in [
            "",
            "crm.example.com/hook",
            "ftp://x/y",
            "http://",
            "https://u:p@x/",
        ] {
            let problem = target_url_checked(url).expect_err(url);
            assert_eq!(problem.field, "url");
            assert!(
                problem.message.starts_with("Target URL ")
                    && !problem.message.contains('"')
                    && !problem.message.contains("--"),
                "{url}: {}",
                problem.message
            );
            assert_eq!(problem.usage, target_url(url).expect_err(url));
        }
        assert_eq!(
            target_url_checked("").expect_err("blank").message,
            "Target URL is required"
        );
    }

    #[test]
    fn a_pending_signature_gives_its_id_and_its_key_to_the_webhook() {
        let id = WebhookId::generate();
        let pending = signature_file_of(
            None,
            None,
            &id,
            "draft",
            SchemeName::StandardWebhooks,
            1_000,
        )
        .expect("a file");
        let webhook = add(WebhookChanges {
            auth: Some(AuthMethod::Signature),
            pending_signature: Some(pending.clone()),
            ..base()
        })
        .expect("valid");
        assert_eq!(webhook.id, id);
        let Auth::Signature(file) = &webhook.auth else {
            panic!("signature expected")
        };
        assert_eq!(file.secrets[0].secret, pending.secrets[0].secret);
        assert_eq!(file.webhook_name, "CRM", "the name as saved");

        // A pending file of another kind (v1a needs a key pair) is not used.
        let other = add(WebhookChanges {
            auth: Some(AuthMethod::Signature),
            scheme: Some(SchemeName::StandardWebhooksV1a),
            pending_signature: Some(pending.clone()),
            ..base()
        })
        .expect("valid");
        let Auth::Signature(file) = &other.auth else {
            panic!("signature expected")
        };
        assert!(file.secrets[0].secret.starts_with("whsk_"));

        // An edit switching a Basic webhook to Signature takes a pending file made for it,
        // and ignores one made for another webhook.
        let mut basic = add(WebhookChanges {
            auth: Some(AuthMethod::Basic),
            username: Some("crm".into()),
            password: Some("pw".into()),
            ..base()
        })
        .expect("valid");
        let for_it =
            signature_file_of(None, None, &basic.id, "", SchemeName::Stripe, 0).expect("file");
        let mut copy = basic.clone();
        WebhookChanges {
            auth: Some(AuthMethod::Signature),
            scheme: Some(SchemeName::Stripe),
            pending_signature: Some(pending),
            ..WebhookChanges::default()
        }
        .apply(&mut copy, 5)
        .expect("edit");
        WebhookChanges {
            auth: Some(AuthMethod::Signature),
            scheme: Some(SchemeName::Stripe),
            pending_signature: Some(for_it.clone()),
            ..WebhookChanges::default()
        }
        .apply(&mut basic, 5)
        .expect("edit");
        let (Auth::Signature(ignored), Auth::Signature(taken)) = (&copy.auth, &basic.auth) else {
            panic!("signature expected")
        };
        assert_ne!(ignored.secrets[0].secret, for_it.secrets[0].secret);
        assert_eq!(taken.secrets[0].secret, for_it.secrets[0].secret);
        assert_eq!(taken.scheme, "stripe");
    }
}
