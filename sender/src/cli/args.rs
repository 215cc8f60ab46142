//! The flags several commands share: the delivery engine's numbers (`trigger`, `run`,
//! `admin`) and the auth method that a one-off request's flags imply (`webhooks test --url`,
//! `replay`).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use common::parse::duration as parse_duration;

use crate::config::DeliveryConfig;
use crate::registry::AuthMethod;
use crate::retry::RetryPolicy;
use crate::UsageError;

/// The engine's numbers; defaults are Learning Manager's.
#[derive(Debug, Clone, Args)]
pub(super) struct DeliveryArgs {
    /// TCP connect timeout.
    #[arg(long, env = "SENDER_CONNECT_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    connect_timeout: Duration,
    /// Response timeout.
    #[arg(long, env = "SENDER_RESPONSE_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    response_timeout: Duration,
    /// First retry delay (then doubling).
    #[arg(long, env = "SENDER_RETRY_INITIAL", default_value = "5s", value_parser = parse_duration)]
    retry_initial: Duration,
    /// Largest retry delay (then retries at this interval).
    #[arg(long, env = "SENDER_RETRY_MAX", default_value = "5m", value_parser = parse_duration)]
    retry_max: Duration,
    /// How long a request is retried before its webhook is disabled.
    #[arg(long, env = "SENDER_RETENTION", default_value = "7d", value_parser = parse_duration)]
    retention: Duration,
    /// How long batch events are collected per webhook.
    #[arg(long, env = "SENDER_BATCH_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    batch_interval: Duration,
    /// Most events in one batch request.
    #[arg(long, env = "SENDER_BATCH_SIZE", default_value_t = crate::config::DEFAULT_BATCH_SIZE)]
    batch_size: usize,
    /// Requests in flight per webhook. 1 keeps strict order; more relaxes it (load tests).
    #[arg(long, env = "SENDER_PARALLEL", default_value_t = 1)]
    parallel: usize,
    /// How long a worker's claim on a webhook lasts unless renewed.
    #[arg(long, env = "SENDER_LEASE_TTL", default_value = "15s", value_parser = parse_duration)]
    lease_ttl: Duration,
    /// How often `run` looks for work queued by other processes.
    #[arg(long, env = "SENDER_POLL_INTERVAL", default_value = "250ms", value_parser = parse_duration)]
    poll_interval: Duration,
    /// Also trust the CA certificates of this PEM file for https (self-signed listeners).
    #[arg(long, env = "SENDER_CA_FILE")]
    ca_file: Option<PathBuf>,
}

impl DeliveryArgs {
    /// The engine's configuration.
    ///
    /// # Errors
    /// A [`UsageError`] for a zero `--parallel`, `--batch-size`, `--poll-interval` or
    /// `--lease-ttl`.
    pub(super) fn config(&self) -> Result<DeliveryConfig, UsageError> {
        if self.parallel == 0 || self.batch_size == 0 {
            return Err(UsageError(
                "--parallel and --batch-size must be at least 1".into(),
            ));
        }
        if self.poll_interval.is_zero() || self.lease_ttl.is_zero() {
            return Err(UsageError(
                "--poll-interval and --lease-ttl must be above zero".into(),
            ));
        }
        Ok(DeliveryConfig {
            connect_timeout: self.connect_timeout,
            response_timeout: self.response_timeout,
            retry: RetryPolicy {
                initial: self.retry_initial,
                cap: self.retry_max,
                retention: self.retention,
            },
            batch_interval: self.batch_interval,
            batch_size: self.batch_size,
            parallel: self.parallel,
            lease_ttl: self.lease_ttl,
            poll_interval: self.poll_interval,
            ca_file: self.ca_file.clone(),
        })
    }
}

/// The auth method of a one-off request (`webhooks test --url`, `replay`): `--auth` when
/// given, else what the credentials given imply (a signature file means signature, a username
/// Basic), else none, so a flag given alone is never silently ignored.
pub(super) fn auth_method_from_flags(
    explicit: Option<AuthMethod>,
    signature_file: bool,
    username: bool,
) -> AuthMethod {
    explicit.unwrap_or(if signature_file {
        AuthMethod::Signature
    } else if username {
        AuthMethod::Basic
    } else {
        AuthMethod::None
    })
}
