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
//! | 422 | `invalid` | a field is wrong; `field` names it, `message` says what to give |
//! | 500 | `internal` | storage failed (the details are in the log) |

use std::time::Duration;

use common::web::{self, WebBody};
use http::{Method, Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::input::WebhookInput;
use super::{blocking, Admin, Asked};
use crate::manage::{self, Refusal, TriggerRequest};
use crate::registry::{Status, WebhookId};
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
        (&Method::POST, ["api", "webhooks", id, "rotate"]) => rotate(admin, id, asked).await,
        (&Method::GET, ["api", "webhooks", id, "signature"]) => {
            signature(admin, id, asked.query("signing") == Some("true")).await
        }
        (&Method::GET, ["api", "webhooks", id, "deliveries"]) => deliveries(admin, id).await,
        (&Method::GET, ["api", "deliveries", id]) => delivery(admin, id).await,
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

/// An error answer of the API.
pub(super) fn error(
    status: StatusCode,
    code: &str,
    message: &str,
    field: Option<&str>,
) -> Response<WebBody> {
    let mut body = json!({"error": code, "message": message});
    if let (Some(field), Value::Object(map)) = (field, &mut body) {
        map.insert("field".into(), json!(field));
    }
    answer(status, &body)
}

/// A JSON answer.
fn answer(status: StatusCode, body: &Value) -> Response<WebBody> {
    web::respond(status, "application/json", format!("{body}\n"))
}

/// What went wrong, as its answer: the user's mistakes say what to fix, the rest is logged.
pub(super) fn refused(failure: &anyhow::Error) -> Response<WebBody> {
    if let Some(usage) = failure
        .chain()
        .find_map(|cause| cause.downcast_ref::<UsageError>())
    {
        let (field, message) = manage::field_error(&usage.0);
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            &message,
            Some(field),
        );
    }
    match Refusal::of(failure) {
        Some(Refusal::NotFound(message)) => {
            error(StatusCode::NOT_FOUND, "not_found", &message, None)
        }
        Some(Refusal::Limit(message)) => error(StatusCode::CONFLICT, "limit", &message, None),
        Some(Refusal::Changed(message)) => error(StatusCode::CONFLICT, "changed", &message, None),
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

/// Reads a JSON body; an empty body is `{}`.
fn body<T: for<'de> Deserialize<'de> + Default>(asked: &Asked) -> serde_json::Result<T> {
    if asked.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&asked.body)
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
                map.insert("lastDelivery".into(), json!(listed.last));
            }
            record
        })
        .collect();
    Ok(answer(StatusCode::OK, &Value::Array(records)))
}

async fn add(admin: &Admin, asked: &Asked) -> Answer {
    let input: WebhookInput = read_body!(asked);
    let mut changes = input.changes()?;
    super::admit_changes(admin, &mut changes).await?;
    let webhook = blocking(admin, move |state| manage::add(state, changes)).await?;
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
    let mut changes = input.changes()?;
    super::admit_changes(admin, &mut changes).await?;
    let id = id.to_owned();
    let webhook = blocking(admin, move |state| {
        manage::edit(state, &id, changes, version)
    })
    .await?;
    Ok(answer(
        StatusCode::OK,
        &manage::record_with_version(&webhook),
    ))
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

/// The body of test: the event to send (default: the webhook's first trigger event).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TestBody {
    event: Option<String>,
}

async fn test(admin: &Admin, id: &str, asked: &Asked) -> Answer {
    let test: TestBody = read_body!(asked);
    let outcome = super::test_webhook(admin, id, test.event).await?;
    Ok(answer(StatusCode::OK, &json!(outcome)))
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
