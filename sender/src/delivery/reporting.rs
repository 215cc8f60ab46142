//! Where the delivery workers report besides the state: `/metrics`' attempt counters and the
//! operator notifications' wake-up. The engine hands it to each worker it starts.

use std::sync::Arc;

use crate::monitoring::AttemptCounters;

/// Where the workers report besides the state: the attempt counters of `/metrics`, and
/// whether health changes queue operator notifications (then who to wake when they do).
#[derive(Clone, Default)]
pub struct Reporting {
    /// Counts every judged attempt (`sender_attempts_total`).
    pub counters: Option<Arc<AttemptCounters>>,
    /// Set with `--notify-url`: notifications are queued with the outcomes that make them,
    /// and this is raised after each such commit, so this process's notifier sends at once.
    pub notifications: Option<Arc<tokio::sync::Notify>>,
}
