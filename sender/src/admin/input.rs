//! A webhook as the API's JSON and the pages' forms give it, turned into the
//! [`WebhookChanges`] that `sender webhooks add/edit` build from their flags: from there on one
//! validation ([`WebhookChanges::apply`]) judges all three.

use clap::ValueEnum as _;
use common::target_guard::TargetPolicy;
use serde::Deserialize;

use crate::manage::{target_url, WebhookChanges};
use crate::registry::{AuthMethod, SchemeName};
use crate::UsageError;

/// The JSON body of `POST /api/webhooks` and `PATCH /api/webhooks/{id}`; fields left out keep
/// their value (on add: their default). `Debug` hides the password.
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
}

impl WebhookInput {
    /// The changes, with `url`, `auth` and `scheme` read as the command line reads them.
    ///
    /// # Errors
    /// A [`UsageError`] for a `url` that is no Target URL, an unknown authentication method or
    /// scheme.
    pub fn changes(self) -> Result<WebhookChanges, UsageError> {
        Ok(WebhookChanges {
            name: self.name,
            description: self.description,
            url: self.url.as_deref().map(target_url).transpose()?,
            events: self.events.map(|names| names.join(",")),
            auth: self.auth.as_deref().map(auth_method).transpose()?,
            username: self.username,
            password: self.password.map(|password| password.0),
            scheme: self.scheme.as_deref().map(scheme_name).transpose()?,
            signature_header: self.signature_header,
            signature_encoding: self.signature_encoding,
            signature_prefix: self.signature_prefix,
            tolerance_secs: self.tolerance_seconds,
            active: self.active,
            // The pages' rule, given where they save it (`admit_changes`).
            target_policy: TargetPolicy::default(),
        })
    }
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
fn scheme_name(text: &str) -> Result<SchemeName, UsageError> {
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

/// The form of the Add webhook / Edit page. A blank Password keeps the stored one on Edit;
/// Activation status is a checkbox, so its absence means off.
///
/// # Errors
/// A [`UsageError`] for a Target URL that is no URL, an unknown authentication method or
/// scheme.
pub fn form_changes(form: &[(String, String)], adding: bool) -> Result<WebhookChanges, UsageError> {
    let value = |name: &str| {
        form.iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    let non_blank = |name: &str| value(name).filter(|text| !text.trim().is_empty());
    let events: Vec<&str> = form
        .iter()
        .filter(|(key, _)| key == "events")
        .map(|(_, value)| value.as_str())
        .collect();
    let auth = value("auth").as_deref().map(auth_method).transpose()?;
    let signature = auth == Some(AuthMethod::Signature);
    let basic = auth == Some(AuthMethod::Basic);
    Ok(WebhookChanges {
        name: value("name"),
        description: value("description"),
        url: value("url").as_deref().map(target_url).transpose()?,
        events: Some(events.join(",")),
        auth,
        // The fields of the other methods stay in the form, hidden or not; only the chosen
        // method's count.
        username: value("username").filter(|_| basic),
        password: non_blank("password")
            .filter(|_| basic)
            .map(verify::RedactedString::from),
        scheme: non_blank("scheme")
            .filter(|_| signature)
            .as_deref()
            .map(scheme_name)
            .transpose()?,
        signature_header: None,
        signature_encoding: None,
        signature_prefix: None,
        tolerance_secs: None,
        active: Some(value("active").is_some()).filter(|active| !adding || !active),
        // The pages' rule, given where they save it (`admit_changes`).
        target_policy: TargetPolicy::default(),
    })
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
        let changes = form_changes(
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
        )
        .expect("valid form");
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
        let input: WebhookInput = serde_json::from_str(r#"{"auth":"digest"}"#).expect("parses");
        assert!(input.changes().expect_err("digest").0.contains("--auth"));
        let input: WebhookInput =
            serde_json::from_str(r#"{"auth":"signature","scheme":"md5"}"#).expect("parses");
        assert!(input.changes().expect_err("md5").0.contains("--scheme"));
        assert!(serde_json::from_str::<WebhookInput>(r#"{"colour":"red"}"#).is_err());
    }
}
