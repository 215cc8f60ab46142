//! The store interface: what the listener writes and what `receiver events` reads.
//!
//! Invariants every implementation keeps:
//! - [`Store::accept`] resolves `Ok` only once the request and its events are durable (on disk,
//!   or committed in the database), so the listener can answer 2xx right after it;
//! - one request is all-or-nothing: its request row and all its new events, or nothing;
//! - `(account_id, event_id)` is unique; a second arrival is counted as a duplicate by one
//!   insert-if-absent, never by a check followed by an insert.
//!
//! [`sqlite::SqliteStore`] is the embedded implementation; a PostgreSQL store (many receivers,
//! one database) would be a second implementation of the same two traits.

pub mod sqlite;

use std::fmt;
use std::future::Future;
use std::pin::Pin;

/// A boxed future, so the traits stay object safe without a macro crate.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A request that passed every check, with its parsed events.
#[derive(Debug, Clone)]
pub struct AcceptedRequest {
    /// When its head arrived, epoch milliseconds.
    pub received_at_ms: i64,
    /// Method and path (with query) as received.
    pub method: String,
    /// The request target.
    pub path: String,
    /// Headers in the order hyper gives them; the `authorization` value is redacted.
    pub headers: Vec<(String, String)>,
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
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// `eventId`.
    pub event_id: String,
    /// `eventName`.
    pub event_name: String,
    /// `timestamp`, normalised to epoch milliseconds.
    pub timestamp_ms: i64,
    /// Whether the name is in the catalogue.
    pub known: bool,
    /// The event's JSON text exactly as it stands in the body.
    pub raw: String,
}

/// What [`Store::accept`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AcceptOutcome {
    /// For each event in order: `true` when it was stored now, `false` when it was a
    /// duplicate (already stored, or earlier in the same request).
    pub new: Vec<bool>,
}

impl AcceptOutcome {
    /// How many events were stored now.
    pub fn stored(&self) -> usize {
        self.new.iter().filter(|new| **new).count()
    }

    /// How many events were duplicates.
    pub fn duplicates(&self) -> usize {
        self.new.len() - self.stored()
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
    /// Headers as for [`AcceptedRequest::headers`].
    pub headers: Vec<(String, String)>,
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
    fn accept(
        &self,
        request: AcceptedRequest,
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
    /// At most this many, oldest arrival first.
    pub limit: Option<u64>,
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

    /// Every kept request, accepted and refused, oldest first, as capture records.
    ///
    /// # Errors
    /// The store cannot be read.
    fn captures(&self) -> anyhow::Result<Vec<verify::CaptureRecord>>;
}
