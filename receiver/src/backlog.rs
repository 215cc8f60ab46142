//! How far behind one forwarding target is: counted by the store, shown by the metrics and
//! the inspector's overview.
//!
//! Its own module, below both the store (which counts it) and the metrics (which show it),
//! so that neither imports the other for it (as `accept_outcome`).

/// How far behind one target is, as the metrics and the inspector's overview show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetBacklog {
    /// The target (its URL).
    pub target: String,
    /// Jobs pending.
    pub pending: u64,
    /// Jobs parked.
    pub parked: u64,
    /// When the oldest pending job was queued, epoch milliseconds.
    pub oldest_pending_queued_at_ms: Option<i64>,
}
