//! `receiver forward list|show|retry|skip`: the forwarding queues from the command line, on
//! either store, beside a running listener (SQLite) or from any host (PostgreSQL). A retry or
//! a skip is seen by the forwarder of that target within a second.
//!
//! The command line (`cli`) opens the store and maps errors to exit statuses: 1 for what
//! [`run`] returns (a job that does not exist or cannot be changed so; nothing is changed
//! then), 2 for a store that cannot be opened.

use clap::{Args, Subcommand};
use common::outln;
use common::text::{printable, printable_lines};
use serde_json::{json, Value};
use verify::timestamp::format_iso_millis;

use crate::forward::parse_forward_url;
use crate::store::forward::{AttemptRecord, ChangeReport, ForwardControl, JobFilter, JobSummary};
use crate::store::JobState;

/// The subcommands of `receiver forward`.
#[derive(Subcommand, Debug)]
pub(crate) enum ForwardCommand {
    /// List forward jobs, by target, in the order they go.
    List(ListArgs),
    /// Show one job with every attempt: time, status or error, latency, the answer's first
    /// KiB.
    Show {
        /// The job's id (from `list`).
        job: i64,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Put parked or skipped jobs back at the end of their target's queue (in their original
    /// order).
    Retry(RetryArgs),
    /// Move pending or parked jobs out of the way (state skipped): a job that holds its queue
    /// lets the next one go.
    Skip {
        /// The jobs' ids.
        #[arg(required = true)]
        jobs: Vec<i64>,
    },
}

#[derive(Args, Debug)]
pub(crate) struct ListArgs {
    /// Only jobs in this state.
    #[arg(long, value_parser = ["pending", "parked", "skipped", "forwarded"])]
    state: Option<String>,
    /// Only jobs of this target (its URL as --forward-to gives it).
    #[arg(long, value_name = "URL")]
    target: Option<String>,
    /// At most this many.
    #[arg(long)]
    limit: Option<u64>,
    /// A JSON array of jobs instead of lines.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub(crate) struct RetryArgs {
    /// The jobs' ids.
    #[arg(required_unless_present = "all_parked", conflicts_with = "all_parked")]
    jobs: Vec<i64>,
    /// Every parked job (of --target only, when given).
    #[arg(long)]
    all_parked: bool,
    /// With --all-parked: only this target's.
    #[arg(long, value_name = "URL", requires = "all_parked")]
    target: Option<String>,
}

/// Prints `text` and a line end on standard output (a closed pipe ends quietly).
fn print(text: &str) -> anyhow::Result<()> {
    outln!("{text}")
}

/// Runs a `receiver forward` subcommand on the store `control` opened.
///
/// # Errors
/// A job that does not exist or cannot be changed so (nothing is changed then), or the
/// store cannot be read or written.
pub(crate) fn run(command: ForwardCommand, control: &ForwardControl) -> anyhow::Result<()> {
    match command {
        ForwardCommand::List(args) => list(control, args),
        ForwardCommand::Show { job, json } => show(control, job, json),
        ForwardCommand::Retry(args) => {
            let report = if args.all_parked {
                let target = args.target.as_deref().map(target_name);
                control.retry_all_parked(target.as_deref())
            } else {
                control.retry(&args.jobs)
            }?;
            if report.changed.is_empty() && report.unchanged.is_empty() {
                return print("no parked job");
            }
            said(
                &report,
                "back at the end of the queue of",
                "pending already",
            )
        }
        ForwardCommand::Skip { jobs } => {
            let report = control.skip(&jobs)?;
            said(
                &report,
                "skipped; the queue goes on without it at",
                "skipped already",
            )
        }
    }
}

/// A `--target` as the store names targets: the URL as `--forward-to` parses it.
fn target_name(text: &str) -> String {
    parse_forward_url(text).map_or_else(|_| text.to_owned(), |url| url.to_string())
}

fn said(report: &ChangeReport, changed: &str, unchanged: &str) -> anyhow::Result<()> {
    let mut lines: Vec<String> = report
        .changed
        .iter()
        .map(|(job, target)| format!("job {job} {changed} {}", printable(target)))
        .collect();
    lines.extend(
        report
            .unchanged
            .iter()
            .map(|job| format!("job {job} was {unchanged}")),
    );
    print(&lines.join("\n"))
}

fn list(control: &ForwardControl, args: ListArgs) -> anyhow::Result<()> {
    let filter = JobFilter {
        state: args.state.as_deref().and_then(JobState::parse),
        target: args.target.as_deref().map(target_name),
        request_id: None,
        limit: args.limit,
    };
    let jobs = control.list(&filter)?;
    if args.json {
        let array: Vec<Value> = jobs.iter().map(job_json).collect();
        return print(&Value::Array(array).to_string());
    }
    if jobs.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = jobs.iter().map(job_line).collect();
    print(&lines.join("\n"))
}

fn show(control: &ForwardControl, job: i64, json: bool) -> anyhow::Result<()> {
    let Some(detail) = control.show(job)? else {
        anyhow::bail!(
            "no forward job {job} (`receiver forward list` shows the jobs and their ids)"
        );
    };
    if json {
        let mut value = job_json(&detail.job);
        value["attemptLog"] = Value::Array(detail.attempts.iter().map(attempt_json).collect());
        return print(&value.to_string());
    }
    let job = &detail.job;
    let time = |ms: Option<i64>| ms.map_or_else(|| "-".to_owned(), format_iso_millis);
    let mut lines = vec![
        format!("job {}  {}", job.id, job.state.as_str()),
        format!("  target      {}", shown_target(&job.target)),
        format!(
            "  request     {} (received {})",
            job.request_id,
            format_iso_millis(job.received_at_ms)
        ),
        format!("  events      {}", events_text(job)),
        format!("  queued      {}", format_iso_millis(job.queued_at_ms)),
        format!("  attempts    {}", job.attempts),
    ];
    if let Some(error) = &job.last_error {
        lines.push(format!("  last error  {}", printable(error)));
    }
    if job.state == JobState::Pending && job.next_attempt_at_ms.is_some() {
        lines.push(format!("  next try    {}", time(job.next_attempt_at_ms)));
    }
    if job.forwarded_at_ms.is_some() {
        lines.push(format!("  forwarded   {}", time(job.forwarded_at_ms)));
    }
    if !detail.attempts.is_empty() {
        lines.push("attempts:".to_owned());
    }
    for (number, attempt) in (1..).zip(&detail.attempts) {
        lines.push(format!(
            "  {number}  {}  {}  {:.1} ms  {}",
            format_iso_millis(attempt.at_ms),
            outcome_text(attempt),
            attempt.latency_us as f64 / 1000.0,
            attempt.outcome
        ));
        if !attempt.answer.is_empty() {
            lines.push(format!(
                "     answer: {}",
                printable_lines(&String::from_utf8_lossy(&attempt.answer))
            ));
        }
    }
    print(&lines.join("\n"))
}

/// A target for a person: a job queued before targets had names has none yet.
fn shown_target(target: &str) -> String {
    if target.is_empty() {
        "(none yet: queued before forwarding had several targets)".to_owned()
    } else {
        printable(target).into_owned()
    }
}

fn events_text(job: &JobSummary) -> String {
    let events: Vec<String> = job
        .events
        .iter()
        .map(|(name, id)| format!("{} {}", printable(name), printable(id)))
        .collect();
    events.join(", ")
}

/// The status and its reason, or why there was no answer.
fn outcome_text(attempt: &AttemptRecord) -> String {
    match (attempt.status, &attempt.error) {
        (Some(status), _) => {
            let reason = http::StatusCode::from_u16(status)
                .ok()
                .and_then(|code| code.canonical_reason())
                .unwrap_or_default();
            format!("{status} {reason}").trim_end().to_owned()
        }
        (None, Some(error)) => printable(error).into_owned(),
        (None, None) => "no answer".to_owned(),
    }
}

fn job_line(job: &JobSummary) -> String {
    let ids: Vec<String> = job
        .events
        .iter()
        .map(|(_, id)| printable(id).into_owned())
        .collect();
    let mut line = format!(
        "{}  {:<9}  {}  request {}  attempts {}  events {}",
        job.id,
        job.state.as_str(),
        shown_target(&job.target),
        job.request_id,
        job.attempts,
        ids.join(",")
    );
    match job.state {
        JobState::Forwarded => {
            if let Some(at) = job.forwarded_at_ms {
                line.push_str(&format!("  forwarded {}", format_iso_millis(at)));
            }
        }
        _ => {
            if let (JobState::Pending, Some(at)) = (job.state, job.next_attempt_at_ms) {
                line.push_str(&format!("  next try {}", format_iso_millis(at)));
            }
            if let Some(error) = &job.last_error {
                line.push_str(&format!("  last: {}", printable(error)));
            }
        }
    }
    line
}

fn job_json(job: &JobSummary) -> Value {
    let time = |ms: Option<i64>| ms.map(format_iso_millis);
    json!({
        "id": job.id,
        "target": (!job.target.is_empty()).then_some(&job.target),
        "state": job.state.as_str(),
        "attempts": job.attempts,
        "requestId": job.request_id,
        "receivedAt": format_iso_millis(job.received_at_ms),
        "eventIds": job.events.iter().map(|(_, id)| id).collect::<Vec<_>>(),
        "eventNames": job.events.iter().map(|(name, _)| name).collect::<Vec<_>>(),
        "queuedAt": format_iso_millis(job.queued_at_ms),
        "lastError": job.last_error,
        "lastAttemptAt": time(job.last_attempt_at_ms),
        "nextAttemptAt": time(job.next_attempt_at_ms.filter(|_| job.state == JobState::Pending)),
        "forwardedAt": time(job.forwarded_at_ms),
    })
}

fn attempt_json(attempt: &AttemptRecord) -> Value {
    json!({
        "at": format_iso_millis(attempt.at_ms),
        "status": attempt.status,
        "error": attempt.error,
        "latencyMs": attempt.latency_us as f64 / 1000.0,
        "answer": String::from_utf8_lossy(&attempt.answer),
        "outcome": attempt.outcome,
    })
}
