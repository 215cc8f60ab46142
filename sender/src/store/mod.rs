//! Where the sender keeps registrations and its queue, and what the two stores share.
//!
//! - [`sqlite`]: one file, the embedded default (`--state sqlite:PATH`);
//! - [`postgres`]: one database shared by any number of `sender run` workers
//!   (`--state postgres://…`, SPEC section 7).
//!
//! Both implement [`Registry`](crate::registry::Registry) and [`Queue`](crate::queue::Queue)
//! and keep the same promises, which one suite checks on each (`delivery_tests.rs`,
//! `tests/it/sender`):
//! - an enqueue is all-or-nothing; a request's body and `webhook-id` are fixed when it is
//!   written, so every retry resends the same bytes under the same id;
//! - a webhook's pending requests are handed out in id order, and a failed one keeps its place
//!   at the head (`RetryAt` only moves its time);
//! - a webhook has at most one lease holder at a time; every change of hands gives the lease a
//!   larger *fence* number, never reused (a released lease keeps its row and its number);
//! - [`Queue::record`](crate::queue::Queue::record) writes only while the caller's fence is
//!   still the lease's: a worker that stalled past its lease records nothing over the newer
//!   holder's progress;
//! - an update of a webhook applies only if nobody changed it since it was read ("changed
//!   meanwhile"), whichever process changed it.
//!
//! This module holds what the stores share: the stored form of a webhook, the making of
//! request bodies from events, the batch rule, and the lease row: whether its holder keeps
//! another worker out, and which fence a taker gets.

pub mod postgres;
pub mod sqlite;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use common::store_location::StoreLocation;
use verify::timestamp::format_iso_millis;

use crate::delivery::State;
use crate::lease::HeldLease;
use crate::queue::{AttemptRecord, DeliverySummary, NewDelivery, RequestState};
use crate::registry::{Auth, BasicAuth, EventSelection, Status, Webhook, WebhookId, MAX_WEBHOOKS};
use crate::sealing::{self, Field, SecretColumns, SecretKey};
use crate::UsageError;

/// Opens the state `location` names, creating its tables on first use, with the key that
/// seals its secrets (see [`crate::sealing`]): given a key, the state's plain secrets are
/// sealed under it as it opens.
///
/// # Errors
/// The file or database cannot be opened, or holds another program's tables; its secrets
/// are sealed and no key, or another key, is given (a [`UsageError`]).
pub fn open(
    location: &StoreLocation,
    secret_key: Option<SecretKey>,
) -> anyhow::Result<Arc<dyn State>> {
    Ok(match location {
        StoreLocation::Sqlite(path) => {
            Arc::new(sqlite::SqliteState::open_with_secret_key(path, secret_key)?)
        }
        StoreLocation::Postgres(url) => Arc::new(postgres::PostgresState::open_with_secret_key(
            url, secret_key,
        )?),
    })
}

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
            url: webhook.url.clone(),
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
        Ok(Webhook {
            id: WebhookId(id),
            name: self.name,
            description: self.description,
            url: self.url,
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

/// A request about to be written: its body is final.
pub(crate) struct RequestToWrite {
    pub account_id: i64,
    /// Distinct event names, comma-separated.
    pub event_names: String,
    pub event_ids: Vec<String>,
    pub body: Vec<u8>,
    /// The staged events it is made of (none for a real-time event).
    pub staged_seqs: Vec<i64>,
}

impl RequestToWrite {
    /// The JSON list of its event ids, as stored.
    pub fn event_ids_json(&self) -> anyhow::Result<String> {
        Ok(serde_json::to_string(&self.event_ids)?)
    }
}

/// What an enqueue writes for one delivery: a request now, or an event staged for a batch.
pub(crate) enum Enqueued {
    Request(RequestToWrite),
    Staged { event_json: Vec<u8> },
}

/// How `delivery` enters the queue.
pub(crate) fn enqueued(delivery: &NewDelivery) -> anyhow::Result<Enqueued> {
    let event_json = serde_json::to_vec(&delivery.event)?;
    Ok(match delivery.class {
        verify::EventClass::RealTime => Enqueued::Request(RequestToWrite {
            account_id: delivery.account_id,
            event_names: delivery.event.event_name.clone(),
            event_ids: vec![delivery.event.event_id.clone()],
            body: verify::payload::envelope_bytes(
                delivery.account_id,
                std::iter::once(&event_json[..]),
            ),
            staged_seqs: Vec::new(),
        }),
        verify::EventClass::Batch => Enqueued::Staged { event_json },
    })
}

/// A batch event waiting in the staging table.
pub(crate) struct StagedEvent {
    pub seq: i64,
    pub account_id: i64,
    pub event_id: String,
    pub event_name: String,
    pub event_json: Vec<u8>,
    pub enqueued_at_ms: i64,
}

/// What to do with a webhook's staged events (oldest first) now.
pub(crate) enum FlushPlan {
    /// Nothing staged.
    Empty,
    /// Not due yet: the next look is at this epoch ms.
    WaitUntil(i64),
    /// Make requests of the first this many.
    Take(usize),
}

/// The batch rule: everything when forced or when the oldest waited `interval_ms`; only the
/// full batches when enough are staged before that.
pub(crate) fn flush_plan(
    staged: &[StagedEvent],
    now_ms: i64,
    interval_ms: i64,
    max_events: usize,
    force: bool,
) -> FlushPlan {
    let Some(oldest) = staged.first().map(|e| e.enqueued_at_ms) else {
        return FlushPlan::Empty;
    };
    let max_events = max_events.max(1);
    let due_at = oldest.saturating_add(interval_ms);
    if force || due_at <= now_ms {
        FlushPlan::Take(staged.len())
    } else if staged.len() >= max_events {
        FlushPlan::Take(staged.len() / max_events * max_events)
    } else {
        FlushPlan::WaitUntil(due_at)
    }
}

/// Staged events made into requests of at most `max_events`, per account, keeping the order
/// of arrival inside each account.
pub(crate) fn batch_requests(staged: Vec<StagedEvent>, max_events: usize) -> Vec<RequestToWrite> {
    let mut accounts: Vec<(i64, Vec<StagedEvent>)> = Vec::new();
    for event in staged {
        match accounts
            .iter_mut()
            .find(|(account, _)| *account == event.account_id)
        {
            Some((_, events)) => events.push(event),
            None => accounts.push((event.account_id, vec![event])),
        }
    }
    let mut requests = Vec::new();
    for (account_id, events) in accounts {
        for chunk in events.chunks(max_events.max(1)) {
            let names: BTreeSet<&str> = chunk.iter().map(|e| e.event_name.as_str()).collect();
            requests.push(RequestToWrite {
                account_id,
                event_names: names.into_iter().collect::<Vec<_>>().join(","),
                event_ids: chunk.iter().map(|e| e.event_id.clone()).collect(),
                body: verify::payload::envelope_bytes(
                    account_id,
                    chunk.iter().map(|e| e.event_json.as_slice()),
                ),
                staged_seqs: chunk.iter().map(|e| e.seq).collect(),
            });
        }
    }
    requests
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

/// The space in which this process's pid names it: the boot and the pid namespace. Two
/// processes sharing the state from two containers (or two machines) see different spaces,
/// where the other's pid means nothing; `""` when it cannot be told (not Linux).
pub(crate) fn process_identity_space() -> &'static str {
    static SPACE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SPACE.get_or_init(|| {
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id");
        let namespace = std::fs::read_link("/proc/self/ns/pid");
        match (boot, namespace) {
            (Ok(boot), Ok(namespace)) => format!("{}/{}", boot.trim(), namespace.display()),
            _ => String::new(),
        }
    })
}

/// Whether the process that owns a lease still runs. Its pid is judged only when it was
/// written in this process's pid space (same boot, same pid namespace), where a reaped
/// process has no /proc entry; otherwise the lease's expiry alone decides.
pub(crate) fn process_alive(pid: i64, host: &str) -> bool {
    let here = process_identity_space();
    if here.is_empty() || host != here {
        return true;
    }
    Path::new(&format!("/proc/{pid}")).exists()
}

/// A webhook's lease row as both stores keep it.
pub(crate) struct LeaseRow {
    /// The holder's owner tag; `""` once released (the row and its fence stay).
    pub owner: String,
    /// The holder's pid, judged only in its own pid space `host`.
    pub pid: i64,
    pub host: String,
    pub fence: i64,
    pub expires_at_ms: i64,
}

impl LeaseRow {
    /// The lease as held by another live worker, if it keeps `owner` out at `now_ms`: an
    /// owner whose lease ran out, or whose process is seen to be gone, keeps nobody out.
    pub fn held_against(self, owner: &str, now_ms: i64) -> Option<HeldLease> {
        let live = self.owner != owner
            && !self.owner.is_empty()
            && self.expires_at_ms > now_ms
            && process_alive(self.pid, &self.host);
        live.then_some(HeldLease {
            owner: self.owner,
            expires_at_ms: self.expires_at_ms,
        })
    }

    /// The fence number `owner` holds the lease under once it takes it at this row: its own
    /// (a renewal) or the next one (a change of hands).
    pub fn fence_for(&self, owner: &str) -> i64 {
        if self.owner == owner {
            self.fence
        } else {
            self.fence + 1
        }
    }
}

/// This process's pid, as stored in a lease.
pub(crate) fn own_pid() -> i64 {
    i64::from(std::process::id())
}
