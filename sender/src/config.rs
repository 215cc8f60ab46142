//! Settings of the delivery engine and where the state lives; the command line reads their
//! durations with `common::parse::duration`.

use std::path::PathBuf;
use std::time::Duration;

use crate::retry::RetryPolicy;
use crate::UsageError;

/// Learning Manager's connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Learning Manager's response timeout.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long batch events are collected before they go out as one request.
pub const DEFAULT_BATCH_INTERVAL: Duration = Duration::from_secs(60);
/// Most events in one batch request; a full batch goes out at once.
pub const DEFAULT_BATCH_SIZE: usize = 100;
/// How long a worker's claim on a webhook lasts unless renewed.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(15);
/// How often `sender run` looks for work enqueued by other processes.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(250);
/// How many bytes of a response body an attempt keeps for the log.
pub const RESPONSE_HEAD_BYTES: usize = 256;
/// Largest response body read (and discarded) to keep a connection for reuse.
pub const MAX_RESPONSE_BODY: usize = 64 * 1024;

/// Every number of the delivery engine. The defaults are Learning Manager's; tests shrink
/// them to milliseconds.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Time from sending a request until its response (head and body) is in.
    pub response_timeout: Duration,
    /// Retry schedule and retention.
    pub retry: RetryPolicy,
    /// How long batch events are collected per webhook.
    pub batch_interval: Duration,
    /// Most events per batch request.
    pub batch_size: usize,
    /// Requests in flight per webhook. 1 keeps Learning Manager's strict order; more relaxes
    /// it (for load tests): requests may then arrive out of order.
    pub parallel: usize,
    /// How long a worker's lease on a webhook lasts unless renewed.
    pub lease_ttl: Duration,
    /// How often the long-running worker looks for new work from other processes.
    pub poll_interval: Duration,
    /// Extra CA certificates (PEM) trusted for `https` Target URLs, besides the system's.
    pub ca_file: Option<PathBuf>,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            retry: RetryPolicy::default(),
            batch_interval: DEFAULT_BATCH_INTERVAL,
            batch_size: DEFAULT_BATCH_SIZE,
            parallel: 1,
            lease_ttl: DEFAULT_LEASE_TTL,
            poll_interval: DEFAULT_POLL_INTERVAL,
            ca_file: None,
        }
    }
}

/// Where the sender keeps registrations and its queue.
#[derive(Debug, Clone)]
pub enum StateLocation {
    /// A SQLite database file.
    Sqlite(PathBuf),
    /// A PostgreSQL database (`postgres://…` or `postgresql://…`), shared by many workers.
    Postgres(Box<common::postgres::DatabaseUrl>),
}

impl PartialEq for StateLocation {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Sqlite(a), Self::Sqlite(b)) => a == b,
            (Self::Postgres(a), Self::Postgres(b)) => a.redacted() == b.redacted(),
            _ => false,
        }
    }
}

impl StateLocation {
    /// Parses `sqlite:PATH` or `postgres://USER[:PASSWORD]@HOST[:PORT]/DB`; a bare path is
    /// read as a SQLite file.
    ///
    /// # Errors
    /// A [`UsageError`] for another scheme, or an invalid PostgreSQL URL (the message never
    /// shows its password).
    pub fn parse(text: &str) -> Result<Self, UsageError> {
        if common::postgres::is_postgres_url(text) {
            return common::postgres::DatabaseUrl::parse(text)
                .map(|url| Self::Postgres(Box::new(url)))
                .map_err(|error| UsageError(format!("--state: {error:#}")));
        }
        match text.split_once(':') {
            Some(("sqlite", path)) if !path.is_empty() => Ok(Self::Sqlite(PathBuf::from(path))),
            Some((scheme, _))
                if !scheme.is_empty()
                    && scheme.chars().all(|c| c.is_ascii_alphanumeric())
                    && scheme.len() > 1 =>
            {
                // The rest is not echoed: a database URL may hold a password.
                Err(UsageError(format!(
                    "--state: unsupported store {scheme:?}; use sqlite:PATH or postgres://USER@HOST/DB"
                )))
            }
            _ if !text.is_empty() => Ok(Self::Sqlite(PathBuf::from(text))),
            _ => Err(UsageError(
                "--state must not be empty; use sqlite:PATH or postgres://USER@HOST/DB".into(),
            )),
        }
    }
}

impl std::fmt::Display for StateLocation {
    /// The location for messages: a PostgreSQL URL without its password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "{}", path.display()),
            Self::Postgres(url) => write!(f, "{url}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_locations() {
        assert_eq!(
            StateLocation::parse("sqlite:./sender.db"),
            Ok(StateLocation::Sqlite("./sender.db".into()))
        );
        assert_eq!(
            StateLocation::parse("/tmp/x.db"),
            Ok(StateLocation::Sqlite("/tmp/x.db".into()))
        );
        assert!(matches!(
            StateLocation::parse("postgres://u:s3cret@h/db"),
            Ok(StateLocation::Postgres(url)) if url.redacted() == "postgres://u:***@h/db"
        ));
        let error = StateLocation::parse("postgresql://u:s3cret@h:x/db").expect_err("bad port");
        assert!(!error.0.contains("s3cret"), "{error}");
        assert!(StateLocation::parse("mysql://h/db").is_err());
        assert!(StateLocation::parse("").is_err());
    }
}
