//! `sender deliveries list|show`: delivery requests and their attempts (`resend` and
//! `recover` are in `recover.rs`).

use std::process::ExitCode;

use clap::Subcommand;
use common::outln;
use common::text::{printable, printable_lines};

use super::output::print_json;
use crate::registry::WebhookId;
use crate::store::{DeliveryFilter, State};
use crate::UsageError;

#[derive(Debug, Subcommand)]
pub(super) enum DeliveriesCommand {
    /// Requests, newest first.
    List {
        /// Only this webhook.
        #[arg(long)]
        webhook: Option<String>,
        /// Only requests in this state: pending, delivered or expired.
        #[arg(long)]
        status: Option<String>,
        /// Most rows.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// One request (`msg_…` id) with its body and every attempt.
    Show {
        /// The `msg_…` id (the `webhook-id` header).
        id: String,
    },
    /// Queue one request again, whatever its state: same webhook-id, body and eventIds, a
    /// fresh timestamp and signature, behind what the webhook's queue holds.
    Resend {
        /// The `msg_…` id (or a row number from `deliveries list --json`).
        id: String,
    },
    /// Queue a webhook's requests again (those an outage left expired, by default), in their
    /// original order, one each; says how many.
    Recover(super::recover::RecoverArgs),
}

/// `deliveries list` and `deliveries show`.
pub(super) fn deliveries(
    state: &dyn State,
    command: DeliveriesCommand,
    json: bool,
) -> anyhow::Result<ExitCode> {
    match command {
        DeliveriesCommand::List {
            webhook,
            status: wanted,
            limit,
        } => {
            crate::manage::check_delivery_state(wanted.as_deref())?;
            let rows = state.deliveries(&DeliveryFilter {
                webhook_id: webhook.map(WebhookId),
                state: wanted,
                limit,
            })?;
            if json {
                print_json(&serde_json::to_value(&rows)?)?;
            } else {
                outln!(
                    "{:<28} {:<20} {:<9} {:>8} {:>6} {:<24} EVENTS",
                    "ID",
                    "WEBHOOK",
                    "STATE",
                    "ATTEMPTS",
                    "LAST",
                    "CREATED"
                )?;
                for row in rows {
                    let last = row
                        .last_status
                        .map(|s| s.to_string())
                        .or_else(|| row.last_error.as_ref().map(|_| "error".to_owned()))
                        .unwrap_or_else(|| "-".to_owned());
                    outln!(
                        "{:<28} {:<20} {:<9} {:>8} {:>6} {:<24} {} x{}",
                        row.id,
                        row.webhook_id,
                        row.state,
                        row.attempts,
                        last,
                        row.created_at,
                        printable(&row.event_names),
                        row.event_count
                    )?;
                }
            }
        }
        DeliveriesCommand::Resend { id } => super::recover::resend(state, &id, json)?,
        DeliveriesCommand::Recover(args) => super::recover::recover(state, &args, json)?,
        DeliveriesCommand::Show { id } => {
            let detail = state.delivery(&id)?.ok_or_else(|| {
                UsageError(format!(
                    "no delivery {id:?}; `sender deliveries list` shows the ids"
                ))
            })?;
            if json {
                print_json(&serde_json::to_value(&detail)?)?;
            } else {
                // The target's answer, its errors and the events' fields came from elsewhere:
                // their controls and invisible characters are shown escaped, so an answer
                // cannot move the cursor, retitle the terminal or reorder the line.
                let s = &detail.summary;
                outln!("id          {}", s.id)?;
                outln!("webhook     {}", s.webhook_id)?;
                outln!("state       {}", s.state)?;
                outln!("account     {}", s.account_id)?;
                outln!(
                    "events      {} x{}",
                    printable(&s.event_names),
                    s.event_count
                )?;
                outln!("created     {}", s.created_at)?;
                if let Some(next) = &s.next_attempt_at {
                    outln!("next try    {next}")?;
                }
                outln!("event ids   {}", printable(&detail.event_ids.join(", ")))?;
                outln!("attempts:")?;
                for attempt in &detail.attempt_log {
                    let outcome = attempt.outcome();
                    outln!(
                        "  #{:<3} {}  {:<40} {:>6} ms  {}",
                        attempt.attempt,
                        attempt.at,
                        printable(&outcome),
                        attempt.latency_ms,
                        printable(attempt.response_head.as_deref().unwrap_or(""))
                    )?;
                }
                outln!("body:")?;
                outln!("{}", printable_lines(&detail.body))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
