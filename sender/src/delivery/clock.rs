//! The engine's clock: the wall clock in production, tokio's (paused) clock in tests.

use std::time::Duration;

use tokio::time::Instant;

use crate::retry::millis;

/// The engine's clock, in epoch milliseconds.
///
/// In production it is the wall clock, read at every call: signatures carry
/// `webhook-timestamp`, leases are compared across processes and `Retry-After` dates are
/// absolute, so it must not drift from the system time (a monotonic clock stops during a
/// suspend and ignores NTP steps). Tests use a clock that follows tokio's, so paused time
/// moves it.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// `None` for the wall clock.
    tokio_base: Option<(i64, Instant)>,
}

impl Clock {
    /// The system's wall clock.
    pub fn system() -> Self {
        Self { tokio_base: None }
    }

    /// A clock that reads `epoch_ms` now and then advances with tokio's clock (paused-time
    /// tests). Call inside a tokio runtime.
    pub fn starting_at(epoch_ms: i64) -> Self {
        Self {
            tokio_base: Some((epoch_ms, Instant::now())),
        }
    }

    /// Now, in epoch milliseconds.
    pub fn now_ms(&self) -> i64 {
        match self.tokio_base {
            None => verify::unix_now_ms(),
            Some((base_ms, start)) => base_ms.saturating_add(millis(start.elapsed())),
        }
    }

    /// The tokio instant of an epoch millisecond (now, if it is past).
    pub(super) fn instant_of(&self, epoch_ms: i64) -> Instant {
        let ahead = epoch_ms.saturating_sub(self.now_ms()).max(0);
        let ahead = Duration::from_millis(u64::try_from(ahead).unwrap_or(0));
        // A year stands for "practically never" where the sum would overflow `Instant`.
        let now = Instant::now();
        now.checked_add(ahead)
            .unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600))
    }
}
