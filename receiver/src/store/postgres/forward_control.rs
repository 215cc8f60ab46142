//! PostgreSQL clients as sessions of the forwarding queues' shared SQL
//! (`store::forward::sql`): a client driven from a blocking thread ([`PostgresSession`]), and
//! the store's readers, for `receiver forward …` (from any host), the inspector's forwarding
//! pages and the forwarder's backlog and adoption.

use anyhow::Context as _;

use super::batch::FORWARD_ORDER_LOCK;
use super::error::describe;
use super::reader::PostgresReader;
use super::requests::PostgresRequestReader;
use crate::store::forward::sql::{Cell, Dialect, Row, SqlSession, Value};

/// `values` as PostgreSQL parameters.
pub(super) fn postgres_parameters(
    values: &[Value],
) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
    values
        .iter()
        .map(|value| match value {
            Value::Integer(integer) => integer as &(dyn tokio_postgres::types::ToSql + Sync),
            Value::Text(text) => text as &(dyn tokio_postgres::types::ToSql + Sync),
            Value::Bytes(bytes) => bytes as &(dyn tokio_postgres::types::ToSql + Sync),
        })
        .collect()
}

/// A PostgreSQL row as cells, by the column types the statements use.
pub(super) fn postgres_row(row: &tokio_postgres::Row) -> anyhow::Result<Row> {
    use tokio_postgres::types::Type;
    let mut cells = Vec::with_capacity(row.len());
    for (index, column) in row.columns().iter().enumerate() {
        let type_ = column.type_();
        let cell = if *type_ == Type::INT8 {
            row.get::<_, Option<i64>>(index).map(Cell::Integer)
        } else if *type_ == Type::INT4 {
            row.get::<_, Option<i32>>(index)
                .map(|value| Cell::Integer(i64::from(value)))
        } else if *type_ == Type::TEXT || *type_ == Type::VARCHAR {
            row.get::<_, Option<String>>(index).map(Cell::Text)
        } else if *type_ == Type::BYTEA {
            row.get::<_, Option<Vec<u8>>>(index).map(Cell::Bytes)
        } else {
            anyhow::bail!(
                "column {} has type {type_}, not one this reader knows",
                column.name()
            );
        };
        cells.push(cell.unwrap_or(Cell::Null));
    }
    Ok(Row(cells))
}

/// What drives a PostgreSQL client for a blocking caller.
pub(super) enum Driver<'r> {
    /// A runtime of the caller's own, outside any other (the commands): only its own
    /// `block_on` drives a current-thread runtime's I/O.
    Own(&'r tokio::runtime::Runtime),
    /// The listener's runtime, from one of its blocking threads.
    Shared(&'r tokio::runtime::Handle),
}

impl Driver<'_> {
    fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        match self {
            Self::Own(runtime) => runtime.block_on(future),
            Self::Shared(handle) => handle.block_on(future),
        }
    }
}

/// A PostgreSQL client driven from a blocking thread, as a session.
pub(super) struct PostgresSession<'c> {
    /// The client.
    pub(super) client: &'c tokio_postgres::Client,
    /// The runtime that drives it.
    pub(super) runtime: Driver<'c>,
}

impl SqlSession for PostgresSession<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn query(&self, sql: &str, values: &[Value]) -> anyhow::Result<Vec<Row>> {
        let rows = self
            .runtime
            .block_on(self.client.query(sql, &postgres_parameters(values)))
            .map_err(|error| anyhow::anyhow!(describe(&error)))?;
        rows.iter().map(postgres_row).collect()
    }

    fn execute(&self, sql: &str, values: &[Value]) -> anyhow::Result<u64> {
        self.runtime
            .block_on(self.client.execute(sql, &postgres_parameters(values)))
            .map_err(|error| anyhow::anyhow!(describe(&error)))
    }

    fn begin_ordered(&self) -> anyhow::Result<()> {
        self.execute("BEGIN", &[])?;
        if let Err(error) = self.execute(
            "SELECT pg_advisory_xact_lock($1)",
            &[Value::int(FORWARD_ORDER_LOCK)],
        ) {
            self.rollback();
            return Err(error);
        }
        Ok(())
    }

    fn next_queue_order(&self) -> anyhow::Result<i64> {
        self.query("SELECT nextval('receiver_forward_order_seq')", &[])?
            .first()
            .context("nextval returned no row")?
            .int(0)
    }
}

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
