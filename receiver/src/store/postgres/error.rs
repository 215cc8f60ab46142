//! The database's errors in words, and what a failed commit means for its requests.

use crate::store::StoreError;

/// A failed commit, and whether retrying its requests one by one may help.
pub(super) struct CommitError {
    /// What the requests are answered.
    pub(super) error: StoreError,
    /// The database refused the statement (bad data in one request, say), as opposed to the
    /// connection failing: alone, the other requests may go in.
    pub(super) retry_alone: bool,
}

impl CommitError {
    /// The connection failed (or the statement never ran): retrying alone cannot help.
    pub(super) fn connection(error: impl std::fmt::Display) -> Self {
        Self {
            error: StoreError(error.to_string()),
            retry_alone: false,
        }
    }

    /// The client's error, retried alone when the database refused the statement.
    pub(super) fn database(error: &tokio_postgres::Error) -> Self {
        Self {
            error: store_error(error),
            retry_alone: error.as_db_error().is_some() && !error.is_closed(),
        }
    }
}

/// The client's error in words: the server's message and code when it sent one (the
/// client's own `Display` says only "db error"), else the cause. Neither holds the password.
pub(super) fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => match std::error::Error::source(error) {
            Some(cause) => format!("{error}: {cause}"),
            None => error.to_string(),
        },
    }
}

/// The client's error as the store's callers see it.
pub(super) fn store_error(error: &tokio_postgres::Error) -> StoreError {
    StoreError(describe(error))
}

/// A pool's error in words: the connection's own error when connecting failed.
pub(super) fn describe_pool_error(error: &deadpool_postgres::PoolError) -> String {
    match error {
        deadpool_postgres::PoolError::Backend(error) => {
            format!("connecting to the database: {}", describe(error))
        }
        other => other.to_string(),
    }
}
