//! The inspector's HTML. Every value from a request (names, ids, headers, bodies, reasons)
//! goes through [`escape`], most through [`shown`], which first escapes the characters
//! `common::text` never shows as themselves (controls, bidi and invisible ones); the rest is
//! our own text. Controls carry labels and buttons their text, so people and browser tests
//! find them by name.

use common::text::{printable, printable_json, printable_lines};
use common::web::{escape, layout};
use http::StatusCode;
use verify::timestamp::{format_iso_millis, parse_instant_millis};

use super::send_form::{self, Mode, SendContext, SendForm};
use crate::check::Report;
use crate::store::{
    Cursor, EventSummary, JobState, RequestDetail, RequestFilter, RequestPage, RequestSummary,
    RequestVerdict,
};

/// Bodies longer than this are shown cut (the full bytes stay downloadable).
const SHOWN_BODY_BYTES: usize = 64 * 1024;

/// The filter's fields as typed, kept in the URL and put back in the form.
#[derive(Debug, Clone, Default)]
pub(super) struct FilterFields {
    event_name: String,
    account: String,
    verdict: String,
    since: String,
    until: String,
    event_id: String,
    data: String,
    /// A forward job state: requests with a job in it.
    forwarding: String,
}

impl FilterFields {
    /// The fields of a query string (absent ones empty).
    pub(super) fn from_query(query: &[(String, String)]) -> FilterFields {
        let value = |name: &str| {
            query
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.trim().to_owned())
                .unwrap_or_default()
        };
        FilterFields {
            event_name: value("event_name"),
            account: value("account"),
            verdict: value("verdict"),
            since: value("since"),
            until: value("until"),
            event_id: value("event_id"),
            data: value("data"),
            forwarding: value("forwarding"),
        }
    }

    /// Whether any field is filled in.
    fn any(&self) -> bool {
        !self.to_query().is_empty()
    }

    /// The store filter, or what is wrong with a field, in words for the page.
    pub(super) fn to_filter(&self) -> Result<RequestFilter, String> {
        let text = |value: &str| (!value.is_empty()).then(|| value.to_owned());
        let time = |label: &str, value: &str| -> Result<Option<i64>, String> {
            if value.is_empty() {
                return Ok(None);
            }
            // A browser's datetime-local field gives `2026-11-27T10:00`; read it as UTC.
            let completed = match value.len() {
                16 => format!("{value}:00Z"),
                19 => format!("{value}Z"),
                _ => value.to_owned(),
            };
            parse_instant_millis(&completed)
                .or_else(|| parse_instant_millis(value))
                .map(Some)
                .ok_or(format!(
                    "{label} {value:?} is not a time (use 2026-11-27T10:00:00Z, 2026-11-27 or epoch ms)"
                ))
        };
        let account = match self.account.as_str() {
            "" => None,
            text => Some(
                text.parse::<i64>()
                    .map_err(|_| format!("Account {text:?} is not a number"))?,
            ),
        };
        let forward_state = match self.forwarding.as_str() {
            "" => None,
            text => Some(JobState::parse(text).ok_or(format!(
                "Forwarding {text:?} is none of pending, parked, skipped, forwarded"
            ))?),
        };
        Ok(RequestFilter {
            event_name: text(&self.event_name),
            account_id: account,
            verdict: text(&self.verdict),
            received_since_ms: time("Since", &self.since)?,
            received_until_ms: time("Until", &self.until)?,
            event_id_text: text(&self.event_id),
            data: crate::search::Search::from_data_field(&self.data)?,
            forward_state,
        })
    }

    /// Every field's query name and value, in the form's order.
    fn fields(&self) -> [(&'static str, &str); 8] {
        [
            ("event_name", &self.event_name),
            ("account", &self.account),
            ("verdict", &self.verdict),
            ("since", &self.since),
            ("until", &self.until),
            ("event_id", &self.event_id),
            ("data", &self.data),
            ("forwarding", &self.forwarding),
        ]
    }

    /// The filled fields as part of a file name: `event_name-completed_account-1010`, each
    /// value cut to 40 characters and anything but letters, digits, `.` and `-` made `_`.
    pub(super) fn file_name_part(&self) -> String {
        self.fields()
            .iter()
            .filter(|(_, value)| !value.is_empty())
            .map(|(name, value)| format!("{name}-{}", file_name_safe(value)))
            .collect::<Vec<_>>()
            .join("_")
    }

    /// The fields as a query string (empty ones left out), without a leading `?`.
    pub(super) fn to_query(&self) -> String {
        common::web::query_string(&self.fields())
    }
}

/// `text` fit for a file name: at most 40 characters, each a letter, a digit, `.` or `-`, any
/// other `_`.
pub(super) fn file_name_safe(text: &str) -> String {
    text.chars()
        .take(40)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A receive time for a file name: `20261127T100000Z`.
pub(super) fn file_name_time(at_ms: i64) -> String {
    let iso = format_iso_millis(at_ms);
    let whole = iso.split('.').next().unwrap_or(&iso);
    format!("{}Z", whole.replace(['-', ':'], ""))
}

/// `?a=b&c=d` from parts, skipping empty ones.
fn query_string(parts: &[&str]) -> String {
    let joined: Vec<&str> = parts
        .iter()
        .copied()
        .filter(|part| !part.is_empty())
        .collect();
    if joined.is_empty() {
        String::new()
    } else {
        format!("?{}", joined.join("&"))
    }
}

/// One line of request-supplied text for the page: an `eventName` with U+202E shows as
/// `\u{202e}`, not as another name, and a line break as `\n`.
fn shown(text: &str) -> String {
    escape(&printable(text))
}

fn heading(extra: &str) -> String {
    format!("<h1><a href=\"/\">Receiver inspector</a></h1>{extra}")
}

/// The filter form: a GET form, so the URL keeps the filter. Placeholders read as examples
/// ("e.g. …"), never as a filter already applied; Event name offers the catalogue's names.
fn filter_form(fields: &FilterFields, hidden: &str) -> String {
    let verdicts = ["", "accepted", "duplicate", "refused"];
    let mut options = String::new();
    for verdict in verdicts {
        let selected = if fields.verdict == verdict {
            " selected"
        } else {
            ""
        };
        let label = if verdict.is_empty() { "any" } else { verdict };
        options.push_str(&format!(
            "<option value=\"{verdict}\"{selected}>{label}</option>"
        ));
    }
    let custom = !verdicts.contains(&fields.verdict.as_str());
    if custom {
        let verdict = escape(&fields.verdict);
        options.push_str(&format!(
            "<option value=\"{verdict}\" selected>{verdict}</option>"
        ));
    }
    let mut forward_options = String::new();
    for state in std::iter::once("").chain(JobState::ALL.iter().map(|state| state.as_str())) {
        let selected = if fields.forwarding == state {
            " selected"
        } else {
            ""
        };
        let label = if state.is_empty() { "any" } else { state };
        forward_options.push_str(&format!(
            "<option value=\"{state}\"{selected}>{label}</option>"
        ));
    }
    let field = |id: &str, label: &str, value: &str, hint: &str, extra: &str| {
        format!(
            "<label for=\"{id}\">{label}<input id=\"{id}\" name=\"{id}\" type=\"text\" value=\"{}\" placeholder=\"{hint}\"{extra}></label>",
            escape(value)
        )
    };
    let names: String = verify::CATALOG
        .iter()
        .map(|kind| format!("<option value=\"{}\">", kind.name))
        .collect();
    format!(
        "<form class=\"filters\" method=\"get\" action=\"/\" role=\"search\" aria-label=\"Filters\">\
         {}<datalist id=\"event-names\">{names}</datalist>{}<label for=\"verdict\">Verdict<select id=\"verdict\" name=\"verdict\">{options}</select></label>\
         {}{}{}{}<label for=\"forwarding\">Forwarding<select id=\"forwarding\" name=\"forwarding\">{forward_options}</select></label>\
         {hidden}<button type=\"submit\">Filter</button> <a href=\"/\">Clear filters</a></form>",
        field(
            "event_name",
            "Event name",
            &fields.event_name,
            "e.g. completed",
            " list=\"event-names\" autocomplete=\"off\""
        ),
        field("account", "Account", &fields.account, "e.g. 1010", ""),
        field("since", "Since", &fields.since, "e.g. 2026-11-27T10:00:00Z", ""),
        field("until", "Until", &fields.until, "e.g. 2026-11-27T11:00:00Z", ""),
        field("event_id", "Event id", &fields.event_id, "e.g. part of an id", ""),
        field("data", "Data", &fields.data, "e.g. userId=4279332", ""),
    )
}

/// The verdict cell's group, for the colour.
fn verdict_group(verdict: &RequestVerdict) -> &'static str {
    match verdict {
        RequestVerdict::Accepted => "accepted",
        RequestVerdict::Duplicate => "duplicate",
        RequestVerdict::Refused { .. } => "refused",
    }
}

/// The verdict as the list and the detail show it: the word, or the reason code with its
/// words beside it.
fn verdict_text(verdict: &RequestVerdict) -> String {
    let code = escape(verdict.label());
    match verdict {
        RequestVerdict::Refused { reason, .. } => match super::reasons::words(reason) {
            Some(words) => format!("{code} <span class=\"muted\">({})</span>", escape(&words)),
            None => code,
        },
        _ => code,
    }
}

/// An event's name and id, and its learner and learning object where it has them.
fn event_text(event: &EventSummary) -> String {
    let mut text = format!(
        "{} <code>{}</code>",
        shown(&event.event_name),
        shown(&event.event_id)
    );
    if let Some(user_id) = &event.user_id {
        text.push_str(&format!(" · userId <code>{}</code>", shown(user_id)));
    }
    if let Some(lo_id) = &event.lo_id {
        text.push_str(&format!(" · loId <code>{}</code>", shown(lo_id)));
    }
    text
}

/// One row of the list.
fn row(summary: &RequestSummary) -> String {
    let href = format!("/requests/{}", summary.key.to_text());
    let account = summary
        .account_id
        .map(|account| account.to_string())
        .unwrap_or_default();
    let events: Vec<String> = summary.events.iter().map(event_text).collect();
    format!(
        "<tr data-href=\"{href}\"><td><a href=\"{href}\">{}</a></td><td data-verdict=\"{}\">{}</td>\
         <td>{account}</td><td>{}</td></tr>",
        format_iso_millis(summary.received_at_ms),
        verdict_group(&summary.verdict),
        verdict_text(&summary.verdict),
        events.join("<br>"),
    )
}

/// Rows for the live stream, newest first (the script puts them on top in this order).
pub(super) fn rows_newest_first(rows: &[RequestSummary]) -> String {
    rows.iter().rev().map(row).collect::<Vec<_>>().join("\n")
}

/// What the list page shows besides its rows.
pub(super) struct ListParts<'a> {
    /// The filter as typed.
    pub(super) fields: &'a FilterFields,
    /// The overview section (first page only; empty on older pages).
    pub(super) overview: &'a str,
    /// The overview's range as hidden fields of the filter form, so filtering keeps it.
    pub(super) range_fields: &'a str,
}

/// The list page: `start` is where it was read from, `live` where the stream starts (first
/// page only).
pub(super) fn list(
    parts: &ListParts<'_>,
    page: &RequestPage,
    start: Cursor,
    live: Option<Cursor>,
    limit: usize,
) -> String {
    let fields = parts.fields;
    let filter_query = fields.to_query();
    let limit_part = if limit == super::PAGE_ROWS {
        String::new()
    } else {
        format!("limit={limit}")
    };
    let stream = match live {
        Some(mark) => format!(
            " data-stream=\"/stream{}\"",
            escape(&query_string(&[
                &filter_query,
                &format!("after={}", mark.to_text())
            ]))
        ),
        None => String::new(),
    };
    let mut rows: String = page.rows.iter().map(row).collect::<Vec<_>>().join("\n");
    if page.rows.is_empty() {
        let empty = match (fields.any(), page.older.is_some()) {
            (false, _) => "No requests here yet.",
            (true, false) => "No request matches these filters.",
            (true, true) => {
                "No request matches these filters among the requests looked at; \
                 Older requests looks further."
            }
        };
        rows = format!("<tr data-empty><td colspan=\"4\">{empty}</td></tr>");
    }
    let older = match page.older {
        Some(cursor) => format!(
            "<a href=\"/{}\">Older requests</a>",
            escape(&query_string(&[
                &filter_query,
                &limit_part,
                &format!("before={}", cursor.to_text())
            ]))
        ),
        None => "<span class=\"muted\">No older requests.</span>".to_owned(),
    };
    // The download covers exactly the shown page: the same filter, start and size (rows
    // stored since are above the start, so the same rows come back).
    let download = format!(
        "<a href=\"/download{}\" download>Download capture</a>",
        escape(&query_string(&[
            &filter_query,
            &limit_part,
            &format!("before={}", start.to_text())
        ]))
    );
    let status = if live.is_some() {
        "<span role=\"status\" data-stream-status>Live updates start when the page has loaded.</span>"
    } else {
        "<a href=\"/\">Back to the newest requests</a>"
    };
    let main = format!(
        "{}{}<div class=\"bar\">{status} {download} {older}</div>\
         <table aria-label=\"Requests\"><thead><tr><th scope=\"col\">Received</th>\
         <th scope=\"col\">Verdict</th><th scope=\"col\">Account</th><th scope=\"col\">Events</th></tr></thead>\
         <tbody{stream}>{rows}</tbody></table>\
         <p class=\"muted\">Keys: j / k move, Enter opens, Esc comes back.</p>",
        parts.overview,
        filter_form(fields, parts.range_fields),
    );
    layout("Receiver inspector", &heading(""), &main)
}

/// The list page when a filter field cannot be read: the form again, with the message.
pub(super) fn bad_filter(
    message: &str,
    fields: &FilterFields,
) -> http::Response<common::web::WebBody> {
    let main = format!(
        "{}<p role=\"alert\">{}</p>",
        filter_form(fields, ""),
        escape(message)
    );
    common::web::html(
        StatusCode::BAD_REQUEST,
        layout("Receiver inspector", &heading(""), &main),
    )
}

/// The body as text for the page: pretty-printed JSON when it parses, else as received
/// (lossily for bytes that are not UTF-8), cut to [`SHOWN_BODY_BYTES`]; controls, bidi and
/// invisible characters escaped (as JSON escapes in the pretty form, so it stays JSON).
fn shown_body(body: &[u8]) -> (Option<String>, String, bool) {
    let cut = body.len() > SHOWN_BODY_BYTES;
    let as_received = printable_lines(&String::from_utf8_lossy(
        &body[..body.len().min(SHOWN_BODY_BYTES)],
    ))
    .into_owned();
    let pretty = if cut {
        None
    } else {
        serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|value| serde_json::to_string_pretty(&value).ok())
            .map(|pretty| printable_json(&pretty).into_owned())
    };
    (pretty, as_received, cut)
}

/// The detail page; `send` is what the Send again form knows of this receiver and request,
/// `forwarding` the request's forwarding section.
pub(super) fn detail(
    detail: &RequestDetail,
    report: &Report,
    webhook_url: &str,
    send: &SendContext,
    forwarding: &str,
) -> String {
    let key = detail.summary.key.to_text();
    let record = &detail.record;
    let account = detail
        .summary
        .account_id
        .map(|account| account.to_string())
        .unwrap_or_else(|| "none".to_owned());
    let status_line = match &detail.summary.verdict {
        RequestVerdict::Refused { status, reason } => format!(
            " (answered {status}){}",
            super::reasons::words(reason)
                .map(|words| format!(" <span class=\"muted\">— {}</span>", escape(&words)))
                .unwrap_or_default()
        ),
        _ => String::new(),
    };
    let findings: String = report
        .findings
        .iter()
        .map(|finding| format!("<li>{}</li>", shown(finding)))
        .collect();
    let diagnosis = format!(
        "<p>receiver check: <strong>{}</strong>{}</p><ul>{findings}</ul>",
        report.verdict.as_str(),
        report
            .reason
            .as_deref()
            .map(|reason| format!(" <code>{}</code>", escape(reason)))
            .unwrap_or_default()
    );
    let events: String = detail
        .events
        .iter()
        .map(|event| {
            let optional = |value: &Option<String>| {
                value
                    .as_deref()
                    .map(|value| format!("<code>{}</code>", shown(value)))
                    .unwrap_or_default()
            };
            format!(
                "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                shown(&event.event.event_name),
                shown(&event.event.event_id),
                optional(&event.event.user_id),
                optional(&event.event.lo_id),
                event.storage.label(),
                event.forwarding.as_str()
            )
        })
        .collect();
    let events = if detail.events.is_empty() {
        "<p>No events.</p>".to_owned()
    } else {
        format!(
            "<table aria-label=\"Events\"><thead><tr><th scope=\"col\">Event name</th><th scope=\"col\">Event id</th>\
             <th scope=\"col\">Learner (userId)</th><th scope=\"col\">Learning object (loId)</th>\
             <th scope=\"col\">Stored</th><th scope=\"col\">Forwarding</th></tr></thead><tbody>{events}</tbody></table>"
        )
    };
    let headers: String = record
        .headers
        .iter()
        .map(|(name, value)| {
            format!(
                "<tr><td><code>{}</code></td><td><code>{}</code></td></tr>",
                shown(name),
                shown(value)
            )
        })
        .collect();
    let (pretty, as_received, cut) = shown_body(&record.body);
    let cut_note = if cut {
        format!(
            "<p>The body is {} bytes; the first {SHOWN_BODY_BYTES} are shown. \
             <a href=\"/requests/{key}/body\" download>Download the whole body</a></p>",
            record.body.len()
        )
    } else {
        format!(
            "<p><a href=\"/requests/{key}/body\" download>Download the body</a> ({} bytes)</p>",
            record.body.len()
        )
    };
    let pretty = pretty
        .map(|pretty| {
            format!(
                "<h3>Pretty-printed</h3><pre aria-label=\"Body pretty-printed\">{}</pre>",
                escape(&pretty)
            )
        })
        .unwrap_or_default();
    let main = format!(
        "<p><a href=\"/\" data-back>Back to the list</a></p>\
         <section aria-labelledby=\"summary\"><h2 id=\"summary\">Request {key}</h2><dl>\
         <dt>Received</dt><dd>{received}</dd>\
         <dt>Verdict</dt><dd data-verdict=\"{group}\">{verdict}{status_line}</dd>\
         <dt>Account</dt><dd>{account}</dd>\
         <dt>Request</dt><dd><code>{method} {path}</code></dd></dl></section>\
         <section aria-labelledby=\"diagnosis\"><h2 id=\"diagnosis\">Diagnosis</h2>{diagnosis}</section>\
         <section aria-labelledby=\"events\"><h2 id=\"events\">Events</h2>{events}</section>{forwarding}\
         <section aria-labelledby=\"actions\"><h2 id=\"actions\">Actions</h2>\
         <div class=\"bar\"><a href=\"/download?request={key}\" download>Download capture</a>\
         <button type=\"button\" data-copy=\"curl\">Copy as curl</button></div>\
         <pre id=\"curl\" aria-label=\"curl command\">{curl}</pre>\
         {send_form}</section>\
         <section aria-labelledby=\"headers\"><h2 id=\"headers\">Headers</h2><table aria-label=\"Headers\">\
         <thead><tr><th scope=\"col\">Name</th><th scope=\"col\">Value</th></tr></thead><tbody>{headers}</tbody></table></section>\
         <section aria-labelledby=\"body\"><h2 id=\"body\">Body</h2>{cut_note}{pretty}\
         <h3>As received</h3><pre aria-label=\"Body as received\">{as_received}</pre></section>",
        received = format_iso_millis(record.received_at_ms),
        group = verdict_group(&detail.summary.verdict),
        verdict = escape(detail.summary.verdict.label()),
        method = shown(&record.method),
        path = shown(&record.path),
        curl = escape(&super::curl::curl_command(detail, webhook_url)),
        as_received = escape(&as_received),
        send_form = send_form::render(
            &key,
            &SendForm {
                to: String::new(),
                mode: send.default_mode(),
                error: None,
            },
            send
        ),
    );
    layout(&format!("Request {key}"), &heading(""), &main)
}

/// Send again that cannot go as asked: the form again, as typed, the error beside its field.
pub(super) fn send_refused(key: &str, form: &SendForm, send: &SendContext) -> String {
    let main = format!(
        "<p><a href=\"/requests/{key}\" data-back>Back to request {key}</a></p>\
         <section aria-labelledby=\"send\"><h2 id=\"send\">Send again</h2>{form}</section>",
        key = escape(key),
        form = send_form::render(key, form, send),
    );
    layout("Cannot send", &heading(""), &main)
}

/// The page after Send again: what came back, and the form again (as sent) to try once more.
pub(super) fn sent(
    key: &str,
    form: &SendForm,
    send: &SendContext,
    answer: &common::client::Answer,
) -> String {
    let outcome = match (answer.status, &answer.error) {
        (Some(status), _) => format!("Answered {status}"),
        (None, Some(error)) => format!("No answer: {}", escape(error)),
        (None, None) => "No answer".to_owned(),
    };
    // A verbatim copy refused for its age: say what to do instead.
    let hint = match (form.mode, answer.status) {
        (Mode::Verbatim, Some(401)) => send
            .verbatim_warning()
            .map(|warning| format!("<p role=\"note\">{}</p>", escape(&warning)))
            .unwrap_or_default(),
        _ => String::new(),
    };
    let acknowledged = answer
        .status
        .is_some_and(|status| (200..300).contains(&status));
    let again = if acknowledged {
        String::new()
    } else {
        format!(
            "<section aria-labelledby=\"send\"><h2 id=\"send\">Send again</h2>{}</section>",
            send_form::render(key, form, send)
        )
    };
    let main = format!(
        "<p><a href=\"/requests/{key}\" data-back>Back to request {key}</a></p>\
         <section aria-labelledby=\"result\"><h2 id=\"result\">Sent again to {to}</h2>\
         <p role=\"status\">{outcome}</p>{hint}<dl><dt>Latency</dt><dd>{latency:.1} ms</dd>\
         <dt>Answer</dt><dd><pre>{excerpt}</pre></dd></dl></section>{again}",
        key = escape(key),
        to = escape(&form.to),
        latency = answer.latency_ms,
        excerpt = escape(&printable_lines(&answer.excerpt)),
    );
    layout("Sent again", &heading(""), &main)
}
