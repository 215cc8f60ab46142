//! A store written in another layout is refused with a message that says what to do, by the
//! listener and by the commands that read the store, and is left untouched.

use std::process::Command;

use crate::support::receiver::binary;

/// A store as the first receiver wrote it: events kept their JSON in a `raw` column and the
/// file carried no layout version.
fn old_layout_store(path: &std::path::Path) {
    let connection = rusqlite::Connection::open(path).unwrap();
    connection
        .execute_batch(
            "CREATE TABLE requests (id INTEGER PRIMARY KEY, body BLOB NOT NULL);
             CREATE TABLE events (id INTEGER PRIMARY KEY, account_id INTEGER, event_id TEXT,
                                  raw TEXT NOT NULL, UNIQUE (account_id, event_id));
             INSERT INTO events (account_id, event_id, raw) VALUES (1010, 'kept', '{}');",
        )
        .unwrap();
}

#[test]
fn a_store_of_another_layout_is_refused_and_left_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    old_layout_store(&path);
    let store = format!("sqlite:{}", path.display());
    for args in [
        vec!["listen", "--listen", "127.0.0.1:0", "--store", &store],
        vec!["events", "list", "--store", &store],
    ] {
        let output = Command::new(binary()).args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} must fail");
        assert!(
            stderr.contains("layout version 0") && stderr.contains("start a new store"),
            "{args:?}: {stderr}"
        );
    }
    let connection = rusqlite::Connection::open(&path).unwrap();
    let kept: String = connection
        .query_row("SELECT event_id FROM events", [], |row| row.get(0))
        .unwrap();
    assert_eq!(kept, "kept");
    let version: i64 = connection
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap();
    assert_eq!(
        version, 0,
        "the old store was not stamped with the new layout"
    );
    let journal: String = connection
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .unwrap();
    assert_eq!(
        journal, "delete",
        "refused before anything changed the file"
    );
}
