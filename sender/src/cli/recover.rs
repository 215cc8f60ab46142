//! `sender deliveries resend|recover`: requests queued again after an outage (SPEC section 9).

use clap::Args;
use common::outln;
use serde_json::json;

use super::output::print_json;
use crate::manage::{inactive_note, plural, RecoverRequest};
use crate::store::State;

#[derive(Debug, Args)]
pub(super) struct RecoverArgs {
    /// The webhook whose requests go again.
    #[arg(long)]
    webhook: String,
    /// Only requests first queued at or after this time (2026-11-27T10:00:00Z, 2026-11-27, or
    /// epoch ms).
    #[arg(long, value_parser = common::parse::instant_ms)]
    since: Option<i64>,
    /// Only requests first queued before this time.
    #[arg(long, value_parser = common::parse::instant_ms)]
    until: Option<i64>,
    /// Which requests, by the state of their newest copy: expired (given up at the end of
    /// retention), failed (not delivered, last attempt failed), delivered, or all.
    #[arg(long, default_value = "expired")]
    status: String,
    /// Only say how many would go; queue nothing.
    #[arg(long)]
    dry_run: bool,
}

/// `deliveries resend ID`.
pub(super) fn resend(state: &dyn State, id: &str, json: bool) -> anyhow::Result<()> {
    let queued = crate::manage::resend(state, id)?;
    if json {
        return print_json(&json!({
            "id": queued.msg_id,
            "row": queued.row,
            "webhookId": queued.webhook_id.as_str(),
            "events": queued.events,
            "behind": queued.behind,
        }));
    }
    outln!(
        "queued {} again for {} ({} event{}, behind {} pending request{}): same webhook-id and body, a fresh timestamp and signature when it goes",
        queued.msg_id,
        queued.webhook_id,
        queued.events,
        plural(queued.events),
        queued.behind,
        plural(queued.behind)
    )?;
    if let Some(webhook) = state.webhook(&queued.webhook_id)? {
        if let Some(note) = inactive_note(&webhook) {
            outln!("{note}")?;
        }
    }
    Ok(())
}

/// `deliveries recover --webhook ID …`.
pub(super) fn recover(state: &dyn State, args: &RecoverArgs, json: bool) -> anyhow::Result<()> {
    let request = RecoverRequest {
        webhook_id: args.webhook.clone(),
        status: Some(args.status.clone()),
        since_ms: args.since,
        until_ms: args.until,
        dry_run: args.dry_run,
    };
    let (webhook, status, recovered) = crate::manage::recover(state, &request)?;
    if json {
        return print_json(&json!({
            "webhookId": webhook.id.as_str(),
            "status": status.as_str(),
            "dryRun": args.dry_run,
            "requests": recovered.requests,
            "events": recovered.events,
            "ids": recovered.ids,
        }));
    }
    let what = format!(
        "{} {} request{} ({} event{}) of {}",
        recovered.requests,
        status.as_str(),
        plural(recovered.requests),
        recovered.events,
        plural(recovered.events),
        webhook.id
    );
    if args.dry_run {
        outln!("would queue {what} again, in their original order (nothing queued: --dry-run)")?;
        for id in &recovered.ids {
            outln!("  {id}")?;
        }
    } else {
        outln!("queued {what} again, in their original order, each with its webhook-id")?;
        if recovered.requests > 0 {
            if let Some(note) = inactive_note(&webhook) {
                outln!("{note}")?;
            }
        }
    }
    Ok(())
}
