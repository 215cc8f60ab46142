//! `receiver backup`: a consistent copy of a SQLite store that a listener may be writing.

use std::path::Path;

use anyhow::Context as _;

use super::reader::SqliteReader;

/// Copies the store at `store` to `out` and returns how many accepted requests the copy holds.
///
/// The copy is SQLite's `VACUUM INTO`, which reads the whole store in one read transaction:
/// it holds every request committed before it began (every one acknowledged), whatever the
/// listener commits meanwhile, and never blocks the listener (WAL readers do not). The copy is
/// compact (free pages left out) and a store of its own (`--store sqlite:OUT`). It is written
/// beside `out` with mode 0600, synced and renamed into place, so `out` is whole or left as it
/// was.
///
/// # Errors
/// No store there or one of another layout, the copy fails, or `out` cannot be written.
pub fn backup(store: &Path, out: &Path) -> anyhow::Result<u64> {
    let reader = SqliteReader::open(store)?;
    common::files::write_atomically_at(out, |temporary| {
        let name = temporary
            .to_str()
            .with_context(|| format!("{} is not a UTF-8 path", temporary.display()))?;
        reader
            .connection
            .execute("VACUUM INTO ?1", [name])
            .with_context(|| format!("copying the store {}", store.display()))?;
        let copy = rusqlite::Connection::open(temporary)?;
        let requests: i64 =
            copy.query_row("SELECT COUNT(*) FROM requests", [], |row| row.get(0))?;
        Ok(u64::try_from(requests).unwrap_or(0))
    })
    .with_context(|| format!("writing the backup {}", out.display()))
}
