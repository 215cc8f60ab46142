//! Fills a receiver store with events quickly, to measure inserts into a store that already
//! holds many: `prefill DATABASE TOTAL` adds events until the `events` table holds TOTAL.
//!
//! The schema comes from the receiver itself (its store is opened once), then the rows are
//! written in one SQL transaction, far faster than through HTTP. Event ids are random, like
//! the senders' UUIDs: the listener reads every one into its dedupe keys at its start (the
//! start-up and memory figures with 1 M events stored), and on a layout with a unique key
//! index they grow it the way production does (anywhere in the B-tree, not only at its end).

use std::sync::Arc;

use anyhow::Context as _;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = std::path::PathBuf::from(args.next().context("DATABASE")?);
    let total: i64 = args.next().context("TOTAL")?.parse().context("TOTAL")?;
    // The receiver creates its own schema; closing checkpoints and releases the file.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let metrics = Arc::new(receiver::metrics::Metrics::default());
        let store = receiver::store::sqlite::SqliteStore::open(
            &path,
            100,
            receiver::routing::Routes::default(),
            metrics,
        )?;
        receiver::store::Store::close(&store).await?;
        anyhow::Ok(())
    })?;
    let mut connection = rusqlite::Connection::open(&path)?;
    connection.execute_batch("PRAGMA journal_mode=WAL; PRAGMA cache_size=-262144;")?;
    let have: i64 = connection.query_row("SELECT COUNT(*) FROM events", [], |row| row.get(0))?;
    let missing = (total - have).max(0);
    let transaction = connection.transaction()?;
    // One request holds the one event every prefilled row points into (the store keeps an
    // event's JSON as offsets into its request's body).
    let raw = r#"{"eventId":"prefilled","eventName":"COURSE_ENROLLMENT","timestamp":"2026-11-28T00:00:00.000Z","data":{"userId":4279332,"loId":"course:7374992"}}"#;
    let body = format!(r#"{{"accountId":1010,"events":[{raw}]}}"#);
    let raw_start = body.find(raw).context("the event in its body")?;
    transaction.execute(
        "INSERT INTO requests (received_at_ms, method, path, headers, body, auth, account_id)
         VALUES (0, 'POST', '/webhook', '[]', ?1, 'none', 1010)",
        [body.as_bytes()],
    )?;
    let request_id = transaction.last_insert_rowid();
    transaction.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
         INSERT INTO events (account_id, event_id, request_id, event_name, timestamp_ms, known, raw_start, raw_length)
         SELECT 1010, lower(hex(randomblob(16))), ?2, 'COURSE_ENROLLMENT', 1764288000000 + i, 1, ?3, ?4
         FROM n",
        rusqlite::params![missing, request_id, raw_start, raw.len()],
    )?;
    transaction.commit()?;
    connection.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
    let now: i64 = connection.query_row("SELECT COUNT(*) FROM events", [], |row| row.get(0))?;
    println!("{}", serde_json::json!({ "events": now, "added": missing }));
    Ok(())
}
