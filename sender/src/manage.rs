//! What an Integration Admin does to webhooks, written once for its two views: the command
//! line (`sender webhooks …`, `trigger`, `deliveries`) and the admin pages with their JSON API
//! (`sender admin`). Each operation validates, reads and writes the state; the callers only
//! print or render the outcome, so a rule (a URL, an event name, Basic's password, the 5-webhook
//! limit, a webhook changed meanwhile) is checked in one place.
//!
//! The functions are generic over the store rather than taking `&dyn Registry`, so that a
//! `&dyn State` (registrations and queue) is accepted without trait upcasting, which needs a
//! newer Rust than the workspace's `rust-version`.
//!
//! Errors are [`UsageError`]s for input the user can fix (exit 2 on the command line, 422 on
//! the API) or [`Refusal`]s for the state refusing a change (no such webhook, the limit, a
//! webhook changed meanwhile).

use std::fmt;
use std::time::Duration;

use common::target_guard::TargetGuard;
use serde_json::Value;
use verify::{EventKind, TimeStyle};

use crate::delivery::{send_once, Answer, HttpTransport, Outbound};
use crate::generate::{parse_data, parse_set, route_in_chunks, subscribers, EventRecipe};
use crate::registry::{
    check_event_name, Auth, EventSelection, Status, Webhook, WebhookChanges, WebhookId,
};
use crate::store::{Registry, State};
use crate::UsageError;

/// The state refusing a change, for a reason the user can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No webhook has this id.
    NotFound(String),
    /// [`crate::registry::MAX_WEBHOOKS`] are registered.
    Limit(String),
    /// The webhook changed after it was read (or shown): writing would undo that change.
    Changed(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound(message) | Self::Limit(message) | Self::Changed(message) => {
                f.write_str(message)
            }
        }
    }
}

impl std::error::Error for Refusal {}

impl Refusal {
    /// Whether the command line treats it as bad usage (exit 2) rather than failed work.
    pub fn is_usage(&self) -> bool {
        !matches!(self, Self::Changed(_))
    }

    /// The refusal in an error chain, also when the store itself found the webhook changed
    /// between its read and its write (its error says "changed meanwhile").
    pub fn of(error: &anyhow::Error) -> Option<Refusal> {
        if let Some(refusal) = error
            .chain()
            .find_map(|cause| cause.downcast_ref::<Refusal>())
        {
            return Some(refusal.clone());
        }
        let text = format!("{error:#}");
        text.contains("meanwhile").then_some(Refusal::Changed(text))
    }
}

/// The webhook with `id`.
///
/// # Errors
/// [`Refusal::NotFound`], or storage errors.
pub fn find<R: Registry + ?Sized>(registry: &R, id: &str) -> anyhow::Result<Webhook> {
    registry.webhook(&WebhookId(id.to_owned()))?.ok_or_else(|| {
        Refusal::NotFound(format!(
            "no webhook {id:?}; `sender webhooks list` shows the ids"
        ))
        .into()
    })
}

/// The webhook with `id`, provided it is the version the caller read (`version` is its
/// `updated_at_ms`); `None` takes it as it is now, as a command line does in one go.
///
/// # Errors
/// [`Refusal::NotFound`], [`Refusal::Changed`], or storage errors.
fn find_version<R: Registry + ?Sized>(
    registry: &R,
    id: &str,
    version: Option<i64>,
) -> anyhow::Result<Webhook> {
    let webhook = find(registry, id)?;
    match version {
        Some(version) if version != webhook.updated_at_ms => Err(Refusal::Changed(format!(
            "webhook {id} was changed meanwhile (by `sender run`, another page or a command); nothing was written: look at it again and repeat the change"
        ))
        .into()),
        _ => Ok(webhook),
    }
}

/// Registers a webhook (`webhooks add`).
///
/// # Errors
/// A [`UsageError`] for a bad field, [`Refusal::Limit`] for a sixth webhook, storage errors.
pub fn add<R: Registry + ?Sized>(registry: &R, changes: WebhookChanges) -> anyhow::Result<Webhook> {
    let webhook = changes.create(verify::unix_now_ms())?;
    registry.insert_webhook(&webhook).map_err(|error| {
        // The store's only refusal of a valid webhook is the limit, checked in its transaction.
        match error.downcast::<UsageError>() {
            Ok(usage) => Refusal::Limit(usage.0).into(),
            Err(other) => other,
        }
    })?;
    Ok(webhook)
}

/// Changes a webhook (`webhooks edit`); fields not named keep their value.
///
/// # Errors
/// A [`UsageError`] for a bad field; [`Refusal`]s; storage errors.
pub fn edit<R: Registry + ?Sized>(
    registry: &R,
    id: &str,
    changes: WebhookChanges,
    version: Option<i64>,
) -> anyhow::Result<Webhook> {
    let mut webhook = find_version(registry, id, version)?;
    let read_at_ms = webhook.updated_at_ms;
    changes.apply(&mut webhook, next_version(read_at_ms))?;
    registry.update_webhook(&webhook, read_at_ms)?;
    Ok(webhook)
}

/// Retires (`Status::Retired`) or activates (`Status::Active`) a webhook; activation also
/// clears a disable at the end of retention.
///
/// # Errors
/// [`Refusal`]s; storage errors.
pub fn set_status<R: Registry + ?Sized>(
    registry: &R,
    id: &str,
    status: Status,
    version: Option<i64>,
) -> anyhow::Result<Webhook> {
    let mut webhook = find_version(registry, id, version)?;
    let read_at_ms = webhook.updated_at_ms;
    webhook.status = status;
    webhook.updated_at_ms = next_version(read_at_ms);
    registry.update_webhook(&webhook, read_at_ms)?;
    Ok(webhook)
}

/// Deletes a webhook with its queue; gives the number of undelivered requests dropped.
///
/// # Errors
/// [`Refusal::NotFound`]; storage errors.
pub fn delete<R: Registry + ?Sized>(registry: &R, id: &str) -> anyhow::Result<u64> {
    registry
        .delete_webhook(&WebhookId(id.to_owned()))?
        .ok_or_else(|| Refusal::NotFound(format!("no webhook {id:?}")).into())
}

/// The signature file of a webhook as JSON text: public keys only (what a receiver needs)
/// unless `signing` asks for the sender's own `whsk_` keys too.
///
/// # Errors
/// A [`UsageError`] for a webhook without signature authentication; [`Refusal`]s.
pub fn signature_file<R: Registry + ?Sized>(
    registry: &R,
    id: &str,
    signing: bool,
) -> anyhow::Result<String> {
    let webhook = find(registry, id)?;
    let Auth::Signature(file) = &webhook.auth else {
        return Err(UsageError(format!(
            "webhook {id} uses {} authentication; it has no signature file (edit it with --auth signature)",
            webhook.auth.method()
        ))
        .into());
    };
    Ok(if signing {
        file.to_json_pretty()
    } else {
        file.for_receiver()
            .map_err(|error| UsageError(format!("webhook {id}: {error}")))?
            .to_json_pretty()
    })
}

/// The latest end of a rotation's overlap a signature file can write: 9999-12-31T23:59:59Z.
const LAST_WRITABLE_SECS: i64 = 253_402_300_799;

/// Adds a fresh secret; the old ones keep signing for `overlap`. Gives the end of the overlap
/// (ISO-8601) and the webhook as stored.
///
/// # Errors
/// A [`UsageError`] for a webhook without a secret or an overlap past the year 9999;
/// [`Refusal`]s; storage errors.
pub fn rotate_secret<R: Registry + ?Sized>(
    registry: &R,
    id: &str,
    overlap: Duration,
    version: Option<i64>,
) -> anyhow::Result<(String, Webhook)> {
    let mut webhook = find_version(registry, id, version)?;
    let read_at_ms = webhook.updated_at_ms;
    let Auth::Signature(file) = &mut webhook.auth else {
        return Err(UsageError(format!(
            "webhook {id} uses {} authentication; only signature webhooks have a secret",
            webhook.auth.method()
        ))
        .into());
    };
    let now = verify::unix_now_ms();
    let overlap_secs = i64::try_from(overlap.as_secs()).unwrap_or(i64::MAX);
    // A later end would be written as 1970 and expire the old secret at once, the opposite of
    // the request.
    let ends_secs = now.div_euclid(1000).saturating_add(overlap_secs);
    if ends_secs > LAST_WRITABLE_SECS {
        return Err(UsageError(
            "--overlap reaches past the year 9999; give a shorter overlap (e.g. 7d)".into(),
        )
        .into());
    }
    let fresh = file
        .fresh_key()
        .map_err(|error| UsageError(format!("webhook {id}: {error}")))?;
    file.rotate_key(fresh, now.div_euclid(1000), overlap_secs);
    webhook.updated_at_ms = next_version(read_at_ms).max(now);
    registry.update_webhook(&webhook, read_at_ms)?;
    Ok((verify::timestamp::format_iso_seconds(ends_secs), webhook))
}

/// A new `updated_at_ms` after `read_at_ms`: the clock, but always later than what was read,
/// so a change within the same millisecond still counts as a new version.
fn next_version(read_at_ms: i64) -> i64 {
    verify::unix_now_ms().max(read_at_ms.saturating_add(1))
}

/// Refuses a Target URL whose host is, or resolves to, an address `targets` does not allow:
/// `sender admin` listening beyond loopback refuses loopback, private, link-local and
/// unspecified addresses (`common::target_guard`), as an error of the `--url` field. The
/// pages and the API call it before saving or testing; the command line does not (its user
/// is the machine's operator). The connect checks the address again, whatever DNS said here.
/// A URL that does not parse passes: the registry's own check refuses it with its reason.
///
/// # Errors
/// A [`UsageError`] saying which address was refused and why.
pub async fn check_target(targets: &TargetGuard, url: &str) -> Result<(), UsageError> {
    let Ok(uri) = url.trim().parse::<http::Uri>() else {
        return Ok(());
    };
    let Some(host) = uri.host() else {
        return Ok(());
    };
    let https = uri.scheme_str() == Some("https");
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    // The host alone is named, never the whole URL: it may carry credentials.
    targets
        .check(host, port)
        .await
        .map_err(|refused| UsageError(format!("--url: {refused}")))
}

/// Where a test event goes and how it is authenticated.
#[derive(Debug, Clone)]
pub struct TestTarget {
    /// The Target URL.
    pub url: String,
    /// The authentication to apply.
    pub auth: Auth,
    /// The event to send when none is named: the webhook's first trigger event.
    pub default_event: Option<String>,
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
        url: target.url.clone(),
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

/// Most events one trigger makes (`trigger --count`, the API's `count`, the page's
/// **Count**).
///
/// Why 10 000: a trigger is a test tool, and 10 000 events to each of the 5 webhooks is
/// 50 000 queued requests, more than a worker delivers in strict order within minutes; the
/// answer names every `eventId` (about 400 KB of JSON at the bound); and a count from a typo or
/// a hostile caller (`1000000000`) must be a field error, not an attempt to make and hold
/// a billion events. A larger load is several triggers, or `sender replay` of a capture file.
pub const MAX_TRIGGER_COUNT: usize = 10_000;

/// Events made, routed and queued per transaction by [`trigger`]: what it holds in memory
/// at once, whatever the count (an event is about 1 KB, copied once per subscribed webhook).
pub const TRIGGER_CHUNK_EVENTS: usize = 500;

/// What `trigger` is asked to fire.
#[derive(Debug, Clone)]
pub struct TriggerRequest {
    /// The catalogue name.
    pub event_name: String,
    /// How many events: 1 to [`MAX_TRIGGER_COUNT`].
    pub count: usize,
    /// `accountId`.
    pub account_id: i64,
    /// `FIELD=VALUE` settings of `data`.
    pub set: Vec<String>,
    /// A JSON object merged into `data`.
    pub data: Option<String>,
    /// Generator seed.
    pub seed: u64,
    /// How times are written.
    pub time_style: TimeStyle,
}

/// What `trigger` queued.
#[derive(Debug, Clone)]
pub struct Triggered {
    /// The catalogue entry.
    pub kind: &'static EventKind,
    /// The `eventId`s of the events made, in order.
    pub event_ids: Vec<String>,
    /// The webhooks they were queued for, in order of registration.
    pub targets: Vec<WebhookId>,
}

impl TriggerRequest {
    /// Checks the request and makes its recipe.
    ///
    /// # Errors
    /// A [`UsageError`] for an unknown event, a count of 0 or over [`MAX_TRIGGER_COUNT`], a
    /// bad `--set` or `--data`.
    pub fn recipe(&self) -> Result<EventRecipe, UsageError> {
        let kind = check_event_name(&self.event_name)?;
        if self.count == 0 {
            return Err(UsageError("--count must be at least 1".into()));
        }
        if self.count > MAX_TRIGGER_COUNT {
            return Err(UsageError(format!(
                "--count {} is more than {MAX_TRIGGER_COUNT}, the most events one trigger makes; trigger several times for more",
                self.count
            )));
        }
        let set = self
            .set
            .iter()
            .map(|text| parse_set(text))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(EventRecipe {
            kind,
            count: self.count,
            account_id: self.account_id,
            set,
            data: self.data.as_deref().map(parse_data).transpose()?,
            seed: self.seed,
            time_style: self.time_style,
        })
    }
}

/// Makes the events and queues them for every active webhook subscribed to their name, in
/// chunks of [`TRIGGER_CHUNK_EVENTS`] events, one transaction each: memory stays bounded
/// whatever the count, and each webhook's queue still gets the events in the order they were
/// made. Blocking: call it off the async threads.
///
/// # Errors
/// A [`UsageError`] for a bad request; storage errors, saying how many events were queued
/// before the failure (earlier chunks stay queued).
pub fn trigger<S: State + ?Sized>(
    state: &S,
    request: &TriggerRequest,
) -> anyhow::Result<Triggered> {
    use anyhow::Context as _;
    let recipe = request.recipe()?;
    let at = verify::unix_now_ms();
    let webhooks = state.webhooks()?;
    let targets: Vec<WebhookId> = subscribers(recipe.kind, &webhooks)
        .into_iter()
        .map(|webhook| webhook.id.clone())
        .collect();
    let event_ids = route_in_chunks(
        &recipe,
        at,
        &webhooks,
        TRIGGER_CHUNK_EVENTS,
        |deliveries, queued_events| {
            state.enqueue(deliveries, at).with_context(|| {
                format!(
                    "{queued_events} of {} events were queued before this failure; the rest were not",
                    recipe.count
                )
            })
        },
    )?;
    Ok(Triggered {
        kind: recipe.kind,
        event_ids,
        targets,
    })
}

/// Checks a `deliveries list --status` value.
///
/// # Errors
/// A [`UsageError`] naming the three states.
pub fn check_delivery_state(wanted: Option<&str>) -> Result<(), UsageError> {
    match wanted {
        Some(wanted) if !["pending", "delivered", "expired"].contains(&wanted) => Err(UsageError(
            format!("--status {wanted:?}: use pending, delivered or expired"),
        )),
        _ => Ok(()),
    }
}

/// The part of a validation message that names the field, as `(field, message)`: the field is
/// the one whose flag the message names first (`--url` is `url`), for showing the error beside
/// it; the message says the field's label instead of its flag.
pub fn field_error(message: &str) -> (&'static str, String) {
    // (flag, field of the API and form, label on the pages), longer flags first so that
    // `--signature-header` is not read as `--signature`.
    const FIELDS: &[(&str, &str, &str)] = &[
        ("--signature-header", "scheme", "Signature header"),
        ("--signature-encoding", "scheme", "Signature encoding"),
        ("--signature-prefix", "scheme", "Signature prefix"),
        ("--tolerance", "scheme", "Tolerance"),
        ("--scheme", "scheme", "Scheme"),
        ("--name", "name", "Name"),
        ("--description", "description", "Description"),
        ("--url", "url", "Target URL"),
        ("--events", "events", "Trigger events"),
        ("--username", "username", "Username"),
        ("--password", "password", "Password"),
        ("--auth basic", "password", "Basic authentication"),
        ("--auth signature", "auth", "Signature authentication"),
        ("--auth", "auth", "Authentication"),
        ("--overlap", "overlap", "Overlap"),
        ("--count", "count", "Count"),
        ("--set", "set", "Field values"),
        ("--data", "data", "Data"),
    ];
    let first = FIELDS
        .iter()
        .filter_map(|entry| message.find(entry.0).map(|at| (at, entry)))
        .min_by_key(|(at, entry)| (*at, std::cmp::Reverse(entry.0.len())));
    let field = match first {
        Some((_, (_, field, _))) => field,
        None if message.starts_with("unknown event") => "events",
        None => "form",
    };
    let mut readable = message.to_owned();
    for (flag, _, label) in FIELDS {
        readable = readable.replace(flag, label);
    }
    (field, readable)
}

/// A webhook's record with its version (`updated_at_ms`), which a change may name to be
/// refused when the webhook changed since it was read.
pub fn record_with_version(webhook: &Webhook) -> Value {
    let mut record = webhook.to_json();
    if let Value::Object(map) = &mut record {
        map.insert("version".into(), Value::from(webhook.updated_at_ms));
    }
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_messages_name_their_field() {
        let check = |message: &str, field: &str, readable: &str| {
            let (found, text) = field_error(message);
            assert_eq!(found, field, "{message}");
            assert!(text.contains(readable), "{text:?} lacks {readable:?}");
        };
        check(
            "--url \"ftp://x\": scheme \"ftp\" is not http or https",
            "url",
            "Target URL \"ftp://x\"",
        );
        check(
            "--auth basic needs a non-empty --password",
            "password",
            "Basic authentication needs a non-empty Password",
        );
        check(
            "unknown event \"X\"; did you mean Y?",
            "events",
            "unknown event",
        );
        check(
            "--signature-prefix applies to --scheme body-hmac-sha256 only",
            "scheme",
            "Signature prefix applies to Scheme",
        );
        check("--name must not be empty", "name", "Name must not be empty");
        check("something else", "form", "something else");
    }
}
