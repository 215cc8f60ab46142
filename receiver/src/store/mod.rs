//! The store interface: what the listener writes and what `receiver events` reads.
//!
//! Invariants every implementation keeps:
//! - [`Store::accept`] resolves `Ok` only once the request and its events are durable (on disk,
//!   or committed in the database), so the listener can answer 2xx right after it;
//! - one request is all-or-nothing: its request row and all its new events, or nothing;
//! - `(account_id, event_id)` is unique; a second arrival is counted as a duplicate, never
//!   stored: on PostgreSQL by one insert-if-absent (many writers), never by a check followed
//!   by an insert; on SQLite by the one writer thread of the one listener (its lock file),
//!   whose look at its dedupe keys and insert nothing else can come between.
//!
//! - with forwarding on, a request gets a forward job for each target that takes at least one
//!   of its new events, in the SAME transaction, so "2xx" means "stored and queued for
//!   forwarding"; a job is marked forwarded only after the app answered 2xx
//!   ([`ForwardQueue`]).
//!
//! [`sqlite::SqliteStore`] is the embedded implementation; [`postgres::PostgresStore`] is the
//! second (many receivers, one database; SPEC section 7). What they share is here, in
//! `query` (the read queries of `events` and `export`) and in `requests` (the inspector's
//! reads, [`RequestQuery`], over each store's SQL); [`open`] and [`open_reader`] pick one by
//! [`StoreLocation`].

mod body;
pub mod forward;
pub mod maintenance;
mod overview;
pub mod postgres;
mod query;
mod request_rows;
mod requests;
pub mod sqlite;

pub use overview::{BucketCounts, Traffic, Window, COUNT_BUDGET};

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use common::store_location::StoreLocation;

use crate::accept_outcome::AcceptOutcome;
use crate::metrics::Metrics;
use crate::routing::Routes;
pub use forward::{ForwardJob, ForwardQueue, JobState};
use maintenance::{Maintenance, PruneBatch, PruneCursor, PruneRule};

/// A boxed future, so the traits stay object safe without a macro crate.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A request that passed every check, with its parsed events.
#[derive(Debug)]
pub struct AcceptedRequest {
    /// When its head arrived, epoch milliseconds.
    pub received_at_ms: i64,
    /// The method (`POST`: nothing else reaches the store).
    pub method: &'static str,
    /// The request target.
    pub path: String,
    /// Headers as a JSON array of `[name, value]`, in the order hyper gives them, with
    /// credentials redacted. Serialised by the request's own task: the store's writer is the
    /// one serial section of the listener and should only write.
    pub headers_json: String,
    /// The body, byte for byte.
    pub body: bytes::Bytes,
    /// `none`, `basic` or `signature`: how it was authenticated.
    pub auth: &'static str,
    /// `accountId`.
    pub account_id: i64,
    /// The events in the order sent.
    pub events: Vec<NewEvent>,
}

/// One event of an accepted request.
#[derive(Debug)]
pub struct NewEvent {
    /// `eventId`.
    pub event_id: String,
    /// `eventName`.
    pub event_name: String,
    /// `timestamp`, normalised to epoch milliseconds.
    pub timestamp_ms: i64,
    /// Whether the name is in the catalogue.
    pub known: bool,
    /// Where the event's JSON text stands in the request's body, byte offsets. The store
    /// keeps this instead of a second copy of the text: the body is stored anyway, and the
    /// copy would double what every commit writes.
    pub raw: std::ops::Range<usize>,
    /// `data.userId` as a search compares it ([`crate::search::scalar_at`]), taken by the
    /// request's own task: the SQLite store keeps it beside the event, so a search for a
    /// learner reads a narrow column instead of every body.
    pub user_id: Option<String>,
    /// `data.loId`, likewise.
    pub lo_id: Option<String>,
}

impl NewEvent {
    /// The event's JSON text exactly as it stands in `body` (the body of its request).
    pub fn raw_text<'b>(&self, body: &'b [u8]) -> &'b [u8] {
        body.get(self.raw.clone()).unwrap_or_default()
    }
}

/// A refused request, kept (bounded) so `receiver export` can show it later.
#[derive(Debug, Clone)]
pub struct RefusedRequest {
    /// When its head arrived, epoch milliseconds.
    pub received_at_ms: i64,
    /// The method.
    pub method: String,
    /// The request target.
    pub path: String,
    /// Headers as for [`AcceptedRequest::headers_json`].
    pub headers_json: String,
    /// The body as far as it was read (empty when refused before reading).
    pub body: bytes::Bytes,
    /// The HTTP status answered.
    pub status: u16,
    /// The reason code.
    pub reason: String,
}

/// The store cannot commit now; the listener answers 503 and the sender retries.
#[derive(Debug, Clone)]
pub struct StoreError(pub String);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "store unavailable: {}", self.0)
    }
}

impl std::error::Error for StoreError {}

/// The write side, used by the listener.
pub trait Store: Send + Sync {
    /// Stores the request and its new events durably, all or nothing.
    ///
    /// # Errors
    /// [`StoreError`] when nothing could be committed; nothing of the request is stored then.
    ///
    /// The request is shared, not copied: the listener keeps a handle to print it after the
    /// commit.
    fn accept(
        &self,
        request: std::sync::Arc<AcceptedRequest>,
    ) -> StoreFuture<'_, Result<AcceptOutcome, StoreError>>;

    /// Keeps a refused request, best effort: it never delays or fails the answer.
    fn record_refusal(&self, refused: RefusedRequest);

    /// Whether the store can commit right now (a real write, not a cached flag).
    ///
    /// # Errors
    /// [`StoreError`] when it cannot.
    fn check_health(&self) -> StoreFuture<'_, Result<(), StoreError>>;

    /// Commits what is pending and closes. Later calls fail.
    ///
    /// # Errors
    /// [`StoreError`] when the last commit or the close failed.
    fn close(&self) -> StoreFuture<'_, Result<(), StoreError>>;

    /// One batch of the listener's prune (`--retain`), in a short transaction of its own:
    /// expired dedupe keys, then refused and accepted requests received before the rule's
    /// instant, oldest first from `cursor`, passing over those held by their forwarding (see
    /// [`maintenance`] for what every store keeps). A pass is batches from
    /// [`PruneCursor::START`] until one says no more.
    ///
    /// # Errors
    /// [`StoreError`] when the batch could not be committed; nothing of it is removed then.
    fn prune_batch(
        &self,
        rule: PruneRule,
        cursor: PruneCursor,
    ) -> StoreFuture<'_, Result<PruneBatch, StoreError>>;
}

/// Which stored events to read.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only these names (any of them); empty for all.
    pub event_names: Vec<String>,
    /// Only events whose `timestamp` is at or after this, epoch milliseconds.
    pub since_ms: Option<i64>,
    /// Only events whose `timestamp` is before this, epoch milliseconds.
    pub until_ms: Option<i64>,
    /// Only this account.
    pub account_id: Option<i64>,
    /// Only this `eventId`.
    pub event_id: Option<String>,
    /// Only events that match this search (`--where`, `--contains`).
    pub search: crate::search::Search,
    /// At most this many, oldest arrival first.
    pub limit: Option<u64>,
}

/// Where a stored event stands with `--forward-to`: the states of the forward jobs of the
/// request that first stored it, one job per target, summed up by the one that most needs
/// a look (parked, then pending, then skipped, then forwarded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardingState {
    /// No forward job: forwarding was off when the event arrived, or no target takes it.
    None,
    /// Every job was forwarded: every target's app answered 2xx.
    Forwarded,
    /// A job was skipped by an operator; the others were forwarded.
    Skipped,
    /// A job is queued, not yet acknowledged by its app.
    Pending,
    /// An app refused the request for good; it waits for `receiver forward retry`.
    Parked,
}

impl ForwardingState {
    /// `none`, `forwarded`, `skipped`, `pending` or `parked`, as `events list --json` prints
    /// it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Forwarded => "forwarded",
            Self::Skipped => "skipped",
            Self::Pending => "pending",
            Self::Parked => "parked",
        }
    }

    /// The state from the number the stores' queries compute from a request's jobs
    /// (`forward::sql::REQUEST_STATE_CODE`).
    pub(crate) fn from_code(code: i64) -> ForwardingState {
        match code {
            0 => Self::None,
            1 => Self::Forwarded,
            2 => Self::Skipped,
            3 => Self::Pending,
            _ => Self::Parked,
        }
    }
}

/// A stored event as `receiver events` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// `accountId`.
    pub account_id: i64,
    /// `eventId`.
    pub event_id: String,
    /// `eventName`.
    pub event_name: String,
    /// `timestamp` in epoch milliseconds.
    pub timestamp_ms: i64,
    /// When it arrived, epoch milliseconds.
    pub received_at_ms: i64,
    /// Whether the name is in the catalogue.
    pub known: bool,
    /// The event's JSON as received.
    pub raw: String,
    /// The stored request it came in.
    pub request_id: i64,
    /// How that request was authenticated.
    pub auth: String,
    /// The forwarding state of that request.
    pub forwarding: ForwardingState,
}

/// Which kept requests `receiver export` writes.
#[derive(Debug, Clone, Default)]
pub struct CaptureFilter {
    /// Accepted requests.
    pub accepted: bool,
    /// Refused requests.
    pub refused: bool,
    /// Only requests received at or after this, epoch milliseconds.
    pub received_since_ms: Option<i64>,
    /// Only requests received before this, epoch milliseconds.
    pub received_until_ms: Option<i64>,
    /// Only requests of this account (a refused body that is not an envelope has none).
    pub account_id: Option<i64>,
    /// Only requests with at least one event of one of these names; empty for all.
    pub event_names: Vec<String>,
}

/// The read side, used by `receiver events` and `receiver export`. Blocking: the commands
/// call it outside any async runtime.
pub trait EventQuery {
    /// The events matching `filter`, oldest arrival first.
    ///
    /// # Errors
    /// The store cannot be read.
    fn events(&self, filter: &EventFilter) -> anyhow::Result<Vec<StoredEvent>>;

    /// How many events match `filter` (its `limit` ignored).
    ///
    /// # Errors
    /// The store cannot be read.
    fn count(&self, filter: &EventFilter) -> anyhow::Result<u64>;

    /// The kept requests matching `filter`, oldest arrival first, as capture records, handed
    /// one at a time to `each` (so an export never holds the whole store in memory). Returns
    /// how many were handed over.
    ///
    /// # Errors
    /// The store cannot be read, or `each` failed.
    fn captures(
        &self,
        filter: &CaptureFilter,
        each: &mut dyn FnMut(verify::CaptureRecord) -> anyhow::Result<()>,
    ) -> anyhow::Result<u64>;
}

/// Most bytes of refused bodies kept per batch: a flood of large refused requests costs the
/// writer (and so the accepted requests behind it) a bounded amount of work; the rest is
/// counted as not kept.
pub(crate) const MAX_REFUSED_BYTES_PER_BATCH: usize = 4 * 1024 * 1024;

/// The refusals of one batch that fit [`MAX_REFUSED_BYTES_PER_BATCH`], oldest first; the
/// others are counted as not kept.
pub(crate) fn within_refusal_budget<'r>(
    refusals: &'r [RefusedRequest],
    metrics: &Metrics,
) -> Vec<&'r RefusedRequest> {
    let mut budget = MAX_REFUSED_BYTES_PER_BATCH;
    let kept: Vec<&RefusedRequest> = refusals
        .iter()
        .take_while(|refused| {
            let fits = refused.body.len() <= budget;
            budget = budget.saturating_sub(refused.body.len());
            fits
        })
        .collect();
    for _ in kept.len()..refusals.len() {
        metrics.refusal_not_kept();
    }
    kept
}

/// An open store for the listener, and its forwarding queues when forwarding is on.
pub struct OpenStore {
    /// The write side.
    pub store: Arc<dyn Store>,
    /// The forwarding queues, with forwarding on.
    pub forward_queue: Option<Arc<dyn ForwardQueue>>,
}

/// Opens the store at `location` for a listener, forwarding to the targets of `routes` (none:
/// forwarding off): a SQLite file is opened (created) at once; a
/// PostgreSQL database is reached at the first commit, so a database that is down at start
/// gives 503 until it comes up, like any later outage. Must run inside a tokio runtime.
///
/// # Errors
/// The SQLite file cannot be opened or is of another layout; no tokio runtime.
pub fn open(
    location: &StoreLocation,
    keep_refused: u32,
    routes: Routes,
    metrics: Arc<Metrics>,
) -> anyhow::Result<OpenStore> {
    let queue_forwarding = routes.is_on();
    match location {
        StoreLocation::Sqlite(path) => with_forward_queue(
            sqlite::SqliteStore::open(path, keep_refused, routes, metrics)?,
            queue_forwarding,
            sqlite::SqliteStore::forward_queue,
        ),
        StoreLocation::Postgres(url) => with_forward_queue(
            postgres::PostgresStore::open(url, keep_refused, routes, metrics)?,
            queue_forwarding,
            |store| Ok(store.forward_queue()),
        ),
    }
}

/// `store` and, when `queue_forwarding`, the forwarding queues `forward_queue` makes over it.
fn with_forward_queue<S: Store + 'static, Q: ForwardQueue + 'static>(
    store: S,
    queue_forwarding: bool,
    forward_queue: impl FnOnce(&S) -> anyhow::Result<Q>,
) -> anyhow::Result<OpenStore> {
    let forward_queue: Option<Arc<dyn ForwardQueue>> = if queue_forwarding {
        Some(Arc::new(forward_queue(&store)?))
    } else {
        None
    };
    Ok(OpenStore {
        store: Arc::new(store),
        forward_queue,
    })
}

/// Opens the store at `location` for reading (`events`, `export`). Blocking.
///
/// # Errors
/// No store there, or one of another layout, or the database cannot be reached.
pub fn open_reader(location: &StoreLocation) -> anyhow::Result<Box<dyn EventQuery>> {
    Ok(match location {
        StoreLocation::Sqlite(path) => Box::new(sqlite::SqliteReader::open(path)?),
        StoreLocation::Postgres(url) => Box::new(postgres::PostgresReader::open(url)?),
    })
}

/// Opens the store at `location` for `receiver prune` and `receiver erase`, bringing it to this
/// build's layout. Blocking.
///
/// # Errors
/// No store there, or one of another layout, or the database cannot be reached.
pub fn open_maintenance(location: &StoreLocation) -> anyhow::Result<Box<dyn Maintenance>> {
    Ok(match location {
        StoreLocation::Sqlite(path) => Box::new(sqlite::SqliteMaintenance::open(path)?),
        StoreLocation::Postgres(url) => Box::new(postgres::PostgresMaintenance::open(url)?),
    })
}

/// Opens the store at `location` for `receiver forward …`: its forwarding jobs, read and
/// changed on a connection of its own (any host, on PostgreSQL; beside a running listener,
/// on SQLite). Blocking.
///
/// # Errors
/// No store there, one of another layout, or the database cannot be reached.
pub fn open_forward_control(location: &StoreLocation) -> anyhow::Result<forward::ForwardControl> {
    Ok(forward::ForwardControl::new(match location {
        StoreLocation::Sqlite(path) => Box::new(sqlite::SqliteReader::open(path)?),
        StoreLocation::Postgres(url) => Box::new(postgres::PostgresReader::open(url)?),
    }))
}

/// One kept request, as the inspector names it: accepted and refused requests are kept in two
/// numberings, so a key says which.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestKey {
    /// An accepted request (its events stored or duplicates).
    Accepted(i64),
    /// A refused request.
    Refused(i64),
}

impl RequestKey {
    /// `a<id>` or `r<id>`, as the inspector's URLs carry it.
    pub fn to_text(self) -> String {
        match self {
            Self::Accepted(id) => format!("a{id}"),
            Self::Refused(id) => format!("r{id}"),
        }
    }

    /// Reads what [`RequestKey::to_text`] wrote; `None` for anything else.
    pub fn parse(text: &str) -> Option<RequestKey> {
        let number = |rest: &str| rest.parse::<i64>().ok().filter(|id| *id > 0);
        if let Some(rest) = text.strip_prefix('a') {
            number(rest).map(Self::Accepted)
        } else {
            number(text.strip_prefix('r')?).map(Self::Refused)
        }
    }
}

/// A place in the inspector's list: one id per numbering. Pages go to older requests (ids
/// below both), the live stream to newer ones (ids above both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// The accepted requests' id at this place.
    pub accepted: i64,
    /// The refused requests' id at this place.
    pub refused: i64,
}

impl Cursor {
    /// Above every stored request: the first page starts here.
    pub const NEWEST: Cursor = Cursor {
        accepted: i64::MAX,
        refused: i64::MAX,
    };

    /// `A.R`, as URLs and server-sent event ids carry it.
    pub fn to_text(self) -> String {
        format!("{}.{}", self.accepted, self.refused)
    }

    /// Reads what [`Cursor::to_text`] wrote; `None` for anything else.
    pub fn parse(text: &str) -> Option<Cursor> {
        let (accepted, refused) = text.split_once('.')?;
        Some(Cursor {
            accepted: accepted.parse().ok()?,
            refused: refused.parse().ok()?,
        })
    }
}

/// How a kept request was answered, in the inspector's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestVerdict {
    /// Accepted, and at least one event was new (or it carried none).
    Accepted,
    /// Accepted, and every event had been stored before.
    Duplicate,
    /// Refused with this HTTP status and reason code.
    Refused {
        /// The status answered.
        status: u16,
        /// The reason code.
        reason: String,
    },
}

impl RequestVerdict {
    /// `accepted`, `duplicate` or the refusal's reason code.
    pub fn label(&self) -> &str {
        match self {
            Self::Accepted => "accepted",
            Self::Duplicate => "duplicate",
            Self::Refused { reason, .. } => reason,
        }
    }
}

/// Which requests the inspector lists. Every part given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestFilter {
    /// Only requests with an event whose name contains this, in any case (`completed` finds
    /// `COURSE_COMPLETED` and `COURSE_COMPLETED_BATCH`).
    pub event_name: Option<String>,
    /// Only requests of this account.
    pub account_id: Option<i64>,
    /// Only requests whose verdict is this: `accepted`, `duplicate`, `refused` (any refusal)
    /// or one reason code.
    pub verdict: Option<String>,
    /// Only requests received at or after this, epoch milliseconds.
    pub received_since_ms: Option<i64>,
    /// Only requests received before this, epoch milliseconds.
    pub received_until_ms: Option<i64>,
    /// Only requests with an event whose id contains this text.
    pub event_id_text: Option<String>,
    /// Only requests with an event that matches this search (the Data field). Accepted
    /// requests are found by the events they stored when it asks for a learner or a learning
    /// object (the stores find those fast); a retry that stored nothing new is then not
    /// listed, its first arrival is.
    pub data: crate::search::Search,
    /// Only accepted requests with a forward job in this state (for one of the targets).
    pub forward_state: Option<JobState>,
}

/// One event of a kept request, as the list and the detail show it (read from the body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSummary {
    /// `eventName`.
    pub event_name: String,
    /// `eventId` (empty when absent).
    pub event_id: String,
    /// `data.userId`, the learner, where the event has one.
    pub user_id: Option<String>,
    /// `data.loId`, the learning object, where the event has one.
    pub lo_id: Option<String>,
}

/// One row of the inspector's list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestSummary {
    /// Which request.
    pub key: RequestKey,
    /// When it arrived, epoch milliseconds.
    pub received_at_ms: i64,
    /// How it was answered.
    pub verdict: RequestVerdict,
    /// `accountId`, when the body is an envelope.
    pub account_id: Option<i64>,
    /// Each event, in the order sent (read from the body).
    pub events: Vec<EventSummary>,
}

/// One page of the list, newest first.
#[derive(Debug, Clone)]
pub struct RequestPage {
    /// The rows, newest first.
    pub rows: Vec<RequestSummary>,
    /// Where the next (older) page starts; `None` when nothing older is left.
    pub older: Option<Cursor>,
}

/// What became of one event of a kept request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventStorage {
    /// Stored by this request.
    New,
    /// Stored before: by another request, or earlier in this one.
    Duplicate,
    /// Never stored: the request was refused (a refused request stores nothing).
    Refused,
    /// Stored once but no longer found (deleted since).
    Gone,
}

impl EventStorage {
    /// `new`, `duplicate`, `not stored (refused)` or `no longer stored`, as the detail shows it.
    pub fn label(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Duplicate => "duplicate",
            Self::Refused => "not stored (refused)",
            Self::Gone => "no longer stored",
        }
    }
}

/// An event of a request in the detail view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventState {
    /// Its name, id, learner and learning object.
    pub event: EventSummary,
    /// Whether this request stored it.
    pub storage: EventStorage,
    /// The forwarding state of the request that stored it.
    pub forwarding: ForwardingState,
}

/// One kept request in full.
#[derive(Debug, Clone)]
pub struct RequestDetail {
    /// Its row in the list.
    pub summary: RequestSummary,
    /// The request as a capture record (SPEC section 4): headers in order, body byte for byte.
    pub record: verify::CaptureRecord,
    /// Its events, in the order sent.
    pub events: Vec<EventState>,
}

/// What the inspector reads, and the forwarding actions of its pages (Retry, Skip). Blocking,
/// like [`EventQuery`]: the pages call it on a blocking thread, on a reader of its own, never
/// through the listener's writer.
///
/// Invariants every implementation keeps:
/// - the list is newest first by id within each numbering, merged by receive time; a page
///   costs a bounded amount of work however many requests are stored (keyset paging on the
///   ids, never `OFFSET`); a page may come back short of `limit` with `older` set when the
///   filter matched little of what was looked at;
/// - [`RequestQuery::requests_after`] returns what was committed after the cursor, oldest
///   first, so a live list that prepends each row ends newest first; the cursor it returns,
///   and [`RequestQuery::newest`], never pass an id that may still commit later (PostgreSQL
///   ids can commit out of order), so a stream resumed from it misses nothing.
pub trait RequestQuery {
    /// Up to `limit` requests matching `filter`, older than `before`, newest first.
    ///
    /// # Errors
    /// The store cannot be read.
    fn requests(
        &self,
        filter: &RequestFilter,
        before: Cursor,
        limit: usize,
    ) -> anyhow::Result<RequestPage>;

    /// Up to `limit` requests matching `filter`, newer than `after`, oldest first, and the
    /// cursor after the last one looked at (matching or not).
    ///
    /// # Errors
    /// The store cannot be read.
    fn requests_after(
        &self,
        filter: &RequestFilter,
        after: Cursor,
        limit: usize,
    ) -> anyhow::Result<(Vec<RequestSummary>, Cursor)>;

    /// The cursor just above the newest stored request (where a live stream starts).
    ///
    /// # Errors
    /// The store cannot be read.
    fn newest(&self) -> anyhow::Result<Cursor>;

    /// One request in full; `None` when it is not (or no longer) kept.
    ///
    /// # Errors
    /// The store cannot be read.
    fn request(&self, key: RequestKey) -> anyhow::Result<Option<RequestDetail>>;

    /// What arrived in `window` (the overview): per bucket, by verdict, refusals by reason,
    /// stored events by name; up to the newest row a live stream may read. A bounded amount
    /// of work whatever the range ([`COUNT_BUDGET`]).
    ///
    /// # Errors
    /// The store cannot be read.
    fn traffic(&self, window: Window) -> anyhow::Result<Traffic>;

    /// Adds to `traffic` what committed since it was counted (a live overview); whether that
    /// changed anything.
    ///
    /// # Errors
    /// The store cannot be read.
    fn add_newer(&self, traffic: &mut Traffic) -> anyhow::Result<bool>;

    /// The forward jobs of an accepted request (one per target it went to), with every
    /// attempt.
    ///
    /// # Errors
    /// The store cannot be read.
    fn forward_jobs(&self, request_id: i64) -> anyhow::Result<Vec<forward::JobDetail>>;

    /// Every target with jobs, and each of `configured`, with how many wait and the job at
    /// the head of its queue.
    ///
    /// # Errors
    /// The store cannot be read.
    fn forward_overview(
        &self,
        configured: &[String],
    ) -> anyhow::Result<Vec<forward::TargetOverview>>;

    /// The inspector's Retry: parked or skipped jobs back at the end of their queues.
    ///
    /// # Errors
    /// A job cannot be retried (nothing is changed), or the store cannot be written.
    fn retry_forward_jobs(&self, ids: &[i64]) -> anyhow::Result<forward::ChangeReport>;

    /// The inspector's Skip: pending or parked jobs out of the way.
    ///
    /// # Errors
    /// A job cannot be skipped (nothing is changed), or the store cannot be written.
    fn skip_forward_jobs(&self, ids: &[i64]) -> anyhow::Result<forward::ChangeReport>;
}
