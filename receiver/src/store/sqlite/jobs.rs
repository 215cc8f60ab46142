//! What goes to the writer thread, and how its answers come back: every write of the store
//! (accepted requests, refusals, health checks, forwarding marks, prunes, close) is a [`Job`]
//! on one queue, so there is one writer.

use std::sync::Arc;

use tokio::sync::oneshot;

use crate::accept_outcome::AcceptOutcome;
use crate::store::maintenance::{PruneBatch, PruneCursor, PruneRule};
use crate::store::{AcceptedRequest, RefusedRequest, StoreError};

/// Where the writer answers an accepted request, once its transaction committed (or not).
pub(super) type AcceptReply = oneshot::Sender<Result<AcceptOutcome, StoreError>>;

/// One piece of work for the writer, with where to answer it.
pub(super) enum Job {
    Accept(Arc<AcceptedRequest>, AcceptReply),
    Refuse(RefusedRequest),
    Health(oneshot::Sender<Result<(), StoreError>>),
    Close(oneshot::Sender<Result<(), StoreError>>),
    ForwardDone(ForwardDone, oneshot::Sender<Result<(), StoreError>>),
    ForwardNote(ForwardNote),
    Prune(PruneOrder, oneshot::Sender<Result<PruneBatch, StoreError>>),
}

/// One batch of the listener's prune, run in a transaction of its own between group commits.
pub(super) struct PruneOrder {
    pub(super) rule: PruneRule,
    pub(super) cursor: PruneCursor,
}

/// A job the app acknowledged.
pub(super) struct ForwardDone {
    pub(super) job_id: i64,
    pub(super) attempts: u32,
    pub(super) at_ms: i64,
}

/// A failed attempt, kept best effort.
pub(super) struct ForwardNote {
    pub(super) job_id: i64,
    pub(super) attempts: u32,
    pub(super) error: String,
}

/// A SQLite error as the store's callers see it.
pub(super) fn store_error(error: rusqlite::Error) -> StoreError {
    StoreError(error.to_string())
}
