//! The HTML of the Integration Admin pages, with SPEC section 8's visible labels (the Add
//! webhook / Edit form is `form_html`). Every value that a person typed or the state holds
//! goes through [`escape`]; controls carry `<label for>` and buttons their text, so people,
//! screen readers and browser tests find them by name. Secrets are never shown whole. States
//! are words first (Active, Inactive, Disabled after failures; Failing, Delivered), coloured
//! by `admin.css` through `data-state`.

use std::fmt::Write as _;

use common::web::{escape, layout};
use verify::timestamp::format_iso_seconds;
use verify::EventClass;

use super::{Listed, QueueState};
use crate::registry::{Auth, EventSelection, Status, Webhook, MAX_WEBHOOKS};
use crate::store::DeliverySummary;

/// The page frame: title, the navigation, a notice (escaped here) and the content. The
/// admin pages' own stylesheet follows the shared one (a `<link>` may stand in the body).
pub(super) fn page(title: &str, notice: Option<&Notice>, main: &str) -> String {
    let heading = format!(
        "<link rel=\"stylesheet\" href=\"{}\"><h1>{}</h1><nav aria-label=\"Pages\">\
         <a href=\"/\">Webhooks</a> · <a href=\"/trigger\">Trigger</a></nav>",
        super::STYLESHEET_PATH,
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
        Status::Disabled(reason) => format!("Disabled after failures ({reason})"),
    }
}

/// The word of a webhook's Activation status and its `data-state`.
fn state_word(status: &Status) -> (&'static str, &'static str) {
    match status {
        Status::Active => ("Active", "active"),
        Status::Retired => ("Inactive", "inactive"),
        Status::Disabled(_) => ("Disabled after failures", "disabled"),
    }
}

/// A webhook's Activation status as the pages show it: the word, coloured, with the reason
/// of a disable as its title.
pub(super) fn state_html(status: &Status) -> String {
    let (word, state) = state_word(status);
    let title = match status {
        Status::Disabled(reason) => format!(" title=\"{}\"", escape(reason)),
        _ => String::new(),
    };
    format!("<span class=\"state\" data-state=\"{state}\"{title}>{word}</span>")
}

/// An instant in epoch milliseconds as the pages write times (ISO-8601, UTC, seconds).
fn time(epoch_ms: i64) -> String {
    format_iso_seconds(epoch_ms.div_euclid(1000))
}

/// `n thing` or `n things`.
fn count(n: u64, thing: &str) -> String {
    format!("{n} {thing}{}", if n == 1 { "" } else { "s" })
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
    for Listed { webhook, queue } in all {
        let id = escape(webhook.id.as_str());
        let name = escape(&webhook.name);
        let active = webhook.status == Status::Active;
        let (word, state) = state_word(&webhook.status);
        let _ = write!(
            main,
            "<tr><td><a href=\"/webhooks/{id}\">{name}</a></td><td><code>{url}</code></td>\
             <td>{auth}</td><td>{events}</td>\
             <td><form method=\"get\" action=\"/webhooks/{id}/status\">\
             <input type=\"hidden\" name=\"version\" value=\"{version}\">\
             <input type=\"hidden\" name=\"active\" value=\"{switch_to}\">\
             <button type=\"submit\" role=\"switch\" aria-checked=\"{active}\" class=\"state\" \
             data-state=\"{state}\" aria-label=\"Activation status of {name}\"{title}>{word}</button></form></td>\
             <td>{last}</td>\
             <td><a href=\"/webhooks/{id}/deliveries\">Deliveries</a> · \
             <a href=\"/webhooks/{id}/delete\">Delete</a></td></tr>",
            url = escape(webhook.url.as_str()),
            auth = auth_word(&webhook.auth),
            events = escape(&events_text(&webhook.events)),
            version = webhook.updated_at_ms,
            switch_to = if active { "off" } else { "on" },
            title = match &webhook.status {
                Status::Disabled(reason) => format!(" title=\"{}\"", escape(reason)),
                _ => String::new(),
            },
            last = last_delivery(queue, active),
        );
    }
    main.push_str("</tbody></table>");
    page("Webhooks", notice, &main)
}

/// The list's **Last delivery**: the oldest request still failing when there is one (in
/// strict order it holds up the rest), else the newest request; then the staged batch
/// events and when they go. A webhook not `active` sends nothing: its queue waits.
fn last_delivery(queue: &QueueState, active: bool) -> String {
    let mut html = match (&queue.failing, &queue.last) {
        (Some(failing), _) => {
            let mut text = format!(
                "<span class=\"state\" data-state=\"failing\">Failing</span> since {}: {} after {}",
                escape(&failing.created_at),
                escape(&outcome_of(failing)),
                count(u64::try_from(failing.attempts).unwrap_or(0), "attempt"),
            );
            match &failing.next_attempt_at {
                Some(next) if active => {
                    let _ = write!(text, "; next attempt at {}", escape(next));
                }
                _ => text.push_str("; no attempt while it is not Active"),
            }
            let behind = queue.counts.pending.saturating_sub(1);
            if behind > 0 {
                let _ = write!(text, "; {} behind it", count(behind, "request"));
            }
            text
        }
        (None, Some(last)) => {
            let (word, state) = match last.state.as_str() {
                "delivered" => ("Delivered", "delivered"),
                "expired" => ("Expired", "expired"),
                _ if last.attempts == 0 => ("Pending, not tried yet", "pending"),
                _ => ("Pending", "pending"),
            };
            let mut text = format!("<span class=\"state\" data-state=\"{state}\">{word}</span>");
            if last.attempts > 0 {
                let _ = write!(
                    text,
                    " ({}, {})",
                    escape(&outcome_of(last)),
                    count(u64::try_from(last.attempts).unwrap_or(0), "attempt")
                );
            }
            let _ = write!(text, ", made at {}", escape(&last.created_at));
            text
        }
        (None, None) => "none yet".to_owned(),
    };
    if queue.counts.staged > 0 {
        let _ = write!(
            html,
            "<br><span class=\"state\" data-state=\"staged\">{} staged</span>",
            count(queue.counts.staged, "batch event")
        );
        match queue.staged_due_ms {
            Some(due) if active => {
                let _ = write!(html, ", sent as a batch by {}", time(due));
            }
            _ => html.push_str(", sent once it is Active again"),
        }
    }
    html
}

/// The last attempt's outcome: its status, else its error.
fn outcome_of(summary: &DeliverySummary) -> String {
    summary
        .last_status
        .map(|status| status.to_string())
        .or_else(|| summary.last_error.clone())
        .unwrap_or_else(|| "not tried yet".to_owned())
}

fn auth_word(auth: &Auth) -> &'static str {
    match auth {
        Auth::None => "None",
        Auth::Basic(_) => "Basic",
        Auth::Signature(_) => "Signature",
    }
}

/// A validation error beside its field.
pub(super) struct FieldError {
    /// The field (`url`, `events`, … or `form` for the whole form).
    pub field: &'static str,
    /// What to do, in words.
    pub message: String,
}

/// The attributes and the message of a field that may be at fault (its first error).
pub(super) fn error_of(errors: &[FieldError], field: &str) -> (String, String) {
    match errors.iter().find(|error| error.field == field) {
        Some(error) => (
            format!(" aria-invalid=\"true\" aria-describedby=\"{field}-error\""),
            format!(
                "<p class=\"error\" id=\"{field}-error\" role=\"alert\">{}</p>",
                escape(&error.message)
            ),
        ),
        None => (String::new(), String::new()),
    }
}

/// A labelled text field.
pub(super) fn text_field(
    id: &str,
    label: &str,
    kind: &str,
    value: &str,
    errors: &[FieldError],
    extra: &str,
) -> String {
    let (invalid, message) = error_of(errors, id);
    format!(
        "<div class=\"field\"><label for=\"{id}\">{label}</label>\
         <input type=\"{kind}\" id=\"{id}\" name=\"{id}\" value=\"{}\"{invalid}{extra}>{message}</div>",
        escape(value)
    )
}

/// **Activation status**: the confirmation of a retire (`to_active` false) or an activate,
/// saying how many requests wait and what happens to them.
pub(super) fn confirm_status(webhook: &Webhook, queue: &QueueState, to_active: bool) -> String {
    let id = escape(webhook.id.as_str());
    let name = escape(&webhook.name);
    let waiting = match (queue.counts.pending, queue.counts.staged) {
        (pending, 0) => count(pending, "request"),
        (pending, staged) => format!(
            "{} and {}",
            count(pending, "request"),
            count(staged, "staged batch event")
        ),
    };
    let (question, consequence, button) = if to_active {
        (
            format!("Activate <strong>{name}</strong>?"),
            format!(
                "{waiting} wait{} in its queue: once it is active they are delivered, oldest \
                 first, and new events go to it again.{}",
                if queue.waiting() == 1 { "s" } else { "" },
                match &webhook.status {
                    Status::Disabled(reason) => format!(
                        " It was disabled after failures ({}); requests that expired then are \
                         not sent again by activating it.",
                        escape(reason)
                    ),
                    _ => String::new(),
                }
            ),
            "Activate",
        )
    } else {
        (
            format!("Retire <strong>{name}</strong>, switching its Activation status off?"),
            format!(
                "Nothing is delivered to it while it is Inactive, and new events do not go to \
                 it. {waiting} wait{} in its queue: they stay there and are delivered when it \
                 is activated again.",
                if queue.waiting() == 1 { "s" } else { "" },
            ),
            "Retire",
        )
    };
    let main = format!(
        "<p>{question} It is now {state}.</p><p>{consequence}</p>\
         <form method=\"post\" action=\"/webhooks/{id}/status\" class=\"bar\">\
         <input type=\"hidden\" name=\"version\" value=\"{version}\">\
         <input type=\"hidden\" name=\"active\" value=\"{value}\">\
         <button type=\"submit\">{button}</button> <a href=\"/\">Cancel</a></form>",
        state = state_html(&webhook.status),
        version = webhook.updated_at_ms,
        value = if to_active { "on" } else { "off" },
    );
    page(&format!("{button} {}", webhook.name), None, &main)
}

/// A page that only says something went wrong or could not be done, with the way back.
pub(super) fn message_page(title: &str, text: &str) -> String {
    page(
        title,
        Some(&Notice::Problem(text.to_owned())),
        "<p><a href=\"/\">Back to the Webhooks list</a></p>",
    )
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

/// What a trigger queued, as the Trigger page reports it.
pub(super) struct TriggerReport {
    /// The catalogue name.
    pub event: &'static str,
    /// How many events were made.
    pub count: usize,
    /// For a batch event: the batch interval (as the flags write it) and size.
    pub batch: Option<(String, usize)>,
    /// The webhooks they went to, by registration.
    pub webhooks: Vec<TriggeredWebhook>,
}

/// One webhook a trigger queued for.
pub(super) struct TriggeredWebhook {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Batch events staged for it now (this trigger's and earlier ones).
    pub staged: u64,
    /// When they go, at the latest (epoch ms).
    pub staged_due_ms: Option<i64>,
}

/// The Trigger page's report: the webhooks by name, each a link to where its events are;
/// for a batch event, where they wait and when they go.
fn trigger_report(report: &TriggerReport) -> String {
    let events = count(u64::try_from(report.count).unwrap_or(u64::MAX), "event");
    let mut html = String::from("<section aria-label=\"Queued\">");
    match &report.batch {
        None => {
            let links: Vec<String> = report
                .webhooks
                .iter()
                .map(|webhook| {
                    format!(
                        "<a href=\"/webhooks/{}/deliveries\">{}</a>",
                        escape(&webhook.id),
                        escape(&webhook.name)
                    )
                })
                .collect();
            let _ = write!(
                html,
                "<p role=\"status\">Queued {events} of {} for {}: {}. Each one's \
                 <strong>Deliveries</strong> page shows them as they go.</p>",
                report.event,
                count(report.webhooks.len() as u64, "webhook"),
                links.join(", ")
            );
        }
        Some((interval, size)) => {
            let _ = write!(
                html,
                "<p role=\"status\">Staged {events} of {}, a batch event, for {}. Batch events \
                 wait, staged per webhook, and go as one request a batch interval ({interval}) \
                 after the oldest was staged, or at once when {size} are staged; until then \
                 the <a href=\"/\">Webhooks</a> page shows them in Last delivery, then each \
                 one's Deliveries page.</p><ul>",
                report.event,
                count(report.webhooks.len() as u64, "webhook"),
            );
            for webhook in &report.webhooks {
                let _ = write!(
                    html,
                    "<li><a href=\"/webhooks/{}/deliveries\">{}</a>: {} staged",
                    escape(&webhook.id),
                    escape(&webhook.name),
                    count(webhook.staged, "batch event")
                );
                match webhook.staged_due_ms {
                    Some(due) => {
                        let _ = write!(html, ", sent as one request by {}", time(due));
                    }
                    None => html.push_str(", already made into a request"),
                }
                html.push_str("</li>");
            }
            html.push_str("</ul>");
        }
    }
    html.push_str("</section>");
    html
}

/// **Trigger**: fire any catalogue event to the subscribed webhooks.
pub(super) fn trigger(
    values: &TriggerValues,
    error: &[FieldError],
    notice: Option<&Notice>,
    report: Option<&TriggerReport>,
) -> String {
    let mut main = report.map(trigger_report).unwrap_or_default();
    main.push_str("<form method=\"post\" action=\"/trigger\">");
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
