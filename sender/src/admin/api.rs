//! The JSON admin API under `/api/`, as `openapi.json` describes it. Every operation calls
//! [`crate::manage`], like the command line; errors are one JSON shape,
//! `{"error": code, "message": text, "field": name}`:
//!
//! | status | `error` | when |
//! |---|---|---|
//! | 400 | `bad_request` | the body is not the JSON the operation takes |
//! | 403 | `cross_site` | a change without the `x-admin-token` header or a same-origin `Origin` |
//! | 404 | `not_found` | no such webhook, delivery or path |
//! | 409 | `limit` / `changed` | a sixth webhook; the webhook changed since `version` was read |
//! | 422 | `invalid` | a field is wrong; `field` names it, `message` says what to give, in plain words; `errors` lists every field's problem at once |
//! | 500 | `internal` | storage failed (the details are in the log) |
//!
//! Before Save, as on the pages: `POST /api/test` tests a webhook that is not registered
//! (nothing is stored), `POST /api/webhooks/{id}/test` may carry unsaved `changes`, and
//! `POST /api/pending-signatures` makes a secret for a webhook not saved yet (or for a stored
//! one changing scheme), whose file `GET /api/pending-signatures/{id}` gives, which a test
//! signs with and which the add or edit naming it (`pendingSignature`) keeps.

use std::time::Duration;

use common::web::{self, WebBody};
use http::{Method, Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::api_answer::{answer, body, error};
use super::input::{scheme_name, WebhookInput};
use super::pending::{expires_at_ms, Pending};
use super::{blocking, Admin, Asked};
use crate::manage::{self, one_a_field, Problem, Refusal, TriggerRequest, WebhookChanges};
use crate::registry::{SchemeName, Status, Webhook, WebhookId};
use crate::UsageError;

/// Routes `/api/…`.
pub(super) async fn route(admin: &Admin, asked: &Asked) -> Response<WebBody> {
    let segments: Vec<&str> = asked.segments.iter().map(String::as_str).collect();
    let result = match (&asked.method, segments.as_slice()) {
        (&Method::GET, ["api", "openapi.json"]) => Ok(web::respond(
            StatusCode::OK,
            "application/json",
            super::OPENAPI,
        )),
        (&Method::GET, ["api", "webhooks"]) => list(admin).await,
        (&Method::POST, ["api", "webhooks"]) => add(admin, asked).await,
        (&Method::GET, ["api", "webhooks", id]) => show(admin, id).await,
        (&Method::PATCH, ["api", "webhooks", id]) => edit(admin, id, asked).await,
        (&Method::DELETE, ["api", "webhooks", id]) => delete(admin, id).await,
        (&Method::POST, ["api", "webhooks", id, "retire"]) => {
            status(admin, id, Status::Retired, asked).await
        }
        (&Method::POST, ["api", "webhooks", id, "activate"]) => {
            status(admin, id, Status::Active, asked).await
        }
        (&Method::POST, ["api", "webhooks", id, "test"]) => test(admin, id, asked).await,
        (&Method::POST, ["api", "test"]) => test_unsaved(admin, asked).await,
        (&Method::POST, ["api", "pending-signatures"]) => pending_signature(admin, asked).await,
        (&Method::GET, ["api", "pending-signatures", id]) => {
            pending_file(admin, id, asked.query("signing") == Some("true"))
        }
        (&Method::POST, ["api", "webhooks", id, "rotate"]) => rotate(admin, id, asked).await,
        (&Method::GET, ["api", "webhooks", id, "signature"]) => {
            signature(admin, id, asked.query("signing") == Some("true")).await
        }
        (&Method::GET, ["api", "webhooks", id, "deliveries"]) => deliveries(admin, id).await,
        (&Method::GET, ["api", "deliveries", id]) => delivery(admin, id).await,
        (&Method::POST, ["api", "deliveries", id, "resend"]) => {
            super::api_recovery::resend(admin, id).await
        }
        (&Method::POST, ["api", "webhooks", id, "recover"]) => {
            super::api_recovery::recover(admin, id, asked).await
        }
        (&Method::POST, ["api", "webhooks", id, "retry"]) => {
            super::api_recovery::retry(admin, id).await
        }
        (&Method::POST, ["api", "trigger"]) => trigger(admin, asked).await,
        _ => Ok(error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such operation; /api/openapi.json lists them",
            None,
        )),
    };
    result.unwrap_or_else(|failure| refused(&failure))
}

/// The 422 of every problem at once: the first as `field` and `message`, all in `errors`.
fn invalid(problems: &[Problem]) -> Response<WebBody> {
    let Some(first) = problems.first() else {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "invalid", "invalid", None);
    };
    let errors: Vec<Value> = problems
        .iter()
        .map(|problem| json!({"field": problem.field, "message": problem.message}))
        .collect();
    answer(
        StatusCode::UNPROCESSABLE_ENTITY,
        &json!({"error": "invalid", "message": first.message, "field": first.field,
                "errors": errors}),
    )
}

/// What went wrong, as its answer: the user's mistakes say what to fix, the rest is logged.
pub(super) fn refused(failure: &anyhow::Error) -> Response<WebBody> {
    if let Some(usage) = failure
        .chain()
        .find_map(|cause| cause.downcast_ref::<UsageError>())
    {
        return invalid(&[Problem::from(usage.clone())]);
    }
    // The refusals' own words name commands for the command line; the API says them plainly.
    let plain = |message: &str| manage::field_error(message).1;
    match Refusal::of(failure) {
        Some(Refusal::NotFound(message)) => {
            error(StatusCode::NOT_FOUND, "not_found", &plain(&message), None)
        }
        Some(Refusal::Limit(message)) => {
            error(StatusCode::CONFLICT, "limit", &plain(&message), None)
        }
        Some(Refusal::Changed(message)) => {
            error(StatusCode::CONFLICT, "changed", &plain(&message), None)
        }
        None => {
            tracing::warn!(error = %format!("{failure:#}"), "admin API");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the state could not be read or written; the log says why",
                None,
            )
        }
    }
}

/// The body read as JSON, or the handler returns the 400 that says why it is not.
macro_rules! read_body {
    ($asked:expr) => {
        match body($asked) {
            Ok(value) => value,
            Err(failure) => {
                return Ok(error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    &format!("the body is not the JSON this operation takes: {failure}"),
                    None,
                ))
            }
        }
    };
}

type Answer = anyhow::Result<Response<WebBody>>;

async fn list(admin: &Admin) -> Answer {
    let all = super::listed(admin).await?;
    let records: Vec<Value> = all
        .iter()
        .map(|listed| {
            let mut record = manage::record_with_version(&listed.webhook);
            if let Value::Object(map) = &mut record {
                let queue = &listed.queue;
                map.insert("lastDelivery".into(), json!(queue.last));
                map.insert("oldestFailing".into(), json!(queue.failing));
                map.insert("stagedEvents".into(), json!(queue.counts.staged));
                map.insert(
                    "stagedDueAt".into(),
                    json!(queue
                        .staged_due_ms
                        .map(verify::timestamp::format_iso_millis)),
                );
            }
            record
        })
        .collect();
    Ok(answer(StatusCode::OK, &Value::Array(records)))
}

/// A webhook body turned into changes for `current` (`None`: a new webhook), with its
/// pending signature, and every problem of it (the Target URL check included).
async fn changes_of(
    admin: &Admin,
    mut input: WebhookInput,
    current: Option<&Webhook>,
) -> (WebhookChanges, Option<Pending>, Vec<Problem>) {
    let pending_id = input.pending_signature.take();
    let (mut changes, mut problems) = input.changes();
    // A Target URL given here is delivered to under these pages' rule by every worker.
    changes.target_policy = admin.targets.policy();
    let pending = pending_id.as_deref().and_then(|id| match current {
        Some(webhook) => admin.pending.get(id, &webhook.id),
        None => admin.pending.get_new(id),
    });
    if let (Some(id), None) = (&pending_id, &pending) {
        problems.push(Problem::new(
            "pendingSignature",
            "no such pending signature",
            &format!(
                "No pending signature {id} for this webhook: it was used by a save, expired (they \
                 are kept an hour after their last use) or belongs to another webhook; make \
                 another"
            ),
        ));
    }
    changes.pending_signature = pending.as_ref().and_then(|pending| pending.file.clone());
    problems.extend(changes.problems(current));
    let mut problems = one_a_field(problems);
    if problems.is_empty() {
        if let Err(usage) = super::check_target(admin, changes.url.as_ref()).await {
            problems.push(usage.into());
        }
    }
    (changes, pending, problems)
}

async fn add(admin: &Admin, asked: &Asked) -> Answer {
    let input: WebhookInput = read_body!(asked);
    let (changes, pending, problems) = changes_of(admin, input, None).await;
    if !problems.is_empty() {
        return Ok(invalid(&problems));
    }
    let webhook = blocking(admin, move |state| manage::add(state, changes)).await?;
    if let Some(pending) = pending {
        admin.pending.remove(&pending.id);
    }
    Ok(answer(
        StatusCode::CREATED,
        &manage::record_with_version(&webhook),
    ))
}

async fn show(admin: &Admin, id: &str) -> Answer {
    let id = id.to_owned();
    let webhook = blocking(admin, move |state| manage::find(state, &id)).await?;
    Ok(answer(
        StatusCode::OK,
        &manage::record_with_version(&webhook),
    ))
}

async fn edit(admin: &Admin, id: &str, asked: &Asked) -> Answer {
    let mut input: WebhookInput = read_body!(asked);
    let version = input.version.take();
    let current = find(admin, id).await?;
    let (changes, pending, problems) = changes_of(admin, input, Some(&current)).await;
    if !problems.is_empty() {
        return Ok(invalid(&problems));
    }
    let id = id.to_owned();
    let webhook = blocking(admin, move |state| {
        manage::edit(state, &id, changes, version)
    })
    .await?;
    if let Some(pending) = pending {
        admin.pending.remove(&pending.id);
    }
    Ok(answer(
        StatusCode::OK,
        &manage::record_with_version(&webhook),
    ))
}

async fn find(admin: &Admin, id: &str) -> anyhow::Result<Webhook> {
    let id = id.to_owned();
    blocking(admin, move |state| manage::find(state, &id)).await
}

async fn delete(admin: &Admin, id: &str) -> Answer {
    let id = id.to_owned();
    let shown = id.clone();
    let dropped = blocking(admin, move |state| manage::delete(state, &id)).await?;
    Ok(answer(
        StatusCode::OK,
        &json!({"id": shown, "deleted": true, "undeliveredDropped": dropped}),
    ))
}

/// The body of retire, activate and rotate: the version read, and rotate's overlap.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ChangeBody {
    version: Option<i64>,
    /// Rotate only: how long the old secret keeps signing (`24h`, `7d`).
    overlap: Option<String>,
}

async fn status(admin: &Admin, id: &str, status: Status, asked: &Asked) -> Answer {
    let change: ChangeBody = read_body!(asked);
    if change.overlap.is_some() {
        return Err(UsageError("--overlap applies to rotate only".into()).into());
    }
    let id = id.to_owned();
    let webhook = blocking(admin, move |state| {
        manage::set_status(state, &id, status, change.version)
    })
    .await?;
    Ok(answer(
        StatusCode::OK,
        &manage::record_with_version(&webhook),
    ))
}

async fn rotate(admin: &Admin, id: &str, asked: &Asked) -> Answer {
    let change: ChangeBody = read_body!(asked);
    let overlap: Duration = super::overlap(change.overlap.as_deref())?;
    let id = id.to_owned();
    let (ends, webhook) = blocking(admin, move |state| {
        manage::rotate_secret(state, &id, overlap, change.version)
    })
    .await?;
    let mut record = manage::record_with_version(&webhook);
    if let Value::Object(map) = &mut record {
        map.insert("overlapEnds".into(), json!(ends));
    }
    Ok(answer(StatusCode::OK, &record))
}

/// The body of test: the event to send (default: the webhook's first trigger event), and
/// changes not saved to test with (as `PATCH` takes them; `version` aside).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TestBody {
    event: Option<String>,
    changes: Option<WebhookInput>,
}

async fn test(admin: &Admin, id: &str, asked: &Asked) -> Answer {
    let test: TestBody = read_body!(asked);
    let Some(mut input) = test.changes else {
        let outcome = super::test_webhook(admin, id, test.event).await?;
        return Ok(answer(StatusCode::OK, &json!(outcome)));
    };
    input.version = None;
    let current = find(admin, id).await?;
    let (changes, _, problems) = changes_of(admin, input, Some(&current)).await;
    if !problems.is_empty() {
        return Ok(invalid(&problems));
    }
    let mut webhook = current;
    changes.apply(&mut webhook, verify::unix_now_ms())?;
    let outcome = super::test_unsaved(admin, &webhook, test.event).await?;
    Ok(answer(StatusCode::OK, &json!(outcome)))
}

/// The body of `POST /api/test`: a webhook as `POST /api/webhooks` takes it, not registered.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TestUnsavedBody {
    event: Option<String>,
    webhook: Option<WebhookInput>,
}

/// **Test webhook** before Save: the webhook the body describes, checked as an add is, sent
/// one test event; nothing is stored.
async fn test_unsaved(admin: &Admin, asked: &Asked) -> Answer {
    let test: TestUnsavedBody = read_body!(asked);
    let mut input = test.webhook.unwrap_or_default();
    input.version = None;
    let (changes, _, problems) = changes_of(admin, input, None).await;
    if !problems.is_empty() {
        return Ok(invalid(&problems));
    }
    let webhook = changes.create(verify::unix_now_ms())?;
    let outcome = super::test_unsaved(admin, &webhook, test.event).await?;
    Ok(answer(StatusCode::OK, &json!(outcome)))
}

/// The body of `POST /api/pending-signatures`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PendingSignatureBody {
    /// The scheme (default `standard-webhooks`).
    scheme: Option<String>,
    /// The webhook's name, written into the file.
    name: Option<String>,
    /// A stored webhook changing to this scheme; none for a new webhook.
    webhook_id: Option<String>,
}

/// A pending signature: a secret made before Save, held by this process an hour after its
/// last use, for the webhook it names (a new id unless a stored webhook is given).
async fn pending_signature(admin: &Admin, asked: &Asked) -> Answer {
    let body: PendingSignatureBody = read_body!(asked);
    let scheme = match body.scheme.as_deref() {
        Some(text) => scheme_name(text)?,
        None => SchemeName::StandardWebhooks,
    };
    let stored = match &body.webhook_id {
        Some(id) => Some(find(admin, id).await?),
        None => None,
    };
    let (webhook_id, new_webhook) = match &stored {
        Some(webhook) => (webhook.id.clone(), false),
        None => (WebhookId::generate(), true),
    };
    let name = body
        .name
        .or_else(|| stored.as_ref().map(|webhook| webhook.name.clone()))
        .unwrap_or_default();
    let mut pending = admin.pending.create(webhook_id, new_webhook)?;
    let file = manage::signature_file_of(
        None,
        None,
        &pending.webhook_id,
        &name,
        scheme,
        verify::unix_now_ms(),
    )?;
    let scheme_text = file.scheme.clone();
    pending.file = Some(file);
    admin.pending.put(pending.clone());
    Ok(answer(
        StatusCode::CREATED,
        &json!({
            "id": pending.id,
            "webhookId": pending.webhook_id.as_str(),
            "scheme": scheme_text,
            "expiresAt": verify::timestamp::format_iso_millis(expires_at_ms()),
        }),
    ))
}

/// The signature file of a pending signature, as a download.
fn pending_file(admin: &Admin, id: &str, signing: bool) -> Answer {
    let Some((pending, file)) = admin
        .pending
        .get_any(id)
        .and_then(|pending| pending.file.clone().map(|file| (pending, file)))
    else {
        return Ok(error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such pending signature: it was used by a save or expired (they are kept an hour after their last use)",
            None,
        ));
    };
    let file = if signing {
        file
    } else {
        file.for_receiver()
            .map_err(|error| UsageError(format!("the pending signature: {error}")))?
    };
    Ok(super::attachment(
        &file.to_json_pretty(),
        pending.webhook_id.as_str(),
    ))
}

async fn signature(admin: &Admin, id: &str, signing: bool) -> Answer {
    let text = super::signature_download(admin, id, signing).await?;
    Ok(text)
}

async fn deliveries(admin: &Admin, id: &str) -> Answer {
    let (webhook, details) = super::deliveries_of(admin, id.to_owned()).await?;
    Ok(answer(
        StatusCode::OK,
        &json!({"webhook": manage::record_with_version(&webhook), "deliveries": details}),
    ))
}

async fn delivery(admin: &Admin, id: &str) -> Answer {
    let id = id.to_owned();
    let found = blocking(admin, move |state| state.delivery(&id)).await?;
    Ok(match found {
        Some(detail) => answer(StatusCode::OK, &json!(detail)),
        None => error(StatusCode::NOT_FOUND, "not_found", "no such delivery", None),
    })
}

/// The body of trigger.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TriggerBody {
    event: String,
    count: Option<usize>,
    account: Option<i64>,
    /// `data` fields to set: name to JSON value.
    set: Option<serde_json::Map<String, Value>>,
    /// A JSON object merged into every event's `data`.
    data: Option<serde_json::Map<String, Value>>,
    seed: Option<u64>,
}

async fn trigger(admin: &Admin, asked: &Asked) -> Answer {
    let body: TriggerBody = read_body!(asked);
    let request = TriggerRequest {
        event_name: body.event,
        count: body.count.unwrap_or(1),
        account_id: body.account.unwrap_or(crate::generate::DEFAULT_ACCOUNT_ID),
        // As `--set FIELD=VALUE` with the value in JSON, so one parser reads both.
        set: body
            .set
            .unwrap_or_default()
            .into_iter()
            .map(|(field, value)| format!("{field}={value}"))
            .collect(),
        data: body.data.map(|data| Value::Object(data).to_string()),
        seed: body.seed.unwrap_or_else(|| fastrand::u64(..)),
        time_style: verify::TimeStyle::Iso,
    };
    let triggered = super::fire(admin, request).await?;
    Ok(answer(
        StatusCode::ACCEPTED,
        &json!({
            "eventName": triggered.kind.name,
            "eventIds": triggered.event_ids,
            "webhooks": triggered.targets.iter().map(WebhookId::as_str).collect::<Vec<_>>(),
        }),
    ))
}
