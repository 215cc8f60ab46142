//! The HTML of the **Add webhook** / **Edit** form (SPEC section 8): the fields with every
//! error beside its own; the Authentication choice, of which only the chosen method's fields
//! show (CSS alone: `admin.css`); the secrets, stored or generated for this unsaved form;
//! **Download signature**, **Test webhook** and **Save**, all three sending the values on
//! screen; and the answer of a test, worded and coloured for success or failure.
//!
//! A typed password is never written into the page: a form that comes back shows an empty
//! Password field and says that the one typed is kept (server-side, in its pending entry).

use std::fmt::Write as _;

use clap::ValueEnum as _;
use common::web::escape;
use serde_json::Value;
use verify::{EventClass, SignatureFile};

use super::html::{error_of, page, state_html, text_field, FieldError, Notice};
use super::input::scheme_label;
use super::pending::{Pending, PENDING_LIFETIME};
use crate::manage::TestOutcome;
use crate::registry::{Auth, EventSelection, SchemeName, Status, Webhook};

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
            Auth::Basic(basic) => (basic.username.clone(), "standard-webhooks".to_owned()),
            // The name `--scheme` gives it: v1a shares its file's scheme with v1, and a save
            // must not turn one into the other.
            Auth::Signature(file) => (
                String::new(),
                SchemeName::of_file(file)
                    .map(scheme_label)
                    .unwrap_or_else(|| file.scheme.clone()),
            ),
            Auth::None => (String::new(), "standard-webhooks".to_owned()),
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

/// What an Edit form was read at, sent back with it: the webhook's `version` (a change made
/// meanwhile refuses the Save) and its record as read (`read`, no secrets in it), so that the
/// refusal can say what changed.
#[derive(Debug, Clone)]
pub(super) struct FormBase {
    /// The webhook's `updated_at_ms` when the form was made.
    pub version: i64,
    /// Its record then, as JSON.
    pub read: String,
}

impl FormBase {
    /// The webhook as it is now.
    pub(super) fn of(webhook: &Webhook) -> FormBase {
        FormBase {
            version: webhook.updated_at_ms,
            read: webhook.to_json().to_string(),
        }
    }

    /// What a posted form carries.
    pub(super) fn posted(form: &[(String, String)]) -> Option<FormBase> {
        let value = |name: &str| {
            form.iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.as_str())
        };
        Some(FormBase {
            version: value("version")?.parse().ok()?,
            read: value("read").unwrap_or("{}").to_owned(),
        })
    }
}

/// What changed between a webhook's record as a form read it and as it is now, one line a
/// field, in the pages' words (`Activation status: Active → Disabled after failures`).
pub(super) fn changed_meanwhile(read: &str, now: &Webhook) -> Vec<String> {
    let before: Value = serde_json::from_str(read).unwrap_or(Value::Null);
    let after = now.to_json();
    let text = |record: &Value, key: &str| match &record[key] {
        Value::Null => "none".to_owned(),
        Value::String(text) => text.clone(),
        Value::Array(items) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| item.to_string())
            })
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    };
    let status = |record: &Value| match record["status"].as_str() {
        Some("active") => "Active".to_owned(),
        Some("retired") => "Inactive".to_owned(),
        Some("disabled") => "Disabled after failures".to_owned(),
        _ => "unknown".to_owned(),
    };
    let mut lines = Vec::new();
    if status(&before) != status(&after) {
        lines.push(format!(
            "Activation status: {} → {}",
            status(&before),
            status(&after)
        ));
    }
    for (key, label) in [
        ("name", "Name"),
        ("description", "Description"),
        ("url", "Target URL"),
        ("auth", "Authentication"),
        ("username", "Username"),
        ("scheme", "Scheme"),
        ("events", "Trigger events"),
        ("secrets", "Secrets"),
    ] {
        let (was, is) = (text(&before, key), text(&after, key));
        if was != is {
            lines.push(format!("{label}: {was} → {is}"));
        }
    }
    if lines.is_empty() {
        // Saved again with the same values (or a form older than its record): still a change.
        lines.push("saved again by someone else, with no visible difference".to_owned());
    }
    lines
}

/// Everything the form page shows.
pub(super) struct FormView<'a> {
    /// The stored webhook (Edit), or `None` (Add webhook).
    pub webhook: Option<&'a Webhook>,
    /// The values in the fields.
    pub values: &'a FormValues,
    /// What the form was read at (Edit).
    pub base: Option<&'a FormBase>,
    /// Every error, each beside its field (`form`: above the form).
    pub errors: &'a [FieldError],
    /// What changed meanwhile, when a Save was refused for it.
    pub changed: &'a [String],
    /// A line at the top.
    pub notice: Option<&'a Notice>,
    /// The answer of **Test webhook**.
    pub tested: Option<&'a TestOutcome>,
    /// The form's pending entry: its generated secret, a kept password.
    pub pending: Option<&'a Pending>,
    /// Requests waiting in the webhook's queue (Edit).
    pub waiting: Option<u64>,
}

/// The answer of **Test webhook**: the outcome in words and colour (`data-outcome`), where
/// it went, what came back, and a hint when the answer says what to fix.
fn test_result(outcome: &TestOutcome, saved: bool) -> String {
    let (kind, role, headline) = match (outcome.status, &outcome.error) {
        (Some(status), _) => {
            let reason = http::StatusCode::from_u16(status)
                .ok()
                .and_then(|code| code.canonical_reason())
                .map(|reason| format!(" {reason}"))
                .unwrap_or_default();
            if outcome.ok {
                (
                    "ok",
                    "status",
                    format!(
                        "Test succeeded: answered {status}{reason} in {} ms",
                        outcome.latency_ms
                    ),
                )
            } else {
                (
                    "failed",
                    "alert",
                    format!(
                        "Test failed: answered {status}{reason} in {} ms",
                        outcome.latency_ms
                    ),
                )
            }
        }
        (None, Some(error)) => (
            "failed",
            "alert",
            format!(
                "Test failed: no answer after {} ms ({error})",
                outcome.latency_ms
            ),
        ),
        (None, None) => ("failed", "alert", "Test failed: no answer".to_owned()),
    };
    let mut html = format!(
        "<section aria-label=\"Test result\" data-outcome=\"{kind}\"><h2>Test result</h2>\
         <p role=\"{role}\" class=\"headline\">{}</p>",
        escape(&headline)
    );
    let _ = write!(
        html,
        "<dl><dt>Sent to</dt><dd><code>{}</code></dd><dt>Event</dt><dd><code>{}</code></dd>\
         <dt>webhook-id</dt><dd><code>{}</code></dd><dt>Answer</dt><dd><pre>{}</pre></dd></dl>",
        escape(&outcome.url),
        escape(&outcome.event),
        escape(&outcome.webhook_id),
        escape(if outcome.response.is_empty() {
            "(nothing)"
        } else {
            &outcome.response
        })
    );
    if let Some(hint) = &outcome.hint {
        let _ = write!(html, "<p role=\"alert\">Hint: {}</p>", escape(hint));
    }
    let _ = write!(
        html,
        "<p class=\"muted\">{}</p></section>",
        if saved {
            "The test used the values in the form below; nothing was saved."
        } else {
            "The test used the values in the form below; nothing was saved: press Save to register the webhook."
        }
    );
    html
}

/// A secret as the page shows it: its kind (`whsec_`) and a fingerprint, the first 8 hex
/// digits of its SHA-256. Enough to tell two secrets apart and to match the downloaded file,
/// without a single bit of the secret on the page.
pub(super) fn secret_shown(secret: &str) -> String {
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

/// Whether two signature files hold the same keys. The keys are compared by their SHA-256
/// digests, so the time taken says nothing about where two secrets differ.
pub(super) fn same_keys(one: &SignatureFile, other: &SignatureFile) -> bool {
    use sha2::Digest as _;
    let digest = |secret: &str| sha2::Sha256::digest(secret.as_bytes());
    one.secrets.len() == other.secrets.len()
        && one
            .secrets
            .iter()
            .zip(&other.secrets)
            .all(|(a, b)| digest(&a.secret) == digest(&b.secret))
}

/// The Signature choice's secrets: the stored ones (with the rotation, whose controls belong
/// to the `rotate` form, which HTML cannot nest in the main one), the one generated for this
/// unsaved form, and **Download signature**, which sends the form (the scheme on screen) and
/// answers with the file: the page stays, with everything typed.
fn secrets(view: &FormView<'_>, download_action: &str) -> String {
    let mut html = String::new();
    let stored = match view.webhook.map(|webhook| &webhook.auth) {
        Some(Auth::Signature(file)) => Some(file),
        _ => None,
    };
    if let Some(file) = stored {
        html.push_str(
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
        html.push_str("</tbody></table>");
    }
    let generated = view
        .pending
        .and_then(|pending| pending.file.as_ref())
        .filter(|file| stored.is_none_or(|stored| !same_keys(stored, file)));
    let minutes = PENDING_LIFETIME.as_secs() / 60;
    match (generated, stored) {
        (Some(file), _) => {
            let shown = file
                .secrets
                .last()
                .map(|secret| secret_shown(&secret.secret))
                .unwrap_or_default();
            let _ = write!(
                html,
                "<p>Generated secret: <code>{}</code> (scheme <code>{}</code>), made for this \
                 form before Save: <strong>Download signature</strong> gives its file now, \
                 <strong>Test webhook</strong> signs with it and <strong>Save</strong> keeps it. \
                 <span class=\"muted\">An unsaved form is kept {minutes} minutes after its last use.</span></p>",
                escape(&shown),
                escape(&file.scheme)
            );
        }
        (None, None) => html.push_str(
            "<p class=\"muted\">A secret is generated for this form: <strong>Download \
             signature</strong> gives its file before Save, and Save keeps it.</p>",
        ),
        (None, Some(_)) => {}
    }
    let _ = write!(
        html,
        "<p class=\"bar\"><button type=\"submit\" formaction=\"{download_action}\">Download signature</button> \
         <span class=\"muted\">the signature file for the receiving team, for the scheme chosen above</span></p>"
    );
    if let (Some(webhook), Some(_)) = (view.webhook, stored) {
        let _ = write!(
            html,
            "<p class=\"bar\"><label for=\"overlap\">Overlap</label>\
             <input type=\"text\" id=\"overlap\" name=\"overlap\" value=\"24h\" size=\"6\" form=\"rotate\">\
             <button type=\"submit\" form=\"rotate\">Rotate secret</button>\
             <span class=\"muted\">a new secret for {}; old and new both sign until the overlap ends</span></p>",
            escape(&webhook.name)
        );
    }
    html
}

/// **Add webhook** (no stored webhook) or **Edit**.
pub(super) fn webhook_form(view: &FormView<'_>) -> String {
    let errors = view.errors;
    let values = view.values;
    let mut main = String::new();
    let (action, test_action, download_action) = match view.webhook {
        Some(webhook) => {
            let id = escape(webhook.id.as_str());
            (
                format!("/webhooks/{id}"),
                format!("/webhooks/{id}/test"),
                format!("/webhooks/{id}/signature"),
            )
        }
        None => (
            "/webhooks".to_owned(),
            "/webhooks/new/test".to_owned(),
            "/webhooks/new/signature".to_owned(),
        ),
    };
    if !view.changed.is_empty() {
        let _ = write!(
            main,
            "<div role=\"alert\" class=\"problem\"><p>This webhook was changed meanwhile (by the \
             delivery worker, another page or a command), so nothing was saved. What changed:</p><ul>{}</ul>\
             <p>What you typed is still in the form below: check it against these changes and Save again.</p></div>",
            view.changed
                .iter()
                .map(|line| format!("<li>{}</li>", escape(line)))
                .collect::<String>()
        );
    }
    for error in errors.iter().filter(|error| error.field == "form") {
        let _ = write!(
            main,
            "<p role=\"alert\" class=\"problem\">{}</p>",
            escape(&error.message)
        );
    }
    if errors.len() > 1 {
        let _ = write!(
            main,
            "<p role=\"alert\" class=\"problem\">{} fields need a change; each says why beside it.</p>",
            errors.len()
        );
    }
    if let Some(outcome) = view.tested {
        main.push_str(&test_result(outcome, view.webhook.is_some()));
    }
    let _ = write!(main, "<form method=\"post\" action=\"{action}\">");
    if let Some(base) = view.base {
        let _ = write!(
            main,
            "<input type=\"hidden\" name=\"version\" value=\"{}\">\
             <input type=\"hidden\" name=\"read\" value=\"{}\">",
            base.version,
            escape(&base.read)
        );
    }
    if let Some(pending) = view.pending {
        let _ = write!(
            main,
            "<input type=\"hidden\" name=\"pending\" value=\"{}\">",
            escape(&pending.id)
        );
    }
    main.push_str(&text_field(
        "name",
        "Name",
        "text",
        &values.name,
        errors,
        "",
    ));
    let (invalid, message) = error_of(errors, "description");
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
        errors,
        " inputmode=\"url\" placeholder=\"https://crm.example.com/webhook\"",
    ));

    // Authentication: one choice; the fields of the chosen method follow it (see admin.css).
    let (invalid, message) = error_of(errors, "auth");
    main.push_str("<fieldset class=\"methods\"><legend>Authentication</legend>");
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
    main.push_str(
        "<div class=\"method method-none\"><p class=\"muted\">Nothing is added to the \
         requests: anyone who knows the Target URL can send to it.</p></div>",
    );
    main.push_str("<div class=\"method method-basic\"><div class=\"pair\">");
    main.push_str(&text_field(
        "username",
        "Username",
        "text",
        &values.username,
        errors,
        " autocomplete=\"off\"",
    ));
    let kept = view
        .pending
        .and_then(|pending| pending.password.as_ref())
        .is_some();
    let stored_basic = view
        .webhook
        .is_some_and(|webhook| matches!(webhook.auth, Auth::Basic(_)));
    main.push_str(&text_field(
        "password",
        "Password",
        "password",
        "",
        errors,
        if kept {
            " autocomplete=\"new-password\" placeholder=\"kept: the one typed before\""
        } else if stored_basic {
            " autocomplete=\"new-password\" placeholder=\"unchanged when left empty\""
        } else {
            " autocomplete=\"new-password\""
        },
    ));
    main.push_str("</div>");
    if kept {
        main.push_str(
            "<p role=\"status\">The password typed before is kept for this form (it is never \
             shown): leave Password empty to use it, or type another.</p>",
        );
    }
    main.push_str("</div><div class=\"method method-signature\">");
    let (invalid, message) = error_of(errors, "scheme");
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
    main.push_str(&secrets(view, &download_action));
    main.push_str("</div></fieldset>");

    // Trigger events: the whole catalogue, real-time and batch apart.
    let (invalid, message) = error_of(errors, "events");
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

    let status_note = match (view.webhook, view.waiting) {
        (Some(webhook), waiting) => {
            let waiting = waiting.unwrap_or(0);
            format!(
                "now {}; {waiting} request{} waiting in its queue: switched off, it holds them \
                 until it is switched on again",
                state_html(&webhook.status),
                if waiting == 1 { "" } else { "s" }
            )
        }
        (None, _) => "on: events are delivered as soon as it is saved".to_owned(),
    };
    let _ = write!(
        main,
        "<p><input type=\"checkbox\" role=\"switch\" id=\"active\" name=\"active\"{}>\
         <label for=\"active\">Activation status</label> <span class=\"muted\">{status_note}</span></p>\
         <p class=\"bar\"><button type=\"submit\">Save</button> \
         <button type=\"submit\" formaction=\"{test_action}\">Test webhook</button> \
         <span class=\"muted\">sends one realistic event of the first trigger event now, with \
         the values above, saved or not; it registers nothing</span></p></form>",
        if values.active { " checked" } else { "" },
    );

    let title = match view.webhook {
        Some(webhook) => {
            let id = escape(webhook.id.as_str());
            let _ = write!(
                main,
                "<form id=\"rotate\" method=\"post\" action=\"/webhooks/{id}/rotate\">\
                 <input type=\"hidden\" name=\"version\" value=\"{}\"></form>\
                 <p class=\"bar\"><a href=\"/webhooks/{id}/deliveries\">Deliveries</a> \
                 <a href=\"/webhooks/{id}/delete\">Delete</a></p>",
                webhook.updated_at_ms
            );
            format!("Edit {}", webhook.name)
        }
        None => "Add webhook".to_owned(),
    };
    page(&title, view.notice, &main)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view<'a>(webhook: Option<&'a Webhook>, values: &'a FormValues) -> FormView<'a> {
        FormView {
            webhook,
            values,
            base: None,
            errors: &[],
            changed: &[],
            notice: None,
            tested: None,
            pending: None,
            waiting: None,
        }
    }

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
        let values = FormValues::of(&webhook);
        let page = webhook_form(&view(Some(&webhook), &values));
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
        let page = webhook_form(&view(None, &values));
        assert!(
            !page.contains("<script>x") && !page.contains("\"><img>"),
            "{page}"
        );
        assert!(page.contains("&lt;script&gt;x"));
    }

    #[test]
    fn what_changed_meanwhile_is_said_field_by_field() {
        let mut webhook = crate::manage::WebhookChanges {
            name: Some("CRM".into()),
            url: Some(crate::manage::target_url("http://127.0.0.1:9/hook").expect("valid")),
            events: Some("COURSE_ENROLLMENT".into()),
            ..Default::default()
        }
        .create(0)
        .expect("valid");
        let read = FormBase::of(&webhook).read;
        webhook.status = Status::Disabled("retention ended".into());
        webhook.url = crate::manage::target_url("http://127.0.0.1:10/hook").expect("valid");
        assert_eq!(
            changed_meanwhile(&read, &webhook),
            [
                "Activation status: Active → Disabled after failures",
                "Target URL: http://127.0.0.1:9/hook → http://127.0.0.1:10/hook"
            ]
        );
    }
}
