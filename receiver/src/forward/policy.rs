//! What an attempt's result means for its job, and when to try again: data and pure
//! functions, unit-tested (as the sender's `retry.rs`).
//!
//! The park rule: the app's 2xx delivers; connection errors, timeouts, 5xx, 408 (Request
//! Timeout), 425 (Too Early) and 429 (Too Many Requests) may pass, so the job is tried again
//! with backoff and holds its queue (order first, as Learning Manager itself does); any other
//! 4xx is the app saying it will never take THIS request (a payload its code cannot handle),
//! so the job is parked at once and the queue moves on. A 1xx or 3xx says nothing about the
//! request (a redirect is the URL's problem, the same for every request), so it holds the
//! queue like a 5xx rather than park every job behind a wrong URL.

use std::time::Duration;

/// Default first retry delay.
pub const DEFAULT_RETRY_MIN: Duration = Duration::from_secs(1);
/// Default longest retry delay.
pub const DEFAULT_RETRY_MAX: Duration = Duration::from_secs(300);

/// Backoff between attempts: `min`, doubling, capped at `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Delay after the first failure.
    pub min: Duration,
    /// Longest delay.
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            min: DEFAULT_RETRY_MIN,
            max: DEFAULT_RETRY_MAX,
        }
    }
}

impl RetryPolicy {
    /// The delay after `failures` failures in a row (1 for the first: the backoff step). A
    /// `Retry-After` the app sent wins when it is longer, still capped at `max`.
    pub fn next_delay(&self, failures: u32, retry_after: Option<Duration>) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        let backoff = self.min.saturating_mul(1u32 << doublings).min(self.max);
        retry_after.map_or(backoff, |asked| asked.max(backoff).min(self.max))
    }
}

/// What to do with a job after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The app took it.
    Delivered,
    /// It may pass later: try again after the backoff, holding the queue.
    Retry,
    /// The app will never take it: park it, move on.
    Park,
}

/// The verdict on an attempt that got `status` (`None`: no answer at all).
pub fn judge(status: Option<u16>) -> Verdict {
    match status {
        Some(200..=299) => Verdict::Delivered,
        Some(408 | 425 | 429) => Verdict::Retry,
        Some(400..=499) => Verdict::Park,
        _ => Verdict::Retry,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_and_honours_retry_after() {
        let policy = RetryPolicy {
            min: Duration::from_millis(100),
            max: Duration::from_secs(30),
        };
        let check = |failures: u32, retry_after: Option<u64>, expected_ms: u64| {
            assert_eq!(
                policy.next_delay(failures, retry_after.map(Duration::from_secs)),
                Duration::from_millis(expected_ms),
                "failures {failures}, retry-after {retry_after:?}"
            );
        };
        check(1, None, 100);
        check(2, None, 200);
        check(3, None, 400);
        check(9, None, 25_600);
        check(10, None, 30_000);
        check(1_000, None, 30_000);
        check(1, Some(5), 5_000);
        check(9, Some(1), 25_600);
        check(1, Some(3_600), 30_000);
        // The defaults: 1 s, 2 s, 4 s … 256 s, then every 5 minutes.
        let default = RetryPolicy::default();
        assert_eq!(default.next_delay(1, None), Duration::from_secs(1));
        assert_eq!(default.next_delay(9, None), Duration::from_secs(256));
        assert_eq!(default.next_delay(10, None), Duration::from_secs(300));
    }

    #[test]
    fn refusals_park_and_failures_that_may_pass_hold_the_queue() {
        for (status, verdict) in [
            (Some(200), Verdict::Delivered),
            (Some(204), Verdict::Delivered),
            (Some(400), Verdict::Park),
            (Some(401), Verdict::Park),
            (Some(404), Verdict::Park),
            (Some(409), Verdict::Park),
            (Some(410), Verdict::Park),
            (Some(413), Verdict::Park),
            (Some(422), Verdict::Park),
            (Some(499), Verdict::Park),
            (Some(408), Verdict::Retry),
            (Some(425), Verdict::Retry),
            (Some(429), Verdict::Retry),
            (Some(500), Verdict::Retry),
            (Some(503), Verdict::Retry),
            (Some(599), Verdict::Retry),
            (Some(301), Verdict::Retry),
            (Some(100), Verdict::Retry),
            (None, Verdict::Retry),
        ] {
            assert_eq!(judge(status), verdict, "{status:?}");
        }
    }
}
