//! The inspector's reads over the PostgreSQL store: the SQL of [`RequestRows`]; the walks,
//! filters and merging are the stores' shared `store::requests`.
//!
//! The pages read through a small pool of their own ([`PostgresRequestPool`]), never through
//! the writers' connections. The walks use the primary keys and the lookups the unique
//! `(account_id, event_id)` index and the unique `request_id` of the forward jobs, so the
//! inspector needs no index of its own, and every commit stays as cheap as it was.
//!
//! Why the live stream does not simply read every id above its cursor: ids come from a
//! sequence when a batch's statement runs, and batches of several writers and receivers
//! commit in any order, so id 100 may become visible after id 101. A cursor moved to 101
//! would skip 100 for good. So a walk to newer rows stops before a missing id (a gap) until
//! the gap fills, and [`RequestRows::newest`] (where a list page hands over to its stream)
//! stops before the lowest gap near the top. A gap may also never fill (a batch that failed
//! or was cut by an outage burns its ids, and a server crash makes the sequence jump): a row
//! held back behind the same gap for [`GAP_WAIT`] (longer than a batch may take to commit
//! before its requests get 503) is let through, and gaps [`LATE_WINDOW`] ids below the
//! newest count as settled, so a resumed stream crosses old holes (trimmed refusals) at once;
//! so do gaps below a row received more than [`SETTLED_AGE`] ago (requests removed by the
//! retention, or erased, long after their batch committed).
//! We chose this over re-reading a window below the cursor: the cursor stays one number per
//! table, exact for a browser that reconnects with it, and a row is never sent twice.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use common::postgres::DatabaseUrl;
use deadpool_postgres::{Object, Pool};
use tokio::runtime::Handle;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

use crate::store::forward::sql::{SqlSession, REQUEST_STATE_CODE};
use crate::store::query;
use crate::store::request_rows::{
    AcceptedTally, Direction, KeptRequest, KeptRow, Learner, NamedTally, RequestRows, Side,
};
use crate::store::{Cursor, ForwardingState, RequestKey};

/// Connections the inspector's pages and streams share (each holds one only while reading).
const POOL_SIZE: usize = 4;
/// Longest a row is held back behind a lower id that has not committed: a batch that takes
/// longer than the writers' commit timeout has been answered 503 already (its sender sends
/// again, and the new arrival shows up), so a little more than that timeout.
pub const GAP_WAIT: Duration = Duration::from_secs(super::writer::COMMIT_TIMEOUT.as_secs() + 5);
/// Gaps this many ids below the newest id are settled: no batch is that far behind. Refused
/// requests below their table's newest `--keep-refused` are trimmed, so that window is
/// narrower when fewer are kept.
pub const LATE_WINDOW: i64 = 10_000;

/// A gap below a row received longer ago than this is settled at once. A batch takes its ids
/// when its statement runs: within the body timeout (30 s by default), the writers' queue and
/// the commit timeout of its requests' receipt. So the ids missing below a row received ten
/// minutes ago were taken earlier still, by a batch that has long committed or failed: they
/// were removed (by the retention, an erasure) or burnt, and nothing will fill them. Without
/// this, every pass of the retention on a store of fewer than [`LATE_WINDOW`] requests would
/// hold the live list back again behind the new lowest row.
pub const SETTLED_AGE: Duration = Duration::from_secs(600);

/// The inspector's connections to a PostgreSQL store, and what its streams learnt about gaps.
pub struct PostgresRequestPool {
    pool: Pool,
    held_back: Arc<HeldBack>,
}

impl PostgresRequestPool {
    /// A pool for `url`, whose receiver keeps `keep_refused` refused requests; no connection
    /// is opened until a page reads.
    ///
    /// # Errors
    /// The TLS settings of the URL cannot be used.
    pub fn new(url: &DatabaseUrl, keep_refused: u32) -> anyhow::Result<PostgresRequestPool> {
        Self::with_gap_wait(url, keep_refused, GAP_WAIT)
    }

    /// As [`PostgresRequestPool::new`], holding rows back behind a gap at most `gap_wait`.
    ///
    /// # Errors
    /// As [`PostgresRequestPool::new`].
    pub fn with_gap_wait(
        url: &DatabaseUrl,
        keep_refused: u32,
        gap_wait: Duration,
    ) -> anyhow::Result<PostgresRequestPool> {
        Ok(PostgresRequestPool {
            pool: url.pool("receiver-inspector", POOL_SIZE)?,
            held_back: Arc::new(HeldBack {
                since: Mutex::new(HashMap::new()),
                wait: gap_wait,
                refused_window: LATE_WINDOW.min(i64::from(keep_refused)),
            }),
        })
    }

    /// A reader on a pooled connection, driven by `runtime`. Blocking: call it off the async
    /// workers (a `spawn_blocking` thread).
    ///
    /// # Errors
    /// The database cannot be reached.
    pub fn reader(&self, runtime: &Handle) -> anyhow::Result<PostgresRequestReader> {
        let client = runtime
            .block_on(self.pool.get())
            .map_err(|error| anyhow::anyhow!(super::error::describe_pool_error(&error)))?;
        Ok(PostgresRequestReader {
            client,
            runtime: runtime.clone(),
            held_back: Arc::clone(&self.held_back),
        })
    }
}

/// One connection of a [`PostgresRequestPool`], for one page or one stream poll.
pub struct PostgresRequestReader {
    pub(super) client: Object,
    pub(super) runtime: Handle,
    held_back: Arc<HeldBack>,
}

/// When each row held back behind a gap was first seen so.
struct HeldBack {
    /// `(table, id of the row above the gap)` → first seen. A std Mutex, never held across
    /// an `.await` (the readers are blocking).
    since: Mutex<HashMap<(Side, i64), Instant>>,
    wait: Duration,
    /// [`LATE_WINDOW`] for refused requests: older ones are trimmed.
    refused_window: i64,
}

impl HeldBack {
    /// The first of `gaps` (`(lowest missing id, id of the row above it, when that row was
    /// received)`, in id order) that a commit in flight may still fill, or `None` when all are
    /// settled.
    fn first_open(
        &self,
        side: Side,
        gaps: impl IntoIterator<Item = (i64, i64, i64)>,
        newest: i64,
    ) -> Option<(i64, i64)> {
        let settled_below = newest.saturating_sub(self.window(side));
        let old_before_ms = verify::unix_now_ms()
            .saturating_sub(i64::try_from(SETTLED_AGE.as_millis()).unwrap_or(i64::MAX));
        let mut since = self.since.lock().unwrap_or_else(PoisonError::into_inner);
        since.retain(|(of, row), _| *of != side || *row > settled_below);
        for (start, row, received_at_ms) in gaps {
            if row - 1 <= settled_below || received_at_ms < old_before_ms {
                continue;
            }
            let first = *since.entry((side, row)).or_insert_with(Instant::now);
            if first.elapsed() < self.wait {
                return Some((start, row));
            }
        }
        None
    }

    /// How far below the newest id of `side` gaps are settled.
    fn window(&self, side: Side) -> i64 {
        match side {
            Side::Accepted => LATE_WINDOW,
            Side::Refused => self.refused_window,
        }
    }
}

/// The table of `side`.
fn table(side: Side) -> &'static str {
    match side {
        Side::Accepted => "receiver_requests",
        Side::Refused => "receiver_refused_requests",
    }
}

impl PostgresRequestReader {
    /// Runs one statement. Before its first commit a receiver has not created its tables:
    /// nothing is kept yet, so a missing table reads as no rows.
    fn query(
        &self,
        sql: &str,
        values: &[&(dyn ToSql + Sync)],
    ) -> anyhow::Result<Vec<tokio_postgres::Row>> {
        let result = self.runtime.block_on(async {
            let statement = self.client.prepare_cached(sql).await?;
            self.client.query(&statement, values).await
        });
        match result {
            Ok(rows) => Ok(rows),
            Err(error) if error.code() == Some(&SqlState::UNDEFINED_TABLE) => Ok(Vec::new()),
            Err(error) => Err(anyhow::anyhow!(super::error::describe(&error))),
        }
    }

    /// The highest id of `side` a live stream may start after: the newest, or just below
    /// the lowest gap near the top that a commit in flight may still fill.
    fn horizon(&self, side: Side) -> anyhow::Result<i64> {
        let table = table(side);
        // The rows right above each gap in the top window, and the newest row.
        let sql = format!(
            "SELECT id, prev, received_at_ms FROM (
                 SELECT id, lag(id) OVER (ORDER BY id) AS prev, received_at_ms FROM {table}
                 WHERE id > (SELECT COALESCE(MAX(id), 0) FROM {table}) - $1
             ) w
             WHERE prev IS NULL OR id > prev + 1 OR id = (SELECT MAX(id) FROM {table})
             ORDER BY id"
        );
        let window = self.held_back.window(side);
        let rows = self.query(&sql, &[&window])?;
        let Some(newest) = rows.last().map(|row| row.get::<_, i64>(0)) else {
            return Ok(0);
        };
        let lowest = newest.saturating_sub(window).saturating_add(1).max(1);
        let gaps = rows.iter().filter_map(|row| {
            let id: i64 = row.get(0);
            let start = row.get::<_, Option<i64>>(1).map_or(lowest, |prev| prev + 1);
            (id > start).then_some((start, id, row.get::<_, i64>(2)))
        });
        Ok(match self.held_back.first_open(side, gaps, newest) {
            Some((start, _)) => start - 1,
            None => newest,
        })
    }
}

impl RequestRows for PostgresRequestReader {
    fn chunk(
        &self,
        side: Side,
        bound: i64,
        direction: Direction,
        count: usize,
    ) -> anyhow::Result<Vec<KeptRow>> {
        let table = table(side);
        let columns = match side {
            Side::Accepted => "id, received_at_ms, body, account_id, 0, ''",
            Side::Refused => "id, received_at_ms, body, NULL::int8, status, reason",
        };
        let (compare, order) = match direction {
            Direction::Older => ("<", "DESC"),
            Direction::Newer => (">", "ASC"),
        };
        let sql = format!(
            "SELECT {columns}, (SELECT MAX(id) FROM {table}) FROM {table}
             WHERE id {compare} $1 ORDER BY id {order} LIMIT $2"
        );
        let limit = i64::try_from(count).unwrap_or(i64::MAX);
        let fetched = self.query(&sql, &[&bound, &limit])?;
        let newest = fetched.first().map_or(0, |row| row.get::<_, i64>(6));
        let mut rows: Vec<KeptRow> = fetched
            .into_iter()
            .map(|row| KeptRow {
                side,
                id: row.get(0),
                received_at_ms: row.get(1),
                body: row.get(2),
                account_column: row.get(3),
                status: u16::try_from(row.get::<_, i32>(4)).unwrap_or(0),
                reason: row.get(5),
            })
            .collect();
        if direction == Direction::Newer {
            // Stop before the first gap a commit in flight may still fill (module docs).
            let mut expected = bound.saturating_add(1).max(1);
            let gaps: Vec<(i64, i64, i64)> = rows
                .iter()
                .filter_map(|row| {
                    let gap = (row.id > expected).then_some((expected, row.id, row.received_at_ms));
                    expected = row.id + 1;
                    gap
                })
                .collect();
            if let Some((_, held)) = self.held_back.first_open(side, gaps, newest) {
                rows.retain(|row| row.id < held);
            }
        }
        Ok(rows)
    }

    fn chunk_by_learner(
        &self,
        learner: Learner<'_>,
        bound: i64,
        direction: Direction,
        count: usize,
    ) -> anyhow::Result<Vec<KeptRow>> {
        let (compare, order, upto) = match direction {
            Direction::Older => ("<", "DESC", i64::MAX),
            // Only what a stream may already show: ids commit out of order (module docs).
            Direction::Newer => (">", "ASC", self.horizon(Side::Accepted)?),
        };
        let limit = i64::try_from(count).unwrap_or(i64::MAX);
        let mut values: Vec<&(dyn ToSql + Sync)> = vec![&bound, &upto, &limit];
        let mut conditions = Vec::new();
        // Written as the indexes are, so the planner uses them (search::Search's meaning).
        for (expression, value) in [
            ("(event -> 'data' ->> 'userId')", &learner.user_id),
            ("(event -> 'data' ->> 'loId')", &learner.lo_id),
        ] {
            if let Some(value) = value {
                values.push(value);
                conditions.push(format!("{expression} = ${}", values.len()));
            }
        }
        let sql = format!(
            "SELECT id, received_at_ms, body, account_id, 0, '' FROM receiver_requests WHERE id IN (
                 SELECT request_id FROM receiver_events
                 WHERE request_id {compare} $1 AND request_id <= $2 AND {}
                 GROUP BY request_id ORDER BY request_id {order} LIMIT $3)
             ORDER BY id {order}",
            conditions.join(" AND ")
        );
        Ok(self
            .query(&sql, &values)?
            .into_iter()
            .map(|row| KeptRow {
                side: Side::Accepted,
                id: row.get(0),
                received_at_ms: row.get(1),
                body: row.get(2),
                account_column: row.get(3),
                status: u16::try_from(row.get::<_, i32>(4)).unwrap_or(0),
                reason: row.get(5),
            })
            .collect())
    }

    fn stored_by(&self, events: &[(i64, &str)]) -> anyhow::Result<Vec<Option<i64>>> {
        // One round trip for the whole chunk, by the unique (account_id, event_id) index.
        let accounts: Vec<i64> = events.iter().map(|(account, _)| *account).collect();
        let event_ids: Vec<&str> = events.iter().map(|(_, event_id)| *event_id).collect();
        let rows = self.query(
            "SELECT e.request_id
             FROM unnest($1::int8[], $2::text[]) WITH ORDINALITY AS k (account_id, event_id, ord)
             LEFT JOIN receiver_events e
                    ON e.account_id = k.account_id AND e.event_id = k.event_id
             ORDER BY k.ord",
            &[&accounts, &event_ids],
        )?;
        if rows.len() != events.len() {
            // No events table yet: nothing was stored.
            return Ok(vec![None; events.len()]);
        }
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    fn forwarding_of(&self, request_id: i64) -> anyhow::Result<ForwardingState> {
        let sql = format!(
            "SELECT {} FROM (SELECT $1::int8 AS request_id) e",
            REQUEST_STATE_CODE.replace("{jobs}", "receiver_forward_jobs")
        );
        let rows = self.query(&sql, &[&request_id])?;
        let code = rows.first().map_or(0, |row| row.get::<_, i32>(0));
        Ok(ForwardingState::from_code(i64::from(code)))
    }

    fn kept(&self, key: RequestKey) -> anyhow::Result<Option<KeptRequest>> {
        let (sql, id) = match key {
            RequestKey::Accepted(id) => (
                "SELECT received_at_ms, method, path, headers, body, account_id, 0, NULL::text
                 FROM receiver_requests WHERE id = $1",
                id,
            ),
            RequestKey::Refused(id) => (
                "SELECT received_at_ms, method, path, headers, body, NULL::int8, status, reason
                 FROM receiver_refused_requests WHERE id = $1",
                id,
            ),
        };
        let rows = self.query(sql, &[&id])?;
        Ok(rows.first().map(|row| {
            let headers: String = row.get(3);
            KeptRequest {
                record: query::capture_record(
                    row.get(0),
                    row.get(1),
                    row.get(2),
                    &headers,
                    row.get(4),
                    row.get(7),
                ),
                account_column: row.get(5),
                status: u16::try_from(row.get::<_, i32>(6)).unwrap_or(0),
            }
        }))
    }

    fn session(&self) -> &dyn SqlSession {
        self
    }

    fn newest(&self) -> anyhow::Result<Cursor> {
        Ok(Cursor {
            accepted: self.horizon(Side::Accepted)?,
            refused: self.horizon(Side::Refused)?,
        })
    }

    fn row_at_or_after(&self, side: Side, id: i64) -> anyhow::Result<Option<(i64, i64)>> {
        let sql = format!(
            "SELECT id, received_at_ms FROM {} WHERE id >= $1 ORDER BY id LIMIT 1",
            table(side)
        );
        Ok(self
            .query(&sql, &[&id])?
            .first()
            .map(|row| (row.get(0), row.get(1))))
    }

    fn tally_accepted(
        &self,
        after: i64,
        upto: i64,
        since_ms: i64,
        until_ms: i64,
        bucket_ms: i64,
    ) -> anyhow::Result<Vec<AcceptedTally>> {
        // A duplicate stored no event (the index by request says so in one look) though it
        // carried some (the body says so, read only for those: CASE keeps the order).
        let rows = self.query(
            "SELECT r.received_at_ms / $5 * $5, COUNT(*),
                    SUM(CASE WHEN EXISTS (SELECT 1 FROM receiver_events e WHERE e.request_id = r.id)
                             THEN 0
                             WHEN json_array_length(convert_from(r.body, 'UTF8')::json -> 'events') > 0
                             THEN 1 ELSE 0 END)
             FROM receiver_requests r
             WHERE r.id > $1 AND r.id <= $2 AND r.received_at_ms >= $3 AND r.received_at_ms < $4
             GROUP BY 1",
            &[&after, &upto, &since_ms, &until_ms, &bucket_ms],
        )?;
        Ok(rows
            .iter()
            .map(|row| {
                (
                    row.get(0),
                    count(row.get::<_, i64>(1)),
                    count(row.get::<_, i64>(2)),
                )
            })
            .collect())
    }

    fn tally_refused(
        &self,
        after: i64,
        upto: i64,
        since_ms: i64,
        until_ms: i64,
        bucket_ms: i64,
    ) -> anyhow::Result<Vec<NamedTally>> {
        let rows = self.query(
            "SELECT received_at_ms / $5 * $5, reason, COUNT(*) FROM receiver_refused_requests
             WHERE id > $1 AND id <= $2 AND received_at_ms >= $3 AND received_at_ms < $4
             GROUP BY 1, 2",
            &[&after, &upto, &since_ms, &until_ms, &bucket_ms],
        )?;
        Ok(named_tally(&rows))
    }

    fn tally_events(
        &self,
        after: i64,
        upto: i64,
        since_ms: i64,
        until_ms: i64,
        bucket_ms: i64,
    ) -> anyhow::Result<Vec<NamedTally>> {
        let rows = self.query(
            "SELECT r.received_at_ms / $5 * $5, e.event_name, COUNT(*)
             FROM receiver_events e JOIN receiver_requests r ON r.id = e.request_id
             WHERE e.request_id > $1 AND e.request_id <= $2
               AND r.received_at_ms >= $3 AND r.received_at_ms < $4
             GROUP BY 1, 2",
            &[&after, &upto, &since_ms, &until_ms, &bucket_ms],
        )?;
        Ok(named_tally(&rows))
    }
}

/// A count from the database (never negative).
fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// Rows of `(bucket, name, count)`.
fn named_tally(rows: &[tokio_postgres::Row]) -> Vec<NamedTally> {
    rows.iter()
        .map(|row| (row.get(0), row.get(1), count(row.get::<_, i64>(2))))
        .collect()
}
