//! The Learning Manager side of the webhooks toolkit: webhook registrations, realistic events
//! from the catalogue, and delivery with Learning Manager's ordering, timeouts and retries.
//!
//! Layout:
//! - [`admin`]: `sender admin`, the Integration Admin pages and their JSON API;
//! - [`cli`]: the `sender` command line ([`cli_main`]), a thin layer over the modules below;
//! - [`config`]: [`config::DeliveryConfig`] (every duration of the engine) and `--state`;
//! - [`registry`]: a registration: its id, events, authentication (and the signer made of
//!   it) and status;
//! - [`manage`]: what an Integration Admin does to webhooks, written once for the command line
//!   and the admin pages, with the validation of a webhook's changes beside the operations;
//! - [`generate`]: events for `trigger` and their routing to subscribed webhooks;
//! - [`store`]: the storage traits ([`store::Registry`], the durable queue [`store::Queue`])
//!   with the promises every store keeps, implemented twice: in one SQLite file
//!   ([`store::sqlite`]) and in a PostgreSQL database shared by many workers
//!   ([`store::postgres`]);
//! - [`delivery`]: the engine (a worker per webhook, leases, strict order) and HTTP transport;
//! - [`sealing`]: the state's secrets sealed at rest under `--secret-key-file`;
//! - [`retry`]: the retry schedule as pure functions;
//! - [`lease`]: how a worker waits for a lease another worker holds, as pure functions;
//! - [`monitoring`]: `/metrics` and `/healthz` (`--metrics ADDR`, and the admin's address);
//! - [`notify`]: the operator's notifications (`--notify-url`), sent from their durable queue;
//! - [`replay`]: `sender replay`, captured traffic sent again, verbatim or re-signed, at a rate.
//!
//! How `trigger` and `run` cooperate: both work through the same state database (a SQLite
//! file, or a PostgreSQL database that any number of `run` workers share). `trigger` makes
//! at most [`manage::MAX_TRIGGER_COUNT`] events and enqueues them in transactions of
//! [`manage::TRIGGER_CHUNK_EVENTS`], then (unless `--enqueue-only`) delivers the queues of the
//! webhooks it enqueued for until they are empty or `--wait` (60 s) passes, and exits 1 if
//! anything is left. Before delivering to a webhook, a worker takes that webhook's *lease* (a
//! row naming its process, renewed every third of `--lease-ttl`); a worker that finds the lease
//! held by a live process leaves the webhook to it (`trigger`), or waits for it quietly (`run`:
//! it looks again once per `--poll-interval`, with a read that never blocks the holder, and
//! logs the holder once, not per look). So with `sender run` going, `trigger` only
//! enqueues in effect, and `run` picks the work up within `--poll-interval`; no two processes
//! ever deliver to one webhook at once, which keeps the per-webhook order. A lease whose
//! process is gone (killed, crashed) is free at once; one whose owner stopped renewing is free
//! after the TTL. `trigger` sends staged batch events at once (no more are coming to it);
//! `run` sends them every `--batch-interval`, or as soon as `--batch-size` are staged.
//!
//! Invariants: a request's body bytes and `webhook-id` are fixed when it is queued, so every
//! retry, and every restart after a crash, resends the same bytes under the same id; a
//! webhook's requests go strictly in order unless `--parallel` relaxes it; secrets never
//! appear in logs, errors, `Debug` output or `list` output.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use sender::manage::WebhookChanges;
//! use sender::store::{Queue, Registry};
//!
//! let dir = tempfile::tempdir()?;
//! let state = Arc::new(sender::store::sqlite::SqliteState::open(&dir.path().join("sender.db"))?);
//! let webhook = WebhookChanges {
//!     name: Some("CRM sync".into()),
//!     url: Some("http://127.0.0.1:8080/webhook".parse().expect("a Target URL")),
//!     events: Some("COURSE_ENROLLMENT,COURSE_COMPLETED_BATCH".into()),
//!     ..WebhookChanges::default()
//! }
//! .create(0)?;
//! state.insert_webhook(&webhook)?;
//!
//! let recipe = sender::generate::EventRecipe {
//!     kind: verify::lookup("COURSE_ENROLLMENT").expect("in the catalogue"),
//!     count: 2,
//!     account_id: 1010,
//!     set: Vec::new(),
//!     data: None,
//!     seed: 7,
//!     time_style: verify::TimeStyle::Iso,
//! };
//! let events = recipe.events(1_795_000_000_000);
//! let deliveries = sender::generate::route(&events, 1010, recipe.kind, &state.webhooks()?);
//! state.enqueue(&deliveries, 1_795_000_000_000)?;
//! assert_eq!(state.counts(None)?.pending, 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod admin;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod generate;
pub mod lease;
pub mod manage;
pub mod monitoring;
pub mod notify;
pub mod registry;
pub mod replay;
pub mod retry;
pub mod sealing;
pub mod store;
#[cfg(test)]
mod testing;

use std::fmt;
use std::time::Duration;

pub use cli::cli_main;

/// A mistake in the command line or configuration: the process exits with status 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// A duration the way the command line takes it: `250ms`, `5s`, `5m`, `24h`, `7d`.
pub fn format_duration(duration: Duration) -> String {
    let ms = duration.as_millis();
    let units: [(u128, &str); 4] = [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1000, "s"),
    ];
    for (size, unit) in units {
        if ms >= size && ms % size == 0 {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}
