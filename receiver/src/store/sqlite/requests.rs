//! The inspector's reads over the SQLite store: the SQL of [`RequestRows`]; the walks,
//! filters and merging are the stores' shared `store::requests`.
//!
//! Ids follow commit order here (one writer, one transaction at a time), so a walk to newer
//! rows may read up to the newest id: nothing can commit later below it.

use super::reader::SqliteReader;
use crate::store::requests::{
    job_state, Direction, KeptRequest, KeptRow, Learner, RequestRows, Side,
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
        // One lookup per event by the unique index: SQLite runs in this process, so many small
        // queries cost no round trips.
        let mut statement = self.connection.prepare_cached(
            "SELECT request_id FROM events WHERE account_id = ?1 AND event_id = ?2",
        )?;
        let mut found = Vec::with_capacity(events.len());
        for (account, event_id) in events {
            found.push(
                statement
                    .query_row(params![account, event_id], |row| row.get(0))
                    .optional()?,
            );
        }
        Ok(found)
    }

    fn forwarding_of(&self, request_id: i64) -> anyhow::Result<ForwardingState> {
        let forwarded: Option<Option<i64>> = self
            .connection
            .prepare_cached("SELECT forwarded_at_ms FROM forward_jobs WHERE request_id = ?1")?
            .query_row([request_id], |row| row.get(0))
            .optional()?;
        Ok(job_state(forwarded))
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

    fn newest(&self) -> anyhow::Result<Cursor> {
        Ok(Cursor {
            accepted: self.max_id("requests")?,
            refused: self.max_id("refused_requests")?,
        })
    }
}
