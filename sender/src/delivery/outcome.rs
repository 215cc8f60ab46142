//! An attempt's answer judged: the attempt's record, the request's next state (the retry
//! schedule and `Retry-After`), and the log line that says what happened.

use std::time::Duration;

use super::transport::Answer;
use crate::retry::{NextStep, RetryPolicy};
use crate::store::{AttemptRecord, PendingRequest, RequestState};

/// Turns the `answer` to an attempt at `request`, started at `started_ms` and judged at `now`
/// (epoch ms), into the attempt's record and the request's next state: delivered on a 2xx,
/// else retried as `retry` and the answer's `Retry-After` say, or expired when its retention
/// is over. Logs the outcome.
pub(super) fn judge(
    retry: &RetryPolicy,
    request: &PendingRequest,
    started_ms: i64,
    now: i64,
    answer: Answer,
) -> AttemptRecord {
    let attempt = request.attempts.saturating_add(1);
    let latency_ms = now.saturating_sub(started_ms);
    let success = answer.is_success();
    // The answer is taken apart, not cloned: this runs once per delivery.
    let (status, error, head, retry_after) = match answer {
        Answer::Response {
            status,
            retry_after,
            head,
        } => (Some(status), None, head, retry_after),
        Answer::Failed(error) => (None, Some(error), String::new(), None),
    };
    let next = if success {
        RequestState::Delivered
    } else {
        let wall = std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(now).unwrap_or(0));
        let retry_after = retry_after
            .as_deref()
            .and_then(|value| common::parse::retry_after(value, wall));
        match retry.after_failure(attempt, retry_after, request.created_at_ms, now) {
            NextStep::RetryAt(at) => RequestState::RetryAt(at),
            NextStep::GiveUp => RequestState::Expired,
        }
    };
    // Inside the macros, so the text is only made when the event is logged.
    let outcome = || {
        status.map_or_else(
            || error.as_deref().unwrap_or_default().to_owned(),
            |s| s.to_string(),
        )
    };
    match next {
        RequestState::Delivered => tracing::info!(
            webhook = %request.webhook_id, msg_id = %request.msg_id, attempt, status = outcome(),
            latency_ms, "delivered"
        ),
        RequestState::RetryAt(at) => tracing::warn!(
            webhook = %request.webhook_id, msg_id = %request.msg_id, attempt, outcome = outcome(),
            latency_ms, response = %head, retry_in_ms = at - now, "attempt failed"
        ),
        RequestState::Expired => tracing::error!(
            webhook = %request.webhook_id, msg_id = %request.msg_id, attempt, outcome = outcome(),
            latency_ms, "retention ended; giving up"
        ),
    }
    AttemptRecord {
        request_id: request.id,
        attempt,
        started_at_ms: started_ms,
        status,
        error,
        latency_ms,
        response_head: head,
        next,
    }
}
