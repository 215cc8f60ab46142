//! How often a target's forwarder may write a log line about its attempts: a token bucket,
//! so the usual pace (an attempt per backoff step, at most one a second with the default
//! backoff) is logged line by line, while a flood (an app refusing every request with 401,
//! parking thousands a second) gives a line a second with the count of those left out.

use std::time::{Duration, Instant};

/// Lines allowed at once after a quiet spell.
const BURST: u32 = 10;
/// One more line allowed this often.
const REFILL: Duration = Duration::from_secs(1);

/// A token bucket with the count of lines refused since the last one written.
#[derive(Debug)]
pub(crate) struct LogLimit {
    tokens: u32,
    refilled_at: Instant,
    left_out: u64,
}

impl LogLimit {
    /// A full bucket.
    pub(crate) fn new(now: Instant) -> LogLimit {
        LogLimit {
            tokens: BURST,
            refilled_at: now,
            left_out: 0,
        }
    }

    /// Whether a line may be written at `now`: `Some(n)` with the lines left out since the
    /// last one (to say in this line), `None` when this one is left out too.
    pub(crate) fn allow(&mut self, now: Instant) -> Option<u64> {
        let elapsed = now.saturating_duration_since(self.refilled_at);
        let earned = u32::try_from(elapsed.as_millis() / REFILL.as_millis()).unwrap_or(u32::MAX);
        if earned > 0 {
            self.tokens = self.tokens.saturating_add(earned).min(BURST);
            self.refilled_at += REFILL.saturating_mul(earned);
        }
        if self.tokens == 0 {
            self.left_out += 1;
            return None;
        }
        self.tokens -= 1;
        Some(std::mem::take(&mut self.left_out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_gives_a_line_a_second_with_the_count_left_out() {
        let start = Instant::now();
        let mut limit = LogLimit::new(start);
        // The burst passes, each line with nothing left out.
        for _ in 0..BURST {
            assert_eq!(limit.allow(start), Some(0));
        }
        // A thousand more within the same second: all left out.
        for _ in 0..1000 {
            assert_eq!(limit.allow(start + Duration::from_millis(500)), None);
        }
        // A second later one line, which says how many were left out.
        assert_eq!(limit.allow(start + Duration::from_millis(1000)), Some(1000));
        assert_eq!(limit.allow(start + Duration::from_millis(1100)), None);
        // After a quiet spell the burst is back, and never more than the burst.
        let later = start + Duration::from_secs(60);
        for _ in 0..BURST {
            assert!(limit.allow(later).is_some());
        }
        assert_eq!(limit.allow(later), None);
    }
}
