//! Reading the shared store for `receiver events` and `receiver export` (the inspector's
//! reads are in `requests`).

use std::sync::Mutex;

use anyhow::Context as _;
use common::postgres::DatabaseUrl;
use common::postgres_schema;
use deadpool_postgres::Object;
use tokio_postgres::types::ToSql;
use verify::CaptureRecord;

use super::schema::LAYOUT;
use crate::store::{query, CaptureFilter, EventFilter, EventQuery, StoredEvent};

/// The table names of this layout, for the shared read queries.
const TABLES: query::Tables = query::Tables {
    requests: "receiver_requests",
    events: "receiver_events",
    forward_jobs: "receiver_forward_jobs",
    refused: "receiver_refused_requests",
    // Every column the event queries read is in receiver_events but the request's auth,
    // looked up per row returned: no join that would read every request.
    events_from: "receiver_events e",
    received_at: "e.received_at_ms",
    auth: "(SELECT a.auth FROM receiver_requests a WHERE a.id = e.request_id)",
    raw_text: "e.event::text",
    user_id: "(e.event -> 'data' ->> 'userId')",
    lo_id: "(e.event -> 'data' ->> 'loId')",
    holds_text: "strpos(e.event::text, ?) > 0",
    holds_scope: "{}",
    search_order: "e.id + 0",
    placeholder: |n| format!("${n}"),
};

/// Read access for `receiver events` and `receiver export`: a connection and a small runtime
/// of its own, since those commands are not async.
pub struct PostgresReader {
    pub(super) runtime: tokio::runtime::Runtime,
    // A std Mutex: locked only in these blocking methods, around `block_on`.
    client: Mutex<Object>,
}

impl PostgresReader {
    /// Connects and checks that the receiver's tables are there, of this version.
    ///
    /// # Errors
    /// The database cannot be reached, or has no receiver tables, or tables of another
    /// version. The message shows the URL without its password.
    pub fn open(url: &DatabaseUrl) -> anyhow::Result<PostgresReader> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        let client = runtime
            .block_on(async {
                let pool = url.pool("receiver-reader", 1)?;
                let client = pool.get().await?;
                let Some(version) = postgres_schema::stored_version(&client, &LAYOUT).await?
                else {
                    anyhow::bail!("no receiver tables there (a receiver listening with this --store creates them)")
                };
                // A reader writes nothing: tables of an older version wait for a listener
                // to bring them up.
                if version != LAYOUT.version() {
                    anyhow::bail!(
                        "the receiver tables there are of version {version}, this receiver reads version {}",
                        LAYOUT.version()
                    );
                }
                Ok(client)
            })
            .with_context(|| format!("opening the store {url}"))?;
        Ok(PostgresReader {
            runtime,
            client: Mutex::new(client),
        })
    }

    pub(super) fn client(&self) -> anyhow::Result<std::sync::MutexGuard<'_, Object>> {
        self.client
            .lock()
            .map_err(|_| anyhow::anyhow!("the store reader is poisoned"))
    }
}

/// The shared queries' values as PostgreSQL parameters.
fn postgres_values(values: &[query::SqlValue]) -> Vec<&(dyn ToSql + Sync)> {
    values
        .iter()
        .map(|value| match value {
            query::SqlValue::Integer(integer) => integer as &(dyn ToSql + Sync),
            query::SqlValue::Text(text) => text as &(dyn ToSql + Sync),
        })
        .collect()
}

/// Rows fetched per round trip when an export streams captures.
const CAPTURE_PAGE: i32 = 256;
/// Rows fetched per round trip when events are listed.
const EVENT_PAGE: i32 = 1024;

impl EventQuery for PostgresReader {
    fn events(&self, filter: &EventFilter) -> anyhow::Result<Vec<StoredEvent>> {
        let query = query::events(&TABLES, filter);
        let mut client = self.client()?;
        let runtime = &self.runtime;
        let mut found = Vec::new();
        if filter.limit == Some(0) {
            return Ok(found);
        }
        // A portal in a read-only transaction: a search keeps what matches as it reads,
        // page by page, and stops at the limit.
        let transaction = runtime.block_on(client.transaction())?;
        let portal =
            runtime.block_on(transaction.bind(&query.sql, &postgres_values(&query.values)))?;
        'pages: loop {
            let rows = runtime.block_on(transaction.query_portal(&portal, EVENT_PAGE))?;
            if rows.is_empty() {
                break;
            }
            for row in rows {
                let event = StoredEvent {
                    account_id: row.get(0),
                    event_id: row.get(1),
                    event_name: row.get(2),
                    timestamp_ms: row.get(3),
                    received_at_ms: row.get(4),
                    known: row.get(5),
                    raw: row.get(6),
                    request_id: row.get(7),
                    auth: row.get(8),
                    forwarding: query::forwarding_state(i64::from(row.get::<_, i32>(9))),
                };
                if !query::collect(filter, &mut found, event) {
                    break 'pages;
                }
            }
        }
        runtime.block_on(transaction.commit())?;
        Ok(found)
    }

    fn count(&self, filter: &EventFilter) -> anyhow::Result<u64> {
        if !filter.search.is_empty() {
            let all = EventFilter {
                limit: None,
                ..filter.clone()
            };
            return Ok(self.events(&all)?.len() as u64);
        }
        let query = query::count(&TABLES, filter);
        let client = self.client()?;
        let count: i64 = self
            .runtime
            .block_on(client.query_one(&query.sql, &postgres_values(&query.values)))?
            .get(0);
        Ok(u64::try_from(count).unwrap_or(0))
    }

    fn captures(
        &self,
        filter: &CaptureFilter,
        each: &mut dyn FnMut(CaptureRecord) -> anyhow::Result<()>,
    ) -> anyhow::Result<u64> {
        let Some(query) = query::captures(&TABLES, filter) else {
            return Ok(0);
        };
        let mut client = self.client()?;
        let runtime = &self.runtime;
        // A portal in a read-only transaction: the export is read in pages, never whole.
        let transaction = runtime.block_on(client.transaction())?;
        let portal =
            runtime.block_on(transaction.bind(&query.sql, &postgres_values(&query.values)))?;
        let mut handed = 0;
        loop {
            let rows = runtime.block_on(transaction.query_portal(&portal, CAPTURE_PAGE))?;
            if rows.is_empty() {
                break;
            }
            for row in rows {
                let body: Vec<u8> = row.get(4);
                let account: Option<i64> = row.get(6);
                if !query::capture_matches(filter, account, &body) {
                    continue;
                }
                let headers: String = row.get(3);
                each(query::capture_record(
                    row.get(0),
                    row.get(1),
                    row.get(2),
                    &headers,
                    body,
                    row.get(5),
                ))?;
                handed += 1;
            }
        }
        runtime.block_on(transaction.commit())?;
        Ok(handed)
    }
}
