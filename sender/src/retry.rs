//! The retry schedule of SPEC section 5 as data and pure functions.
//!
//! After the n-th failed attempt the next one waits `initial * 2^(n-1)`, capped at `cap`
//! (5 s, 10 s, 20 s, … 5 min, then every 5 min), unless the endpoint said `Retry-After`.
//! A wait that would reach past the retention is cut to one last attempt when retention ends;
//! a failure at or after that moment gives the request up: the engine then disables the
//! webhook and marks its pending events expired.

use std::time::Duration;

/// Learning Manager's first retry delay.
pub const DEFAULT_RETRY_INITIAL: Duration = Duration::from_secs(5);
/// Learning Manager's largest retry delay: once reached, retries go every 5 minutes.
pub const DEFAULT_RETRY_CAP: Duration = Duration::from_secs(5 * 60);
/// How long an event is kept trying before its webhook is disabled.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// The retry schedule: every number configurable so tests can compress it to milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Delay after the first failure.
    pub initial: Duration,
    /// Largest delay of the doubling sequence.
    pub cap: Duration,
    /// How long after its creation a request may still be attempted.
    pub retention: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial: DEFAULT_RETRY_INITIAL,
            cap: DEFAULT_RETRY_CAP,
            retention: DEFAULT_RETENTION,
        }
    }
}

impl RetryPolicy {
    /// The wait after the `failures`-th failed attempt (1 for the first), or the endpoint's
    /// `Retry-After` when it gave one.
    ///
    /// `Retry-After` replaces the schedule rather than adding to it: the endpoint knows when it
    /// can take the request again. It is not capped (retention still bounds it), but it never
    /// brings the next attempt closer than the schedule's first step: an endpoint answering
    /// `Retry-After: 0` (or a date already past) on every attempt would otherwise be hammered
    /// back to back for the whole retention, and the attempt log with it.
    pub fn next_delay(&self, failures: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(wait) = retry_after {
            return wait.max(self.initial);
        }
        let doublings = failures.saturating_sub(1).min(32);
        let factor = 1u32.checked_shl(doublings).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.cap)
    }

    /// What to do after a failed attempt made at `now_ms` for a request created at
    /// `created_ms`: retry at a time, or give up because retention would be over by then.
    pub fn after_failure(
        &self,
        failures: u32,
        retry_after: Option<Duration>,
        created_ms: i64,
        now_ms: i64,
    ) -> NextStep {
        let delay_ms = millis(self.next_delay(failures, retry_after));
        let next_ms = now_ms.saturating_add(delay_ms);
        let ends_ms = created_ms.saturating_add(millis(self.retention));
        if now_ms >= ends_ms {
            NextStep::GiveUp
        } else {
            // A wait that reaches past the retention (a far `Retry-After`, or the last step of
            // the schedule) gets one last attempt when retention ends, rather than giving up
            // days early on the endpoint's word.
            NextStep::RetryAt(next_ms.min(ends_ms))
        }
    }
}

/// The decision after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    /// Try again at this epoch millisecond.
    RetryAt(i64),
    /// Retention is over: disable the webhook and expire its pending events.
    GiveUp,
}

/// A duration in whole milliseconds, saturating.
pub fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn learning_manager_schedule() {
        let policy = RetryPolicy::default();
        let delays: Vec<u64> = (1..=10)
            .map(|failures| policy.next_delay(failures, None).as_secs())
            .collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300, 300, 300]);
        assert_eq!(policy.next_delay(u32::MAX, None), DEFAULT_RETRY_CAP);
        assert_eq!(policy.next_delay(0, None), DEFAULT_RETRY_INITIAL);
    }

    #[test]
    fn retry_after_replaces_the_schedule() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.next_delay(1, Some(SEC * 42)), SEC * 42);
        assert_eq!(
            policy.next_delay(7, Some(SEC * 42)),
            SEC * 42,
            "shorter than 5 min"
        );
        assert_eq!(policy.next_delay(1, Some(SEC * 3600)), SEC * 3600);
        // Never closer than the first step: `Retry-After: 0` on every answer would otherwise
        // mean back-to-back attempts for seven days.
        assert_eq!(
            policy.next_delay(9, Some(Duration::ZERO)),
            DEFAULT_RETRY_INITIAL
        );
        assert_eq!(policy.next_delay(1, Some(SEC * 2)), DEFAULT_RETRY_INITIAL);
    }

    #[test]
    fn retry_after_too_large_for_a_u64_is_very_long_not_ignored() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(
            common::parse::retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
        let policy = RetryPolicy::default();
        let week_ms = millis(DEFAULT_RETENTION);
        assert_eq!(
            policy.after_failure(1, Some(Duration::from_secs(u64::MAX)), 0, 1000),
            NextStep::RetryAt(week_ms),
            "retention bounds it: one last attempt at its end"
        );
    }

    #[test]
    fn the_last_attempt_is_at_the_end_of_retention_then_it_gives_up() {
        let policy = RetryPolicy {
            initial: Duration::from_millis(10),
            cap: Duration::from_millis(40),
            retention: Duration::from_millis(100),
        };
        let check = |failures, now, expected| {
            assert_eq!(
                policy.after_failure(failures, None, 1000, now),
                expected,
                "{failures} {now}"
            );
        };
        check(1, 1000, NextStep::RetryAt(1010));
        check(3, 1030, NextStep::RetryAt(1070));
        check(5, 1060, NextStep::RetryAt(1100)); // exactly at the end is still in
        check(5, 1061, NextStep::RetryAt(1100)); // cut to the end, not given up early
        check(6, 1100, NextStep::GiveUp);
        let after = policy.after_failure(1, Some(SEC), 1000, 1000);
        assert_eq!(
            after,
            NextStep::RetryAt(1100),
            "a Retry-After past retention does not give up at once"
        );
    }

    #[test]
    fn seven_days_of_the_real_schedule() {
        // Count the attempts Learning Manager makes before giving up on an endpoint that is
        // down for good: 1 + 6 growing retries (5 s … 160 s, 315 s in all) + every 5 min +
        // one last attempt when the retention ends.
        let policy = RetryPolicy::default();
        let (mut now, mut failures) = (0i64, 0u32);
        loop {
            failures += 1;
            match policy.after_failure(failures, None, 0, now) {
                NextStep::RetryAt(at) => now = at,
                NextStep::GiveUp => break,
            }
        }
        let week_ms = millis(DEFAULT_RETENTION);
        assert_eq!(now, week_ms);
        assert_eq!(failures, 1 + 6 + ((week_ms - 315_000) / 300_000) as u32 + 1);
    }
}
