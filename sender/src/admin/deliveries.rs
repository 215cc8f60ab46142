//! The Deliveries page of a webhook, the page an admin opens during an outage, and its actions:
//! **Retry now** (the request holding the queue goes at once), **Resend** (one request queued
//! again) and **Recover** (a webhook's requests queued again, the count shown on a confirmation
//! page first). Each handler reads like its request: read the state through
//! [`crate::manage`], render `deliveries_html`, or redirect to the page with what was done.

use common::web::{self, WebBody};
use http::{Response, StatusCode};

use super::deliveries_html::{self, Outage, RecoverForm};
use super::html::Notice;
use super::page_answer::see_other;
use super::{blocking, Admin, Asked};
use crate::manage::{self, plural, RecoverRequest, Refusal};
use crate::store::{DeliveryFilter, RecoverStatus};
use crate::UsageError;

type Answer = anyhow::Result<Response<WebBody>>;

/// Most requests the page lists (the newest), besides the one holding the queue.
const REQUESTS_SHOWN: usize = 50;
/// Most staged batch events the page lists.
const STAGED_SHOWN: usize = 20;

/// **Deliveries**: the request holding the queue on top, then the newest requests, the staged
/// batch events, and Recover. `?done=` names what the previous action did.
pub(super) async fn page(admin: &Admin, id: &str, asked: &Asked) -> Answer {
    let owned = id.to_owned();
    let batch_interval_ms = crate::retry::millis(admin.batch_interval);
    let outage = blocking(admin, move |state| {
        let webhook = manage::find(state, &owned)?;
        let now_ms = verify::unix_now_ms();
        let head = state
            .pending(&webhook.id, 1, true, now_ms, 0)?
            .first()
            .map(|head| state.delivery(&head.id.to_string()))
            .transpose()?
            .flatten();
        let mut newest = Vec::new();
        let summaries = state.deliveries(&DeliveryFilter {
            webhook_id: Some(webhook.id.clone()),
            state: None,
            limit: REQUESTS_SHOWN,
        })?;
        for summary in summaries {
            if head
                .as_ref()
                .is_some_and(|head| head.summary.row == summary.row)
            {
                continue;
            }
            if let Some(detail) = state.delivery(&summary.row.to_string())? {
                newest.push(detail);
            }
        }
        Ok(Outage {
            counts: state.counts(Some(&webhook.id))?,
            health: state.health(&webhook.id)?,
            staged: state.staged(&webhook.id, STAGED_SHOWN)?,
            expired: manage::expired(state, &webhook)?,
            webhook,
            head,
            newest,
            now_ms,
            batch_interval_ms,
        })
    })
    .await?;
    let notice = done_notice(asked);
    Ok(web::html(
        StatusCode::OK,
        deliveries_html::deliveries(&outage, notice.as_ref()),
    ))
}

/// What the action before the redirect did, from `?done=` and its numbers (our own).
fn done_notice(asked: &Asked) -> Option<Notice> {
    let number = |name: &str| {
        asked
            .query(name)
            .and_then(|text| text.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Some(match asked.query("done")? {
        "retried" => Notice::Done(
            "The request holding the queue goes again now (within a poll interval).".into(),
        ),
        "nothing-pending" => Notice::Problem("No request is pending: nothing to retry.".into()),
        "resent" => Notice::Done(format!(
            "Queued {} again, behind {} pending request{}: same webhook-id and body, signed afresh when it goes.",
            asked.query("request").unwrap_or("the request"),
            number("behind"),
            plural(number("behind"))
        )),
        "recovered" => Notice::Done(format!(
            "Queued {} request{} ({} event{}) again, in their original order.",
            number("requests"),
            plural(number("requests")),
            number("events"),
            plural(number("events"))
        )),
        _ => return None,
    })
}

/// **Retry now**: the head of the queue due now.
pub(super) async fn retry_now(admin: &Admin, id: &str) -> Answer {
    let owned = id.to_owned();
    let retried = blocking(admin, move |state| manage::retry_now(state, &owned)).await?;
    let done = if retried.is_some() {
        "retried"
    } else {
        "nothing-pending"
    };
    Ok(see_other(&format!("/webhooks/{id}/deliveries?done={done}")))
}

/// **Resend** of one request of this webhook.
pub(super) async fn resend(admin: &Admin, id: &str, request: &str) -> Answer {
    let (owned, request_id) = (id.to_owned(), request.to_owned());
    let queued = blocking(admin, move |state| {
        let webhook = manage::find(state, &owned)?;
        // The request must be this webhook's: a form of one webhook's page cannot resend
        // another's.
        match state.delivery(&request_id)? {
            Some(found) if found.summary.webhook_id == webhook.id.as_str() => {}
            _ => {
                return Err(Refusal::NotFound(format!(
                    "no request {request_id:?} of webhook {owned}"
                ))
                .into())
            }
        }
        manage::resend(state, &request_id)
    })
    .await?;
    Ok(see_other(&format!(
        "/webhooks/{id}/deliveries?done=resent&request={}&behind={}",
        web::encode_query_value(&queued.msg_id),
        queued.behind
    )))
}

/// The Recover form's values, from a query or a posted form.
fn recover_form(values: &[(String, String)]) -> RecoverForm {
    let value = |name: &str| {
        values
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.trim().to_owned())
            .unwrap_or_default()
    };
    RecoverForm {
        status: Some(value("status"))
            .filter(|status| !status.is_empty())
            .unwrap_or_else(|| RecoverStatus::Expired.as_str().to_owned()),
        since: value("since"),
        until: value("until"),
    }
}

/// The form as `recover` takes it.
fn recover_request(
    id: &str,
    form: &RecoverForm,
    dry_run: bool,
) -> Result<RecoverRequest, UsageError> {
    let instant = |flag: &str, text: &str| -> Result<Option<i64>, UsageError> {
        if text.is_empty() {
            return Ok(None);
        }
        common::parse::instant_ms(text)
            .map(Some)
            .map_err(|error| UsageError(format!("--{flag} {error}")))
    };
    Ok(RecoverRequest {
        webhook_id: id.to_owned(),
        status: Some(form.status.clone()),
        since_ms: instant("since", &form.since)?,
        until_ms: instant("until", &form.until)?,
        dry_run,
    })
}

/// **Recover**, first step: the count of what would go, and the button that confirms it; a
/// mistake in the form is said above it, the form kept.
pub(super) async fn confirm_recover(admin: &Admin, id: &str, asked: &Asked) -> Answer {
    let form = recover_form(&asked.query);
    let counted = match recover_request(id, &form, true) {
        Ok(request) => blocking(admin, move |state| manage::recover(state, &request)).await,
        Err(usage) => Err(usage.into()),
    };
    let (webhook, recovered) = match counted {
        Ok((webhook, _, recovered)) => (webhook, recovered),
        Err(failure) => {
            let Some(usage) = failure
                .chain()
                .find_map(|cause| cause.downcast_ref::<UsageError>())
            else {
                return Err(failure);
            };
            let message = manage::field_error(&usage.0).1;
            let owned = id.to_owned();
            let webhook = blocking(admin, move |state| manage::find(state, &owned)).await?;
            return Ok(web::html(
                StatusCode::UNPROCESSABLE_ENTITY,
                deliveries_html::confirm_recover(&webhook, &form, None, Some(&message)),
            ));
        }
    };
    Ok(web::html(
        StatusCode::OK,
        deliveries_html::confirm_recover(&webhook, &form, Some(&recovered), None),
    ))
}

/// **Recover**, confirmed: the requests queued again; back to the page, which says how many.
pub(super) async fn recover(admin: &Admin, id: &str, form: &[(String, String)]) -> Answer {
    let form = recover_form(form);
    let request = recover_request(id, &form, false)?;
    let (_, _, recovered) = blocking(admin, move |state| manage::recover(state, &request)).await?;
    Ok(see_other(&format!(
        "/webhooks/{id}/deliveries?done=recovered&requests={}&events={}",
        recovered.requests, recovered.events
    )))
}
