//! The operator's notifications (`--notify-url URL [--notify-signature-file FILE]`, SPEC
//! section 9): Standard Webhooks messages of type `webhook.failing`, `webhook.disabled` and
//! `webhook.recovered`, with the body `{"type", "webhookId", "webhookName", "at", "detail"}`.
//!
//! The delivery worker queues a notification in the transaction that records the outcome that
//! made it ([`crate::store::Queue::record_outcomes`]), so it exists once, whichever worker
//! held the webhook, and survives a crash right after. [`Notifier`] (in `sender run` and
//! `sender admin`) sends the queue in order: it claims the oldest notification not yet
//! acknowledged (a claim lapses after the timeouts, so one held by a process that died goes to
//! the next), POSTs it with its fixed `webhook-id` and body and a fresh `webhook-timestamp`
//! (and `webhook-signature` with a signature file), and on anything but a 2xx tries again on
//! the delivery schedule (`--retry-initial` doubling to `--retry-max`, `Retry-After`
//! honoured), giving it up after `--retention`. At least once: a notification may arrive twice
//! (a claim that lapsed while its answer was on the way), always under the same `webhook-id`.

use std::sync::Arc;
use std::time::Duration;

use common::target_url::TargetUrl;
use tokio::sync::Notify;

use crate::config::DeliveryConfig;
use crate::delivery::{Answer, HttpTransport, Outbound, Transport as _};
use crate::retry::{millis, NextStep, RetryPolicy};
use crate::store::{ClaimedNotification, State};

/// Where notifications go and how they are signed.
#[derive(Clone)]
pub struct NotifyConfig {
    /// `--notify-url`.
    pub url: TargetUrl,
    /// The keys of `--notify-signature-file` (Standard Webhooks), if given.
    pub keyring: Option<verify::Keyring>,
}

impl std::fmt::Debug for NotifyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifyConfig")
            .field("url", &self.url)
            .field("signed", &self.keyring.is_some())
            .finish()
    }
}

impl NotifyConfig {
    /// The headers of `body` sent as `msg_id` at `timestamp_secs`: `webhook-id` and
    /// `webhook-timestamp`, and `webhook-signature` when signed.
    pub fn headers(&self, msg_id: &str, timestamp_secs: i64, body: &[u8]) -> Vec<(String, String)> {
        match &self.keyring {
            Some(keyring) => keyring.sign_headers(msg_id, timestamp_secs, body),
            None => vec![
                ("webhook-id".into(), msg_id.to_owned()),
                ("webhook-timestamp".into(), timestamp_secs.to_string()),
            ],
        }
    }
}

/// Sends the queued notifications, in order, until stopped.
pub struct Notifier {
    state: Arc<dyn State>,
    config: NotifyConfig,
    transport: HttpTransport,
    retry: RetryPolicy,
    /// How long a claim holds: a send's connect and response timeouts, and some slack.
    claim_ms: i64,
    /// How often it looks when nobody wakes it.
    poll: Duration,
    owner: String,
}

/// Most time between two looks at the queue when no worker of this process queued anything:
/// notifications queued by other processes go out within it.
const LOOK_EVERY: Duration = Duration::from_secs(1);

impl Notifier {
    /// A notifier over `state` with the engine's timeouts and retry schedule.
    pub fn new(state: Arc<dyn State>, config: NotifyConfig, delivery: &DeliveryConfig) -> Self {
        let transport = HttpTransport::new(delivery.connect_timeout, delivery.response_timeout)
            .with_ca_file(delivery.ca_file.clone());
        let claim = delivery.connect_timeout + delivery.response_timeout + Duration::from_secs(2);
        Self {
            state,
            config,
            transport,
            retry: delivery.retry,
            claim_ms: millis(claim),
            poll: delivery.poll_interval.min(LOOK_EVERY),
            owner: format!(
                "notify/pid:{}:{}",
                std::process::id(),
                crate::registry::random_token(8)
            ),
        }
    }

    /// Sends until `shutdown` completes (a send under way finishes first, within its
    /// timeouts); `wake` is raised by this process's workers when they queue one.
    pub async fn run(self, wake: Arc<Notify>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut lane = self.transport.lane();
        loop {
            // Everything due, in order; a failure leaves the head for its retry time.
            loop {
                let (state, owner, claim_ms) =
                    (self.state.clone(), self.owner.clone(), self.claim_ms);
                let now = verify::unix_now_ms();
                let claimed = tokio::task::spawn_blocking(move || {
                    state.claim_notification(&owner, now, claim_ms)
                })
                .await;
                let claimed = match claimed {
                    Ok(Ok(Some(claimed))) => claimed,
                    Ok(Ok(None)) => break,
                    Ok(Err(error)) => {
                        tracing::warn!("notifications: the state store does not answer: {error:#}");
                        break;
                    }
                    Err(_) => break,
                };
                if !self.send(&mut lane, claimed).await {
                    break;
                }
            }
            tokio::select! {
                () = &mut shutdown => break,
                () = wake.notified() => {}
                () = tokio::time::sleep(self.poll) => {}
            }
        }
    }

    /// Sends one claimed notification and records the outcome; `true` when it was
    /// acknowledged (the next may go at once).
    async fn send(
        &self,
        lane: &mut <HttpTransport as crate::delivery::Transport>::Lane,
        claimed: ClaimedNotification,
    ) -> bool {
        let now = verify::unix_now_ms();
        let outbound = Outbound {
            url: self.config.url.clone(),
            // The operator's own --notify-url: the transport's rule alone.
            target_policy: common::target_guard::TargetPolicy::AnyAddress,
            headers: self
                .config
                .headers(&claimed.msg_id, now.div_euclid(1000), &claimed.body),
            body: claimed.body.clone().into(),
        };
        let answer = self.transport.send(lane, &outbound).await;
        let now = verify::unix_now_ms();
        let kind = notification_type(&claimed.body);
        let (error, next) = match &answer {
            answer if answer.is_success() => (None, None),
            Answer::Response {
                status,
                retry_after,
                ..
            } => {
                let wall =
                    std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(now).unwrap_or(0));
                let wait = retry_after
                    .as_deref()
                    .and_then(|value| common::parse::retry_after(value, wall));
                (
                    Some(format!("answered {status}")),
                    self.next(&claimed, wait, now),
                )
            }
            Answer::Failed(error) => (Some(error.clone()), self.next(&claimed, None, now)),
        };
        match (&error, next) {
            (None, _) => tracing::info!(msg_id = %claimed.msg_id, %kind, "operator notified"),
            (Some(error), Some(at)) => tracing::warn!(
                msg_id = %claimed.msg_id, %kind, %error, retry_in_ms = at - now,
                "operator notification failed"
            ),
            (Some(error), None) => tracing::error!(
                msg_id = %claimed.msg_id, %kind, %error,
                "operator notification given up at the end of retention"
            ),
        }
        let (state, owner) = (self.state.clone(), self.owner.clone());
        let id = claimed.id;
        let recorded = tokio::task::spawn_blocking(move || {
            state.notification_attempted(id, &owner, now, error.as_deref(), next)
        })
        .await;
        match recorded {
            Ok(Ok(true)) => answer.is_success(),
            Ok(Ok(false)) => {
                tracing::warn!(msg_id = %claimed.msg_id, "the notification's claim lapsed meanwhile; another process sends it");
                false
            }
            Ok(Err(error)) => {
                tracing::warn!("notifications: recording an attempt: {error:#}");
                false
            }
            Err(_) => false,
        }
    }

    /// When a failed notification goes again, or `None` once its retention is over.
    fn next(&self, claimed: &ClaimedNotification, wait: Option<Duration>, now: i64) -> Option<i64> {
        let failures = claimed.attempts.saturating_add(1);
        match self
            .retry
            .after_failure(failures, wait, claimed.created_at_ms, now)
        {
            NextStep::RetryAt(at) => Some(at),
            NextStep::GiveUp => None,
        }
    }
}

/// The `type` of a notification body, for the log.
fn notification_type(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|body| body["type"].as_str().map(str::to_owned))
        .unwrap_or_default()
}
