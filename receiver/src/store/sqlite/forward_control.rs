//! The SQLite store's readers as sessions of the forwarding queues' shared SQL
//! (`store::forward::sql`), for `receiver forward …` and the inspector's forwarding pages.

use super::reader::SqliteReader;
use crate::store::forward::sql::{Dialect, Row, SqlSession, Value};

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
