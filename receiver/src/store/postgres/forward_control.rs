//! The PostgreSQL store's readers as sessions of the forwarding queues' shared SQL
//! (`store::forward::sql`), for `receiver forward …` (from any host) and the inspector's
//! forwarding pages.

use super::reader::PostgresReader;
use super::requests::PostgresRequestReader;
use crate::store::forward::sql::{Dialect, Driver, PostgresSession, Row, SqlSession, Value};

/// Runs `work` on a session over the reader's client and runtime.
fn with_session<T>(
    client: &tokio_postgres::Client,
    runtime: Driver<'_>,
    work: impl FnOnce(&PostgresSession<'_>) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    work(&PostgresSession { client, runtime })
}

impl SqlSession for PostgresReader {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn query(&self, sql: &str, values: &[Value]) -> anyhow::Result<Vec<Row>> {
        let client = self.client()?;
        with_session(&client, Driver::Own(&self.runtime), |session| {
            session.query(sql, values)
        })
    }

    fn execute(&self, sql: &str, values: &[Value]) -> anyhow::Result<u64> {
        let client = self.client()?;
        with_session(&client, Driver::Own(&self.runtime), |session| {
            session.execute(sql, values)
        })
    }

    fn begin_ordered(&self) -> anyhow::Result<()> {
        let client = self.client()?;
        with_session(&client, Driver::Own(&self.runtime), |session| {
            session.begin_ordered()
        })
    }

    fn next_queue_order(&self) -> anyhow::Result<i64> {
        let client = self.client()?;
        with_session(&client, Driver::Own(&self.runtime), |session| {
            session.next_queue_order()
        })
    }
}

impl SqlSession for PostgresRequestReader {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn query(&self, sql: &str, values: &[Value]) -> anyhow::Result<Vec<Row>> {
        with_session(&self.client, Driver::Shared(&self.runtime), |session| {
            session.query(sql, values)
        })
    }

    fn execute(&self, sql: &str, values: &[Value]) -> anyhow::Result<u64> {
        with_session(&self.client, Driver::Shared(&self.runtime), |session| {
            session.execute(sql, values)
        })
    }

    fn begin_ordered(&self) -> anyhow::Result<()> {
        with_session(&self.client, Driver::Shared(&self.runtime), |session| {
            session.begin_ordered()
        })
    }

    fn next_queue_order(&self) -> anyhow::Result<i64> {
        with_session(&self.client, Driver::Shared(&self.runtime), |session| {
            session.next_queue_order()
        })
    }
}
