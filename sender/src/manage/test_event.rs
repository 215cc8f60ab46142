//! The test event (`webhooks test`, **Test webhook** on the pages): one realistic event sent
//! now, outside the queue, to a registered webhook or to a URL, and what came back; and the
//! check of a Target URL against the addresses the pages may send to.

use common::target_guard::{TargetGuard, TargetPolicy};
use common::target_url::TargetUrl;

use crate::delivery::{send_once, Answer, HttpTransport, Outbound};
use crate::registry::{check_event_name, Auth, EventSelection, Webhook};
use crate::UsageError;

/// Refuses a Target URL whose host is, or resolves to, an address `targets` does not allow:
/// `sender admin` listening beyond loopback refuses loopback, private, link-local and
/// unspecified addresses (`common::target_guard`), as an error of the `--url` field. The
/// pages and the API call it before saving or testing; the command line does not (its user
/// is the machine's operator). The connect checks the address again, whatever DNS said here.
///
/// # Errors
/// A [`UsageError`] saying which address was refused and why.
pub async fn check_target(targets: &TargetGuard, url: &TargetUrl) -> Result<(), UsageError> {
    // The host alone is named, never the whole URL.
    targets
        .check_uri(url.uri())
        .await
        .map_err(|refused| UsageError(format!("--url: {refused}")))
}

/// Where a test event goes and how it is authenticated.
#[derive(Debug, Clone)]
pub struct TestTarget {
    /// The Target URL.
    pub url: TargetUrl,
    /// The authentication to apply.
    pub auth: Auth,
    /// The event to send when none is named: the webhook's first trigger event.
    pub default_event: Option<String>,
    /// Where it may connect: the webhook's rule ([`Webhook::target_policy`]), or any address
    /// for a URL the command line gives.
    pub target_policy: TargetPolicy,
}

impl TestTarget {
    /// A registered webhook as a test target.
    pub fn of(webhook: &Webhook) -> TestTarget {
        let default_event = match &webhook.events {
            EventSelection::Names(names) => names.first().cloned(),
            EventSelection::All => None,
        };
        TestTarget {
            url: webhook.url.clone(),
            auth: webhook.auth.clone(),
            default_event,
            target_policy: webhook.target_policy,
        }
    }
}

/// What a test event got back (`webhooks test`, the page's **Test webhook**).
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TestOutcome {
    /// The Target URL.
    pub url: String,
    /// The event name sent.
    pub event: String,
    /// The request's `webhook-id`.
    pub webhook_id: String,
    /// The status, when a response came.
    pub status: Option<u16>,
    /// Why none came.
    pub error: Option<String>,
    /// Milliseconds until the answer (or the failure).
    pub latency_ms: u128,
    /// The first bytes of the answer.
    pub response: String,
    /// A 2xx came.
    pub ok: bool,
    /// What to look at when it failed: the credentials for a 401/403, the URL for a redirect.
    pub hint: Option<String>,
}

/// Sends one realistic event of `event` (else the target's default, else
/// `COURSE_ENROLLMENT`) now, outside the queue.
///
/// # Errors
/// A [`UsageError`] for an unknown event name; an unusable stored signature file.
pub async fn send_test(
    target: &TestTarget,
    event: Option<String>,
    transport: &HttpTransport,
) -> anyhow::Result<TestOutcome> {
    let name = event
        .or_else(|| target.default_event.clone())
        .unwrap_or_else(|| "COURSE_ENROLLMENT".to_owned());
    let kind = check_event_name(&name)?;
    let at = verify::unix_now_ms();
    let envelope = verify::EventGenerator::new(fastrand::u64(..)).envelope(
        crate::generate::DEFAULT_ACCOUNT_ID,
        kind,
        1,
        at,
    );
    let body = bytes::Bytes::from(envelope.to_bytes());
    let msg_id = crate::registry::new_msg_id();
    let headers = target.auth.headers(&msg_id, at.div_euclid(1000), &body)?;
    let (answer, latency) = send_once(
        transport,
        &Outbound {
            url: target.url.clone(),
            target_policy: target.target_policy,
            headers,
            body,
        },
    )
    .await;
    let ok = answer.is_success();
    let (status, response, error) = match answer {
        Answer::Response { status, head, .. } => (Some(status), head, None),
        Answer::Failed(error) => (None, String::new(), Some(error)),
    };
    let hint = match status {
        Some(401 | 403) => Some(format!(
            "the endpoint refused the credentials: check that its auth matches this webhook's ({}), its secret or password, and its clock",
            target.auth.method()
        )),
        Some(300..=399) => Some("redirects are not followed: register the final URL".to_owned()),
        _ => None,
    };
    Ok(TestOutcome {
        url: target.url.to_string(),
        event: name,
        webhook_id: msg_id,
        status,
        error,
        latency_ms: latency.as_millis(),
        response,
        ok,
        hint,
    })
}
