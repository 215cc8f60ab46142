//! What an Integration Admin does to webhooks, written once for its two views: the command
//! line (`sender webhooks …`, `trigger`, `deliveries`) and the admin pages with their JSON API
//! (`sender admin`). Each operation validates, reads and writes the state; the callers only
//! print or render the outcome, so a rule (a URL, an event name, Basic's password, the 5-webhook
//! limit, a webhook changed meanwhile) is checked in one place.
//!
//! The functions are generic over the store rather than taking `&dyn Registry`, so that a
//! `&dyn State` (registrations and queue) is accepted without trait upcasting, which needs a
//! newer Rust than the workspace's `rust-version`.
//!
//! Errors are [`UsageError`]s for input the user can fix (exit 2 on the command line, 422 on
//! the API) or [`Refusal`]s for the state refusing a change (no such webhook, the limit, a
//! webhook changed meanwhile).
//!
//! Layout: this module the operations on registrations; `validation.rs` the validation of
//! their changes ([`WebhookChanges`]); `problem.rs` what a mistake says and the field it is
//! about, in the command line's words and in plain ones; `test_event.rs` the
//! test event and the Target URL check of the pages; `trigger.rs` `trigger`; `recovery.rs`
//! what an admin does after an outage (resend, recover, retry now, what activation says).

mod problem;
mod recovery;
mod signature_file;
mod test_event;
mod trigger;
mod validation;

use std::fmt;
use std::time::Duration;

use serde_json::Value;

pub use problem::{field_error, one_a_field, Problem};
pub use recovery::{
    activation_note, expired, inactive_note, plural, recover, resend, retry_now, RecoverRequest,
};
pub use signature_file::{signature_file_for, signature_file_of};
pub use test_event::{check_target, send_test, TestOutcome, TestTarget};
pub use trigger::{trigger, TriggerRequest, Triggered, MAX_TRIGGER_COUNT, TRIGGER_CHUNK_EVENTS};
pub use validation::{target_url, target_url_checked, WebhookChanges};

use crate::registry::{Auth, Status, Webhook, WebhookId};
use crate::store::Registry;
use crate::UsageError;

/// The state refusing a change, for a reason the user can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No webhook has this id.
    NotFound(String),
    /// [`crate::registry::MAX_WEBHOOKS`] are registered.
    Limit(String),
    /// The webhook changed after it was read (or shown): writing would undo that change.
    Changed(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound(message) | Self::Limit(message) | Self::Changed(message) => {
                f.write_str(message)
            }
        }
    }
}

impl std::error::Error for Refusal {}

impl Refusal {
    /// Whether the command line treats it as bad usage (exit 2) rather than failed work.
    pub fn is_usage(&self) -> bool {
        !matches!(self, Self::Changed(_))
    }

    /// The refusal in an error chain, also when the store itself found the webhook changed
    /// between its read and its write (its error says "changed meanwhile").
    pub fn of(error: &anyhow::Error) -> Option<Refusal> {
        if let Some(refusal) = error
            .chain()
            .find_map(|cause| cause.downcast_ref::<Refusal>())
        {
            return Some(refusal.clone());
        }
        let text = format!("{error:#}");
        text.contains("meanwhile").then_some(Refusal::Changed(text))
    }
}

/// The webhook with `id`.
///
/// # Errors
/// [`Refusal::NotFound`], or storage errors.
pub fn find<R: Registry + ?Sized>(registry: &R, id: &str) -> anyhow::Result<Webhook> {
    registry.webhook(&WebhookId(id.to_owned()))?.ok_or_else(|| {
        Refusal::NotFound(format!(
            "no webhook {id:?}; `sender webhooks list` shows the ids"
        ))
        .into()
    })
}

/// The webhook with `id`, provided it is the version the caller read (`version` is its
/// `updated_at_ms`); `None` takes it as it is now, as a command line does in one go.
///
/// # Errors
/// [`Refusal::NotFound`], [`Refusal::Changed`], or storage errors.
fn find_version<R: Registry + ?Sized>(
    registry: &R,
    id: &str,
    version: Option<i64>,
) -> anyhow::Result<Webhook> {
    let webhook = find(registry, id)?;
    match version {
        Some(version) if version != webhook.updated_at_ms => Err(Refusal::Changed(format!(
            "webhook {id} was changed meanwhile (by `sender run`, another page or a command); nothing was written: look at it again and repeat the change"
        ))
        .into()),
        _ => Ok(webhook),
    }
}

/// Registers a webhook (`webhooks add`).
///
/// # Errors
/// A [`UsageError`] for a bad field, [`Refusal::Limit`] for a sixth webhook, storage errors.
pub fn add<R: Registry + ?Sized>(registry: &R, changes: WebhookChanges) -> anyhow::Result<Webhook> {
    let webhook = changes.create(verify::unix_now_ms())?;
    registry.insert_webhook(&webhook).map_err(|error| {
        // The store's only refusal of a valid webhook is the limit, checked in its transaction.
        match error.downcast::<UsageError>() {
            Ok(usage) => Refusal::Limit(usage.0).into(),
            Err(other) => other,
        }
    })?;
    Ok(webhook)
}

/// Changes a webhook (`webhooks edit`); fields not named keep their value.
///
/// # Errors
/// A [`UsageError`] for a bad field; [`Refusal`]s; storage errors.
pub fn edit<R: Registry + ?Sized>(
    registry: &R,
    id: &str,
    changes: WebhookChanges,
    version: Option<i64>,
) -> anyhow::Result<Webhook> {
    let mut webhook = find_version(registry, id, version)?;
    let read_at_ms = webhook.updated_at_ms;
    changes.apply(&mut webhook, next_version(read_at_ms))?;
    registry.update_webhook(&webhook, read_at_ms)?;
    Ok(webhook)
}

/// Retires (`Status::Retired`) or activates (`Status::Active`) a webhook; activation also
/// clears a disable at the end of retention.
///
/// # Errors
/// [`Refusal`]s; storage errors.
pub fn set_status<R: Registry + ?Sized>(
    registry: &R,
    id: &str,
    status: Status,
    version: Option<i64>,
) -> anyhow::Result<Webhook> {
    let mut webhook = find_version(registry, id, version)?;
    let read_at_ms = webhook.updated_at_ms;
    webhook.status = status;
    webhook.updated_at_ms = next_version(read_at_ms);
    registry.update_webhook(&webhook, read_at_ms)?;
    Ok(webhook)
}

/// Deletes a webhook with its queue; gives the number of undelivered requests dropped.
///
/// # Errors
/// [`Refusal::NotFound`]; storage errors.
pub fn delete<R: Registry + ?Sized>(registry: &R, id: &str) -> anyhow::Result<u64> {
    registry
        .delete_webhook(&WebhookId(id.to_owned()))?
        .ok_or_else(|| Refusal::NotFound(format!("no webhook {id:?}")).into())
}

/// The signature file of a webhook as JSON text: public keys only (what a receiver needs)
/// unless `signing` asks for the sender's own `whsk_` keys too.
///
/// # Errors
/// A [`UsageError`] for a webhook without signature authentication; [`Refusal`]s.
pub fn signature_file<R: Registry + ?Sized>(
    registry: &R,
    id: &str,
    signing: bool,
) -> anyhow::Result<String> {
    let webhook = find(registry, id)?;
    let Auth::Signature(file) = &webhook.auth else {
        return Err(UsageError(format!(
            "webhook {id} uses {} authentication; it has no signature file (edit it with --auth signature)",
            webhook.auth.method()
        ))
        .into());
    };
    Ok(if signing {
        file.to_json_pretty()
    } else {
        file.for_receiver()
            .map_err(|error| UsageError(format!("webhook {id}: {error}")))?
            .to_json_pretty()
    })
}

/// The latest end of a rotation's overlap a signature file can write: 9999-12-31T23:59:59Z.
const LAST_WRITABLE_SECS: i64 = 253_402_300_799;

/// Adds a fresh secret; the old ones keep signing for `overlap`. Gives the end of the overlap
/// (ISO-8601) and the webhook as stored.
///
/// # Errors
/// A [`UsageError`] for a webhook without a secret or an overlap past the year 9999;
/// [`Refusal`]s; storage errors.
pub fn rotate_secret<R: Registry + ?Sized>(
    registry: &R,
    id: &str,
    overlap: Duration,
    version: Option<i64>,
) -> anyhow::Result<(String, Webhook)> {
    let mut webhook = find_version(registry, id, version)?;
    let read_at_ms = webhook.updated_at_ms;
    let Auth::Signature(file) = &mut webhook.auth else {
        return Err(UsageError(format!(
            "webhook {id} uses {} authentication; only signature webhooks have a secret",
            webhook.auth.method()
        ))
        .into());
    };
    let now = verify::unix_now_ms();
    let overlap_secs = i64::try_from(overlap.as_secs()).unwrap_or(i64::MAX);
    // A later end would be written as 1970 and expire the old secret at once, the opposite of
    // the request.
    let ends_secs = now.div_euclid(1000).saturating_add(overlap_secs);
    if ends_secs > LAST_WRITABLE_SECS {
        return Err(UsageError(
            "--overlap reaches past the year 9999; give a shorter overlap (e.g. 7d)".into(),
        )
        .into());
    }
    let fresh = file
        .fresh_key()
        .map_err(|error| UsageError(format!("webhook {id}: {error}")))?;
    file.rotate_key(fresh, now.div_euclid(1000), overlap_secs);
    webhook.updated_at_ms = next_version(read_at_ms).max(now);
    registry.update_webhook(&webhook, read_at_ms)?;
    Ok((verify::timestamp::format_iso_seconds(ends_secs), webhook))
}

/// A new `updated_at_ms` after `read_at_ms`: the clock, but always later than what was read,
/// so a change within the same millisecond still counts as a new version.
fn next_version(read_at_ms: i64) -> i64 {
    verify::unix_now_ms().max(read_at_ms.saturating_add(1))
}

/// Checks a `deliveries list --status` value.
///
/// # Errors
/// A [`UsageError`] naming the three states.
pub fn check_delivery_state(wanted: Option<&str>) -> Result<(), UsageError> {
    match wanted {
        Some(wanted) if !["pending", "delivered", "expired"].contains(&wanted) => Err(UsageError(
            format!("--status {wanted:?}: use pending, delivered or expired"),
        )),
        _ => Ok(()),
    }
}

/// A webhook's record with its version (`updated_at_ms`), which a change may name to be
/// refused when the webhook changed since it was read.
pub fn record_with_version(webhook: &Webhook) -> Value {
    let mut record = webhook.to_json();
    if let Value::Object(map) = &mut record {
        map.insert("version".into(), Value::from(webhook.updated_at_ms));
    }
    record
}
