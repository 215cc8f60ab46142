//! The delivery engine: one worker per webhook works its queue in order, over HTTP/1.1.
//!
//! - A worker first takes the webhook's *lease* in the state database, so that `sender run`
//!   and a self-delivering `sender trigger` (or two `run`s) never deliver to the same webhook
//!   at once; the lease is renewed while the worker runs, and lapses when its process dies.
//! - Strict order (`parallel == 1`, Learning Manager's rule): the oldest pending request is
//!   sent, and nothing after it until it is acknowledged with a 2xx; a failed request waits for
//!   its retry time and the rest of the queue waits behind it.
//! - Relaxed order (`parallel > 1`, for load tests): up to `parallel` due requests in flight
//!   at once, each on its own keep-alive connection.
//! - Every attempt is recorded (with the request's next state) before another is chosen, so a
//!   crash repeats at most the attempts in flight, with the same body and `webhook-id`.
//! - Every record carries the lease's fence number; when the store answers that the lease
//!   changed hands (this worker stalled past it), the worker records nothing, sends nothing
//!   more and leaves the webhook to the new holder.
//!
//! The HTTP side is a [`Transport`], so the loop can also run under paused tokio time.
//!
//! Layout: `engine.rs` starts a worker per webhook with work and gathers how each ended;
//! `worker.rs` one webhook's worker, its lease and its loop in named steps; `outcome.rs` an
//! answer judged (record, next state, log line); `health.rs` the webhook's health followed
//! through its outcomes and the notifications it makes; `signers.rs` the webhooks' signers, built
//! once per version of their registration; `transport.rs` the [`Transport`] and
//! [`HttpTransport`]; `tls.rs` its TLS client; `clock.rs` the [`Clock`]; `redaction.rs`
//! headers as `Debug` shows them; `tests.rs` the loop under paused time, on both stores.

mod clock;
mod engine;
mod health;
mod outcome;
mod redaction;
mod reporting;
mod signers;
mod tls;
mod transport;
mod worker;

pub use clock::Clock;
pub use engine::{Engine, Mode, RunReport};
pub(crate) use redaction::redacted_headers;
pub use reporting::Reporting;
pub use transport::{send_once, Answer, HttpLane, HttpTransport, Outbound, Transport, USER_AGENT};

#[cfg(test)]
mod tests;
