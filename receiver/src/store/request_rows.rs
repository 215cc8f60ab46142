//! What each store fetches for the inspector ([`RequestRows`]), and the rows it answers with:
//! the one trait the SQLite and PostgreSQL readers implement, from which the inspector's
//! queries ([`super::requests`]) and its overview ([`super::overview`]) follow.

use verify::CaptureRecord;

use super::forward::sql::SqlSession;
use super::{Cursor, ForwardingState, RequestFilter, RequestKey};

/// Which way a walk goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// Ids below the bound, highest first.
    Older,
    /// Ids above the bound, lowest first.
    Newer,
}

/// Which table: accepted and refused requests are numbered apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Side {
    Accepted,
    Refused,
}

impl Side {
    pub(crate) fn key(self, id: i64) -> RequestKey {
        match self {
            Self::Accepted => RequestKey::Accepted(id),
            Self::Refused => RequestKey::Refused(id),
        }
    }
}

/// A learner and learning object a Data filter asks for (either may be absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Learner<'s> {
    /// `data.userId`.
    pub user_id: Option<&'s str>,
    /// `data.loId`.
    pub lo_id: Option<&'s str>,
}

impl<'s> Learner<'s> {
    /// What `filter`'s Data part asks of the learner and learning object, when it asks either.
    pub(crate) fn of(filter: &'s RequestFilter) -> Option<Learner<'s>> {
        let learner = Learner {
            user_id: filter.data.user_id(),
            lo_id: filter.data.lo_id(),
        };
        (learner.user_id.is_some() || learner.lo_id.is_some()).then_some(learner)
    }
}

/// One row of either table, as a walk fetches it.
pub(crate) struct KeptRow {
    pub side: Side,
    pub id: i64,
    pub received_at_ms: i64,
    /// `account_id` of an accepted request; `None` for a refused one.
    pub account_column: Option<i64>,
    /// The status answered (0 for an accepted request).
    pub status: u16,
    /// The reason code (empty for an accepted request).
    pub reason: String,
    pub body: Vec<u8>,
}

/// One kept request in full, as a store reads it.
pub(crate) struct KeptRequest {
    /// Headers in order, body byte for byte, the reason when refused.
    pub record: CaptureRecord,
    /// `account_id` of an accepted request; `None` for a refused one.
    pub account_column: Option<i64>,
    /// The status answered (0 for an accepted request).
    pub status: u16,
}

/// What a store fetches for the inspector; [`super::RequestQuery`] follows from it. Blocking.
pub(crate) trait RequestRows {
    /// Up to `count` rows of `side` past `bound` in `direction`, in walk order. A short
    /// answer means nothing more is there to read now.
    fn chunk(
        &self,
        side: Side,
        bound: i64,
        direction: Direction,
        count: usize,
    ) -> anyhow::Result<Vec<KeptRow>>;

    /// Up to `count` accepted requests past `bound` in `direction`, in walk order, that stored
    /// an event of this learner (`data.userId`) and learning object (`data.loId`), each given
    /// or not (one at least): the stores find these without reading every body.
    fn chunk_by_learner(
        &self,
        learner: Learner<'_>,
        bound: i64,
        direction: Direction,
        count: usize,
    ) -> anyhow::Result<Vec<KeptRow>>;

    /// For each `(account, eventId)`, the accepted request that stored it, in order.
    fn stored_by(&self, events: &[(i64, &str)]) -> anyhow::Result<Vec<Option<i64>>>;

    /// For each `(request id, account, eventId)`, whether that accepted request stored the
    /// event itself (it was new there), in order: all a verdict needs. A store that finds a
    /// request's events by the request does better than [`RequestRows::stored_by`].
    fn stored_here(&self, asked: &[(i64, i64, &str)]) -> anyhow::Result<Vec<bool>> {
        let keys: Vec<(i64, &str)> = asked
            .iter()
            .map(|(_, account, event_id)| (*account, *event_id))
            .collect();
        let stored_by = self.stored_by(&keys)?;
        Ok(asked
            .iter()
            .zip(stored_by)
            .map(|((request, _, _), by)| by == Some(*request))
            .collect())
    }

    /// The forwarding state of the job of an accepted request.
    fn forwarding_of(&self, request_id: i64) -> anyhow::Result<ForwardingState>;

    /// One kept request, `None` when it is not (or no longer) kept.
    fn kept(&self, key: RequestKey) -> anyhow::Result<Option<KeptRequest>>;

    /// The cursor just above the newest request a live stream may start after.
    fn newest(&self) -> anyhow::Result<Cursor>;

    /// The first row of `side` with an id at or above `id`: its id and receive time.
    fn row_at_or_after(&self, side: Side, id: i64) -> anyhow::Result<Option<(i64, i64)>>;

    /// Accepted requests with ids in `(after, upto]` received in `[since_ms, until_ms)`, per
    /// bucket of `bucket_ms`: the bucket's start, the requests, how many were duplicates.
    fn tally_accepted(
        &self,
        after: i64,
        upto: i64,
        since_ms: i64,
        until_ms: i64,
        bucket_ms: i64,
    ) -> anyhow::Result<Vec<AcceptedTally>>;

    /// Refused requests as [`RequestRows::tally_accepted`] counts accepted ones, per bucket
    /// and reason.
    fn tally_refused(
        &self,
        after: i64,
        upto: i64,
        since_ms: i64,
        until_ms: i64,
        bucket_ms: i64,
    ) -> anyhow::Result<Vec<NamedTally>>;

    /// The events stored by the accepted requests [`RequestRows::tally_accepted`] counts, per
    /// bucket of their request's arrival and name.
    fn tally_events(
        &self,
        after: i64,
        upto: i64,
        since_ms: i64,
        until_ms: i64,
        bucket_ms: i64,
    ) -> anyhow::Result<Vec<NamedTally>>;

    /// The reader as a session of the forwarding queues' shared SQL.
    fn session(&self) -> &dyn SqlSession;
}

/// A row of a tally of accepted requests: bucket start, requests, duplicates among them.
pub(crate) type AcceptedTally = (i64, u64, u64);
/// A row of a tally of refused requests or of events: bucket start, reason or name, count.
pub(crate) type NamedTally = (i64, String, u64);
