//! A webhook as the API's JSON and the pages' forms give it, turned into the
//! [`WebhookChanges`] that `sender webhooks add/edit` build from their flags: from there on one
//! validation ([`WebhookChanges::problems`], [`WebhookChanges::apply`]) judges all three.
//! What cannot even be read (a Target URL that is no URL, an unknown method or scheme) is a
//! [`Problem`] of its field here, so that a form or a body gets every error at once.

use clap::ValueEnum as _;
use common::target_guard::TargetPolicy;
use serde::Deserialize;

use crate::manage::{target_url_checked, Problem, WebhookChanges};
use crate::registry::{AuthMethod, SchemeName};
use crate::UsageError;

/// The JSON body of `POST /api/webhooks` and `PATCH /api/webhooks/{id}` (and the webhook of
/// `POST /api/test`); fields left out keep their value (on add: their default). `Debug` hides
/// the password.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookInput {
    name: Option<String>,
    description: Option<String>,
    url: Option<String>,
    /// Catalogue names, or `["all"]`.
    events: Option<Vec<String>>,
    auth: Option<String>,
    username: Option<String>,
    password: Option<Password>,
    scheme: Option<String>,
    signature_header: Option<String>,
    signature_encoding: Option<String>,
    signature_prefix: Option<String>,
    tolerance_seconds: Option<i64>,
    active: Option<bool>,
    /// The `version` the caller read; a change is refused when the webhook has another.
    pub version: Option<i64>,
    /// A pending signature (`ps_…`, from `POST /api/pending-signatures`) whose secret the
    /// webhook takes, and, when it is new, whose webhook id.
    pub pending_signature: Option<String>,
}

impl WebhookInput {
    /// The changes, with `url`, `auth` and `scheme` read as the command line reads them, and
    /// the problems of the fields that could not be read (left out of the changes).
    pub fn changes(self) -> (WebhookChanges, Vec<Problem>) {
        let mut problems = Vec::new();
        let url = self
            .url
            .as_deref()
            .and_then(|text| keep_problem(target_url_checked(text), &mut problems));
        let auth = self
            .auth
            .as_deref()
            .and_then(|text| keep_problem(auth_method(text), &mut problems));
        let scheme = self
            .scheme
            .as_deref()
            .and_then(|text| keep_problem(scheme_name(text), &mut problems));
        let changes = WebhookChanges {
            name: self.name,
            description: self.description,
            url,
            events: self.events.map(|names| names.join(",")),
            auth,
            username: self.username,
            password: self.password.map(|password| password.0),
            scheme,
            signature_header: self.signature_header,
            signature_encoding: self.signature_encoding,
            signature_prefix: self.signature_prefix,
            tolerance_secs: self.tolerance_seconds,
            active: self.active,
            // The pages' rule, given where the pages read a change (`changes_of`, `read_screen`).
            target_policy: TargetPolicy::default(),
            pending_signature: None,
        };
        (changes, problems)
    }
}

/// The value, or `None` with its problem kept.
fn keep_problem<T, E: Into<Problem>>(read: Result<T, E>, problems: &mut Vec<Problem>) -> Option<T> {
    read.map_err(|problem| problems.push(problem.into())).ok()
}

/// A password read from JSON; `Debug` hides it.
#[derive(Deserialize)]
#[serde(from = "String")]
struct Password(verify::RedactedString);

impl From<String> for Password {
    fn from(text: String) -> Password {
        Password(text.into())
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// `none`, `basic` or `signature`.
fn auth_method(text: &str) -> Result<AuthMethod, UsageError> {
    AuthMethod::from_str(text, true)
        .map_err(|_| UsageError(format!("--auth {text:?}: use none, basic or signature")))
}

/// A scheme name as `--scheme` takes it (`standard-webhooks`, `body-hmac-sha256`, …).
pub fn scheme_name(text: &str) -> Result<SchemeName, UsageError> {
    SchemeName::from_str(text, true).map_err(|_| {
        let names: Vec<String> = SchemeName::value_variants()
            .iter()
            .filter_map(|name| name.to_possible_value())
            .map(|value| value.get_name().to_owned())
            .collect();
        UsageError(format!(
            "--scheme {text:?}: use one of {}",
            names.join(", ")
        ))
    })
}

/// The name `--scheme` gives a scheme, for the form's choice.
pub fn scheme_label(name: SchemeName) -> String {
    name.to_possible_value()
        .map(|value| value.get_name().to_owned())
        .unwrap_or_default()
}

/// The form of the Add webhook / Edit page, with the problems of the fields that could not be
/// read. A blank Password keeps `kept_password` (one typed into this form before it came
/// back), else, on Edit, the stored one; Activation status is a checkbox, so its absence
/// means off. The fields of the methods not chosen stay in the form, hidden; only the chosen
/// method's count.
pub fn form_changes(
    form: &[(String, String)],
    adding: bool,
    kept_password: Option<&verify::RedactedString>,
) -> (WebhookChanges, Vec<Problem>) {
    let value = |name: &str| {
        form.iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    let non_blank = |name: &str| value(name).filter(|text| !text.trim().is_empty());
    let mut problems = Vec::new();
    let events: Vec<&str> = form
        .iter()
        .filter(|(key, _)| key == "events")
        .map(|(_, value)| value.as_str())
        .collect();
    let auth = value("auth")
        .as_deref()
        .and_then(|text| keep_problem(auth_method(text), &mut problems));
    let signature = auth == Some(AuthMethod::Signature);
    let basic = auth == Some(AuthMethod::Basic);
    let username = non_blank("username").filter(|_| basic);
    if basic && username.is_none() && value("username").is_some() {
        // A cleared Username is a mistake, not "keep the stored one".
        problems.push(Problem::from(UsageError(
            "--auth basic needs --username".into(),
        )));
    }
    let changes = WebhookChanges {
        name: value("name"),
        description: value("description"),
        url: value("url")
            .as_deref()
            .and_then(|text| keep_problem(target_url_checked(text), &mut problems)),
        events: Some(events.join(",")),
        auth,
        username,
        password: non_blank("password")
            .map(verify::RedactedString::from)
            .or_else(|| kept_password.cloned())
            .filter(|_| basic),
        scheme: non_blank("scheme")
            .filter(|_| signature)
            .as_deref()
            .and_then(|text| keep_problem(scheme_name(text), &mut problems)),
        signature_header: None,
        signature_encoding: None,
        signature_prefix: None,
        tolerance_secs: None,
        active: Some(value("active").is_some()).filter(|active| !adding || !active),
        // The pages' rule, given where the pages read a change (`changes_of`, `read_screen`).
        target_policy: TargetPolicy::default(),
        pending_signature: None,
    };
    (changes, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn forms_become_the_flags_of_the_command_line() {
        let (changes, problems) = form_changes(
            &form(&[
                ("name", "CRM"),
                ("url", "http://127.0.0.1:9/hook"),
                ("events", "COURSE_ENROLLMENT"),
                ("events", "COURSE_COMPLETED"),
                ("auth", "basic"),
                ("username", "crm"),
                ("password", ""),
                ("scheme", "svix"),
            ]),
            true,
            None,
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            changes.events.as_deref(),
            Some("COURSE_ENROLLMENT,COURSE_COMPLETED")
        );
        assert_eq!(changes.auth, Some(AuthMethod::Basic));
        assert!(
            changes.password.is_none(),
            "a blank password keeps the stored one"
        );
        assert!(changes.scheme.is_none(), "the scheme belongs to signature");
        assert_eq!(changes.active, Some(false), "the switch was off");
        let error = changes.create(0).expect_err("Basic without a password");
        assert!(error.0.contains("--password"), "{error}");
    }

    #[test]
    fn unknown_methods_and_schemes_are_refused() {
        let input: WebhookInput =
            serde_json::from_str(r#"{"auth":"digest","url":"ftp://x/y"}"#).expect("parses");
        let (_, problems) = input.changes();
        let fields: Vec<&str> = problems.iter().map(|problem| problem.field).collect();
        assert_eq!(fields, ["url", "auth"], "every one at once: {problems:?}");
        assert!(problems[1].usage.0.contains("--auth"));
        let input: WebhookInput =
            serde_json::from_str(r#"{"auth":"signature","scheme":"md5"}"#).expect("parses");
        let (_, problems) = input.changes();
        assert!(problems[0].usage.0.contains("--scheme"));
        assert!(problems[0]
            .message
            .starts_with("Scheme \"md5\": use one of"));
        assert!(serde_json::from_str::<WebhookInput>(r#"{"colour":"red"}"#).is_err());
    }
}
