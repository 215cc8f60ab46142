//! `sender trigger`: catalogue events made, queued for every active subscribed webhook, and
//! (unless `--enqueue-only`) delivered until the queues are empty or `--wait` passes.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use common::cli::event_names;
use common::logging::tell;
use common::outln;
use common::parse::duration as parse_duration;
use serde_json::json;
use verify::TimeStyle;

use super::args::DeliveryArgs;
use super::output::print_json;
use crate::delivery::{Engine, Mode};
use crate::generate::DEFAULT_ACCOUNT_ID;
use crate::manage::{TriggerRequest, Triggered};
use crate::registry::WebhookId;
use crate::store::State;
use crate::{format_duration, UsageError};

/// Where a command that needs an event name points the user for the list.
const CATALOGUE_HINT: &str = "`sender events` lists every event name with its kind and data fields";

#[derive(Debug, Clone, Copy, ValueEnum)]
enum TimeStyleArg {
    /// `2024-11-08T03:49:52.000Z` (today's form).
    Iso,
    /// Epoch milliseconds (dates in `data` in epoch seconds).
    EpochMs,
    /// Epoch seconds.
    EpochS,
}

#[derive(Debug, Args)]
#[command(after_help = CATALOGUE_HINT)]
pub(super) struct TriggerArgs {
    /// A catalogue event name, such as COURSE_ENROLLMENT or LEARNER_PROGRESS (`sender events`
    /// lists them all).
    #[arg(value_parser = event_names(&[]), hide_possible_values = true)]
    event_name: String,
    // The help names the bound, so it is built here rather than written as a doc comment
    // (clap would show `help` over a doc comment anyway).
    #[arg(long, default_value_t = 1,
          help = format!("How many events: 1 to {} per trigger", crate::manage::MAX_TRIGGER_COUNT))]
    count: usize,
    /// accountId of the envelope.
    #[arg(long, default_value_t = DEFAULT_ACCOUNT_ID)]
    account: i64,
    /// Set a data field: FIELD=VALUE (VALUE read as JSON when it is JSON). Repeatable.
    #[arg(long = "set")]
    set: Vec<String>,
    /// A JSON object merged into every event's data.
    #[arg(long)]
    data: Option<String>,
    /// Generator seed (random when absent); the same seed makes the same events.
    #[arg(long)]
    seed: Option<u64>,
    /// How times are written.
    #[arg(long, value_enum, default_value = "iso")]
    time_style: TimeStyleArg,
    /// Only enqueue: leave delivery to `sender run`.
    #[arg(long)]
    enqueue_only: bool,
    /// How long trigger keeps delivering (and retrying) before it leaves the rest to
    /// `sender run` and exits 1.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    wait: Duration,
    #[command(flatten)]
    delivery: DeliveryArgs,
}

/// `trigger EVENT_NAME`: exit 1 when requests are left queued after `--wait`, or a webhook
/// was disabled at the end of retention.
pub(super) async fn trigger(
    state: Arc<dyn State>,
    args: TriggerArgs,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let config = args.delivery.config()?;
    let request = TriggerRequest {
        event_name: args.event_name.clone(),
        count: args.count,
        account_id: args.account,
        set: args.set.clone(),
        data: args.data.clone(),
        seed: args.seed.unwrap_or_else(|| fastrand::u64(..)),
        time_style: match args.time_style {
            TimeStyleArg::Iso => TimeStyle::Iso,
            TimeStyleArg::EpochMs => TimeStyle::EpochMillis,
            TimeStyleArg::EpochS => TimeStyle::EpochSeconds,
        },
    };
    // Checked before the blocking task, so a bad request is a usage error at once.
    request.recipe()?;
    let Triggered {
        kind,
        event_ids,
        targets,
    } = {
        let state = state.clone();
        tokio::task::spawn_blocking(move || crate::manage::trigger(state.as_ref(), &request))
            .await
            .context("the enqueue task panicked")??
    };
    if targets.is_empty() {
        tell(
            "WARN",
            format_args!(
                "warning: no active webhook subscribes to {}; nothing was queued",
                kind.name
            ),
        );
    } else if !json {
        tell(
            "INFO",
            format_args!(
                "queued {} {} event(s) for {} webhook(s): {}",
                event_ids.len(),
                kind.name,
                targets.len(),
                targets
                    .iter()
                    .map(WebhookId::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }
    let mut report = crate::delivery::RunReport::default();
    if !args.enqueue_only && !targets.is_empty() {
        let engine = Engine::http(state.clone(), config).with_role("trigger");
        engine
            .check_tls()
            .map_err(|error| UsageError(format!("{error:#}")))?;
        let wait = args.wait;
        let shutdown = common::signal::shutdown_signal()?;
        report = engine
            .run(Mode::Drain(targets.clone()), async move {
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = shutdown => {}
                }
            })
            .await?;
    }
    let mut per_webhook = Vec::new();
    let mut left = 0u64;
    for id in &targets {
        let counts = state.counts(Some(id))?;
        let handed = report
            .handed_over
            .iter()
            .find(|(w, _)| w == id)
            .map(|(_, o)| o.clone());
        if handed.is_none() && !args.enqueue_only {
            left += counts.pending + counts.staged;
        }
        per_webhook.push(json!({
            "webhookId": id.as_str(), "pending": counts.pending, "staged": counts.staged,
            "delivered": counts.delivered, "expired": counts.expired,
            "handedOverTo": handed, "disabled": report.disabled.contains(id),
        }));
    }
    if json {
        print_json(&json!({
            "eventName": kind.name, "eventIds": event_ids, "webhooks": per_webhook,
            "enqueueOnly": args.enqueue_only,
        }))?;
    } else {
        for (id, owner) in &report.handed_over {
            if owner.starts_with("trigger/") {
                outln!(
                    "{id}: queued; another `sender trigger` ({owner}) is delivering to this webhook and takes it along; what that one cannot deliver stays queued for `sender run`"
                )?;
            } else {
                outln!("{id}: queued; `sender run` ({owner}) delivers it")?;
            }
        }
        for id in &report.disabled {
            outln!("{id}: disabled at the end of retention; its pending events expired")?;
        }
        if args.enqueue_only {
            outln!("queued; `sender run` delivers them")?;
        } else if left > 0 {
            outln!(
                "{left} request(s) still queued after --wait {}; `sender run` keeps delivering them",
                format_duration(args.wait)
            )?;
        } else if !targets.is_empty() {
            outln!("delivered")?;
        }
    }
    Ok(if left > 0 || !report.disabled.is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
