//! The rows both stores keep alike: a webhook's columns (its secrets sealed or opened on the
//! way), the passes over its secret columns, the refusals of a registration, and a request's
//! outcome columns and listing row.

use common::target_guard::TargetPolicy;
use common::target_url::TargetUrl;
use verify::timestamp::format_iso_millis;

use super::{AttemptRecord, DeliverySummary, RequestState};
use crate::registry::{Auth, BasicAuth, EventSelection, Status, Webhook, WebhookId, MAX_WEBHOOKS};
use crate::sealing::{self, Binding, Field, SecretColumns, SecretKey};
use crate::UsageError;

/// What a store's pass over its secret columns (see [`crate::sealing`]) writes: the columns
/// that change, and how many webhooks hold secrets.
pub(crate) struct SealingPass {
    /// The rows to write back.
    pub changed: Vec<SecretColumns>,
    /// Webhooks with a secret, changed or not.
    pub with_secrets: u64,
    /// Whether the changed rows get a new version (`updated_at_ms` moves on): a rotation
    /// does, so that a change read before it is refused as made meanwhile rather than
    /// written under the old key; sealing at an opening does not (it changes how a secret is
    /// kept, not the webhook, and an edit read before it must still apply).
    pub new_version: bool,
}

impl SealingPass {
    /// At an opening with `key`, in a state whose key record was `recorded`: the secrets of
    /// `rows` brought up to this layout under `key` (see [`SecretColumns::bring_up`]).
    ///
    /// # Errors
    /// A value of the first layout does not open; sealing fails (the random source).
    pub fn bring_up(
        rows: &[SecretColumns],
        key: &SecretKey,
        recorded: Option<&str>,
    ) -> anyhow::Result<Self> {
        let mut changed = Vec::new();
        for row in rows {
            changed.extend(row.bring_up(key, recorded)?);
        }
        Ok(Self::of(rows, changed, false))
    }

    /// At a rotation: every secret of `rows` sealed again, from `from` to `to`; `keyed`:
    /// whether the state had a key record (else every value is plain text).
    ///
    /// # Errors
    /// A secret does not open with `from`; sealing fails.
    pub fn reseal(
        rows: &[SecretColumns],
        from: Option<&SecretKey>,
        keyed: bool,
        to: &SecretKey,
    ) -> anyhow::Result<Self> {
        let changed = rows
            .iter()
            .filter(|row| row.holds_secrets())
            .map(|row| row.reseal(from, keyed, to))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self::of(rows, changed, true))
    }

    fn of(rows: &[SecretColumns], changed: Vec<SecretColumns>, new_version: bool) -> Self {
        let with_secrets = rows.iter().filter(|row| row.holds_secrets()).count();
        Self {
            changed,
            with_secrets: u64::try_from(with_secrets).unwrap_or(u64::MAX),
            new_version,
        }
    }

    /// Says in the log how many webhooks' secrets were sealed at opening, if any.
    pub fn log_sealed(&self, key: &SecretKey) {
        if !self.changed.is_empty() {
            tracing::info!(
                webhooks = self.changed.len(),
                key = %key.source().display(),
                "sealed the secrets stored in plain text (or in the first sealed layout) under \
                 --secret-key-file"
            );
        }
    }
}

/// A webhook as its columns hold it (the same columns in both stores).
#[derive(Clone)]
pub(crate) struct WebhookRow {
    pub id: String,
    pub name: String,
    pub description: String,
    pub url: String,
    pub events: String,
    pub auth: String,
    pub basic_username: Option<String>,
    pub basic_password: Option<String>,
    pub signature_file: Option<String>,
    pub status: String,
    pub disabled_reason: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// Deliveries and tests connect to public addresses only: the Target URL was given
    /// through pages reachable from other hosts (see `registry::Webhook::target_policy`).
    pub public_targets_only: bool,
}

impl WebhookRow {
    /// The columns of `webhook`, its secrets sealed under `key` when there is one.
    ///
    /// # Errors
    /// Sealing fails (the system's random source).
    pub fn of(webhook: &Webhook, key: Option<&SecretKey>) -> anyhow::Result<Self> {
        let id = webhook.id.as_str();
        let url = webhook.url.as_str();
        // Sealed again at every write, bound to the URL and username written with it.
        let (basic_username, basic_password, signature_file) = match &webhook.auth {
            Auth::None => (None, None, None),
            Auth::Basic(basic) => (
                Some(basic.username.clone()),
                Some(sealing::write(
                    basic.password.clone(),
                    key,
                    &binding(id, Field::BasicPassword, url, Some(&basic.username)),
                )?),
                None,
            ),
            Auth::Signature(file) => (
                None,
                None,
                Some(sealing::write(
                    file.to_json_pretty(),
                    key,
                    &binding(id, Field::SignatureFile, url, None),
                )?),
            ),
        };
        Ok(Self {
            id: id.to_owned(),
            name: webhook.name.clone(),
            description: webhook.description.clone(),
            url: webhook.url.as_str().to_owned(),
            events: webhook.events.to_text(),
            auth: webhook.auth.method().to_owned(),
            basic_username,
            basic_password,
            signature_file,
            status: webhook.status.as_str().to_owned(),
            disabled_reason: match &webhook.status {
                Status::Disabled(reason) => Some(reason.clone()),
                _ => None,
            },
            created_at_ms: webhook.created_at_ms,
            updated_at_ms: webhook.updated_at_ms,
            public_targets_only: webhook.target_policy == TargetPolicy::PublicOnly,
        })
    }

    /// The webhook these columns describe, its secrets opened with `key` when sealed; `keyed`:
    /// whether the state has a key record (see [`crate::sealing`]: without one, nothing is
    /// sealed, whatever it looks like).
    ///
    /// # Errors
    /// A stored value this build cannot read (an unknown auth method, a broken signature
    /// file), or sealed secrets without the key or under another key (a [`UsageError`]).
    pub fn into_webhook(self, key: Option<&SecretKey>, keyed: bool) -> anyhow::Result<Webhook> {
        let id = self.id;
        let events = if self.events == "all" {
            EventSelection::All
        } else {
            EventSelection::Names(self.events.split(',').map(str::to_owned).collect())
        };
        let auth = match self.auth.as_str() {
            "none" => Auth::None,
            "basic" => {
                let username = self.basic_username.unwrap_or_default();
                let password = sealing::read(
                    self.basic_password.unwrap_or_default(),
                    key,
                    keyed,
                    &binding(&id, Field::BasicPassword, &self.url, Some(&username)),
                )?;
                Auth::Basic(BasicAuth { username, password })
            }
            "signature" => {
                let text = sealing::read(
                    self.signature_file.unwrap_or_default(),
                    key,
                    keyed,
                    &binding(&id, Field::SignatureFile, &self.url, None),
                )?;
                Auth::Signature(
                    verify::SignatureFile::from_json(text.as_bytes())
                        .map_err(|e| anyhow::anyhow!("webhook {id}: stored signature file: {e}"))?,
                )
            }
            other => anyhow::bail!("webhook {id}: unknown auth method {other:?}"),
        };
        let status = match self.status.as_str() {
            "active" => Status::Active,
            "retired" => Status::Retired,
            _ => Status::Disabled(self.disabled_reason.unwrap_or_default()),
        };
        let url = TargetUrl::parse(&self.url)
            .map_err(|error| anyhow::anyhow!("webhook {id}: stored Target URL: {error}"))?;
        Ok(Webhook {
            id: WebhookId(id),
            name: self.name,
            description: self.description,
            url,
            events,
            auth,
            status,
            created_at_ms: self.created_at_ms,
            updated_at_ms: self.updated_at_ms,
            target_policy: if self.public_targets_only {
                TargetPolicy::PublicOnly
            } else {
                TargetPolicy::AnyAddress
            },
        })
    }
}

/// Where a webhook's secret in `field` belongs (see [`sealing::Binding`]).
fn binding<'a>(
    webhook_id: &'a str,
    field: Field,
    url: &'a str,
    username: Option<&'a str>,
) -> Binding<'a> {
    Binding {
        webhook_id,
        field,
        url,
        username: username.unwrap_or_default(),
    }
}

/// The refusal of a sixth webhook.
pub(crate) fn too_many_webhooks(count: i64) -> anyhow::Error {
    UsageError(format!(
        "{count} webhooks are registered, the most allowed is {MAX_WEBHOOKS}; delete or edit one (`sender webhooks list`)"
    ))
    .into()
}

/// Whether `count` registered webhooks leave room for one more.
pub(crate) fn room_for_another(count: i64) -> bool {
    usize::try_from(count).unwrap_or(usize::MAX) < MAX_WEBHOOKS
}

/// The refusal of an update whose read went stale: `exists` tells a change from a deletion.
pub(crate) fn changed_meanwhile(id: &WebhookId, exists: bool) -> anyhow::Error {
    if exists {
        anyhow::anyhow!(
            "webhook {id} was changed meanwhile (by `sender run` or another command); \
             nothing was written: look at it with `sender webhooks show {id}` and run the \
             command again"
        )
    } else {
        anyhow::anyhow!("webhook {id} was deleted meanwhile")
    }
}

/// The columns an attempt's outcome sets on its request: state, next attempt, finished at.
pub(crate) fn outcome_columns(record: &AttemptRecord) -> (&'static str, i64, Option<i64>) {
    let finished = record.started_at_ms.saturating_add(record.latency_ms);
    match record.next {
        RequestState::Delivered => ("delivered", finished, Some(finished)),
        RequestState::RetryAt(at) => ("pending", at, None),
        RequestState::Expired => ("expired", finished, Some(finished)),
    }
}

/// Why a webhook was disabled when `record`'s request ran out of retention.
pub(crate) fn retention_reason(record: &AttemptRecord, created_at_ms: i64) -> String {
    format!(
        "retention ended: request {} (queued {}) undelivered after {} attempts",
        record.request_id,
        format_iso_millis(created_at_ms),
        record.attempt
    )
}

/// A request row as `deliveries list` reads it.
pub(crate) struct RequestRow {
    pub row: i64,
    pub resend_of: Option<i64>,
    pub msg_id: String,
    pub webhook_id: String,
    pub account_id: i64,
    pub event_names: String,
    pub event_count: i64,
    pub state: String,
    pub attempts: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_at_ms: i64,
    pub next_attempt_at_ms: i64,
}

impl RequestRow {
    /// The printed summary.
    pub fn into_summary(self) -> DeliverySummary {
        DeliverySummary {
            id: self.msg_id,
            row: self.row,
            resend_of: self.resend_of,
            webhook_id: self.webhook_id,
            account_id: self.account_id,
            event_names: self.event_names,
            event_count: self.event_count,
            attempts: self.attempts,
            last_status: self.last_status,
            last_error: self.last_error,
            created_at: format_iso_millis(self.created_at_ms),
            next_attempt_at: (self.state == "pending")
                .then(|| format_iso_millis(self.next_attempt_at_ms)),
            state: self.state,
        }
    }
}
