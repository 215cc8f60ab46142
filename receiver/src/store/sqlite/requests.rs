//! The inspector's reads ([`RequestQuery`]) over the SQLite store.
//!
//! Both tables are walked by their integer primary key (the rowid), newest first for pages
//! and oldest first for the live stream, in chunks: keyset paging, so a page costs the same
//! with a thousand or a million stored requests. Filters that SQL could only answer by reading
//! every body (event names and ids of refused requests, duplicates) are applied in Rust to
//! the rows walked, and the walk stops after [`SCAN_BUDGET`] rows per table: a filter that
//! matches little gives a short page with a link to look further, never a slow one.

use rusqlite::{params, Connection, OptionalExtension as _};
use verify::{CaptureRecord, Verdict};

use super::{body_account_and_events, SqliteReader};
use crate::store::{
    Cursor, EventState, ForwardingState, RequestDetail, RequestFilter, RequestKey, RequestPage,
    RequestQuery, RequestSummary, RequestVerdict,
};

/// Most rows of one table looked at for one page or one stream poll.
const SCAN_BUDGET: usize = 5000;
/// Rows read from SQLite at a time while walking.
const CHUNK: usize = 256;

/// Which way a walk goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Ids below the bound, highest first.
    Older,
    /// Ids above the bound, lowest first.
    Newer,
}

/// Which table.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Accepted,
    Refused,
}

/// What a walk of one table found.
struct Walk {
    /// Matching rows in walk order, at most the limit asked.
    found: Vec<RequestSummary>,
    /// Where the walk started.
    bound: i64,
    /// The id of the last row looked at (the bound when none was).
    last_looked: i64,
    /// No row is left beyond `last_looked`.
    exhausted: bool,
}

impl SqliteReader {
    /// Walks one table from `bound` in `direction`, keeping rows that match `filter`.
    fn walk(
        &self,
        side: Side,
        filter: &RequestFilter,
        bound: i64,
        direction: Direction,
        limit: usize,
    ) -> anyhow::Result<Walk> {
        let mut walk = Walk {
            found: Vec::new(),
            bound,
            last_looked: bound,
            exhausted: false,
        };
        if !side_may_match(side, filter) {
            walk.exhausted = true;
            return Ok(walk);
        }
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
        let mut looked = 0;
        while walk.found.len() < limit && looked < SCAN_BUDGET {
            let mut rows = statement.query(params![walk.last_looked, CHUNK as i64])?;
            let mut in_chunk = 0;
            while let Some(row) = rows.next()? {
                in_chunk += 1;
                looked += 1;
                let id: i64 = row.get(0)?;
                walk.last_looked = id;
                let received_at_ms: i64 = row.get(1)?;
                let body: Vec<u8> = row.get(2)?;
                let row = RowParts {
                    side,
                    id,
                    received_at_ms,
                    account_column: row.get(3)?,
                    status: row.get(4)?,
                    reason: row.get(5)?,
                };
                if let Some(summary) = summarise(&self.connection, row, &body, filter)? {
                    walk.found.push(summary);
                    if walk.found.len() == limit {
                        break;
                    }
                }
            }
            if in_chunk < CHUNK && walk.found.len() < limit {
                walk.exhausted = true;
                break;
            }
        }
        Ok(walk)
    }

    /// The largest id of a table, 0 when it is empty.
    fn max_id(&self, table: &str) -> anyhow::Result<i64> {
        let sql = format!("SELECT COALESCE(MAX(id), 0) FROM {table}");
        Ok(self.connection.query_row(&sql, [], |row| row.get(0))?)
    }
}

/// The columns of one walked row, besides its body.
struct RowParts {
    side: Side,
    id: i64,
    received_at_ms: i64,
    account_column: Option<i64>,
    status: u16,
    reason: String,
}

/// Whether rows of `side` can match the verdict part of `filter` at all.
fn side_may_match(side: Side, filter: &RequestFilter) -> bool {
    match (side, filter.verdict.as_deref()) {
        (_, None) => true,
        (Side::Accepted, Some(verdict)) => verdict == "accepted" || verdict == "duplicate",
        (Side::Refused, Some(verdict)) => verdict != "accepted" && verdict != "duplicate",
    }
}

/// The row as the list shows it, or `None` when it does not match `filter`. Cheap tests
/// first: the duplicate lookup runs only for rows that passed all the others.
fn summarise(
    connection: &Connection,
    row: RowParts,
    body: &[u8],
    filter: &RequestFilter,
) -> anyhow::Result<Option<RequestSummary>> {
    let within = filter
        .received_since_ms
        .is_none_or(|since| row.received_at_ms >= since)
        && filter
            .received_until_ms
            .is_none_or(|until| row.received_at_ms < until);
    if !within {
        return Ok(None);
    }
    let (body_account, events) = body_account_and_events(body);
    let account_id = row.account_column.or(body_account);
    if filter.account_id.is_some() && account_id != filter.account_id {
        return Ok(None);
    }
    if let Some(name) = &filter.event_name {
        if !events.iter().any(|(event_name, _)| event_name == name) {
            return Ok(None);
        }
    }
    if let Some(text) = &filter.event_id_text {
        if !events
            .iter()
            .any(|(_, event_id)| event_id.contains(text.as_str()))
        {
            return Ok(None);
        }
    }
    let (key, verdict) = match row.side {
        Side::Accepted => {
            let any_new = account_id.is_none_or(|account| {
                events.is_empty()
                    || events.iter().any(|(_, event_id)| {
                        stored_by(connection, account, event_id).ok().flatten() == Some(row.id)
                    })
            });
            let verdict = if any_new {
                RequestVerdict::Accepted
            } else {
                RequestVerdict::Duplicate
            };
            (RequestKey::Accepted(row.id), verdict)
        }
        Side::Refused => (
            RequestKey::Refused(row.id),
            RequestVerdict::Refused {
                status: row.status,
                reason: row.reason,
            },
        ),
    };
    let verdict_matches = match filter.verdict.as_deref() {
        None => true,
        Some("refused") => matches!(verdict, RequestVerdict::Refused { .. }),
        Some(wanted) => verdict.label() == wanted,
    };
    if !verdict_matches {
        return Ok(None);
    }
    Ok(Some(RequestSummary {
        key,
        received_at_ms: row.received_at_ms,
        verdict,
        account_id,
        events,
    }))
}

/// The request that stored `(account, event_id)`, by the unique index.
fn stored_by(
    connection: &Connection,
    account: i64,
    event_id: &str,
) -> rusqlite::Result<Option<i64>> {
    connection
        .prepare_cached("SELECT request_id FROM events WHERE account_id = ?1 AND event_id = ?2")?
        .query_row(params![account, event_id], |row| row.get(0))
        .optional()
}

/// The forwarding state of a request's job.
fn forwarding_of(connection: &Connection, request_id: i64) -> rusqlite::Result<ForwardingState> {
    let forwarded: Option<Option<i64>> = connection
        .prepare_cached("SELECT forwarded_at_ms FROM forward_jobs WHERE request_id = ?1")?
        .query_row([request_id], |row| row.get(0))
        .optional()?;
    Ok(match forwarded {
        None => ForwardingState::None,
        Some(None) => ForwardingState::Pending,
        Some(Some(_)) => ForwardingState::Forwarded,
    })
}

/// Merges the two walks by receive time and cuts to `limit`; returns the rows and, per
/// table, the id the next walk starts from (the last row taken when some found rows were
/// left out, else the last row looked at), and whether that table has nothing left.
fn merge(
    accepted: Walk,
    refused: Walk,
    direction: Direction,
    limit: usize,
) -> (Vec<RequestSummary>, Cursor, bool) {
    let mut rows: Vec<RequestSummary> = accepted
        .found
        .iter()
        .chain(refused.found.iter())
        .cloned()
        .collect();
    // Ties broken by numbering and id, as `receiver export` orders them.
    rows.sort_by_key(|row| {
        let (kind, id) = match row.key {
            RequestKey::Accepted(id) => (0, id),
            RequestKey::Refused(id) => (1, id),
        };
        (row.received_at_ms, kind, id)
    });
    if direction == Direction::Older {
        rows.reverse();
    }
    rows.truncate(limit);
    let next = |walk: &Walk, of_side: fn(RequestKey) -> Option<i64>| {
        let taken = rows.iter().filter_map(|row| of_side(row.key)).count();
        if taken == walk.found.len() {
            (walk.last_looked, walk.exhausted)
        } else {
            let last_taken = rows.iter().rev().find_map(|row| of_side(row.key));
            (last_taken.unwrap_or(walk.bound), false)
        }
    };
    let (accepted_next, accepted_done) = next(&accepted, |key| match key {
        RequestKey::Accepted(id) => Some(id),
        RequestKey::Refused(_) => None,
    });
    let (refused_next, refused_done) = next(&refused, |key| match key {
        RequestKey::Refused(id) => Some(id),
        RequestKey::Accepted(_) => None,
    });
    let cursor = Cursor {
        accepted: accepted_next,
        refused: refused_next,
    };
    (rows, cursor, accepted_done && refused_done)
}

impl RequestQuery for SqliteReader {
    fn requests(
        &self,
        filter: &RequestFilter,
        before: Cursor,
        limit: usize,
    ) -> anyhow::Result<RequestPage> {
        let accepted = self.walk(
            Side::Accepted,
            filter,
            before.accepted,
            Direction::Older,
            limit,
        )?;
        let refused = self.walk(
            Side::Refused,
            filter,
            before.refused,
            Direction::Older,
            limit,
        )?;
        let (rows, older, done) = merge(accepted, refused, Direction::Older, limit);
        Ok(RequestPage {
            rows,
            older: (!done).then_some(older),
        })
    }

    fn requests_after(
        &self,
        filter: &RequestFilter,
        after: Cursor,
        limit: usize,
    ) -> anyhow::Result<(Vec<RequestSummary>, Cursor)> {
        let accepted = self.walk(
            Side::Accepted,
            filter,
            after.accepted,
            Direction::Newer,
            limit,
        )?;
        let refused = self.walk(
            Side::Refused,
            filter,
            after.refused,
            Direction::Newer,
            limit,
        )?;
        let (rows, next, _) = merge(accepted, refused, Direction::Newer, limit);
        Ok((rows, next))
    }

    fn newest(&self) -> anyhow::Result<Cursor> {
        Ok(Cursor {
            accepted: self.max_id("requests")?,
            refused: self.max_id("refused_requests")?,
        })
    }

    fn request(&self, key: RequestKey) -> anyhow::Result<Option<RequestDetail>> {
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
        let found = self
            .connection
            .prepare_cached(sql)?
            .query_row([id], |row| {
                let headers: String = row.get(3)?;
                let reason: Option<String> = row.get(7)?;
                let record = CaptureRecord {
                    received_at_ms: row.get(0)?,
                    method: row.get(1)?,
                    path: row.get(2)?,
                    headers: serde_json::from_str(&headers).unwrap_or_default(),
                    body: row.get(4)?,
                    verdict: if reason.is_some() {
                        Verdict::Refused
                    } else {
                        Verdict::Accepted
                    },
                    reason,
                };
                Ok((record, row.get::<_, Option<i64>>(5)?, row.get::<_, u16>(6)?))
            })
            .optional()?;
        let Some((record, account_column, status)) = found else {
            return Ok(None);
        };
        let (body_account, events) = body_account_and_events(&record.body);
        let account_id = account_column.or(body_account);
        let mut states = Vec::with_capacity(events.len());
        // The same event twice in one request: the second one is a duplicate.
        let mut seen = std::collections::HashSet::new();
        for (event_name, event_id) in &events {
            let first_here = seen.insert(event_id.as_str());
            let (new, forwarding) = match (key, account_id) {
                (RequestKey::Accepted(id), Some(account)) => {
                    match stored_by(&self.connection, account, event_id)? {
                        Some(by) => (by == id && first_here, forwarding_of(&self.connection, by)?),
                        None => (false, ForwardingState::None),
                    }
                }
                _ => (false, ForwardingState::None),
            };
            states.push(EventState {
                event_name: event_name.clone(),
                event_id: event_id.clone(),
                new,
                forwarding,
            });
        }
        let verdict = match (&record.reason, key) {
            (Some(reason), _) => RequestVerdict::Refused {
                status,
                reason: reason.clone(),
            },
            (None, _) if states.is_empty() || states.iter().any(|state| state.new) => {
                RequestVerdict::Accepted
            }
            (None, _) => RequestVerdict::Duplicate,
        };
        Ok(Some(RequestDetail {
            summary: RequestSummary {
                key,
                received_at_ms: record.received_at_ms,
                verdict,
                account_id,
                events,
            },
            record,
            events: states,
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::store::sqlite::SqliteStore;

    /// A store of `accepted` one-event requests (every 3000th named `RARE`, the rest
    /// `COURSE_ENROLLMENT`) and a refusal after every 250th, received 1 ms apart.
    fn store(dir: &std::path::Path, accepted: i64) -> SqliteReader {
        let path = dir.join("r.db");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let metrics = std::sync::Arc::new(crate::metrics::Metrics::default());
            let store = SqliteStore::open(&path, 10_000, false, metrics).unwrap();
            crate::store::Store::close(&store).await.unwrap();
        });
        let mut connection = Connection::open(&path).unwrap();
        let transaction = connection.transaction().unwrap();
        let mut at = 0;
        for i in 1..=accepted {
            let name = if i % 3000 == 0 {
                "RARE"
            } else {
                "COURSE_ENROLLMENT"
            };
            let event =
                format!(r#"{{"eventId":"e{i}","eventName":"{name}","timestamp":1,"data":{{}}}}"#);
            let body = format!(r#"{{"accountId":1,"events":[{event}]}}"#);
            at += 1;
            transaction
                .execute(
                    "INSERT INTO requests (received_at_ms, method, path, headers, body, auth, account_id)
                     VALUES (?1, 'POST', '/webhook', '[]', ?2, 'none', 1)",
                    params![at, body.as_bytes()],
                )
                .unwrap();
            let request_id = transaction.last_insert_rowid();
            transaction
                .execute(
                    "INSERT INTO events (account_id, event_id, request_id, event_name, timestamp_ms, known, raw_start, raw_length)
                     VALUES (1, ?1, ?2, ?3, 1, 1, 28, ?4)",
                    params![format!("e{i}"), request_id, name, event.len()],
                )
                .unwrap();
            if i % 250 == 0 {
                at += 1;
                transaction
                    .execute(
                        "INSERT INTO refused_requests (received_at_ms, method, path, headers, body, status, reason)
                         VALUES (?1, 'POST', '/webhook', '[]', x'7b7d', 401, 'no_matching_signature')",
                        [at],
                    )
                    .unwrap();
            }
        }
        transaction.commit().unwrap();
        SqliteReader::open(&path).unwrap()
    }

    /// Every page in turn from the newest, until the list says nothing older is left.
    fn all_pages(
        reader: &SqliteReader,
        filter: &RequestFilter,
        limit: usize,
    ) -> (Vec<RequestSummary>, usize) {
        let (mut rows, mut pages, mut before) = (Vec::new(), 0, Cursor::NEWEST);
        loop {
            let page = reader.requests(filter, before, limit).unwrap();
            assert!(page.rows.len() <= limit);
            pages += 1;
            rows.extend(page.rows);
            match page.older {
                Some(older) => before = older,
                None => return (rows, pages),
            }
        }
    }

    fn is_newest_first(rows: &[RequestSummary]) -> bool {
        rows.windows(2)
            .all(|pair| pair[0].received_at_ms > pair[1].received_at_ms)
    }

    #[test]
    fn pages_cover_every_request_once_newest_first_and_filters_cross_the_scan_budget() {
        let dir = tempfile::tempdir().unwrap();
        let reader = store(dir.path(), 12_000);
        let (rows, _) = all_pages(&reader, &RequestFilter::default(), 97);
        assert_eq!(rows.len(), 12_000 + 48);
        assert!(is_newest_first(&rows));
        // The rare name: 4 requests, far apart, each further than one page's budget.
        let rare = RequestFilter {
            event_name: Some("RARE".to_owned()),
            ..RequestFilter::default()
        };
        let (rows, pages) = all_pages(&reader, &rare, 2);
        let keys: Vec<RequestKey> = rows.iter().map(|row| row.key).collect();
        assert_eq!(
            keys,
            [12_000, 9_000, 6_000, 3_000].map(RequestKey::Accepted),
            "every match once, newest first"
        );
        assert!(pages > 2, "the walk was cut by its budget and continued");
        let refused = RequestFilter {
            verdict: Some("no_matching_signature".to_owned()),
            ..RequestFilter::default()
        };
        let (rows, _) = all_pages(&reader, &refused, 10);
        assert_eq!(rows.len(), 48);
        assert!(rows
            .iter()
            .all(|row| matches!(row.key, RequestKey::Refused(_))));
    }

    #[test]
    fn the_stream_reads_everything_after_a_cursor_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let reader = store(dir.path(), 1_000);
        let newest = reader.newest().unwrap();
        assert_eq!(
            newest,
            Cursor {
                accepted: 1_000,
                refused: 4
            }
        );
        let mut cursor = Cursor {
            accepted: 500,
            refused: 2,
        };
        let mut rows = Vec::new();
        loop {
            let (batch, next) = reader
                .requests_after(&RequestFilter::default(), cursor, 64)
                .unwrap();
            if batch.is_empty() && next == cursor {
                break;
            }
            rows.extend(batch);
            cursor = next;
        }
        assert_eq!(cursor, newest);
        assert_eq!(rows.len(), 500 + 2);
        assert!(rows
            .windows(2)
            .all(|pair| pair[0].received_at_ms < pair[1].received_at_ms));
        assert_eq!(rows[0].key, RequestKey::Accepted(501));
    }

    #[test]
    fn duplicates_and_refusals_are_told_apart_in_the_list_and_the_detail() {
        let dir = tempfile::tempdir().unwrap();
        let reader = store(dir.path(), 3);
        // A second request carrying e2 again and a new e9.
        let body = r#"{"accountId":1,"events":[{"eventId":"e2","eventName":"COURSE_ENROLLMENT","timestamp":1,"data":{}}]}"#;
        reader
            .connection
            .execute(
                "INSERT INTO requests (received_at_ms, method, path, headers, body, auth, account_id)
                 VALUES (10, 'POST', '/webhook', '[[\"x-a\",\"1\"],[\"x-b\",\"2\"]]', ?1, 'none', 1)",
                [body.as_bytes()],
            )
            .unwrap();
        let page = reader
            .requests(&RequestFilter::default(), Cursor::NEWEST, 10)
            .unwrap();
        assert_eq!(page.rows[0].verdict, RequestVerdict::Duplicate);
        assert_eq!(page.rows[1].verdict, RequestVerdict::Accepted);
        let detail = reader.request(RequestKey::Accepted(4)).unwrap().unwrap();
        assert!(!detail.events[0].new);
        assert_eq!(detail.record.headers[1], ("x-b".to_owned(), "2".to_owned()));
        assert_eq!(detail.record.body, body.as_bytes());
        assert!(reader.request(RequestKey::Refused(9)).unwrap().is_none());
        assert_eq!(RequestKey::parse("a4"), Some(RequestKey::Accepted(4)));
        assert_eq!(RequestKey::parse("r0"), None);
        assert_eq!(
            Cursor::parse("3.4"),
            Some(Cursor {
                accepted: 3,
                refused: 4
            })
        );
    }
}
