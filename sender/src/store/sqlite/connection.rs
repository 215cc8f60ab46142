//! [`SqliteState`] itself: one connection behind a lock.

use std::sync::Mutex;

use rusqlite::Connection;

use crate::sealing::SecretKey;

/// Registrations and queue in a SQLite file.
///
/// One connection behind a std `Mutex`: every method holds it for one short statement or
/// transaction and never across an `.await` (the engine calls these from `spawn_blocking`).
pub struct SqliteState {
    pub(super) connection: Mutex<Connection>,
    /// Seals and opens the secret columns (see `crate::sealing`).
    pub(super) secret_key: Option<SecretKey>,
}

impl std::fmt::Debug for SqliteState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteState")
    }
}

impl SqliteState {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (transactions roll back on
        // drop), so a poisoned lock is safe to keep using.
        self.connection
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
