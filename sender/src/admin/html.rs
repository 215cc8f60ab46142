//! The HTML of the Integration Admin pages, with SPEC section 8's visible labels. Every value
//! that a person typed or the state holds goes through [`escape`]; controls carry `<label for>`
//! and buttons their text, so people, screen readers and browser tests find them by name.
//! Secrets are never shown whole: a signature secret shows its first characters, the file is
//! a download.

use std::fmt::Write as _;

use clap::ValueEnum as _;
use common::web::{escape, layout};
use verify::EventClass;

use super::input::scheme_label;
use super::Listed;
use crate::manage::TestOutcome;
use crate::registry::{Auth, EventSelection, SchemeName, Status, Webhook, MAX_WEBHOOKS};

/// The page frame: title, the navigation, a notice (escaped here) and the content.
pub(super) fn page(title: &str, notice: Option<&Notice>, main: &str) -> String {
    let heading = format!(
        "<h1>{}</h1><nav aria-label=\"Pages\"><a href=\"/\">Webhooks</a> · \
         <a href=\"/trigger\">Trigger</a></nav>",
        escape(title)
    );
    let notice = notice.map(Notice::html).unwrap_or_default();
    layout(
        &format!("{title} · sender admin"),
        &heading,
        &format!("{notice}{main}"),
    )
}

/// A line at the top of a page: what just happened, or what went wrong.
pub(super) enum Notice {
    /// Done.
    Done(String),
    /// Refused, with what to do.
    Problem(String),
}

impl Notice {
    fn html(&self) -> String {
        match self {
            Notice::Done(text) => format!("<p role=\"status\">{}</p>", escape(text)),
            Notice::Problem(text) => {
                format!("<p role=\"alert\" class=\"problem\">{}</p>", escape(text))
            }
        }
    }
}

/// The words of a webhook's Activation status.
pub(super) fn activation(status: &Status) -> String {
    match status {
        Status::Active => "Active".to_owned(),
        Status::Retired => "Inactive".to_owned(),
        Status::Disabled(reason) => format!("Inactive (disabled by the sender: {reason})"),
    }
}

/// `all` or the names, comma-separated.
fn events_text(events: &EventSelection) -> String {
    match events {
        EventSelection::All => "all events".to_owned(),
        EventSelection::Names(names) => names.join(", "),
    }
}

/// **Webhooks**: the list.
pub(super) fn webhooks(all: &[Listed], notice: Option<&Notice>) -> String {
    let mut main = String::new();
    let full = all.len() >= MAX_WEBHOOKS;
    let _ = write!(
        main,
        "<div class=\"bar\"><form method=\"get\" action=\"/webhooks/new\">\
         <button type=\"submit\"{}>Add webhook</button></form>\
         <span>{} of at most {MAX_WEBHOOKS} webhooks</span></div>",
        if full { " disabled" } else { "" },
        all.len()
    );
    if full {
        let _ = write!(
            main,
            "<p role=\"status\">The limit of {MAX_WEBHOOKS} webhooks is reached: delete one to add another.</p>"
        );
    }
    if all.is_empty() {
        main.push_str("<p>No webhook yet. <strong>Add webhook</strong> registers one.</p>");
        return page("Webhooks", notice, &main);
    }
    main.push_str(
        "<table aria-label=\"Webhooks\"><thead><tr><th>Name</th><th>Target URL</th>\
         <th>Authentication</th><th>Trigger events</th><th>Activation status</th>\
         <th>Last delivery</th><th>Actions</th></tr></thead><tbody>",
    );
    for Listed { webhook, last } in all {
        let id = escape(webhook.id.as_str());
        let name = escape(&webhook.name);
        let active = webhook.status == Status::Active;
        let last = match last {
            None => "none yet".to_owned(),
            Some(last) => {
                let outcome = last
                    .last_status
                    .map(|status| status.to_string())
                    .or_else(|| last.last_error.clone())
                    .unwrap_or_else(|| "not tried yet".to_owned());
                format!(
                    "{} ({}, {} attempt{}) at {}",
                    escape(&last.state),
                    escape(&outcome),
                    last.attempts,
                    if last.attempts == 1 { "" } else { "s" },
                    escape(&last.created_at)
                )
            }
        };
        let _ = write!(
            main,
            "<tr><td><a href=\"/webhooks/{id}\">{name}</a></td><td><code>{url}</code></td>\
             <td>{auth}</td><td>{events}</td>\
             <td><form method=\"post\" action=\"/webhooks/{id}/status\">\
             <input type=\"hidden\" name=\"version\" value=\"{version}\">\
             <input type=\"hidden\" name=\"active\" value=\"{switch_to}\">\
             <button type=\"submit\" role=\"switch\" aria-checked=\"{active}\" \
             aria-label=\"Activation status of {name}\">{word}</button></form></td>\
             <td>{last}</td>\
             <td><a href=\"/webhooks/{id}/deliveries\">Deliveries</a> · \
             <a href=\"/webhooks/{id}/delete\">Delete</a></td></tr>",
            url = escape(webhook.url.as_str()),
            auth = auth_word(&webhook.auth),
            events = escape(&events_text(&webhook.events)),
            version = webhook.updated_at_ms,
            switch_to = if active { "off" } else { "on" },
            word = escape(&activation(&webhook.status)),
        );
    }
    main.push_str("</tbody></table>");
    page("Webhooks", notice, &main)
}

fn auth_word(auth: &Auth) -> &'static str {
    match auth {
        Auth::None => "None",
        Auth::Basic(_) => "Basic",
        Auth::Signature(_) => "Signature",
    }
}

/// What the Add webhook / Edit form shows: the stored webhook, or what was typed.
#[derive(Debug, Clone, Default)]
pub(super) struct FormValues {
    name: String,
    description: String,
    url: String,
    /// `none`, `basic` or `signature`.
    auth: String,
    username: String,
    scheme: String,
    /// Chosen names; `all` for every event.
    events: Vec<String>,
    active: bool,
}

impl FormValues {
    /// An empty Add webhook form: Signature, Active.
    pub(super) fn new_webhook() -> FormValues {
        FormValues {
            auth: "signature".into(),
            scheme: "standard-webhooks".into(),
            active: true,
            ..FormValues::default()
        }
    }

    /// The stored webhook.
    pub(super) fn of(webhook: &Webhook) -> FormValues {
        let (username, scheme) = match &webhook.auth {
            Auth::Basic(basic) => (basic.username.clone(), String::new()),
            // The name `--scheme` gives it: v1a shares its file's scheme with v1, and a save
            // must not turn one into the other.
            Auth::Signature(file) => (
                String::new(),
                SchemeName::of_file(file)
                    .map(scheme_label)
                    .unwrap_or_else(|| file.scheme.clone()),
            ),
            Auth::None => (String::new(), String::new()),
        };
        FormValues {
            name: webhook.name.clone(),
            description: webhook.description.clone(),
            url: webhook.url.to_string(),
            auth: webhook.auth.method().to_owned(),
            username,
            scheme,
            events: match &webhook.events {
                EventSelection::All => vec!["all".to_owned()],
                EventSelection::Names(names) => names.clone(),
            },
            active: webhook.status == Status::Active,
        }
    }

    /// What a posted form holds (the password is never put back).
    pub(super) fn posted(form: &[(String, String)]) -> FormValues {
        let value = |name: &str| {
            form.iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
                .unwrap_or_default()
        };
        FormValues {
            name: value("name"),
            description: value("description"),
            url: value("url"),
            auth: value("auth"),
            username: value("username"),
            scheme: value("scheme"),
            events: form
                .iter()
                .filter(|(key, _)| key == "events")
                .map(|(_, value)| value.clone())
                .collect(),
            active: form.iter().any(|(key, _)| key == "active"),
        }
    }
}

/// A validation error beside its field.
pub(super) struct FieldError {
    /// The field (`url`, `events`, … or `form` for the whole form).
    pub field: &'static str,
    /// What to do, in words.
    pub message: String,
}

/// The attributes and the message of a field that may be at fault.
fn error_of(errors: Option<&FieldError>, field: &str) -> (String, String) {
    match errors {
        Some(error) if error.field == field => (
            format!(" aria-invalid=\"true\" aria-describedby=\"{field}-error\""),
            format!(
                "<p class=\"error\" id=\"{field}-error\" role=\"alert\">{}</p>",
                escape(&error.message)
            ),
        ),
        _ => (String::new(), String::new()),
    }
}

/// A labelled text field.
fn text_field(
    id: &str,
    label: &str,
    kind: &str,
    value: &str,
    errors: Option<&FieldError>,
    extra: &str,
) -> String {
    let (invalid, message) = error_of(errors, id);
    format!(
        "<div class=\"field\"><label for=\"{id}\">{label}</label>\
         <input type=\"{kind}\" id=\"{id}\" name=\"{id}\" value=\"{}\"{invalid}{extra}>{message}</div>",
        escape(value)
    )
}

/// The Test webhook answer.
fn test_result(outcome: &TestOutcome) -> String {
    let mut html = String::from("<section aria-label=\"Test result\"><h2>Test result</h2>");
    let headline = match (outcome.status, &outcome.error) {
        (Some(status), _) => format!(
            "Answered {status} in {} ms{}",
            outcome.latency_ms,
            if outcome.ok { "" } else { ": the test failed" }
        ),
        (None, Some(error)) => format!("No answer after {} ms: {error}", outcome.latency_ms),
        (None, None) => "No answer".to_owned(),
    };
    let _ = write!(
        html,
        "<p role=\"status\">{}</p><dl><dt>Event</dt><dd><code>{}</code></dd>\
         <dt>webhook-id</dt><dd><code>{}</code></dd><dt>Answer</dt><dd><pre>{}</pre></dd></dl>",
        escape(&headline),
        escape(&outcome.event),
        escape(&outcome.webhook_id),
        escape(&outcome.response)
    );
    if let Some(hint) = &outcome.hint {
        let _ = write!(html, "<p role=\"alert\">Hint: {}</p>", escape(hint));
    }
    html.push_str("</section>");
    html
}

/// The generated secrets of a Signature webhook, inside the Signature choice: their start,
/// dates, the download, and the rotation (its controls belong to the `rotate` form, which
/// HTML cannot nest in the main one).
fn secrets(webhook: &Webhook) -> String {
    let Auth::Signature(file) = &webhook.auth else {
        return secrets_to_come();
    };
    let id = escape(webhook.id.as_str());
    let mut html = String::from(
        "<table aria-label=\"Secrets\"><thead><tr><th>Generated secret</th><th>Created</th>\
         <th>Expires</th></tr></thead><tbody>",
    );
    for secret in &file.secrets {
        let _ = write!(
            html,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            escape(&secret_shown(&secret.secret)),
            escape(&secret.created_at),
            escape(secret.expires_at.as_deref().unwrap_or("never"))
        );
    }
    let _ = write!(
        html,
        "</tbody></table><p><a href=\"/webhooks/{id}/signature.json\" download>Download signature</a> \
         <span class=\"muted\">the signature file for the receiving team (scheme <code>{}</code>)</span></p>\
         <p class=\"bar\"><label for=\"overlap\">Overlap</label>\
         <input type=\"text\" id=\"overlap\" name=\"overlap\" value=\"24h\" size=\"6\" form=\"rotate\">\
         <button type=\"submit\" form=\"rotate\">Rotate secret</button>\
         <span class=\"muted\">a new secret; old and new both sign until the overlap ends</span></p>",
        escape(&file.scheme),
    );
    html
}

/// A secret as the page shows it: its kind (`whsec_`) and a fingerprint, the first 8 hex
/// digits of its SHA-256. Enough to tell two secrets apart and to match the downloaded file,
/// without a single bit of the secret on the page.
fn secret_shown(secret: &str) -> String {
    use sha2::Digest as _;
    // Only the prefixes of the key formats: a plain-text secret's own text stays hidden.
    let kind = ["whsec_", "whsk_", "whpk_"]
        .into_iter()
        .find(|prefix| secret.starts_with(prefix))
        .unwrap_or("");
    let digest = sha2::Sha256::digest(secret.as_bytes());
    let fingerprint: String = digest[..4]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("{kind}… (fingerprint {fingerprint})")
}

/// What the Signature choice says before a webhook has a secret.
fn secrets_to_come() -> String {
    "<p class=\"muted\">A secret is generated when the webhook is saved with Signature; \
     <strong>Download signature</strong> then gives the file for the receiving team.</p>"
        .to_owned()
}

/// **Add webhook** (no `webhook`) or **Edit**.
pub(super) fn webhook_form(
    webhook: Option<&Webhook>,
    values: &FormValues,
    error: Option<&FieldError>,
    notice: Option<&Notice>,
    tested: Option<&TestOutcome>,
) -> String {
    let mut main = String::new();
    let action = match webhook {
        Some(webhook) => format!("/webhooks/{}", escape(webhook.id.as_str())),
        None => "/webhooks".to_owned(),
    };
    if let Some(FieldError {
        field: "form",
        message,
    }) = error
    {
        let _ = write!(
            main,
            "<p role=\"alert\" class=\"problem\">{}</p>",
            escape(message)
        );
    }
    if let Some(outcome) = tested {
        main.push_str(&test_result(outcome));
    }
    let _ = write!(main, "<form method=\"post\" action=\"{action}\">");
    if let Some(webhook) = webhook {
        let _ = write!(
            main,
            "<input type=\"hidden\" name=\"version\" value=\"{}\">",
            webhook.updated_at_ms
        );
    }
    main.push_str(&text_field("name", "Name", "text", &values.name, error, ""));
    let (invalid, message) = error_of(error, "description");
    let _ = write!(
        main,
        "<div class=\"field\"><label for=\"description\">Description</label>\
         <textarea id=\"description\" name=\"description\" rows=\"2\"{invalid}>{}</textarea>{message}</div>",
        escape(&values.description)
    );
    main.push_str(&text_field(
        "url",
        "Target URL",
        "text",
        &values.url,
        error,
        " inputmode=\"url\" placeholder=\"https://crm.example.com/webhook\"",
    ));

    // Authentication: one choice, then the fields of Basic and of Signature.
    let (invalid, message) = error_of(error, "auth");
    main.push_str("<fieldset><legend>Authentication</legend>");
    for (value, label) in [
        ("none", "None"),
        ("basic", "Basic"),
        ("signature", "Signature"),
    ] {
        let _ = write!(
            main,
            "<input type=\"radio\" id=\"auth-{value}\" name=\"auth\" value=\"{value}\"{}{invalid}>\
             <label for=\"auth-{value}\">{label}</label> ",
            if values.auth == value { " checked" } else { "" }
        );
    }
    main.push_str(&message);
    main.push_str("<fieldset><legend>Basic</legend><div class=\"pair\">");
    main.push_str(&text_field(
        "username",
        "Username",
        "text",
        &values.username,
        error,
        " autocomplete=\"off\"",
    ));
    let kept = webhook.is_some_and(|webhook| matches!(webhook.auth, Auth::Basic(_)));
    main.push_str(&text_field(
        "password",
        "Password",
        "password",
        "",
        error,
        if kept {
            " autocomplete=\"new-password\" placeholder=\"unchanged when left empty\""
        } else {
            " autocomplete=\"new-password\""
        },
    ));
    main.push_str("</div></fieldset><fieldset><legend>Signature</legend>");
    let (invalid, message) = error_of(error, "scheme");
    let _ = write!(
        main,
        "<div class=\"field\"><label for=\"scheme\">Scheme</label><select id=\"scheme\" name=\"scheme\"{invalid}>"
    );
    for name in SchemeName::value_variants() {
        let label = scheme_label(*name);
        let chosen = values.scheme == label;
        let _ = write!(
            main,
            "<option value=\"{label}\"{}>{label}</option>",
            if chosen { " selected" } else { "" }
        );
    }
    let _ = write!(main, "</select>{message}</div>");
    main.push_str(&webhook.map(secrets).unwrap_or_else(secrets_to_come));
    main.push_str("</fieldset></fieldset>");

    // Trigger events: the whole catalogue, real-time and batch apart.
    let (invalid, message) = error_of(error, "events");
    let _ = write!(
        main,
        "<fieldset id=\"events\"{invalid}><legend>Trigger events</legend>{message}\
         <p><input type=\"checkbox\" id=\"event-all\" name=\"events\" value=\"all\"{}>\
         <label for=\"event-all\">All events, also ones added later</label></p>",
        if values.events.iter().any(|e| e == "all") {
            " checked"
        } else {
            ""
        }
    );
    for (class, legend) in [
        (EventClass::RealTime, "Real-time"),
        (EventClass::Batch, "Batch"),
    ] {
        let _ = write!(main, "<fieldset class=\"events\"><legend>{legend}</legend>");
        for kind in verify::CATALOG.iter().filter(|kind| kind.class == class) {
            // `:` is not allowed in an id that CSS or XPath reads easily; `_` is.
            let id = format!("event-{}", kind.name.replace(':', "_"));
            let _ = write!(
                main,
                "<span class=\"choice\"><input type=\"checkbox\" id=\"{id}\" name=\"events\" value=\"{name}\"{checked}>\
                 <label for=\"{id}\">{name}</label></span> ",
                name = kind.name,
                checked = if values.events.iter().any(|e| e == kind.name) {
                    " checked"
                } else {
                    ""
                }
            );
        }
        main.push_str("</fieldset>");
    }
    main.push_str("</fieldset>");

    let test_button = match webhook {
        Some(_) => {
            " <button type=\"submit\" form=\"test\">Test webhook</button> \
             <span class=\"muted\">sends one realistic event of its first trigger event now</span>"
        }
        None => " <span class=\"muted\">Test webhook is here once the webhook is saved</span>",
    };
    let _ = write!(
        main,
        "<p><input type=\"checkbox\" role=\"switch\" id=\"active\" name=\"active\"{}>\
         <label for=\"active\">Activation status</label> <span class=\"muted\">{}</span></p>\
         <p class=\"bar\"><button type=\"submit\">Save</button>{test_button}</p></form>",
        if values.active { " checked" } else { "" },
        match webhook {
            Some(webhook) => format!("now {}", escape(&activation(&webhook.status))),
            None => "on: events are delivered as soon as it is saved".to_owned(),
        }
    );

    let title = match webhook {
        Some(webhook) => {
            let id = escape(webhook.id.as_str());
            // The forms of Test webhook and Rotate secret, whose controls sit in the main form.
            let _ = write!(
                main,
                "<form id=\"test\" method=\"post\" action=\"/webhooks/{id}/test\"></form>\
                 <form id=\"rotate\" method=\"post\" action=\"/webhooks/{id}/rotate\">\
                 <input type=\"hidden\" name=\"version\" value=\"{}\"></form>\
                 <p class=\"bar\"><a href=\"/webhooks/{id}/deliveries\">Deliveries</a> \
                 <a href=\"/webhooks/{id}/delete\">Delete</a></p>",
                webhook.updated_at_ms
            );
            format!("Edit {}", webhook.name)
        }
        None => "Add webhook".to_owned(),
    };
    page(&title, notice, &main)
}

/// **Delete**: the confirmation.
pub(super) fn confirm_delete(webhook: &Webhook, pending: u64) -> String {
    let id = escape(webhook.id.as_str());
    let main = format!(
        "<p>Delete the webhook <strong>{name}</strong> ({url})? Its queue ({pending} request{s} \
         not yet delivered) and its delivery history are deleted with it. This cannot be undone; \
         to stop deliveries for a while, switch its Activation status off instead.</p>\
         <form method=\"post\" action=\"/webhooks/{id}/delete\" class=\"bar\">\
         <button type=\"submit\">Delete</button> <a href=\"/webhooks/{id}\">Cancel</a></form>",
        name = escape(&webhook.name),
        url = escape(webhook.url.as_str()),
        s = if pending == 1 { "" } else { "s" },
    );
    page(&format!("Delete {}", webhook.name), None, &main)
}

/// What the Trigger form holds.
#[derive(Debug, Clone)]
pub(super) struct TriggerValues {
    pub event: String,
    pub count: String,
    pub account: String,
    /// `FIELD=VALUE` lines.
    pub fields: String,
}

impl Default for TriggerValues {
    fn default() -> TriggerValues {
        TriggerValues {
            event: "COURSE_ENROLLMENT".into(),
            count: "1".into(),
            account: crate::generate::DEFAULT_ACCOUNT_ID.to_string(),
            fields: String::new(),
        }
    }
}

/// **Trigger**: fire any catalogue event to the subscribed webhooks.
pub(super) fn trigger(
    values: &TriggerValues,
    error: Option<&FieldError>,
    notice: Option<&Notice>,
) -> String {
    let mut main = String::from("<form method=\"post\" action=\"/trigger\">");
    let (invalid, message) = error_of(error, "events");
    let _ = write!(
        main,
        "<div class=\"field\"><label for=\"event\">Event</label><select id=\"event\" name=\"event\"{invalid}>"
    );
    for (class, group) in [
        (EventClass::RealTime, "Real-time"),
        (EventClass::Batch, "Batch"),
    ] {
        let _ = write!(main, "<optgroup label=\"{group}\">");
        for kind in verify::CATALOG.iter().filter(|kind| kind.class == class) {
            let _ = write!(
                main,
                "<option value=\"{name}\"{}>{name}</option>",
                if values.event == kind.name {
                    " selected"
                } else {
                    ""
                },
                name = kind.name
            );
        }
        main.push_str("</optgroup>");
    }
    let _ = write!(main, "</select>{message}</div>");
    main.push_str(&text_field(
        "count",
        "Count",
        "number",
        &values.count,
        error,
        &format!(" min=\"1\" max=\"{}\"", crate::manage::MAX_TRIGGER_COUNT),
    ));
    main.push_str(&text_field(
        "account",
        "Account",
        "number",
        &values.account,
        error,
        "",
    ));
    let (invalid, message) = error_of(error, "set");
    let _ = write!(
        main,
        "<div class=\"field\"><label for=\"set\">Field values</label>\
         <textarea id=\"set\" name=\"set\" rows=\"3\" placeholder=\"userId=42\"{invalid}>{}</textarea>\
         <span class=\"muted\">one FIELD=VALUE a line; a value that is JSON is read as JSON</span>{message}</div>\
         <p><button type=\"submit\">Trigger</button></p></form>",
        escape(&values.fields)
    );
    page("Trigger", notice, &main)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_shows_its_kind_and_fingerprint_only() {
        let shown = secret_shown("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        assert!(shown.starts_with("whsec_… (fingerprint "), "{shown}");
        assert!(!shown.contains("MfKQ"), "{shown}");
        assert_ne!(shown, secret_shown("whsec_other"));
        let plain = secret_shown("my_plain_text_secret");
        assert!(
            plain.starts_with("… (fingerprint") && !plain.contains("my_"),
            "{plain}"
        );
    }

    #[test]
    fn the_form_keeps_a_v1a_webhook_v1a() {
        let webhook = crate::manage::WebhookChanges {
            name: Some("CRM".into()),
            url: Some(crate::manage::target_url("http://127.0.0.1:9/hook").expect("valid")),
            events: Some("all".into()),
            auth: Some(crate::registry::AuthMethod::Signature),
            scheme: Some(SchemeName::StandardWebhooksV1a),
            ..Default::default()
        }
        .create(0)
        .expect("valid");
        let page = webhook_form(Some(&webhook), &FormValues::of(&webhook), None, None, None);
        assert!(
            page.contains("<option value=\"standard-webhooks-v1a\" selected>"),
            "{page}"
        );
    }

    #[test]
    fn typed_values_are_escaped_in_the_form() {
        let values = FormValues {
            name: "<script>x</script>".into(),
            url: "\"><img>".into(),
            ..FormValues::new_webhook()
        };
        let page = webhook_form(None, &values, None, None, None);
        assert!(
            !page.contains("<script>x") && !page.contains("\"><img>"),
            "{page}"
        );
        assert!(page.contains("&lt;script&gt;x"));
    }
}
