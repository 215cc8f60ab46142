//! The inspector's reads ([`RequestQuery`]), written once for both stores.
//!
//! Each store only fetches: rows of one table in id order from a bound ([`RequestRows`]),
//! which request stored an event, a job's forwarding state, one kept request. Everything else
//! is here: both tables are walked by their primary key, newest first for pages and oldest
//! first for the live stream, in chunks (keyset paging, so a page costs the same with a
//! thousand or a million stored requests); the filters, which SQL could only answer by
//! reading every body (event names and ids of refused requests, duplicates), are applied to
//! the rows walked, and a walk stops after [`SCAN_BUDGET`] rows per table: a filter that
//! matches little gives a short page with a link to look further, never a slow one. The two
//! walks are merged by receive time.

use std::collections::{HashMap, HashSet};

use super::body::body_events;
use super::forward;
use super::overview::{Traffic, Window};
use super::request_rows::{Direction, KeptRow, Learner, RequestRows, Side};
use super::{
    Cursor, EventState, EventStorage, EventSummary, ForwardingState, RequestDetail, RequestFilter,
    RequestKey, RequestPage, RequestQuery, RequestSummary, RequestVerdict,
};

#[cfg(test)]
mod tests;

/// Most rows of one table looked at for one page or one stream poll.
const SCAN_BUDGET: usize = 5000;
/// Most rows fetched from the store at a time while walking.
const CHUNK: usize = 256;

impl<R: RequestRows> RequestQuery for R {
    fn requests(
        &self,
        filter: &RequestFilter,
        before: Cursor,
        limit: usize,
    ) -> anyhow::Result<RequestPage> {
        let (rows, older, done) = walk_both(self, filter, before, Direction::Older, limit)?;
        Ok(RequestPage {
            rows,
            older: (!done).then_some(older),
        })
    }

    fn requests_after(
        &self,
        filter: &RequestFilter,
        after: Cursor,
        limit: usize,
    ) -> anyhow::Result<(Vec<RequestSummary>, Cursor)> {
        let (rows, next, _) = walk_both(self, filter, after, Direction::Newer, limit)?;
        Ok((rows, next))
    }

    fn newest(&self) -> anyhow::Result<Cursor> {
        RequestRows::newest(self)
    }

    fn traffic(&self, window: Window) -> anyhow::Result<Traffic> {
        super::overview::traffic(self, window)
    }

    fn add_newer(&self, traffic: &mut Traffic) -> anyhow::Result<bool> {
        traffic.add_newer(self)
    }

    fn forward_jobs(&self, request_id: i64) -> anyhow::Result<Vec<forward::JobDetail>> {
        forward::control::jobs_of_request(self.session(), request_id)
    }

    fn forward_overview(
        &self,
        configured: &[String],
    ) -> anyhow::Result<Vec<forward::TargetOverview>> {
        forward::control::overview(self.session(), configured)
    }

    fn retry_forward_jobs(&self, ids: &[i64]) -> anyhow::Result<forward::ChangeReport> {
        forward::control::retry(self.session(), ids)
    }

    fn skip_forward_jobs(&self, ids: &[i64]) -> anyhow::Result<forward::ChangeReport> {
        forward::control::skip(self.session(), ids)
    }

    fn request(&self, key: RequestKey) -> anyhow::Result<Option<RequestDetail>> {
        let Some(kept) = self.kept(key)? else {
            return Ok(None);
        };
        let (body_account, events) = body_events(&kept.record.body);
        let account_id = kept.account_column.or(body_account);
        let events: Vec<EventSummary> = events.into_iter().map(|event| event.summary).collect();
        let stored_by = match (key, account_id) {
            (RequestKey::Accepted(id), Some(account)) => {
                let asked: Vec<(i64, i64, &str)> = events
                    .iter()
                    .map(|event| (id, account, event.event_id.as_str()))
                    .collect();
                // Its own events first (the cheap question), then who stored the others.
                let here = self.stored_here(&asked)?;
                let others: Vec<(i64, &str)> = asked
                    .iter()
                    .zip(&here)
                    .filter(|(_, here)| !**here)
                    .map(|((_, account, event_id), _)| (*account, *event_id))
                    .collect();
                let mut others = if others.is_empty() {
                    Vec::new()
                } else {
                    self.stored_by(&others)?
                }
                .into_iter();
                here.iter()
                    .map(|here| {
                        if *here {
                            Some(id)
                        } else {
                            others.next().flatten()
                        }
                    })
                    .collect()
            }
            _ => vec![None; events.len()],
        };
        let mut forwarding = HashMap::new();
        // The same event twice in one request: the second one is a duplicate.
        let mut seen = HashSet::new();
        let mut states = Vec::with_capacity(events.len());
        for (event, by) in events.iter().zip(stored_by) {
            let first_here = seen.insert(event.event_id.as_str());
            let (storage, state) = match (key, by) {
                // A refused request stores nothing, whatever another request stored under the
                // same key.
                (RequestKey::Refused(_), _) => (EventStorage::Refused, ForwardingState::None),
                (RequestKey::Accepted(_), None) => (EventStorage::Gone, ForwardingState::None),
                (RequestKey::Accepted(id), Some(by)) => {
                    let state = match forwarding.get(&by) {
                        Some(state) => *state,
                        None => {
                            let state = self.forwarding_of(by)?;
                            forwarding.insert(by, state);
                            state
                        }
                    };
                    let storage = if by == id && first_here {
                        EventStorage::New
                    } else {
                        EventStorage::Duplicate
                    };
                    (storage, state)
                }
            };
            states.push(EventState {
                event: event.clone(),
                storage,
                forwarding: state,
            });
        }
        let verdict = match &kept.record.reason {
            Some(reason) => RequestVerdict::Refused {
                status: kept.status,
                reason: reason.clone(),
            },
            None if states.is_empty()
                || states
                    .iter()
                    .any(|state| state.storage == EventStorage::New) =>
            {
                RequestVerdict::Accepted
            }
            None => RequestVerdict::Duplicate,
        };
        Ok(Some(RequestDetail {
            summary: RequestSummary {
                key,
                received_at_ms: kept.record.received_at_ms,
                verdict,
                account_id,
                events,
            },
            record: kept.record,
            events: states,
        }))
    }
}

/// What a walk of one table found.
struct Walk {
    /// Matching rows in walk order, at most the limit asked.
    found: Vec<RequestSummary>,
    /// Where the walk started.
    bound: i64,
    /// The id of the last row looked at (the bound when none was).
    last_looked: i64,
    /// No row is left beyond `last_looked`.
    exhausted: bool,
}

/// Walks both tables from `from` in `direction` and merges what they found (see [`merge`]).
fn walk_both(
    rows: &impl RequestRows,
    filter: &RequestFilter,
    from: Cursor,
    direction: Direction,
    limit: usize,
) -> anyhow::Result<(Vec<RequestSummary>, Cursor, bool)> {
    let accepted = walk(
        rows,
        Side::Accepted,
        filter,
        from.accepted,
        direction,
        limit,
    )?;
    let refused = walk(rows, Side::Refused, filter, from.refused, direction, limit)?;
    Ok(merge(accepted, refused, direction, limit))
}

/// Walks one table from `bound` in `direction`, keeping rows that match `filter`.
fn walk(
    rows: &impl RequestRows,
    side: Side,
    filter: &RequestFilter,
    bound: i64,
    direction: Direction,
    limit: usize,
) -> anyhow::Result<Walk> {
    let mut walk = Walk {
        found: Vec::new(),
        bound,
        last_looked: bound,
        exhausted: false,
    };
    if !side_may_match(side, filter) {
        walk.exhausted = true;
        return Ok(walk);
    }
    let mut looked = 0;
    while walk.found.len() < limit && looked < SCAN_BUDGET {
        // The first chunk is the page's size: an unfiltered page reads no more than it shows.
        let count = if looked == 0 {
            limit.clamp(1, CHUNK)
        } else {
            CHUNK
        };
        let chunk = match (side, Learner::of(filter)) {
            (Side::Accepted, Some(learner)) => {
                rows.chunk_by_learner(learner, walk.last_looked, direction, count)?
            }
            _ => rows.chunk(side, walk.last_looked, direction, count)?,
        };
        let fetched = chunk.len();
        looked += fetched;
        if let Some(last) = chunk.last() {
            walk.last_looked = last.id;
        }
        for summary in summarise(rows, chunk, filter)? {
            walk.found.push(summary);
            if walk.found.len() == limit {
                // The rows after this one were not taken: the next walk starts here.
                walk.last_looked = match walk.found.last().map(|row| row.key) {
                    Some(RequestKey::Accepted(id) | RequestKey::Refused(id)) => id,
                    None => walk.last_looked,
                };
                break;
            }
        }
        if fetched < count && walk.found.len() < limit {
            walk.exhausted = true;
            break;
        }
    }
    Ok(walk)
}

/// Whether rows of `side` can match the verdict part of `filter` at all.
fn side_may_match(side: Side, filter: &RequestFilter) -> bool {
    // Refused requests are never forwarded.
    if side == Side::Refused && filter.forward_state.is_some() {
        return false;
    }
    match (side, filter.verdict.as_deref()) {
        (_, None) => true,
        (Side::Accepted, Some(verdict)) => verdict == "accepted" || verdict == "duplicate",
        (Side::Refused, Some(verdict)) => verdict != "accepted" && verdict != "duplicate",
    }
}

/// A row that passed the filters that need nothing but the row.
struct Candidate {
    row: KeptRow,
    account_id: Option<i64>,
    events: Vec<EventSummary>,
}

/// The rows of a chunk that match `filter`, as the list shows them, in walk order. Cheap
/// tests first; which of the rest stored an event (accepted, or duplicate) is asked in one go.
fn summarise(
    rows: &impl RequestRows,
    chunk: Vec<KeptRow>,
    filter: &RequestFilter,
) -> anyhow::Result<Vec<RequestSummary>> {
    let mut candidates: Vec<Candidate> = chunk
        .into_iter()
        .filter_map(|row| candidate(row, filter))
        .collect();
    if let Some(state) = filter.forward_state {
        // One look at the jobs of the whole chunk.
        let ids: Vec<i64> = candidates
            .iter()
            .map(|candidate| candidate.row.id)
            .collect();
        let with_state = forward::control::requests_with_jobs_in(rows.session(), &ids, state)?;
        candidates.retain(|candidate| with_state.contains(&candidate.row.id));
    }
    let mut asked = Vec::new();
    for candidate in &candidates {
        if let (Side::Accepted, Some(account)) = (candidate.row.side, candidate.account_id) {
            asked.extend(
                candidate
                    .events
                    .iter()
                    .map(|event| (candidate.row.id, account, event.event_id.as_str())),
            );
        }
    }
    let stored_here = if asked.is_empty() {
        Vec::new()
    } else {
        rows.stored_here(&asked)?
    };
    let mut stored_here = stored_here.into_iter();
    let mut found = Vec::new();
    for candidate in candidates {
        let row = candidate.row;
        let verdict = match row.side {
            Side::Accepted => {
                let asked_here = if candidate.account_id.is_some() {
                    candidate.events.len()
                } else {
                    0
                };
                // Every answer of this row is taken, so the next row starts at its own.
                let answers: Vec<bool> = stored_here.by_ref().take(asked_here).collect();
                let any_new = answers.contains(&true);
                if candidate.events.is_empty() || candidate.account_id.is_none() || any_new {
                    RequestVerdict::Accepted
                } else {
                    RequestVerdict::Duplicate
                }
            }
            Side::Refused => RequestVerdict::Refused {
                status: row.status,
                reason: row.reason,
            },
        };
        let verdict_matches = match filter.verdict.as_deref() {
            None => true,
            Some("refused") => matches!(verdict, RequestVerdict::Refused { .. }),
            Some(wanted) => verdict.label() == wanted,
        };
        if verdict_matches {
            found.push(RequestSummary {
                key: row.side.key(row.id),
                received_at_ms: row.received_at_ms,
                verdict,
                account_id: candidate.account_id,
                events: candidate.events,
            });
        }
    }
    Ok(found)
}

/// The row with its account and events, or `None` when the time, account, event name, event
/// id or Data part of `filter` rules it out.
fn candidate(row: KeptRow, filter: &RequestFilter) -> Option<Candidate> {
    let within = filter
        .received_since_ms
        .is_none_or(|since| row.received_at_ms >= since)
        && filter
            .received_until_ms
            .is_none_or(|until| row.received_at_ms < until);
    if !within {
        return None;
    }
    let (body_account, events) = body_events(&row.body);
    let account_id = row.account_column.or(body_account);
    if filter.account_id.is_some() && account_id != filter.account_id {
        return None;
    }
    if let Some(name) = &filter.event_name {
        let name = name.to_lowercase();
        if !events
            .iter()
            .any(|event| event.summary.event_name.to_lowercase().contains(&name))
        {
            return None;
        }
    }
    if let Some(text) = &filter.event_id_text {
        if !events
            .iter()
            .any(|event| event.summary.event_id.contains(text.as_str()))
        {
            return None;
        }
    }
    if !filter.data.is_empty() && !events.iter().any(|event| filter.data.matches(event.raw)) {
        return None;
    }
    let events = events.into_iter().map(|event| event.summary).collect();
    Some(Candidate {
        row,
        account_id,
        events,
    })
}

/// Merges the two walks by receive time and cuts to `limit`; returns the rows and, per
/// table, the id the next walk starts from (the last row taken when some found rows were
/// left out, else the last row looked at), and whether both tables have nothing left.
fn merge(
    accepted: Walk,
    refused: Walk,
    direction: Direction,
    limit: usize,
) -> (Vec<RequestSummary>, Cursor, bool) {
    let mut rows: Vec<RequestSummary> = accepted
        .found
        .iter()
        .chain(refused.found.iter())
        .cloned()
        .collect();
    // Ties broken by numbering and id, as `receiver export` orders them.
    rows.sort_by_key(|row| {
        let (kind, id) = match row.key {
            RequestKey::Accepted(id) => (0, id),
            RequestKey::Refused(id) => (1, id),
        };
        (row.received_at_ms, kind, id)
    });
    if direction == Direction::Older {
        rows.reverse();
    }
    rows.truncate(limit);
    let next = |walk: &Walk, of_side: fn(RequestKey) -> Option<i64>| {
        let taken = rows.iter().filter_map(|row| of_side(row.key)).count();
        if taken == walk.found.len() {
            (walk.last_looked, walk.exhausted)
        } else {
            let last_taken = rows.iter().rev().find_map(|row| of_side(row.key));
            (last_taken.unwrap_or(walk.bound), false)
        }
    };
    let (accepted_next, accepted_done) = next(&accepted, |key| match key {
        RequestKey::Accepted(id) => Some(id),
        RequestKey::Refused(_) => None,
    });
    let (refused_next, refused_done) = next(&refused, |key| match key {
        RequestKey::Refused(id) => Some(id),
        RequestKey::Accepted(_) => None,
    });
    let cursor = Cursor {
        accepted: accepted_next,
        refused: refused_next,
    };
    (rows, cursor, accepted_done && refused_done)
}
