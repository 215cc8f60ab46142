//! Retention and erasure, what both stores share: the rule a prune follows, what one batch of
//! it removed, the rule that keeps a request for its forwarding, and the [`Maintenance`] trait
//! that `receiver prune` and `receiver erase` work through.
//!
//! Invariants every implementation keeps:
//! - a request [`HELD_BY_FORWARDING`] is never pruned (erasure removes it all the same: the
//!   learner's data goes, forwarded or not);
//! - a request goes whole: its row, the events it stored, its forward jobs, in one
//!   transaction; a batch of them is one transaction, small, so the listener's commits wait at
//!   most that long;
//! - the `(account_id, event_id)` key of every event removed whose request was received within
//!   the dedupe window is written to the dedupe keys in that same transaction, so a retry is a
//!   duplicate whether it comes before, during or after the removal;
//! - dedupe keys are dropped only once their request's receipt is older than the window;
//! - a dry run reads, never writes, and counts what a real run would remove.

use std::time::Duration;

use crate::erasure::ErasureSelector;

/// Most requests (and refused requests, and expired dedupe keys) one batch removes: a short
/// transaction of the listener's writer, a few milliseconds on a store of a million requests
/// (measured by `bench/src/bin/retention.rs`), so a commit never waits long for it.
pub const PRUNE_BATCH: usize = 64;

/// Which forward jobs keep their request from being pruned: those not yet forwarded, on any
/// target. As a condition on a forward job `j` (SQL, both stores). A pending job waits for its
/// app; a parked one waits for an operator's `receiver forward retry`, which sends the
/// request's body, so it keeps it too. A skipped job (the operator gave up on it) and a
/// forwarded one hold nothing.
pub(crate) const NOT_YET_FORWARDED: &str = "j.state IN ('pending', 'parked')";

/// The condition, on a request `r`, that it has a forward job [`NOT_YET_FORWARDED`], for the
/// store whose forward jobs are in `forward_jobs`.
pub(crate) fn held_by_forwarding(forward_jobs: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM {forward_jobs} j WHERE j.request_id = r.id AND {NOT_YET_FORWARDED})"
    )
}

/// What a prune removes, as instants in epoch milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PruneRule {
    /// Accepted and refused requests received before this go (none when `None`: only dedupe
    /// keys expire).
    pub received_before_ms: Option<i64>,
    /// Dedupe keys of requests received before this expire; an event removed whose request
    /// was received at or after it leaves its key behind.
    pub keys_before_ms: i64,
}

impl PruneRule {
    /// The rule at `now_ms` for a retention of `retain` (`None`: keep requests) and a dedupe
    /// window of `dedupe_window`.
    pub fn at(now_ms: i64, retain: Option<Duration>, dedupe_window: Duration) -> PruneRule {
        let before = |duration: Duration| {
            now_ms.saturating_sub(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX))
        };
        PruneRule {
            received_before_ms: retain.map(before),
            keys_before_ms: before(dedupe_window),
        }
    }
}

/// Where a prune goes on from: the highest id it looked at in each numbering. A pass starts at
/// [`PruneCursor::START`]; a request held by its forwarding is passed over, and looked at again
/// by the next pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneCursor {
    /// Accepted requests.
    pub requests: i64,
    /// Refused requests.
    pub refused: i64,
}

impl PruneCursor {
    /// Before every id.
    pub const START: PruneCursor = PruneCursor {
        requests: 0,
        refused: 0,
    };
}

/// What a prune removed (or, dry, would remove).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Accepted requests.
    pub requests: u64,
    /// The events they had stored.
    pub events: u64,
    /// Refused requests.
    pub refused: u64,
    /// Dedupe keys whose window ended (not counted by a dry run).
    pub keys_expired: u64,
}

impl std::ops::AddAssign for Pruned {
    fn add_assign(&mut self, other: Pruned) {
        self.requests += other.requests;
        self.events += other.events;
        self.refused += other.refused;
        self.keys_expired += other.keys_expired;
    }
}

/// One batch of a prune.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PruneBatch {
    /// What it removed.
    pub pruned: Pruned,
    /// Where the next batch of the same pass starts.
    pub next: PruneCursor,
    /// Whether more may be left for this pass (a batch came back full).
    pub more: bool,
    /// How long its transaction held the store's writer (or, on PostgreSQL, the events
    /// table's lock): the longest a commit waited for it.
    pub held: Duration,
}

/// What an erasure removed (or, dry, would remove).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Erased {
    /// Accepted requests that carried a matching event.
    pub requests: u64,
    /// The events those requests had stored.
    pub events: u64,
    /// Of those events, the ones the selector does not name (other users' events of the same
    /// batch, which went with it).
    pub other_events: u64,
    /// Refused requests whose body carried a matching event.
    pub refused: u64,
}

impl std::ops::AddAssign for Erased {
    fn add_assign(&mut self, other: Erased) {
        self.requests += other.requests;
        self.events += other.events;
        self.other_events += other.other_events;
        self.refused += other.refused;
    }
}

/// The requests that carry what an erasure names, found by reading every body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErasureTargets {
    /// Accepted requests, by id, ascending.
    pub requests: Vec<i64>,
    /// Refused requests, by id, ascending.
    pub refused: Vec<i64>,
}

/// What `receiver prune` and `receiver erase` do to a store, on a connection of their own
/// (blocking: the commands run outside any async runtime). A listener may serve the same
/// store meanwhile.
pub trait Maintenance {
    /// One batch of a prune from `cursor` (see [`Store::prune_batch`](super::Store::prune_batch)).
    ///
    /// # Errors
    /// The store cannot be read or written.
    fn prune_batch(
        &mut self,
        rule: PruneRule,
        cursor: PruneCursor,
        dry_run: bool,
    ) -> anyhow::Result<PruneBatch>;

    /// Every stored request, accepted or refused, whose body carries an event `selector`
    /// names. Reads in short transactions: the listener keeps committing.
    ///
    /// # Errors
    /// The store cannot be read.
    fn find_erasure(&mut self, selector: &ErasureSelector) -> anyhow::Result<ErasureTargets>;

    /// Removes (or, dry, counts) the requests of `targets` (at most [`PRUNE_BATCH`] of each
    /// kind) with their events and forward jobs, in one transaction, their bodies read again
    /// inside it; events of requests received at or after `keys_before_ms` leave their keys.
    ///
    /// # Errors
    /// The store cannot be read or written; nothing of the batch is removed then.
    fn erase_batch(
        &mut self,
        selector: &ErasureSelector,
        targets: &ErasureTargets,
        keys_before_ms: i64,
        dry_run: bool,
    ) -> anyhow::Result<Erased>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_counts_back_from_now() {
        let day = Duration::from_secs(86_400);
        let now = 10 * 86_400_000;
        assert_eq!(
            PruneRule::at(now, Some(day), 7 * day),
            PruneRule {
                received_before_ms: Some(9 * 86_400_000),
                keys_before_ms: 3 * 86_400_000,
            }
        );
        let keep = PruneRule::at(now, None, Duration::MAX);
        assert_eq!(keep.received_before_ms, None);
        assert!(keep.keys_before_ms < 0);
    }

    #[test]
    fn the_hold_reads_one_predicate() {
        assert_eq!(
            held_by_forwarding("forward_jobs"),
            "EXISTS (SELECT 1 FROM forward_jobs j WHERE j.request_id = r.id AND j.state IN ('pending', 'parked'))"
        );
    }
}
