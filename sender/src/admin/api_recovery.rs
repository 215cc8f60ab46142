//! The JSON API of what the Deliveries page does (SPEC section 9): resend one request,
//! recover a webhook's requests (`dryRun` counts them first), retry the head of a queue now.
//! Each calls [`crate::manage`], as `sender deliveries resend|recover` does.

use common::web::WebBody;
use http::{Response, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::api_answer::{answer, body, error};
use super::{blocking, Admin, Asked};
use crate::manage::{self, RecoverRequest};
use crate::UsageError;

type Answer = anyhow::Result<Response<WebBody>>;

/// `POST /api/deliveries/{id}/resend`.
pub(super) async fn resend(admin: &Admin, id: &str) -> Answer {
    let id = id.to_owned();
    let queued = blocking(admin, move |state| manage::resend(state, &id)).await?;
    Ok(answer(
        StatusCode::ACCEPTED,
        &json!({
            "id": queued.msg_id,
            "row": queued.row,
            "webhookId": queued.webhook_id.as_str(),
            "events": queued.events,
            "behind": queued.behind,
        }),
    ))
}

/// The body of recover.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RecoverBody {
    /// `expired` (the default), `failed`, `delivered` or `all`.
    status: Option<String>,
    /// First queued at or after this time (RFC 3339, a date, or epoch ms).
    since: Option<String>,
    /// First queued before this time.
    until: Option<String>,
    /// Count only.
    dry_run: Option<bool>,
}

/// `POST /api/webhooks/{id}/recover`: 200 with the count for a dry run, 202 once queued.
pub(super) async fn recover(admin: &Admin, id: &str, asked: &Asked) -> Answer {
    let recover: RecoverBody = match body(asked) {
        Ok(recover) => recover,
        Err(failure) => {
            return Ok(error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                &format!("the body is not the JSON this operation takes: {failure}"),
                None,
            ))
        }
    };
    let instant = |flag: &str, text: Option<&str>| -> Result<Option<i64>, UsageError> {
        text.map(str::trim)
            .filter(|text| !text.is_empty())
            .map(|text| {
                common::parse::instant_ms(text)
                    .map_err(|error| UsageError(format!("--{flag} {error}")))
            })
            .transpose()
    };
    let dry_run = recover.dry_run.unwrap_or(false);
    let request = RecoverRequest {
        webhook_id: id.to_owned(),
        status: recover.status,
        since_ms: instant("since", recover.since.as_deref())?,
        until_ms: instant("until", recover.until.as_deref())?,
        dry_run,
    };
    let (webhook, status, recovered) =
        blocking(admin, move |state| manage::recover(state, &request)).await?;
    Ok(answer(
        if dry_run {
            StatusCode::OK
        } else {
            StatusCode::ACCEPTED
        },
        &json!({
            "webhookId": webhook.id.as_str(),
            "status": status.as_str(),
            "dryRun": dry_run,
            "requests": recovered.requests,
            "events": recovered.events,
            "ids": recovered.ids,
        }),
    ))
}

/// `POST /api/webhooks/{id}/retry`: the head of the queue due now (`request` null when
/// nothing is pending).
pub(super) async fn retry(admin: &Admin, id: &str) -> Answer {
    let id = id.to_owned();
    let head = blocking(admin, move |state| manage::retry_now(state, &id)).await?;
    Ok(answer(StatusCode::OK, &json!({ "request": head })))
}
