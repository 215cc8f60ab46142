//! What an admin does after an outage, written once for the command line (`deliveries
//! resend|recover`, `webhooks activate`) and the admin pages with their API (**Resend**,
//! **Recover**, **Retry now**): queue requests again, and say what an activated webhook left
//! behind.

use super::{find, Refusal};
use crate::registry::{Status, Webhook};
use crate::store::{
    DeliverySummary, RecoverFilter, RecoverStatus, Recovered, Recovery, Registry, Requeued,
};
use crate::UsageError;

/// `deliveries resend ID`: the request `id` (`msg_…` or a row number) queued again for its
/// webhook, whatever its state: same `webhook-id`, body and `eventId`s, signed afresh when it
/// goes, behind what the webhook's queue holds.
///
/// # Errors
/// [`Refusal::NotFound`] for an unknown id; storage errors.
pub fn resend<S: Recovery + ?Sized>(state: &S, id: &str) -> anyhow::Result<Requeued> {
    state.resend(id, verify::unix_now_ms())?.ok_or_else(|| {
        Refusal::NotFound(format!(
            "no delivery {id:?}; `sender deliveries list` shows the ids"
        ))
        .into()
    })
}

/// What `deliveries recover` asks for, as given (`--since` / `--until` already read).
#[derive(Debug, Clone)]
pub struct RecoverRequest {
    /// The webhook's id.
    pub webhook_id: String,
    /// `--status`, `expired` when not given.
    pub status: Option<String>,
    /// `--since`, epoch ms.
    pub since_ms: Option<i64>,
    /// `--until`, epoch ms.
    pub until_ms: Option<i64>,
    /// `--dry-run`: count only.
    pub dry_run: bool,
}

/// `deliveries recover`: every matching message of the webhook queued again, in the order
/// they were first queued, one request each (or, in a dry run, counted). Gives the webhook and
/// what was (or would be) queued.
///
/// # Errors
/// A [`UsageError`] for a bad `--status` or a window that ends before it starts;
/// [`Refusal::NotFound`] for an unknown webhook; storage errors.
pub fn recover<S: Registry + Recovery + ?Sized>(
    state: &S,
    request: &RecoverRequest,
) -> anyhow::Result<(Webhook, RecoverStatus, Recovered)> {
    let status = match request.status.as_deref().map(str::trim) {
        None | Some("") => RecoverStatus::Expired,
        Some(text) => RecoverStatus::parse(text).map_err(UsageError)?,
    };
    if let (Some(since), Some(until)) = (request.since_ms, request.until_ms) {
        if since >= until {
            return Err(UsageError(
                "--since must be before --until (the window is [since, until))".into(),
            )
            .into());
        }
    }
    let webhook = find(state, &request.webhook_id)?;
    let filter = RecoverFilter {
        webhook_id: webhook.id.clone(),
        status,
        since_ms: request.since_ms,
        until_ms: request.until_ms,
    };
    let recovered = state.recover(&filter, request.dry_run, verify::unix_now_ms())?;
    Ok((webhook, status, recovered))
}

/// **Retry now**: the head of the webhook's queue due now; `None` when nothing is pending.
///
/// # Errors
/// [`Refusal::NotFound`] for an unknown webhook; storage errors.
pub fn retry_now<S: Registry + Recovery + ?Sized>(
    state: &S,
    webhook_id: &str,
) -> anyhow::Result<Option<DeliverySummary>> {
    let webhook = find(state, webhook_id)?;
    state.retry_head(&webhook.id, verify::unix_now_ms())
}

/// The webhook's expired messages (those `recover` would queue by default).
///
/// # Errors
/// Storage errors.
pub fn expired<S: Recovery + ?Sized>(state: &S, webhook: &Webhook) -> anyhow::Result<Recovered> {
    let filter = RecoverFilter {
        webhook_id: webhook.id.clone(),
        status: RecoverStatus::Expired,
        since_ms: None,
        until_ms: None,
    };
    state.recover(&filter, true, verify::unix_now_ms())
}

/// What `webhooks activate` adds when the webhook has expired requests (it had been disabled
/// at the end of retention): how many, and the commands that show and recover them. Activating
/// does not send them by itself: the receiving team may not want a week of old events at once.
pub fn activation_note(webhook: &Webhook, expired: &Recovered) -> Option<String> {
    if expired.requests == 0 {
        return None;
    }
    let id = &webhook.id;
    Some(format!(
        "{id} has {requests} expired request{s} ({events} event{es}) that were given up at the end of retention; activating does not send them again.\n  \
         sender deliveries recover --webhook {id} --dry-run   lists them\n  \
         sender deliveries recover --webhook {id}             queues them again, in their original order",
        requests = expired.requests,
        s = plural(expired.requests),
        events = expired.events,
        es = plural(expired.events),
    ))
}

/// What to say after queuing for a webhook that is not active: nothing goes until it is.
pub fn inactive_note(webhook: &Webhook) -> Option<String> {
    match &webhook.status {
        Status::Active => None,
        Status::Retired => Some(format!(
            "{} is inactive: nothing is sent until `sender webhooks activate {}`",
            webhook.id, webhook.id
        )),
        Status::Disabled(_) => Some(format!(
            "{} is disabled (end of retention): nothing is sent until `sender webhooks activate {}`",
            webhook.id, webhook.id
        )),
    }
}

/// `s` for a count other than one.
pub fn plural(count: u64) -> &'static str {
    if count == 1 {
        ""
    } else {
        "s"
    }
}
