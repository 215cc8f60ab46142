//! Settings of the delivery engine; the command line reads their durations with
//! `common::parse::duration`, and where the state lives with `common::store_location`.

use std::path::PathBuf;
use std::time::Duration;

use crate::retry::RetryPolicy;

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
