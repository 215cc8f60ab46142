//! How the store's file is opened for writing: WAL, synced commits, the layout brought up to
//! date. The writer thread and the maintenance commands (`prune`, `erase` beside no listener)
//! both open their connection here.

use std::path::Path;

use rusqlite::Connection;

use super::schema::{bring_up, check_layout};

/// Opens a connection for writing: WAL, synced commits, and the store brought to the latest
/// layout (a new file gets it).
pub(super) fn open_writer(path: &Path) -> rusqlite::Result<Connection> {
    let connection = Connection::open(path)?;
    connection.busy_timeout(std::time::Duration::from_secs(5))?;
    // Before anything changes the file: another program's database is refused untouched.
    check_layout(&connection, true)?;
    // WAL: readers (`receiver events`) never block the writer. FULL: a commit returns only
    // after the WAL is synced, which is what "no 2xx before the data is on disk" needs.
    let mode: String = connection.query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "the database refused WAL mode (got {mode})"
        )));
    }
    connection.execute_batch(
        // Checkpoints run in the checkpointer thread; the writer checkpoints itself only as a
        // backstop when the WAL grows past 10 000 pages (40 MB) because that thread fell behind.
        // fullfsync: on macOS a plain fsync does not reach the platter (F_FULLFSYNC does);
        // elsewhere SQLite ignores these two.
        "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA wal_autocheckpoint=10000;
         PRAGMA fullfsync=ON; PRAGMA checkpoint_fullfsync=ON;",
    )?;
    bring_up(&connection)?;
    Ok(connection)
}
