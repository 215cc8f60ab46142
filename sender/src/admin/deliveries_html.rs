//! The HTML of the Deliveries page and of Recover's confirmation. One compact row per request,
//! newest first, with the request holding the queue pinned on top and coloured (its next
//! attempt and **Retry now**); every row's attempts one click away (`<details>`); the staged
//! batch events with when they go; **Resend** per request and **Recover** per webhook. Every
//! value from the state goes through [`escape`]; buttons carry their text, fields their label.

use std::fmt::Write as _;

use common::web::escape;
use verify::timestamp::{format_iso_millis, parse_instant_millis};

use super::html::{activation, page, Notice};
use crate::manage::plural;
use crate::registry::{Status, Webhook};
use crate::store::{
    DeliveryDetail, HealthState, QueueCounts, RecoverStatus, Recovered, StagedView, WebhookHealth,
};

/// Most attempts a request's row shows (the newest); the count says how many there were.
const ATTEMPTS_SHOWN: usize = 20;
/// Most message ids Recover's confirmation lists.
const IDS_SHOWN: usize = 20;
/// How often the page reloads itself while something is pending or staged (milliseconds).
const REFRESH_MS: u32 = 2000;

/// What the Deliveries page shows, read in one go.
pub(super) struct Outage {
    pub webhook: Webhook,
    pub counts: QueueCounts,
    pub health: WebhookHealth,
    /// The oldest pending request: the one every other waits behind.
    pub head: Option<DeliveryDetail>,
    /// The newest requests, newest first, the head left out.
    pub newest: Vec<DeliveryDetail>,
    pub staged: Vec<StagedView>,
    /// What Recover would queue by default.
    pub expired: Recovered,
    pub now_ms: i64,
    pub batch_interval_ms: i64,
}

/// The Recover form's values, as typed.
#[derive(Debug, Clone, Default)]
pub(super) struct RecoverForm {
    pub status: String,
    pub since: String,
    pub until: String,
}

/// `2026-11-27 10:00:05` (UTC) in a `<time>` that keeps the full instant.
fn when(iso: &str) -> String {
    let short = iso.get(..19).unwrap_or(iso).replacen('T', " ", 1);
    format!(
        "<time datetime=\"{}\">{}</time>",
        escape(iso),
        escape(&short)
    )
}

/// A wait in words: `now`, `in 12 s`, `in 4 min`, `in 3 h`.
fn in_words(delta_ms: i64) -> String {
    let secs = delta_ms.div_euclid(1000);
    match secs {
        i64::MIN..=0 => "now".to_owned(),
        1..=119 => format!("in {secs} s"),
        120..=7199 => format!("in {} min", secs / 60),
        _ => format!("in {} h", secs / 3600),
    }
}

/// An age in words: `12 s`, `4 min`, `3 h`, `2 d`.
fn age(ms: i64) -> String {
    let secs = ms.max(0) / 1000;
    match secs {
        0..=119 => format!("{secs} s"),
        120..=7199 => format!("{} min", secs / 60),
        7200..=172_799 => format!("{} h", secs / 3600),
        _ => format!("{} d", secs / 86_400),
    }
}

/// The last attempt's outcome: its status, or its error.
fn last_outcome(detail: &DeliveryDetail) -> String {
    let summary = &detail.summary;
    summary
        .last_status
        .map(|status| status.to_string())
        .or_else(|| summary.last_error.clone())
        .unwrap_or_else(|| "not tried yet".to_owned())
}

/// Whether the last attempt failed.
fn failed(detail: &DeliveryDetail) -> bool {
    let summary = &detail.summary;
    summary.attempts > 0
        && (summary.last_error.is_some()
            || summary
                .last_status
                .is_some_and(|status| !(200..300).contains(&status)))
}

/// **Deliveries** of one webhook.
pub(super) fn deliveries(outage: &Outage, notice: Option<&Notice>) -> String {
    let webhook = &outage.webhook;
    let id = escape(webhook.id.as_str());
    let mut main = format!(
        "<dl><dt>Target URL</dt><dd><code>{}</code></dd><dt>Activation status</dt><dd>{}</dd>{}</dl>",
        escape(webhook.url.as_str()),
        escape(&activation(&webhook.status)),
        health_line(&outage.health)
    );
    let counts = &outage.counts;
    let oldest = outage
        .head
        .as_ref()
        .and_then(|head| parse_instant_millis(&head.summary.created_at))
        .map(|created| format!(" · the oldest waits for {}", age(outage.now_ms - created)))
        .unwrap_or_default();
    let _ = write!(
        main,
        "<p class=\"bar\" aria-label=\"Queue\"><span>{} pending · {} staged · {} delivered · {} expired{oldest}</span>\
         <a href=\"/webhooks/{id}/deliveries\">Refresh</a> <a href=\"/webhooks/{id}\">Edit</a></p>",
        counts.pending, counts.staged, counts.delivered, counts.expired
    );
    if counts.pending > 0 {
        let _ = write!(
            main,
            "<p role=\"status\" data-refresh=\"{REFRESH_MS}\">Requests are pending: this page \
             refreshes every {} seconds.</p>",
            REFRESH_MS / 1000
        );
    } else if counts.staged > 0 {
        let _ = write!(
            main,
            "<p role=\"status\" data-refresh=\"{REFRESH_MS}\">Batch events are staged: this \
             page refreshes every {} seconds.</p>",
            REFRESH_MS / 1000
        );
    }
    main.push_str(&requests_table(outage));
    main.push_str(&staged_section(outage));
    main.push_str(&recover_section(
        webhook,
        &outage.expired,
        &RecoverForm::default(),
    ));
    page(&format!("Deliveries of {}", webhook.name), notice, &main)
}

/// The webhook's health, when it is not simply answering.
fn health_line(health: &WebhookHealth) -> String {
    let text = match health.state {
        HealthState::Failing => format!(
            "Failing since {}: {} failed attempt{} in a row",
            format_iso_millis(health.since_ms),
            health.consecutive_failures,
            plural(u64::from(health.consecutive_failures))
        ),
        HealthState::Disabled => format!(
            "Disabled at the end of retention, at {}",
            format_iso_millis(health.since_ms)
        ),
        HealthState::Ok if health.consecutive_failures > 0 => format!(
            "{} failed attempt{} in a row",
            health.consecutive_failures,
            plural(u64::from(health.consecutive_failures))
        ),
        HealthState::Ok => return String::new(),
    };
    format!("<dt>Health</dt><dd>{}</dd>", escape(&text))
}

/// The requests: the head first, then the newest.
fn requests_table(outage: &Outage) -> String {
    if outage.head.is_none() && outage.newest.is_empty() {
        return "<p>No request yet: <a href=\"/trigger\">Trigger</a> fires an event.</p>".into();
    }
    let mut html = String::from(
        "<table aria-label=\"Requests\" class=\"requests\"><thead><tr><th>Request</th><th>Made</th>\
         <th>Events</th><th>State</th><th>Last answer</th><th>Next attempt</th>\
         <th>Attempts</th><th>Actions</th></tr></thead><tbody>",
    );
    // A message queued again shows its newest request by its older ones.
    let mut newest_row: std::collections::HashMap<&str, i64> = std::collections::HashMap::new();
    for detail in outage.head.iter().chain(&outage.newest) {
        let row = newest_row.entry(detail.summary.id.as_str()).or_default();
        *row = (*row).max(detail.summary.row);
    }
    let later = |detail: &DeliveryDetail| {
        newest_row
            .get(detail.summary.id.as_str())
            .copied()
            .filter(|row| *row > detail.summary.row)
    };
    if let Some(head) = &outage.head {
        html.push_str(&request_row(outage, head, true, later(head)));
    }
    for detail in &outage.newest {
        html.push_str(&request_row(outage, detail, false, later(detail)));
    }
    html.push_str("</tbody></table>");
    html
}

/// One request's row; `queued_again` is the row of a newer request of the same message.
fn request_row(
    outage: &Outage,
    detail: &DeliveryDetail,
    head: bool,
    queued_again: Option<i64>,
) -> String {
    let webhook = &outage.webhook;
    let id = escape(webhook.id.as_str());
    let summary = &detail.summary;
    let msg = escape(&summary.id);
    let active = webhook.status == Status::Active;
    let (data_state, state_text) = match summary.state.as_str() {
        "pending" if head && failed(detail) => ("holding", "pending: holding the queue".to_owned()),
        "pending" if head => ("head", "pending: next to go".to_owned()),
        "pending" => ("waiting", "pending: waits behind the head".to_owned()),
        "delivered" => ("delivered", "delivered".to_owned()),
        other => match queued_again {
            Some(row) => ("superseded", format!("{other}: queued again as #{row}")),
            None => ("expired", other.to_owned()),
        },
    };
    let next = match (summary.state.as_str(), head, &summary.next_attempt_at) {
        ("pending", true, Some(next)) if active => {
            let due = parse_instant_millis(next).unwrap_or(outage.now_ms);
            format!(
                "{} ({})",
                when(next),
                escape(&in_words(due - outage.now_ms))
            )
        }
        ("pending", true, _) => "when the webhook is active".to_owned(),
        ("pending", false, _) => "after the head".to_owned(),
        _ => String::new(),
    };
    let copy = summary
        .resend_of
        .map(|row| format!(" <span class=\"muted\">queued again (copy of #{row})</span>"))
        .unwrap_or_default();
    let retry = if head && active {
        format!(
            "<form method=\"post\" action=\"/webhooks/{id}/retry\"><button type=\"submit\">Retry now</button></form> "
        )
    } else {
        String::new()
    };
    format!(
        "<tr data-state=\"{data_state}\" aria-label=\"Request {msg}\"><td><code>{msg}</code>{copy}</td>\
         <td>{made}</td><td>{names} ×{count}</td><td class=\"state\">{state}</td><td>{last}</td>\
         <td>{next}</td><td>{attempts}</td><td class=\"actions\">{retry}\
         <form method=\"post\" action=\"/webhooks/{id}/deliveries/{row}/resend\">\
         <button type=\"submit\" aria-label=\"Resend {msg}\">Resend</button></form></td></tr>",
        made = when(&summary.created_at),
        names = escape(&summary.event_names),
        count = summary.event_count,
        state = escape(&state_text),
        last = escape(&last_outcome(detail)),
        attempts = attempts_cell(detail),
        row = summary.row,
    )
}

/// A request's attempts and events, folded: the count, then the table.
fn attempts_cell(detail: &DeliveryDetail) -> String {
    let summary = &detail.summary;
    let log = &detail.attempt_log;
    let mut html = format!(
        "<details><summary>{} attempt{}</summary>",
        log.len(),
        plural(log.len() as u64)
    );
    let _ = write!(
        html,
        "<p>Events: {}. Account {}.</p>",
        detail
            .event_ids
            .iter()
            .map(|id| format!("<code>{}</code>", escape(id)))
            .collect::<Vec<_>>()
            .join(", "),
        summary.account_id
    );
    if log.is_empty() {
        html.push_str("<p>Not tried yet.</p></details>");
        return html;
    }
    let shown = &log[log.len().saturating_sub(ATTEMPTS_SHOWN)..];
    if shown.len() < log.len() {
        let _ = write!(
            html,
            "<p class=\"muted\">The newest {} of {} attempts:</p>",
            shown.len(),
            log.len()
        );
    }
    let _ = write!(
        html,
        "<table aria-label=\"Attempts of {}\"><thead><tr><th>Attempt</th><th>Time</th>\
         <th>Status or error</th><th>Latency</th><th>Answer (first bytes)</th></tr></thead><tbody>",
        escape(&summary.id)
    );
    for attempt in shown {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} ms</td><td><code>{}</code></td></tr>",
            attempt.attempt,
            when(&attempt.at),
            escape(&attempt.outcome()),
            attempt.latency_ms,
            escape(attempt.response_head.as_deref().unwrap_or(""))
        );
    }
    html.push_str("</tbody></table></details>");
    html
}

/// The staged batch events and when they go.
fn staged_section(outage: &Outage) -> String {
    let Some(oldest) = outage.staged.first() else {
        return String::new();
    };
    let goes_at = oldest.staged_at_ms.saturating_add(outage.batch_interval_ms);
    let goes = if outage.webhook.status == Status::Active {
        format!(
            "at {} ({}), when the oldest has waited the batch interval, or sooner once a batch is full",
            when(&format_iso_millis(goes_at)),
            escape(&in_words(goes_at - outage.now_ms))
        )
    } else {
        "once the webhook is active".to_owned()
    };
    let total = outage.counts.staged;
    let mut html = format!(
        "<section aria-label=\"Staged batch events\"><h2>Staged batch events</h2>\
         <p>{total} batch event{s} wait{verb} for this webhook's batch; they go as one request per account {goes}.</p>\
         <table aria-label=\"Staged batch events\"><thead><tr><th>Event</th><th>Event id</th>\
         <th>Account</th><th>Staged</th><th>Goes</th></tr></thead><tbody>",
        s = plural(total),
        verb = if total == 1 { "s" } else { "" },
    );
    let goes_short = if outage.webhook.status == Status::Active {
        when(&format_iso_millis(goes_at))
    } else {
        "when active".to_owned()
    };
    for event in &outage.staged {
        let _ = write!(
            html,
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{goes_short}</td></tr>",
            escape(&event.event_name),
            escape(&event.event_id),
            event.account_id,
            when(&format_iso_millis(event.staged_at_ms)),
        );
    }
    html.push_str("</tbody></table>");
    if total > outage.staged.len() as u64 {
        let _ = write!(
            html,
            "<p class=\"muted\">The oldest {} of {total} are listed.</p>",
            outage.staged.len()
        );
    }
    html.push_str("</section>");
    html
}

/// Recover: what it would take by default, and the form that asks for the count.
fn recover_section(webhook: &Webhook, expired: &Recovered, form: &RecoverForm) -> String {
    let id = escape(webhook.id.as_str());
    let told = if expired.requests == 0 {
        "No expired request: every request was delivered or is still pending. Recover can also send delivered ones again.".to_owned()
    } else {
        format!(
            "{} expired request{} ({} event{}) can be queued again, each with the webhook-id it had.",
            expired.requests,
            plural(expired.requests),
            expired.events,
            plural(expired.events)
        )
    };
    let mut html = format!(
        "<section aria-label=\"Recover\"><h2>Recover</h2><p>{}</p>\
         <form method=\"get\" action=\"/webhooks/{id}/recover\" class=\"filters\">",
        escape(&told)
    );
    html.push_str(&recover_fields(form));
    html.push_str("<button type=\"submit\">Recover</button></form></section>");
    html
}

/// The labelled fields of Recover: which requests, and the window.
fn recover_fields(form: &RecoverForm) -> String {
    let mut html = String::from(
        "<div class=\"field\"><label for=\"recover-status\">Requests</label>\
         <select id=\"recover-status\" name=\"status\">",
    );
    for (status, label) in [
        (
            RecoverStatus::Expired,
            "expired (given up at the end of retention)",
        ),
        (
            RecoverStatus::Failed,
            "failed (last attempt failed, not delivered)",
        ),
        (RecoverStatus::Delivered, "delivered"),
        (RecoverStatus::All, "all"),
    ] {
        let value = status.as_str();
        let chosen = form.status == value || (form.status.is_empty() && value == "expired");
        let _ = write!(
            html,
            "<option value=\"{value}\"{}>{label}</option>",
            if chosen { " selected" } else { "" }
        );
    }
    let _ = write!(
        html,
        "</select></div>\
         <div class=\"field\"><label for=\"recover-since\">Since</label>\
         <input type=\"text\" id=\"recover-since\" name=\"since\" value=\"{}\" placeholder=\"2026-11-27T10:00:00Z\"></div>\
         <div class=\"field\"><label for=\"recover-until\">Until</label>\
         <input type=\"text\" id=\"recover-until\" name=\"until\" value=\"{}\" placeholder=\"empty: up to now\"></div>",
        escape(&form.since),
        escape(&form.until)
    );
    html
}

/// Recover's confirmation: the count first, then the button that queues them (none when
/// nothing matches); a mistake in the form instead, above it.
pub(super) fn confirm_recover(
    webhook: &Webhook,
    form: &RecoverForm,
    counted: Option<&Recovered>,
    problem: Option<&str>,
) -> String {
    let id = escape(webhook.id.as_str());
    let mut main = String::new();
    if let Some(problem) = problem {
        let _ = write!(
            main,
            "<p role=\"alert\" class=\"problem\">{}</p>",
            escape(problem)
        );
    }
    if let Some(counted) = counted {
        let what = if form.status.is_empty() {
            "expired"
        } else {
            form.status.as_str()
        };
        if counted.requests == 0 {
            let _ = write!(
                main,
                "<p role=\"status\">No {} request of {} matches: nothing to recover.</p>",
                escape(what),
                escape(&webhook.name)
            );
        } else {
            let _ = write!(
                main,
                "<p role=\"status\">{requests} {what} request{s} ({events} event{es}) of {name} will be \
                 queued again, behind what its queue holds, in their original order, each with \
                 the webhook-id it had and a fresh signature.</p>",
                requests = counted.requests,
                what = escape(what),
                s = plural(counted.requests),
                events = counted.events,
                es = plural(counted.events),
                name = escape(&webhook.name)
            );
            if webhook.status != Status::Active {
                let _ = write!(
                    main,
                    "<p role=\"alert\">{} is {}: they go once it is active again (its Activation status, on Edit or the list).</p>",
                    escape(&webhook.name),
                    escape(&activation(&webhook.status))
                );
            }
            let shown: Vec<String> = counted
                .ids
                .iter()
                .take(IDS_SHOWN)
                .map(|msg| format!("<li><code>{}</code></li>", escape(msg)))
                .collect();
            let more = counted.requests.saturating_sub(shown.len() as u64);
            let _ = write!(
                main,
                "<ol aria-label=\"Requests to recover\">{}</ol>{}",
                shown.join(""),
                if more > 0 {
                    format!("<p class=\"muted\">and {more} more</p>")
                } else {
                    String::new()
                }
            );
            let _ = write!(
                main,
                "<form method=\"post\" action=\"/webhooks/{id}/recover\" class=\"bar\">\
                 <input type=\"hidden\" name=\"status\" value=\"{}\">\
                 <input type=\"hidden\" name=\"since\" value=\"{}\">\
                 <input type=\"hidden\" name=\"until\" value=\"{}\">\
                 <button type=\"submit\">Recover {} request{}</button> \
                 <a href=\"/webhooks/{id}/deliveries\">Cancel</a></form>",
                escape(&form.status),
                escape(&form.since),
                escape(&form.until),
                counted.requests,
                plural(counted.requests)
            );
        }
    }
    let _ = write!(
        main,
        "<section aria-label=\"Choose again\"><h2>Choose again</h2>\
         <form method=\"get\" action=\"/webhooks/{id}/recover\" class=\"filters\">{}\
         <button type=\"submit\">Count again</button></form>\
         <p><a href=\"/webhooks/{id}/deliveries\">Back to Deliveries</a></p></section>",
        recover_fields(form)
    );
    page(
        &format!("Recover requests of {}", webhook.name),
        None,
        &main,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_and_ages_in_words() {
        assert_eq!(in_words(-5), "now");
        assert_eq!(in_words(12_400), "in 12 s");
        assert_eq!(in_words(240_000), "in 4 min");
        assert_eq!(in_words(3 * 3_600_000), "in 3 h");
        assert_eq!(age(90_000), "90 s");
        assert_eq!(age(3 * 86_400_000), "3 d");
        assert_eq!(
            when("2026-11-27T10:00:05.123Z"),
            "<time datetime=\"2026-11-27T10:00:05.123Z\">2026-11-27 10:00:05</time>"
        );
    }
}
