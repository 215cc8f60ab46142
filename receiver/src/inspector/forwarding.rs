//! The inspector's forwarding: the targets' part of the overview (how many wait, which
//! request holds each queue, its last error and next try), the jobs of a request with
//! every attempt on its page, and the Retry and Skip buttons (POSTs, accepted from the
//! inspector's own page only, as Send again).

use std::sync::Arc;

use common::text::{printable, printable_lines};
use common::web::{self, escape, WebBody};
use http::{Response, StatusCode};
use verify::timestamp::format_iso_millis;

use super::{read_store, store_failed, State};
use crate::store::forward::{AttemptRecord, JobDetail, JobSummary, TargetOverview};
use crate::store::{JobState, RequestKey};

/// One line of text for the page, escaped.
fn shown(text: &str) -> String {
    escape(&printable(text))
}

fn time(ms: i64) -> String {
    format_iso_millis(ms)
}

/// A target for the page: a job queued before targets had names has none yet.
fn target_text(target: &str) -> String {
    if target.is_empty() {
        "(no target yet)".to_owned()
    } else {
        format!("<code>{}</code>", shown(target))
    }
}

/// Each target's queue, as the overview at the top of the first page shows it (below its
/// counts, and live with them): how many wait, how many are parked, since when and how long
/// the oldest waits, and which request holds the queue. Empty when forwarding is off and no
/// job was ever queued.
pub(super) fn overview(targets: &[TargetOverview], now_ms: i64) -> String {
    if targets.is_empty() {
        return String::new();
    }
    let rows: String = targets
        .iter()
        .map(|target| {
            let backlog = &target.backlog;
            let parked = if backlog.parked > 0 {
                format!("<a href=\"/?forwarding=parked\">{}</a>", backlog.parked)
            } else {
                "0".to_owned()
            };
            let oldest = backlog
                .oldest_pending_queued_at_ms
                .map(|queued| {
                    format!(
                        "{} ({} ago)",
                        time(queued),
                        super::reasons::approximate_duration((now_ms - queued) / 1000)
                    )
                })
                .unwrap_or_else(|| "-".to_owned());
            format!(
                "<tr><td>{}</td><td>{}</td><td>{parked}</td><td>{oldest}</td><td>{}</td></tr>",
                target_text(&backlog.target),
                backlog.pending,
                head_text(target.head.as_ref()),
            )
        })
        .collect();
    format!(
        "<section aria-labelledby=\"forwarding-overview\"><h3 id=\"forwarding-overview\">Forwarding</h3>\
         <table aria-label=\"Forwarding targets\"><thead><tr><th scope=\"col\">Target</th>\
         <th scope=\"col\">Waiting</th><th scope=\"col\">Parked</th><th scope=\"col\">Oldest waiting since</th>\
         <th scope=\"col\">Head of the queue</th></tr></thead><tbody>{rows}</tbody></table></section>"
    )
}

/// Who is at the head of a queue: a request that failed holds it (with why and until when),
/// one not tried yet is next.
fn head_text(head: Option<&JobSummary>) -> String {
    let Some(job) = head else {
        return "nothing waits".to_owned();
    };
    let link = format!(
        "<a href=\"/requests/{key}\">request {key}</a>",
        key = RequestKey::Accepted(job.request_id).to_text()
    );
    match &job.last_error {
        Some(error) if job.attempts > 0 => {
            let next = job
                .next_attempt_at_ms
                .map(|at| format!("; next try {}", time(at)))
                .unwrap_or_default();
            let attempts = match job.attempts {
                1 => "1 attempt".to_owned(),
                many => format!("{many} attempts"),
            };
            format!(
                "{link} holds the queue: {attempts}, last: {}{next}",
                shown(error)
            )
        }
        _ => format!("{link} is next"),
    }
}

/// The status and its reason, or why there was no answer.
fn outcome_text(attempt: &AttemptRecord) -> String {
    match (attempt.status, &attempt.error) {
        (Some(status), _) => {
            let reason = http::StatusCode::from_u16(status)
                .ok()
                .and_then(|code| code.canonical_reason())
                .unwrap_or_default();
            escape(format!("{status} {reason}").trim_end())
        }
        (None, Some(error)) => shown(error),
        (None, None) => "no answer".to_owned(),
    }
}

/// The forwarding section of a request's page: each job (one per target) with its state, its
/// Retry or Skip buttons, and every attempt. `notice` says what a button just did.
pub(super) fn section(key: RequestKey, jobs: &[JobDetail], notice: Option<&str>) -> String {
    let notice = notice
        .map(|text| format!("<p role=\"status\">{}</p>", escape(text)))
        .unwrap_or_default();
    let body = if jobs.is_empty() {
        "<p>Not forwarded: forwarding was off when it arrived, no target takes its events, or \
         its events were all duplicates.</p>"
            .to_owned()
    } else {
        jobs.iter().map(|job| job_html(key, job)).collect()
    };
    format!(
        "<section aria-labelledby=\"forwarding\"><h2 id=\"forwarding\">Forwarding</h2>{notice}{body}</section>"
    )
}

fn job_html(key: RequestKey, detail: &JobDetail) -> String {
    let job = &detail.job;
    let mut facts = format!(
        "<dt>State</dt><dd data-forward-state=\"{state}\">{state}</dd><dt>Attempts</dt><dd>{}</dd>",
        job.attempts,
        state = job.state.as_str(),
    );
    if let Some(error) = &job.last_error {
        facts.push_str(&format!("<dt>Last error</dt><dd>{}</dd>", shown(error)));
    }
    if let (JobState::Pending, Some(at)) = (job.state, job.next_attempt_at_ms) {
        facts.push_str(&format!("<dt>Next try</dt><dd>{}</dd>", time(at)));
    }
    if let Some(at) = job.forwarded_at_ms {
        facts.push_str(&format!("<dt>Forwarded</dt><dd>{}</dd>", time(at)));
    }
    let button = |action: &str, label: &str| {
        format!(
            "<form method=\"post\" action=\"/requests/{key}/forward/{id}/{action}\"><button type=\"submit\">{label}</button></form>",
            key = key.to_text(),
            id = job.id,
        )
    };
    let mut buttons = String::new();
    if matches!(job.state, JobState::Parked | JobState::Skipped) && !job.target.is_empty() {
        buttons.push_str(&button("retry", "Retry"));
    }
    if matches!(job.state, JobState::Pending | JobState::Parked) {
        buttons.push_str(&button("skip", "Skip"));
    }
    let attempts = if detail.attempts.is_empty() {
        "<p>No attempt yet.</p>".to_owned()
    } else {
        let rows: String = detail
            .attempts
            .iter()
            .map(|attempt| {
                format!(
                    "<tr><td>{}</td><td>{}</td><td>{:.1} ms</td><td>{}</td><td><pre>{}</pre></td></tr>",
                    time(attempt.at_ms),
                    outcome_text(attempt),
                    attempt.latency_us as f64 / 1000.0,
                    escape(&attempt.outcome),
                    escape(&printable_lines(&String::from_utf8_lossy(&attempt.answer))),
                )
            })
            .collect();
        format!(
            "<table aria-label=\"Attempts of job {id}\"><thead><tr><th scope=\"col\">Time</th>\
             <th scope=\"col\">Status or error</th><th scope=\"col\">Latency</th><th scope=\"col\">Outcome</th>\
             <th scope=\"col\">Answer (first KiB)</th></tr></thead><tbody>{rows}</tbody></table>",
            id = job.id
        )
    };
    format!(
        "<article aria-labelledby=\"job-{id}\"><h3 id=\"job-{id}\">Job {id} to {target}</h3>\
         <dl>{facts}</dl><div class=\"bar\">{buttons}</div>{attempts}</article>",
        id = job.id,
        target = target_text(&job.target),
    )
}

/// The notice a page shows after a button, from its query (`?forwarded=retried&job=5`).
pub(super) fn notice_of(query: &[(String, String)]) -> Option<String> {
    let value = |name: &str| {
        query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    let job: i64 = value("job")?.parse().ok()?;
    match value("forwarding")? {
        "retried" => Some(format!("Job {job} is back at the end of its queue.")),
        "skipped" => Some(format!(
            "Job {job} is skipped; its queue goes on without it."
        )),
        "unchanged" => Some(format!("Job {job} was so already.")),
        _ => None,
    }
}

/// A 303 to `location` (one of our own paths), after a button.
fn see_other(location: &str) -> Response<WebBody> {
    let mut response = web::text(StatusCode::SEE_OTHER, format!("see {location}\n"));
    if let Ok(value) = http::HeaderValue::from_str(location) {
        response.headers_mut().insert(http::header::LOCATION, value);
    }
    response
}

/// `POST /requests/KEY/forward/JOB/retry|skip`: the job must be one of this request's; then
/// back to the request's page, which says what was done (or a page that says why not).
pub(super) async fn act(
    state: &Arc<State>,
    key: RequestKey,
    job_id: i64,
    action: &str,
) -> Response<WebBody> {
    let RequestKey::Accepted(request_id) = key else {
        return web::not_found();
    };
    let retry = match action {
        "retry" => true,
        "skip" => false,
        _ => return web::not_found(),
    };
    let done = read_store(state, move |reader| {
        let jobs = reader.forward_jobs(request_id)?;
        if !jobs.iter().any(|job| job.job.id == job_id) {
            return Ok(None);
        }
        let report = if retry {
            reader.retry_forward_jobs(&[job_id])
        } else {
            reader.skip_forward_jobs(&[job_id])
        };
        Ok(Some(report))
    })
    .await;
    let key_text = key.to_text();
    match done {
        Ok(None) => web::not_found(),
        Ok(Some(Ok(report))) => {
            if !report.changed.is_empty() {
                // The forwarder of that target looks at once.
                (state.forward_changed)();
            }
            let what = match (report.changed.is_empty(), retry) {
                (true, _) => "unchanged",
                (false, true) => "retried",
                (false, false) => "skipped",
            };
            tracing::info!(request = %key_text, job = job_id, action, "inspector: forward job");
            see_other(&format!(
                "/requests/{key_text}?forwarding={what}&job={job_id}#forwarding"
            ))
        }
        Ok(Some(Err(refused))) => {
            let main = format!(
                "<p><a href=\"/requests/{key_text}\" data-back>Back to request {key_text}</a></p>\
                 <p role=\"alert\">{}</p>",
                escape(&format!("{refused:#}"))
            );
            web::html(
                StatusCode::CONFLICT,
                web::layout(
                    "Cannot change the job",
                    "<h1><a href=\"/\">Receiver inspector</a></h1>",
                    &main,
                ),
            )
        }
        Err(error) => store_failed(&error),
    }
}
