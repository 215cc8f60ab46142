//! The page handlers: each reads like its request, parse the form, call [`crate::manage`]
//! (the command line's code), render `html`. A change answers with a redirect to the page that
//! shows its result (post/redirect/get), or the form again with the error beside its field.

use common::web::{self, WebBody};
use http::{Method, Response, StatusCode};

use super::html::{self, FieldError, FormValues, Notice, TriggerValues};
use super::input::form_changes;
use super::{blocking, Admin, Asked};
use crate::manage::{self, Refusal, TriggerRequest};
use crate::registry::{Status, Webhook};
use crate::UsageError;

/// Routes every path outside `/api/`.
pub(super) async fn route(admin: &Admin, asked: &Asked) -> Response<WebBody> {
    let segments: Vec<&str> = asked.segments.iter().map(String::as_str).collect();
    let form = web::parse_query(&String::from_utf8_lossy(&asked.body));
    let result = match (&asked.method, segments.as_slice()) {
        (&Method::GET, []) => list(admin, asked).await,
        (&Method::GET, ["webhooks", "new"]) => Ok(page(html::webhook_form(
            None,
            &FormValues::new_webhook(),
            None,
            None,
            None,
        ))),
        (&Method::POST, ["webhooks"]) => create(admin, &form).await,
        (&Method::GET, ["webhooks", id]) => edit_page(admin, id, asked).await,
        (&Method::POST, ["webhooks", id]) => save(admin, id, &form).await,
        (&Method::POST, ["webhooks", id, "status"]) => switch(admin, id, &form).await,
        (&Method::POST, ["webhooks", id, "test"]) => test(admin, id).await,
        (&Method::POST, ["webhooks", id, "rotate"]) => rotate(admin, id, &form).await,
        (&Method::GET, ["webhooks", id, "signature.json"]) => {
            super::signature_download(admin, id, false).await
        }
        (&Method::GET, ["webhooks", id, "delete"]) => confirm_delete(admin, id).await,
        (&Method::POST, ["webhooks", id, "delete"]) => delete(admin, id).await,
        (&Method::GET, ["webhooks", id, "deliveries"]) => {
            super::deliveries_of(admin, (*id).to_owned())
                .await
                .map(|(webhook, details)| page(html::deliveries(&webhook, &details)))
        }
        (&Method::GET, ["trigger"]) => {
            Ok(page(html::trigger(&TriggerValues::default(), None, None)))
        }
        (&Method::POST, ["trigger"]) => trigger(admin, &form).await,
        _ => Ok(web::not_found()),
    };
    result.unwrap_or_else(|failure| failed(&failure))
}

type Answer = anyhow::Result<Response<WebBody>>;

fn page(html: String) -> Response<WebBody> {
    web::html(StatusCode::OK, html)
}

/// A 303 to `location` (one of our own paths).
fn see_other(location: &str) -> Response<WebBody> {
    let mut response = web::text(StatusCode::SEE_OTHER, format!("see {location}\n"));
    if let Ok(value) = http::HeaderValue::from_str(location) {
        response.headers_mut().insert(http::header::LOCATION, value);
    }
    response
}

/// What could not be done, as a page: a missing webhook is a 404, a refusal says what to do,
/// a storage failure is logged and the page says to try again.
fn failed(failure: &anyhow::Error) -> Response<WebBody> {
    let (status, text) = match Refusal::of(failure) {
        Some(Refusal::NotFound(message)) => (StatusCode::NOT_FOUND, message),
        Some(refusal) => (StatusCode::CONFLICT, refusal.to_string()),
        None => match failure
            .chain()
            .find_map(|cause| cause.downcast_ref::<UsageError>())
        {
            Some(usage) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                manage::field_error(&usage.0).1,
            ),
            None => {
                tracing::warn!(error = %format!("{failure:#}"), "admin pages");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the state could not be read or written; try again in a moment (the log says why)"
                        .to_owned(),
                )
            }
        },
    };
    web::text(status, format!("{} {text}\n", status.as_u16()))
}

/// The error of a change, for the form: the field at fault and what to do, or `None` when it
/// is not the user's to fix.
fn field_error(failure: &anyhow::Error) -> Option<FieldError> {
    if let Some(usage) = failure
        .chain()
        .find_map(|cause| cause.downcast_ref::<UsageError>())
    {
        let (field, message) = manage::field_error(&usage.0);
        return Some(FieldError { field, message });
    }
    match Refusal::of(failure) {
        Some(Refusal::Limit(message) | Refusal::Changed(message)) => Some(FieldError {
            field: "form",
            message,
        }),
        _ => None,
    }
}

/// A form field's value.
fn value<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// The `version` a form was rendered with.
fn version(form: &[(String, String)]) -> Option<i64> {
    value(form, "version").and_then(|text| text.parse().ok())
}

async fn find(admin: &Admin, id: &str) -> anyhow::Result<Webhook> {
    let id = id.to_owned();
    blocking(admin, move |state| manage::find(state, &id)).await
}

/// **Webhooks**; `?done=` names what the previous change did (one of ours, below).
async fn list(admin: &Admin, asked: &Asked) -> Answer {
    let all = super::listed(admin).await?;
    let notice = match asked.query("done") {
        Some("deleted") => Some(Notice::Done("The webhook was deleted.".into())),
        Some("changed") => Some(Notice::Problem(
            "That webhook was changed meanwhile (by the delivery worker, another page or a command), so nothing was switched: here is the list as it is now."
                .into(),
        )),
        _ => None,
    };
    Ok(page(html::webhooks(&all, notice.as_ref())))
}

async fn create(admin: &Admin, form: &[(String, String)]) -> Answer {
    let changes = form_changes(form, true);
    let added = match changes {
        Ok(mut changes) => match super::admit_changes(admin, &mut changes).await {
            Ok(()) => blocking(admin, move |state| manage::add(state, changes)).await,
            Err(usage) => Err(usage.into()),
        },
        Err(usage) => Err(usage.into()),
    };
    match added {
        Ok(webhook) => Ok(see_other(&format!("/webhooks/{}?done=saved", webhook.id))),
        Err(failure) => match field_error(&failure) {
            Some(error) => Ok(web::html(
                StatusCode::UNPROCESSABLE_ENTITY,
                html::webhook_form(None, &FormValues::posted(form), Some(&error), None, None),
            )),
            None => Err(failure),
        },
    }
}

async fn edit_page(admin: &Admin, id: &str, asked: &Asked) -> Answer {
    let webhook = find(admin, id).await?;
    let notice = match asked.query("done") {
        Some("saved") => Some(Notice::Done("Saved.".into())),
        _ => None,
    };
    Ok(page(html::webhook_form(
        Some(&webhook),
        &FormValues::of(&webhook),
        None,
        notice.as_ref(),
        None,
    )))
}

async fn save(admin: &Admin, id: &str, form: &[(String, String)]) -> Answer {
    let changes = form_changes(form, false);
    let version = version(form);
    let owned = id.to_owned();
    let saved = match changes {
        Ok(mut changes) => match super::admit_changes(admin, &mut changes).await {
            Ok(()) => {
                blocking(admin, move |state| {
                    manage::edit(state, &owned, changes, version)
                })
                .await
            }
            Err(usage) => Err(usage.into()),
        },
        Err(usage) => Err(usage.into()),
    };
    match saved {
        Ok(webhook) => Ok(see_other(&format!("/webhooks/{}?done=saved", webhook.id))),
        Err(failure) => {
            let Some(error) = field_error(&failure) else {
                return Err(failure);
            };
            let webhook = find(admin, id).await?;
            // Changed meanwhile: show the webhook as it is now, so the user sees the change
            // before repeating theirs; otherwise keep what was typed.
            let values = if error.field == "form" {
                FormValues::of(&webhook)
            } else {
                FormValues::posted(form)
            };
            Ok(web::html(
                StatusCode::UNPROCESSABLE_ENTITY,
                html::webhook_form(Some(&webhook), &values, Some(&error), None, None),
            ))
        }
    }
}

/// The Activation status switch of the list.
async fn switch(admin: &Admin, id: &str, form: &[(String, String)]) -> Answer {
    let status = if value(form, "active") == Some("on") {
        Status::Active
    } else {
        Status::Retired
    };
    let version = version(form);
    let owned = id.to_owned();
    let switched = blocking(admin, move |state| {
        manage::set_status(state, &owned, status, version)
    })
    .await;
    match switched {
        Ok(_) => Ok(see_other("/")),
        // The list was out of date: show it as it is now, saying so.
        Err(failure) if matches!(Refusal::of(&failure), Some(Refusal::Changed(_))) => {
            Ok(see_other("/?done=changed"))
        }
        Err(failure) => Err(failure),
    }
}

async fn test(admin: &Admin, id: &str) -> Answer {
    let tested = super::test_webhook(admin, id, None).await;
    let webhook = find(admin, id).await?;
    match tested {
        Ok(outcome) => Ok(page(html::webhook_form(
            Some(&webhook),
            &FormValues::of(&webhook),
            None,
            None,
            Some(&outcome),
        ))),
        // A Target URL these pages may not send to: said beside the field.
        Err(failure) => match field_error(&failure) {
            Some(error) => Ok(web::html(
                StatusCode::UNPROCESSABLE_ENTITY,
                html::webhook_form(
                    Some(&webhook),
                    &FormValues::of(&webhook),
                    Some(&error),
                    None,
                    None,
                ),
            )),
            None => Err(failure),
        },
    }
}

async fn rotate(admin: &Admin, id: &str, form: &[(String, String)]) -> Answer {
    let version = version(form);
    let rotated = match super::overlap(value(form, "overlap")) {
        Ok(overlap) => {
            let owned = id.to_owned();
            blocking(admin, move |state| {
                manage::rotate_secret(state, &owned, overlap, version)
            })
            .await
        }
        Err(usage) => Err(usage.into()),
    };
    let (webhook, notice) = match rotated {
        Ok((ends, webhook)) => (
            webhook,
            Notice::Done(format!(
                "Rotated: both secrets sign until {ends}. Download signature again and give the file to the receiving team."
            )),
        ),
        Err(failure) => {
            let Some(error) = field_error(&failure) else {
                return Err(failure);
            };
            (find(admin, id).await?, Notice::Problem(error.message))
        }
    };
    Ok(page(html::webhook_form(
        Some(&webhook),
        &FormValues::of(&webhook),
        None,
        Some(&notice),
        None,
    )))
}

async fn confirm_delete(admin: &Admin, id: &str) -> Answer {
    let owned = id.to_owned();
    let (webhook, counts) = blocking(admin, move |state| {
        let webhook = manage::find(state, &owned)?;
        let counts = state.counts(Some(&webhook.id))?;
        Ok((webhook, counts))
    })
    .await?;
    Ok(page(html::confirm_delete(
        &webhook,
        counts.pending + counts.staged,
    )))
}

async fn delete(admin: &Admin, id: &str) -> Answer {
    let owned = id.to_owned();
    blocking(admin, move |state| manage::delete(state, &owned)).await?;
    Ok(see_other("/?done=deleted"))
}

async fn trigger(admin: &Admin, form: &[(String, String)]) -> Answer {
    let values = TriggerValues {
        event: value(form, "event").unwrap_or_default().to_owned(),
        count: value(form, "count").unwrap_or_default().trim().to_owned(),
        account: value(form, "account").unwrap_or_default().trim().to_owned(),
        fields: value(form, "set").unwrap_or_default().to_owned(),
    };
    let problem = |field: &'static str, message: String| {
        Ok(web::html(
            StatusCode::UNPROCESSABLE_ENTITY,
            html::trigger(&values, Some(&FieldError { field, message }), None),
        ))
    };
    let Ok(count) = values.count.parse::<usize>() else {
        return problem("count", "Count must be a whole number such as 1".into());
    };
    let Ok(account_id) = values.account.parse::<i64>() else {
        return problem("account", "Account must be a number such as 1010".into());
    };
    let request = TriggerRequest {
        event_name: values.event.clone(),
        count,
        account_id,
        set: values
            .fields
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .map(str::to_owned)
            .collect(),
        data: None,
        seed: fastrand::u64(..),
        time_style: verify::TimeStyle::Iso,
    };
    let triggered = match super::fire(admin, request).await {
        Ok(triggered) => triggered,
        Err(failure) => {
            return match field_error(&failure) {
                Some(error) => problem(error.field, error.message),
                None => Err(failure),
            }
        }
    };
    let notice = if triggered.targets.is_empty() {
        Notice::Problem(format!(
            "No active webhook subscribes to {}; nothing was queued.",
            triggered.kind.name
        ))
    } else {
        Notice::Done(format!(
            "Queued {} {} event(s) for {}: the Deliveries page of each shows them as they go.",
            triggered.event_ids.len(),
            triggered.kind.name,
            triggered
                .targets
                .iter()
                .map(|id| id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    };
    Ok(page(html::trigger(&values, None, Some(&notice))))
}
