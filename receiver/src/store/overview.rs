//! The inspector's overview (SPEC section 10), counted once for both stores: what arrived in a
//! time range, per bucket of time (a minute for the last hour), by verdict (accepted,
//! duplicate, refused), refusals by reason and stored events by name; and each forward
//! target's queue.
//!
//! Each store only counts rows in an id range with SQL ([`RequestRows`]'s `tally_*`); here
//! the range is found and the counts kept. A range is found by its receive times: ids follow
//! commit order, which follows arrival within the time a request takes to be read and
//! committed, so the first id is looked up by a binary search on the primary key, from a
//! minute before the range's start ([`ARRIVAL_SLACK_MS`]); rows are then counted by their
//! own receive time. At most [`COUNT_BUDGET`] requests of a table are counted for one range
//! (the newest; the overview says so), so an overview of a busy week costs what a busy hour
//! does. A live overview then counts only what committed since ([`Traffic::add_newer`]), up
//! to where a live list may read ([`RequestRows::newest`]: on PostgreSQL, ids commit out of
//! order), so it costs the listener what the new rows cost to read, whatever the range.

use std::collections::BTreeMap;

use super::request_rows::{RequestRows, Side};
use super::Cursor;

/// Most requests (accepted, and refused apart) counted for one range.
pub const COUNT_BUDGET: i64 = 1_000_000;
/// How far before a range's start the search for its first id begins: a request's id may be
/// given this long after its arrival (a slow body, a commit that waited).
const ARRIVAL_SLACK_MS: i64 = 60_000;

/// What a range counts, and in which buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Requests received at or after this, epoch milliseconds.
    pub since_ms: i64,
    /// Requests received before this; `None` for "until now", which keeps counting live.
    pub until_ms: Option<i64>,
    /// The width of a bucket in milliseconds (a minute for an hour).
    pub bucket_ms: i64,
}

/// One bucket's counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BucketCounts {
    /// Accepted requests that stored at least one new event (or carried none).
    pub accepted: u64,
    /// Accepted requests whose every event had been stored before.
    pub duplicate: u64,
    /// Refused requests (those kept: the newest `--keep-refused`).
    pub refused: u64,
    /// Refused requests by reason code.
    pub reasons: BTreeMap<String, u64>,
    /// Events stored, by name.
    pub events: BTreeMap<String, u64>,
}

/// What arrived in a [`Window`], by bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Traffic {
    /// The range counted.
    pub window: Window,
    /// Bucket start (epoch ms, a multiple of the bucket width) → counts; buckets without
    /// requests are absent.
    pub buckets: BTreeMap<i64, BucketCounts>,
    /// More requests than [`COUNT_BUDGET`] lay in the range: only the newest were counted.
    pub capped: bool,
    /// Rows up to here are counted (the next live count starts after it).
    pub counted_to: Cursor,
}

/// Counts `window`, up to the newest row a live list may show.
///
/// # Errors
/// The store cannot be read.
pub(crate) fn traffic(rows: &impl RequestRows, window: Window) -> anyhow::Result<Traffic> {
    let newest = rows.newest()?;
    let mut capped = false;
    let mut start = |side: Side, newest: i64| -> anyhow::Result<i64> {
        let first = first_at_or_after(rows, side, window.since_ms - ARRIVAL_SLACK_MS, newest)?;
        if newest - first >= COUNT_BUDGET {
            capped = true;
            return Ok(newest - COUNT_BUDGET);
        }
        Ok(first - 1)
    };
    let after = Cursor {
        accepted: start(Side::Accepted, newest.accepted)?,
        refused: start(Side::Refused, newest.refused)?,
    };
    let mut traffic = Traffic {
        window,
        buckets: BTreeMap::new(),
        capped,
        counted_to: after,
    };
    count_between(rows, &mut traffic, newest)?;
    Ok(traffic)
}

impl Traffic {
    /// Counts what committed since the last count (up to the newest row a live list may
    /// show); whether anything was added.
    ///
    /// # Errors
    /// The store cannot be read.
    pub(crate) fn add_newer(&mut self, rows: &impl RequestRows) -> anyhow::Result<bool> {
        let newest = rows.newest()?;
        if newest.accepted <= self.counted_to.accepted && newest.refused <= self.counted_to.refused
        {
            return Ok(false);
        }
        let before = self.buckets.clone();
        count_between(rows, self, newest)?;
        Ok(self.buckets != before)
    }

    /// Drops the buckets that ended before `since_ms` (a window that slides with the clock).
    pub fn forget_before(&mut self, since_ms: i64) {
        let bucket_ms = self.window.bucket_ms;
        self.buckets
            .retain(|start, _| start.saturating_add(bucket_ms) > since_ms);
        self.window.since_ms = since_ms;
    }

    /// The counts of every bucket added up.
    pub fn totals(&self) -> BucketCounts {
        let mut totals = BucketCounts::default();
        for counts in self.buckets.values() {
            totals.accepted += counts.accepted;
            totals.duplicate += counts.duplicate;
            totals.refused += counts.refused;
            for (reason, count) in &counts.reasons {
                *totals.reasons.entry(reason.clone()).or_default() += count;
            }
            for (name, count) in &counts.events {
                *totals.events.entry(name.clone()).or_default() += count;
            }
        }
        totals
    }
}

/// Adds the rows after `traffic.counted_to` up to `upto` that lie in its window.
fn count_between(
    rows: &impl RequestRows,
    traffic: &mut Traffic,
    upto: Cursor,
) -> anyhow::Result<()> {
    let Window {
        since_ms,
        until_ms,
        bucket_ms,
    } = traffic.window;
    let until_ms = until_ms.unwrap_or(i64::MAX);
    let after = traffic.counted_to;
    if upto.accepted > after.accepted {
        for (bucket, requests, duplicates) in
            rows.tally_accepted(after.accepted, upto.accepted, since_ms, until_ms, bucket_ms)?
        {
            let counts = traffic.buckets.entry(bucket).or_default();
            counts.accepted += requests.saturating_sub(duplicates);
            counts.duplicate += duplicates;
        }
        for (bucket, name, count) in
            rows.tally_events(after.accepted, upto.accepted, since_ms, until_ms, bucket_ms)?
        {
            *traffic
                .buckets
                .entry(bucket)
                .or_default()
                .events
                .entry(name)
                .or_default() += count;
        }
    }
    if upto.refused > after.refused {
        for (bucket, reason, count) in
            rows.tally_refused(after.refused, upto.refused, since_ms, until_ms, bucket_ms)?
        {
            let counts = traffic.buckets.entry(bucket).or_default();
            counts.refused += count;
            *counts.reasons.entry(reason).or_default() += count;
        }
    }
    traffic.counted_to = Cursor {
        accepted: upto.accepted.max(after.accepted),
        refused: upto.refused.max(after.refused),
    };
    Ok(())
}

/// The lowest id from which every row of `side` (up to `newest`) arrived at or after
/// `at_ms`, by a binary search over the ids: each probe reads the first row at or above an id
/// (rows may be missing below it); `newest + 1` when none did.
fn first_at_or_after(
    rows: &impl RequestRows,
    side: Side,
    at_ms: i64,
    newest: i64,
) -> anyhow::Result<i64> {
    let (mut low, mut high) = (1, newest.saturating_add(1));
    while low < high {
        let middle = low + (high - low) / 2;
        let arrived_since = match rows.row_at_or_after(side, middle)? {
            Some((id, received_at_ms)) if id <= newest => received_at_ms >= at_ms,
            _ => true,
        };
        if arrived_since {
            high = middle;
        } else {
            low = middle + 1;
        }
    }
    Ok(low)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_slide_and_add_up() {
        let mut traffic = Traffic {
            window: Window {
                since_ms: 0,
                until_ms: None,
                bucket_ms: 60_000,
            },
            buckets: BTreeMap::new(),
            capped: false,
            counted_to: Cursor {
                accepted: 0,
                refused: 0,
            },
        };
        for (start, accepted, reason) in [(0, 2, "a"), (60_000, 3, "b"), (120_000, 1, "a")] {
            let counts = traffic.buckets.entry(start).or_default();
            counts.accepted = accepted;
            counts.refused = 1;
            counts.reasons.insert(reason.to_owned(), 1);
        }
        let totals = traffic.totals();
        assert_eq!((totals.accepted, totals.refused), (6, 3));
        assert_eq!(totals.reasons["a"], 2);
        traffic.forget_before(90_000);
        // The bucket of 60 000 to 120 000 still overlaps the window.
        assert_eq!(
            traffic.buckets.keys().copied().collect::<Vec<_>>(),
            [60_000, 120_000]
        );
        assert_eq!(traffic.totals().accepted, 4);
    }
}
