//! Reading the SQLite store for `receiver events` and `receiver export` (the inspector's
//! reads are in `requests`), on a connection of its own.

use std::path::Path;

use anyhow::Context as _;
use rusqlite::{Connection, OpenFlags, OptionalExtension as _};
use verify::CaptureRecord;

use super::schema::{check_layout, RAW_TEXT};
use crate::store::{query, CaptureFilter, EventFilter, EventQuery, StoredEvent};

/// Read access for `receiver events` and `receiver export`, on its own connection.
pub struct SqliteReader {
    pub(super) connection: Connection,
}

impl SqliteReader {
    /// Opens an existing store for reading. It may be in use by a listener at the same time.
    ///
    /// # Errors
    /// The file does not exist or is not a store.
    pub fn open(path: &Path) -> anyhow::Result<SqliteReader> {
        if !path.exists() {
            anyhow::bail!("no store at {} (give --store sqlite:PATH)", path.display());
        }
        // Read-write without create: a read-only WAL reader would need the -shm file to exist.
        let connection = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_context(|| format!("opening the store {}", path.display()))?;
        connection.busy_timeout(std::time::Duration::from_secs(5))?;
        let has_events: Option<String> = connection
            .query_row(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'events'",
                [],
                |row| row.get(0),
            )
            .optional()
            .with_context(|| format!("reading the store {}", path.display()))?;
        if has_events.is_none() {
            anyhow::bail!(
                "{} is not a receiver store (no events table)",
                path.display()
            );
        }
        check_layout(&connection, false)
            .with_context(|| format!("reading the store {}", path.display()))?;
        add_holds(&connection)?;
        Ok(SqliteReader { connection })
    }
}

/// `holds(blob, text)`: whether the bytes hold the text, found by `memchr`'s vectorised
/// search. A search for a text reads every body (a million in under a second is the goal),
/// and SQLite's own `instr` compares byte by byte: this is several times faster.
fn add_holds(connection: &Connection) -> anyhow::Result<()> {
    use rusqlite::functions::FunctionFlags;
    connection
        .create_scalar_function(
            "holds",
            2,
            FunctionFlags::SQLITE_UTF8
                | FunctionFlags::SQLITE_DETERMINISTIC
                | FunctionFlags::SQLITE_INNOCUOUS,
            |context| {
                let bytes = |index: usize| -> rusqlite::Result<&[u8]> {
                    Ok(match context.get_raw(index) {
                        rusqlite::types::ValueRef::Blob(bytes)
                        | rusqlite::types::ValueRef::Text(bytes) => bytes,
                        _ => &[],
                    })
                };
                Ok(memchr::memmem::find(bytes(0)?, bytes(1)?).is_some())
            },
        )
        .context("adding the search function to the store's connection")
}

/// The table names of this layout, for the shared read queries.
const TABLES: query::Tables = query::Tables {
    requests: "requests",
    events: "events",
    forward_jobs: "forward_jobs",
    refused: "refused_requests",
    events_from: "events e JOIN requests r ON r.id = e.request_id",
    received_at: "r.received_at_ms",
    auth: "r.auth",
    raw_text: RAW_TEXT,
    user_id: "e.user_id",
    lo_id: "e.lo_id",
    holds_text: "holds(body, ?)",
    holds_scope: "e.request_id IN (SELECT id FROM requests WHERE {})",
    search_order: "e.id",
    placeholder: |n| format!("?{n}"),
};

/// The shared queries' values as SQLite values.
fn sqlite_values(values: Vec<query::SqlValue>) -> Vec<rusqlite::types::Value> {
    use rusqlite::types::Value;
    values
        .into_iter()
        .map(|value| match value {
            query::SqlValue::Integer(integer) => Value::Integer(integer),
            query::SqlValue::Text(text) => Value::Text(text),
        })
        .collect()
}

impl EventQuery for SqliteReader {
    fn events(&self, filter: &EventFilter) -> anyhow::Result<Vec<StoredEvent>> {
        let query = query::events(&TABLES, filter);
        let mut statement = self.connection.prepare(&query.sql)?;
        let mut rows = statement.query(rusqlite::params_from_iter(sqlite_values(query.values)))?;
        let mut found = Vec::new();
        if filter.limit == Some(0) {
            return Ok(found);
        }
        while let Some(row) = rows.next()? {
            let event = StoredEvent {
                account_id: row.get(0)?,
                event_id: row.get(1)?,
                event_name: row.get(2)?,
                timestamp_ms: row.get(3)?,
                received_at_ms: row.get(4)?,
                known: row.get(5)?,
                raw: String::from_utf8_lossy(row.get_ref(6)?.as_bytes()?).into_owned(),
                request_id: row.get(7)?,
                auth: row.get(8)?,
                forwarding: query::forwarding_state(row.get(9)?),
            };
            if !query::collect(filter, &mut found, event) {
                break;
            }
        }
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
        let count: i64 = self.connection.query_row(
            &query.sql,
            rusqlite::params_from_iter(sqlite_values(query.values)),
            |row| row.get(0),
        )?;
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
        let mut statement = self.connection.prepare(&query.sql)?;
        let mut rows = statement.query(rusqlite::params_from_iter(sqlite_values(query.values)))?;
        let mut handed = 0;
        while let Some(row) = rows.next()? {
            let body: Vec<u8> = row.get(4)?;
            let account: Option<i64> = row.get(6)?;
            if !query::capture_matches(filter, account, &body) {
                continue;
            }
            let headers: String = row.get(3)?;
            each(query::capture_record(
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                &headers,
                body,
                row.get(5)?,
            ))?;
            handed += 1;
        }
        Ok(handed)
    }
}
