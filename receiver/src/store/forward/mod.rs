//! The forwarding queues in the store (`--forward-to`), written once for both stores where
//! the SQL allows: what a job is, what the forwarder asks of the store ([`ForwardQueue`]),
//! and what `receiver forward …` and the inspector read and change (`control`).
//!
//! The model: a stored request that takes a target gets one job for that target, committed in
//! the request's transaction. Each target has its own queue: its `pending` jobs in
//! `queue_order` (commit order; a retried job gets a new place at the end). A job is
//! `pending` (waiting, or being tried and held by failures), `parked` (the app refused it for
//! good with a 4xx; the queue moved on), `skipped` (moved out of the way by an operator), or
//! `forwarded` (the app answered 2xx). Every attempt is kept in the attempts table.
//!
//! Its parts: this file (the types and the [`ForwardQueue`] trait), `sql` (a blocking SQL
//! session over either store and the statements both use), `control` (list, show, retry,
//! skip, the overview, and the adoption of jobs queued before targets had names).

pub(crate) mod control;
pub(crate) mod sql;

use std::collections::HashMap;

use tokio::sync::watch;

use super::{StoreError, StoreFuture};
pub use crate::backlog::TargetBacklog;
use crate::routing::Routes;

pub use control::{
    AdoptReport, AttemptRecord, ChangeReport, ForwardControl, JobDetail, JobFilter, JobSummary,
    TargetOverview,
};

/// Where a forward job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JobState {
    /// In its target's queue: waiting, or being tried (held by failures that may pass).
    Pending,
    /// The app refused it for good (a 4xx other than 408, 425 and 429); the queue moved on.
    /// `receiver forward retry` puts it back at the end of the queue.
    Parked,
    /// Moved out of the way by an operator (`receiver forward skip`); never sent again unless
    /// retried.
    Skipped,
    /// The app answered 2xx.
    Forwarded,
}

impl JobState {
    /// Every state, in the order `--state` lists them.
    pub const ALL: [JobState; 4] = [
        JobState::Pending,
        JobState::Parked,
        JobState::Skipped,
        JobState::Forwarded,
    ];

    /// `pending`, `parked`, `skipped` or `forwarded`, as the store, the JSON and the pages
    /// write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Parked => "parked",
            Self::Skipped => "skipped",
            Self::Forwarded => "forwarded",
        }
    }

    /// Reads what [`JobState::as_str`] wrote.
    pub fn parse(text: &str) -> Option<JobState> {
        Self::ALL.into_iter().find(|state| state.as_str() == text)
    }
}

/// A job at the head of its target's queue, with what the forwarder sends.
#[derive(Debug, Clone)]
pub struct ForwardJob {
    /// The job.
    pub job_id: i64,
    /// The stored request.
    pub request_id: i64,
    /// When the request arrived, epoch milliseconds.
    pub received_at_ms: i64,
    /// Its headers as stored (`authorization` redacted).
    pub headers: Vec<(String, String)>,
    /// Its body, byte for byte.
    pub body: bytes::Bytes,
    /// Attempts made before, as far as they were recorded.
    pub attempts: u32,
    /// When the last failure asked for the next try, epoch milliseconds (`None`: now).
    pub next_attempt_at_ms: Option<i64>,
}

/// One attempt to forward a job, as it is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// When it started, epoch milliseconds.
    pub at_ms: i64,
    /// The app's status, when it answered.
    pub status: Option<u16>,
    /// Why there was no answer (connection refused, timeout), when it did not.
    pub error: Option<String>,
    /// From sending to the end of the answer read (or the failure), microseconds.
    pub latency_us: i64,
    /// The first [`ANSWER_EXCERPT_BYTES`] of the answer's body.
    pub answer: Vec<u8>,
}

/// How much of an app's answer is kept with an attempt.
pub const ANSWER_EXCERPT_BYTES: usize = 1024;

impl Attempt {
    /// The attempt in a few words, for `last_error` and the log: `the app answered 503
    /// Service Unavailable`, or the error.
    pub fn summary(&self) -> String {
        match (self.status, &self.error) {
            (Some(status), _) => match http::StatusCode::from_u16(status)
                .ok()
                .and_then(|code| code.canonical_reason())
            {
                Some(reason) => format!("the app answered {status} {reason}"),
                None => format!("the app answered {status}"),
            },
            (None, Some(error)) => error.clone(),
            (None, None) => "no answer".to_owned(),
        }
    }
}

/// What an attempt did to its job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptResult {
    /// The app answered 2xx: the job is forwarded.
    Delivered,
    /// The app refused it for good: the job is parked, the queue moves on.
    Parked,
    /// It may pass later: the job stays at the head of its queue until `next_attempt_at_ms`.
    Failed {
        /// When to try again, epoch milliseconds.
        next_attempt_at_ms: i64,
    },
}

impl AttemptResult {
    /// `delivered`, `parked` or `failed`: the attempt's outcome as kept and counted.
    pub fn outcome(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Parked => "parked",
            Self::Failed { .. } => "failed",
        }
    }
}

/// An attempt and what it did to its job, for the store to record.
#[derive(Debug, Clone)]
pub struct JobOutcome {
    /// The job.
    pub job_id: i64,
    /// The attempt.
    pub attempt: Attempt,
    /// What it did.
    pub result: AttemptResult,
}

/// The durable forwarding queues the forwarder works from, one per target. Async: the
/// forwarder runs on the listener's runtime.
///
/// Invariants every implementation keeps:
/// - [`ForwardQueue::head`] gives the first pending job of the target in queue order, and
///   only to the receiver that forwards to that target (on PostgreSQL, the holder of the
///   target's lease; SQLite has one receiver);
/// - a delivered or parked outcome is recorded durably before [`ForwardQueue::record`]
///   resolves `Ok`; a failed one is recorded best effort (it never delays the forwarder);
/// - a delivery is recorded whatever the job's state meanwhile (the app has it); a park or a
///   failure never changes a job an operator skipped or retried meanwhile.
pub trait ForwardQueue: Send + Sync {
    /// The first pending job of `target`'s queue, `None` when there is none (or another
    /// receiver forwards to `target`).
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be read.
    fn head<'a>(
        &'a self,
        target: &'a str,
    ) -> StoreFuture<'a, Result<Option<ForwardJob>, StoreError>>;

    /// Records an attempt and what it did to its job.
    ///
    /// # Errors
    /// [`StoreError`] when a delivery or a park could not be committed (the forwarder
    /// records it again rather than send the request again).
    fn record(&self, outcome: JobOutcome) -> StoreFuture<'_, Result<(), StoreError>>;

    /// Jobs pending and parked per target, for every target that has any.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be read.
    fn backlog(&self) -> StoreFuture<'_, Result<Vec<TargetBacklog>, StoreError>>;

    /// Gives the jobs queued before targets had names (a store of the layout before several
    /// targets) to the targets of `routes`, as if their requests had just arrived.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be read or written.
    fn adopt_untargeted(&self, routes: Routes) -> StoreFuture<'_, Result<AdoptReport, StoreError>>;

    /// A receiver whose value changes when jobs were queued for `target` (or jobs were
    /// retried or skipped in this process); the forwarder of an idle target waits on it.
    fn changes(&self, target: &str) -> watch::Receiver<u64>;

    /// Wakes every target's forwarder: an operator retried or skipped a job in this process.
    fn wake_all(&self);
}

/// Wake-ups of the forwarders, one per target: the writers tell the targets that got jobs in
/// a commit, so an idle target is not woken by another's traffic.
pub(crate) struct JobSignals {
    by_target: HashMap<String, watch::Sender<u64>>,
    /// For targets no route names (never woken by commits).
    other: watch::Sender<u64>,
}

impl JobSignals {
    /// A signal per target of `routes`.
    pub(crate) fn new(routes: &Routes) -> JobSignals {
        JobSignals {
            by_target: routes
                .routes()
                .iter()
                .map(|route| (route.target.clone(), watch::channel(0).0))
                .collect(),
            other: watch::channel(0).0,
        }
    }

    /// Jobs were committed for `targets`.
    pub(crate) fn queued<'t>(&self, targets: impl IntoIterator<Item = &'t str>) {
        for target in targets {
            if let Some(signal) = self.by_target.get(target) {
                signal.send_modify(|count| *count = count.wrapping_add(1));
            }
        }
    }

    /// Every target may have new work (a retry, a skip, an adoption).
    pub(crate) fn all(&self) {
        for signal in self.by_target.values().chain([&self.other]) {
            signal.send_modify(|count| *count = count.wrapping_add(1));
        }
    }

    /// The receiver of `target`'s wake-ups.
    pub(crate) fn subscribe(&self, target: &str) -> watch::Receiver<u64> {
        self.by_target
            .get(target)
            .unwrap_or(&self.other)
            .subscribe()
    }
}
