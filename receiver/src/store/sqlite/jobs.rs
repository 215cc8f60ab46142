//! What goes to the writer thread, and how its answers come back: every write of the store
//! (accepted requests, refusals, health checks, forwarding outcomes, prunes, close) is a
//! [`Job`] on one queue, so there is one writer.

use std::sync::Arc;

use tokio::sync::oneshot;

use crate::accept_outcome::AcceptOutcome;
use crate::store::forward::JobOutcome;
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
    /// A delivery or a park: committed durably with the next group commit, then answered.
    ForwardDone(JobOutcome, oneshot::Sender<Result<(), StoreError>>),
    /// A failed attempt: kept best effort, after the answers, unsynced.
    ForwardNote(JobOutcome),
    /// One batch of the listener's prune.
    Prune(PruneOrder, oneshot::Sender<Result<PruneBatch, StoreError>>),
}

/// One batch of the listener's prune, run in a transaction of its own between group commits.
pub(super) struct PruneOrder {
    pub(super) rule: PruneRule,
    pub(super) cursor: PruneCursor,
}

/// A SQLite error as the store's callers see it.
pub(super) fn store_error(error: rusqlite::Error) -> StoreError {
    StoreError(error.to_string())
}
