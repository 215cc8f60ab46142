//! The rows both stores keep alike: a webhook's columns (its secrets sealed or opened on the
//! way), the pass that seals them, the refusals of a registration, and a request's outcome
//! columns and listing row.

use common::target_url::TargetUrl;
use verify::timestamp::format_iso_millis;

use super::{AttemptRecord, DeliverySummary, RequestState};
use crate::registry::{Auth, BasicAuth, EventSelection, Status, Webhook, WebhookId, MAX_WEBHOOKS};
use crate::sealing::{self, Field, SecretColumns, SecretKey};
use crate::UsageError;

/// What a store's pass over its secret columns (see [`crate::sealing`]) writes: the columns
/// that change, and how many webhooks hold secrets.
pub(crate) struct SealingPass {
    /// The rows to write back.
    pub changed: Vec<SecretColumns>,
    /// Webhooks with a secret, changed or not.
    pub with_secrets: u64,
}

impl SealingPass {
    /// At opening: the plain secrets of `rows` sealed under `key` (nothing without a key).
    ///
    /// # Errors
    /// Sealing fails (the system's random source).
    pub fn seal_plain(rows: &[SecretColumns], key: Option<&SecretKey>) -> anyhow::Result<Self> {
        let mut changed = Vec::new();
        if let Some(key) = key {
            for row in rows {
                changed.extend(row.seal_plain(key)?);
            }
        }
        Ok(Self::of(rows, changed))
    }

    /// At a rotation: every secret of `rows` sealed again, from `from` to `to`.
    ///
    /// # Errors
    /// A secret does not open with `from`; sealing fails.
    pub fn reseal(
        rows: &[SecretColumns],
        from: Option<&SecretKey>,
        to: &SecretKey,
    ) -> anyhow::Result<Self> {
        let changed = rows
            .iter()
            .filter(|row| row.holds_secrets())
            .map(|row| row.reseal(from, to))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self::of(rows, changed))
    }

    fn of(rows: &[SecretColumns], changed: Vec<SecretColumns>) -> Self {
        let with_secrets = rows.iter().filter(|row| row.holds_secrets()).count();
        Self {
            changed,
            with_secrets: u64::try_from(with_secrets).unwrap_or(u64::MAX),
        }
    }

    /// Says in the log how many plain secrets were sealed at opening, if any.
    pub fn log_sealed(&self, key: Option<&SecretKey>) {
        if let (Some(key), false) = (key, self.changed.is_empty()) {
            tracing::info!(
                webhooks = self.changed.len(),
                key = %key.source().display(),
                "sealed the secrets stored in plain text under --secret-key-file"
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
}

impl WebhookRow {
    /// The columns of `webhook`, its secrets sealed under `key` when there is one.
    ///
    /// # Errors
    /// Sealing fails (the system's random source).
    pub fn of(webhook: &Webhook, key: Option<&SecretKey>) -> anyhow::Result<Self> {
        let id = webhook.id.as_str();
        let (basic_username, basic_password, signature_file) = match &webhook.auth {
            Auth::None => (None, None, None),
            Auth::Basic(basic) => (
                Some(basic.username.clone()),
                Some(sealing::write(
                    basic.password.clone(),
                    key,
                    id,
                    Field::BasicPassword,
                )?),
                None,
            ),
            Auth::Signature(file) => (
                None,
                None,
                Some(sealing::write(
                    file.to_json_pretty(),
                    key,
                    id,
                    Field::SignatureFile,
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
        })
    }

    /// The webhook these columns describe, its secrets opened with `key` when sealed.
    ///
    /// # Errors
    /// A stored value this build cannot read (an unknown auth method, a broken signature
    /// file), or sealed secrets without the key or under another key (a [`UsageError`]).
    pub fn into_webhook(self, key: Option<&SecretKey>) -> anyhow::Result<Webhook> {
        let id = self.id;
        let events = if self.events == "all" {
            EventSelection::All
        } else {
            EventSelection::Names(self.events.split(',').map(str::to_owned).collect())
        };
        let auth = match self.auth.as_str() {
            "none" => Auth::None,
            "basic" => Auth::Basic(BasicAuth {
                username: self.basic_username.unwrap_or_default(),
                password: sealing::read(
                    self.basic_password.unwrap_or_default(),
                    key,
                    &id,
                    Field::BasicPassword,
                )?,
            }),
            "signature" => {
                let text = sealing::read(
                    self.signature_file.unwrap_or_default(),
                    key,
                    &id,
                    Field::SignatureFile,
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
        })
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
