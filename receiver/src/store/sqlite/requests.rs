//! The inspector's reads over the SQLite store: the SQL of [`RequestRows`]; the walks,
//! filters and merging are the stores' shared `store::requests`.
//!
//! Ids follow commit order here (one writer, one transaction at a time), so a walk to newer
//! rows may read up to the newest id: nothing can commit later below it.

use super::reader::SqliteReader;
use crate::store::forward::sql::{SqlSession, REQUEST_STATE_CODE};
use crate::store::request_rows::{
    AcceptedTally, Direction, KeptRequest, KeptRow, Learner, NamedTally, RequestRows, Side,
};
use crate::store::{query, Cursor, ForwardingState, RequestKey};
use rusqlite::{params, OptionalExtension as _};

impl SqliteReader {
    /// The largest id of a table, 0 when it is empty.
    fn max_id(&self, table: &str) -> anyhow::Result<i64> {
        let sql = format!("SELECT COALESCE(MAX(id), 0) FROM {table}");
        Ok(self.connection.query_row(&sql, [], |row| row.get(0))?)
    }
}

impl RequestRows for SqliteReader {
    fn chunk(
        &self,
        side: Side,
        bound: i64,
        direction: Direction,
        count: usize,
    ) -> anyhow::Result<Vec<KeptRow>> {
        let (table, columns) = match side {
            Side::Accepted => ("requests", "id, received_at_ms, body, account_id, 0, ''"),
            Side::Refused => (
                "refused_requests",
                "id, received_at_ms, body, NULL, status, reason",
            ),
        };
        let (compare, order) = match direction {
            Direction::Older => ("<", "DESC"),
            Direction::Newer => (">", "ASC"),
        };
        let sql = format!(
            "SELECT {columns} FROM {table} WHERE id {compare} ?1 ORDER BY id {order} LIMIT ?2"
        );
        let mut statement = self.connection.prepare_cached(&sql)?;
        let rows = statement.query_map(params![bound, count as i64], |row| {
            Ok(KeptRow {
                side,
                id: row.get(0)?,
                received_at_ms: row.get(1)?,
                body: row.get(2)?,
                account_column: row.get(3)?,
                status: row.get(4)?,
                reason: row.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn chunk_by_learner(
        &self,
        learner: Learner<'_>,
        bound: i64,
        direction: Direction,
        count: usize,
    ) -> anyhow::Result<Vec<KeptRow>> {
        let (compare, order) = match direction {
            Direction::Older => ("<", "DESC"),
            Direction::Newer => (">", "ASC"),
        };
        let mut conditions = vec![format!("request_id {compare} ?1")];
        let mut values: Vec<rusqlite::types::Value> = vec![bound.into()];
        for (column, value) in [("user_id", learner.user_id), ("lo_id", learner.lo_id)] {
            if let Some(value) = value {
                values.push(value.to_owned().into());
                conditions.push(format!("{column} = ?{}", values.len()));
            }
        }
        values.push((count as i64).into());
        // The events table read whole by its own order (NOT INDEXED): its rows are narrow, and
        // the index by request would cost a lookup of each row it walks past.
        let sql = format!(
            "SELECT id, received_at_ms, body, account_id, 0, '' FROM requests WHERE id IN (
                 SELECT request_id FROM events NOT INDEXED WHERE {}
                 GROUP BY request_id ORDER BY request_id {order} LIMIT ?{})
             ORDER BY id {order}",
            conditions.join(" AND "),
            values.len()
        );
        let mut statement = self.connection.prepare_cached(&sql)?;
        let rows = statement.query_map(rusqlite::params_from_iter(values), |row| {
            Ok(KeptRow {
                side: Side::Accepted,
                id: row.get(0)?,
                received_at_ms: row.get(1)?,
                body: row.get(2)?,
                account_column: row.get(3)?,
                status: row.get(4)?,
                reason: row.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn stored_by(&self, events: &[(i64, &str)]) -> anyhow::Result<Vec<Option<i64>>> {
        // No index by key (the listener dedupes in memory, so commits only append): the
        // events are read newest first until every key is found. Asked for a page's
        // duplicates only (`stored_here` answers the rest), whose first copies are mostly
        // recent; a key no longer stored reads the whole table (0.1–0.3 s a million events).
        let mut found = vec![None; events.len()];
        let mut missing: std::collections::HashMap<(i64, String), Vec<usize>> =
            std::collections::HashMap::new();
        for (index, (account, event_id)) in events.iter().enumerate() {
            missing
                .entry((*account, (*event_id).to_owned()))
                .or_default()
                .push(index);
        }
        // One key buffer for the whole walk.
        let mut key = (0, String::new());
        let mut statement = self.connection.prepare_cached(
            "SELECT account_id, event_id, request_id FROM events ORDER BY id DESC",
        )?;
        let mut rows = statement.query([])?;
        while !missing.is_empty() {
            let Some(row) = rows.next()? else {
                break;
            };
            key.0 = row.get(0)?;
            key.1.clear();
            key.1.push_str(row.get_ref(1)?.as_str()?);
            if let Some(indexes) = missing.remove(&key) {
                let request_id: i64 = row.get(2)?;
                for index in indexes {
                    found[index] = Some(request_id);
                }
            }
        }
        Ok(found)
    }

    fn stored_here(&self, asked: &[(i64, i64, &str)]) -> anyhow::Result<Vec<bool>> {
        // A request's events by `events_by_request`: one short read per request.
        let mut statement = self
            .connection
            .prepare_cached("SELECT account_id, event_id FROM events WHERE request_id = ?1")?;
        let mut stored: std::collections::HashMap<i64, std::collections::HashSet<(i64, String)>> =
            std::collections::HashMap::new();
        let mut answers = Vec::with_capacity(asked.len());
        for (request_id, account, event_id) in asked {
            if !stored.contains_key(request_id) {
                let keys = statement
                    .query_map([request_id], |row| Ok((row.get(0)?, row.get(1)?)))?
                    .collect::<Result<_, _>>()?;
                stored.insert(*request_id, keys);
            }
            answers.push(
                stored
                    .get(request_id)
                    .is_some_and(|keys| keys.contains(&(*account, (*event_id).to_owned()))),
            );
        }
        Ok(answers)
    }

    fn forwarding_of(&self, request_id: i64) -> anyhow::Result<ForwardingState> {
        let sql = format!(
            "SELECT {} FROM (SELECT ?1 AS request_id) e",
            REQUEST_STATE_CODE.replace("{jobs}", "forward_jobs")
        );
        let code: i64 = self
            .connection
            .prepare_cached(&sql)?
            .query_row([request_id], |row| row.get(0))?;
        Ok(ForwardingState::from_code(code))
    }

    fn kept(&self, key: RequestKey) -> anyhow::Result<Option<KeptRequest>> {
        let (sql, id) = match key {
            RequestKey::Accepted(id) => (
                "SELECT received_at_ms, method, path, headers, body, account_id, 0, NULL
                 FROM requests WHERE id = ?1",
                id,
            ),
            RequestKey::Refused(id) => (
                "SELECT received_at_ms, method, path, headers, body, NULL, status, reason
                 FROM refused_requests WHERE id = ?1",
                id,
            ),
        };
        Ok(self
            .connection
            .prepare_cached(sql)?
            .query_row([id], |row| {
                let headers: String = row.get(3)?;
                Ok(KeptRequest {
                    record: query::capture_record(
                        row.get(0)?,
                        row.get(1)?,
                        row.get(2)?,
                        &headers,
                        row.get(4)?,
                        row.get(7)?,
                    ),
                    account_column: row.get(5)?,
                    status: row.get(6)?,
                })
            })
            .optional()?)
    }

    fn session(&self) -> &dyn SqlSession {
        self
    }

    fn newest(&self) -> anyhow::Result<Cursor> {
        Ok(Cursor {
            accepted: self.max_id("requests")?,
            refused: self.max_id("refused_requests")?,
        })
    }

    fn row_at_or_after(&self, side: Side, id: i64) -> anyhow::Result<Option<(i64, i64)>> {
        let table = match side {
            Side::Accepted => "requests",
            Side::Refused => "refused_requests",
        };
        let sql =
            format!("SELECT id, received_at_ms FROM {table} WHERE id >= ?1 ORDER BY id LIMIT 1");
        Ok(self
            .connection
            .prepare_cached(&sql)?
            .query_row([id], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?)
    }

    fn tally_accepted(
        &self,
        after: i64,
        upto: i64,
        since_ms: i64,
        until_ms: i64,
        bucket_ms: i64,
    ) -> anyhow::Result<Vec<AcceptedTally>> {
        // A duplicate stored no event (`events_by_request` says so in one look) though it
        // carried some (the body says so, read only for those).
        let mut statement = self.connection.prepare_cached(
            "SELECT r.received_at_ms / ?5 * ?5, COUNT(*),
                    SUM(CASE WHEN EXISTS (SELECT 1 FROM events e WHERE e.request_id = r.id) THEN 0
                             WHEN json_array_length(CAST(r.body AS TEXT), '$.events') > 0 THEN 1
                             ELSE 0 END)
             FROM requests r
             WHERE r.id > ?1 AND r.id <= ?2 AND r.received_at_ms >= ?3 AND r.received_at_ms < ?4
             GROUP BY 1",
        )?;
        let rows = statement
            .query_map(params![after, upto, since_ms, until_ms, bucket_ms], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn tally_refused(
        &self,
        after: i64,
        upto: i64,
        since_ms: i64,
        until_ms: i64,
        bucket_ms: i64,
    ) -> anyhow::Result<Vec<NamedTally>> {
        let mut statement = self.connection.prepare_cached(
            "SELECT received_at_ms / ?5 * ?5, reason, COUNT(*) FROM refused_requests
             WHERE id > ?1 AND id <= ?2 AND received_at_ms >= ?3 AND received_at_ms < ?4
             GROUP BY 1, 2",
        )?;
        let rows = statement
            .query_map(params![after, upto, since_ms, until_ms, bucket_ms], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn tally_events(
        &self,
        after: i64,
        upto: i64,
        since_ms: i64,
        until_ms: i64,
        bucket_ms: i64,
    ) -> anyhow::Result<Vec<NamedTally>> {
        let mut statement = self.connection.prepare_cached(
            "SELECT r.received_at_ms / ?5 * ?5, e.event_name, COUNT(*)
             FROM events e JOIN requests r ON r.id = e.request_id
             WHERE e.request_id > ?1 AND e.request_id <= ?2
               AND r.received_at_ms >= ?3 AND r.received_at_ms < ?4
             GROUP BY 1, 2",
        )?;
        let rows = statement
            .query_map(params![after, upto, since_ms, until_ms, bucket_ms], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
