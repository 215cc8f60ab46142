//! SQLite connections as sessions of the forwarding queues' shared SQL
//! (`store::forward::sql`): any connection, and the store's readers, for `receiver forward …`,
//! the inspector's forwarding pages and the forwarder's backlog and adoption.

use super::reader::SqliteReader;
use crate::store::forward::sql::{Cell, Dialect, Row, SqlSession, Value};

/// A SQLite connection as a session.
impl SqlSession for rusqlite::Connection {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn query(&self, sql: &str, values: &[Value]) -> anyhow::Result<Vec<Row>> {
        let mut statement = self.prepare_cached(sql)?;
        let columns = statement.column_count();
        let mut rows =
            statement.query(rusqlite::params_from_iter(values.iter().map(sqlite_value)))?;
        let mut read = Vec::new();
        while let Some(row) = rows.next()? {
            let mut cells = Vec::with_capacity(columns);
            for index in 0..columns {
                cells.push(match row.get_ref(index)? {
                    rusqlite::types::ValueRef::Null => Cell::Null,
                    rusqlite::types::ValueRef::Integer(value) => Cell::Integer(value),
                    rusqlite::types::ValueRef::Real(value) => Cell::Integer(value as i64),
                    rusqlite::types::ValueRef::Text(text) => {
                        Cell::Text(String::from_utf8_lossy(text).into_owned())
                    }
                    rusqlite::types::ValueRef::Blob(bytes) => Cell::Bytes(bytes.to_vec()),
                });
            }
            read.push(Row(cells));
        }
        Ok(read)
    }

    fn execute(&self, sql: &str, values: &[Value]) -> anyhow::Result<u64> {
        if values.is_empty() && !sql.contains('?') {
            // BEGIN, COMMIT and friends: not worth a cached statement.
            self.execute_batch(sql)?;
            return Ok(0);
        }
        let changed = self
            .prepare_cached(sql)?
            .execute(rusqlite::params_from_iter(values.iter().map(sqlite_value)))?;
        Ok(changed as u64)
    }

    fn begin_ordered(&self) -> anyhow::Result<()> {
        // Commits of an operator's change must reach the disk like the listener's.
        self.execute_batch("PRAGMA synchronous = FULL; BEGIN IMMEDIATE;")?;
        Ok(())
    }

    fn next_queue_order(&self) -> anyhow::Result<i64> {
        Ok(self.query_row(
            "UPDATE forward_order SET next = next + 1 WHERE id = 1 RETURNING next - 1",
            [],
            |row| row.get(0),
        )?)
    }
}

/// `value` as a SQLite value.
pub(super) fn sqlite_value(value: &Value) -> rusqlite::types::Value {
    use rusqlite::types::Value as Sqlite;
    match value {
        Value::Integer(Some(value)) => Sqlite::Integer(*value),
        Value::Text(Some(text)) => Sqlite::Text(text.clone()),
        Value::Bytes(bytes) => Sqlite::Blob(bytes.clone()),
        Value::Integer(None) | Value::Text(None) => Sqlite::Null,
    }
}

impl SqlSession for SqliteReader {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn query(&self, sql: &str, values: &[Value]) -> anyhow::Result<Vec<Row>> {
        SqlSession::query(&self.connection, sql, values)
    }

    fn execute(&self, sql: &str, values: &[Value]) -> anyhow::Result<u64> {
        SqlSession::execute(&self.connection, sql, values)
    }

    fn begin_ordered(&self) -> anyhow::Result<()> {
        self.connection.begin_ordered()
    }

    fn next_queue_order(&self) -> anyhow::Result<i64> {
        self.connection.next_queue_order()
    }
}
