//! The page handlers: each reads like its request, parse the form, call [`crate::manage`]
//! (the command line's code), render `html`. A change answers with a redirect to the page that
//! shows its result (post/redirect/get), or the form again with the errors beside their fields.
//! The Add webhook / Edit form's flows are `form_pages`.

use common::web::{self, WebBody};
use http::{Method, Response, StatusCode};

use super::form_pages;
use super::html::{self, FieldError, Notice, TriggerReport, TriggerValues, TriggeredWebhook};
use super::page_answer::{failed_page, page, see_other, usage_of, value, Answer};
use super::{blocking, Admin, Asked};
use crate::manage::{self, Problem, Refusal, TriggerRequest};
use crate::registry::Status;

/// Routes every path outside `/api/`.
pub(super) async fn route(admin: &Admin, asked: &Asked) -> Response<WebBody> {
    let segments: Vec<&str> = asked.segments.iter().map(String::as_str).collect();
    let form = web::parse_query(&String::from_utf8_lossy(&asked.body));
    let done = asked.query("done");
    let result = match (&asked.method, segments.as_slice()) {
        (&Method::GET, []) => list(admin, asked).await,
        (&Method::GET, ["webhooks", "new"]) => form_pages::new_page(admin, done).await,
        (&Method::POST, ["webhooks", "new", "test"]) => form_pages::test(admin, None, &form).await,
        (&Method::POST, ["webhooks", "new", "signature"]) => {
            form_pages::download(admin, None, &form).await
        }
        (&Method::GET, ["webhooks", "new", "test" | "signature"]) => {
            Ok(form_pages::back_to_form(None))
        }
        (&Method::POST, ["webhooks"]) => form_pages::create(admin, &form).await,
        (&Method::GET, ["webhooks", id]) => form_pages::edit_page(admin, id, done).await,
        (&Method::POST, ["webhooks", id]) => form_pages::save(admin, id, &form).await,
        (&Method::GET, ["webhooks", id, "status"]) => confirm_status(admin, id, asked).await,
        (&Method::POST, ["webhooks", id, "status"]) => switch(admin, id, &form).await,
        (&Method::POST, ["webhooks", id, "test"]) => form_pages::test(admin, Some(id), &form).await,
        (&Method::POST, ["webhooks", id, "signature"]) => {
            form_pages::download(admin, Some(id), &form).await
        }
        (&Method::GET, ["webhooks", id, "test" | "signature"]) => {
            Ok(form_pages::back_to_form(Some(id)))
        }
        (&Method::POST, ["webhooks", id, "rotate"]) => form_pages::rotate(admin, id, &form).await,
        (&Method::GET, ["webhooks", id, "signature.json"]) => {
            super::signature_download(admin, id, false).await
        }
        (&Method::GET, ["webhooks", id, "delete"]) => confirm_delete(admin, id).await,
        (&Method::POST, ["webhooks", id, "delete"]) => delete(admin, id).await,
        (&Method::GET, ["webhooks", id, "deliveries"]) => {
            super::deliveries::page(admin, id, asked).await
        }
        (&Method::POST, ["webhooks", id, "deliveries", request, "resend"]) => {
            super::deliveries::resend(admin, id, request).await
        }
        (&Method::POST, ["webhooks", id, "retry"]) => super::deliveries::retry_now(admin, id).await,
        (&Method::GET, ["webhooks", id, "recover"]) => {
            super::deliveries::confirm_recover(admin, id, asked).await
        }
        (&Method::POST, ["webhooks", id, "recover"]) => {
            super::deliveries::recover(admin, id, &form).await
        }
        (&Method::GET, ["trigger"]) => Ok(page(html::trigger(
            &TriggerValues::default(),
            &[],
            None,
            None,
        ))),
        (&Method::POST, ["trigger"]) => trigger(admin, &form).await,
        _ => Ok(web::html(
            StatusCode::NOT_FOUND,
            html::message_page("Not found", "There is no page at this address."),
        )),
    };
    result.unwrap_or_else(|failure| failed_page(&failure))
}

/// The `version` a form was rendered with.
fn version(form: &[(String, String)]) -> Option<i64> {
    value(form, "version").and_then(|text| text.parse().ok())
}

/// **Webhooks**; `?done=` names what the previous change did (one of ours, below), `?id=`
/// the webhook it did it to.
async fn list(admin: &Admin, asked: &Asked) -> Answer {
    let all = super::listed(admin).await?;
    let named = asked
        .query("id")
        .and_then(|id| all.iter().find(|listed| listed.webhook.id.as_str() == id));
    let notice = match (asked.query("done"), named) {
        (Some("deleted"), _) => Some(Notice::Done("The webhook was deleted.".into())),
        (Some("changed"), _) => Some(Notice::Problem(
            "That webhook was changed meanwhile (by the delivery worker, another page or a command), so nothing was switched: here is the list as it is now."
                .into(),
        )),
        (Some("retired"), Some(listed)) => Some(Notice::Done(format!(
            "{} is now Inactive: nothing is delivered to it; {} waiting in its queue until it is activated again.",
            listed.webhook.name,
            waiting_words(listed.queue.waiting()),
        ))),
        (Some("activated"), Some(listed)) => Some(Notice::Done(format!(
            "{} is now Active: {} waiting in its queue go now, oldest first.",
            listed.webhook.name,
            waiting_words(listed.queue.waiting()),
        ))),
        _ => None,
    };
    Ok(page(html::webhooks(&all, notice.as_ref())))
}

/// `1 request`, `3 requests` (staged batch events counted as requests to come).
fn waiting_words(waiting: u64) -> String {
    format!(
        "{waiting} request{} {}",
        if waiting == 1 { "" } else { "s" },
        if waiting == 1 { "is" } else { "are" }
    )
}

/// `GET /webhooks/{id}/status?active=on|off`: the confirmation of a retire or an activate,
/// with the webhook as it is now (the list may be older).
async fn confirm_status(admin: &Admin, id: &str, asked: &Asked) -> Answer {
    let to_active = asked.query("active") == Some("on");
    let owned = id.to_owned();
    let interval_ms = super::batch_interval_ms(admin);
    let (webhook, queue) = blocking(admin, move |state| {
        let webhook = manage::find(state, &owned)?;
        let queue = super::queue_state(state, &webhook.id, interval_ms)?;
        Ok((webhook, queue))
    })
    .await?;
    let already = match (&webhook.status, to_active) {
        (Status::Active, true) => Some("Active"),
        (Status::Retired | Status::Disabled(_), false) => Some("Inactive"),
        _ => None,
    };
    if let Some(word) = already {
        let message = format!(
            "{} is already {word} (it was changed meanwhile): nothing to switch.",
            webhook.name
        );
        return Ok(page(html::message_page("Nothing to switch", &message)));
    }
    Ok(page(html::confirm_status(&webhook, &queue, to_active)))
}

/// The confirmed Activation status switch.
async fn switch(admin: &Admin, id: &str, form: &[(String, String)]) -> Answer {
    let (status, done) = if value(form, "active") == Some("on") {
        (Status::Active, "activated")
    } else {
        (Status::Retired, "retired")
    };
    let version = version(form);
    let owned = id.to_owned();
    let switched = blocking(admin, move |state| {
        manage::set_status(state, &owned, status, version)
    })
    .await;
    match switched {
        Ok(webhook) => Ok(see_other(&format!(
            "/?done={done}&id={}",
            web::encode_query_value(webhook.id.as_str())
        ))),
        // The page was out of date: show the list as it is now, saying so.
        Err(failure) if matches!(Refusal::of(&failure), Some(Refusal::Changed(_))) => {
            Ok(see_other("/?done=changed"))
        }
        Err(failure) => Err(failure),
    }
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
    let problem = |errors: Vec<FieldError>| {
        Ok(web::html(
            StatusCode::UNPROCESSABLE_ENTITY,
            html::trigger(&values, &errors, None, None),
        ))
    };
    let count = values.count.parse::<usize>();
    let account_id = values.account.parse::<i64>();
    let mut errors = Vec::new();
    if count.is_err() {
        errors.push(FieldError {
            field: "count",
            message: "Count must be a whole number such as 1".into(),
        });
    }
    if account_id.is_err() {
        errors.push(FieldError {
            field: "account",
            message: "Account must be a number such as 1010".into(),
        });
    }
    let (Ok(count), Ok(account_id)) = (count, account_id) else {
        return problem(errors);
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
            return match usage_of(&failure) {
                Some(usage) => {
                    let problem_of = Problem::from(usage);
                    problem(vec![FieldError {
                        field: problem_of.field,
                        message: problem_of.message,
                    }])
                }
                None => Err(failure),
            }
        }
    };
    if triggered.targets.is_empty() {
        let notice = Notice::Problem(format!(
            "No active webhook subscribes to {}; nothing was queued.",
            triggered.kind.name
        ));
        return Ok(page(html::trigger(&values, &[], Some(&notice), None)));
    }
    let batch = triggered.kind.class == verify::EventClass::Batch;
    let targets = triggered.targets.clone();
    let interval_ms = super::batch_interval_ms(admin);
    let webhooks = blocking(admin, move |state| {
        let mut named = Vec::new();
        for id in &targets {
            let Some(webhook) = state.webhook(id)? else {
                continue;
            };
            let staged = if batch {
                state.counts(Some(id))?.staged
            } else {
                0
            };
            let staged_due_ms = if batch {
                state
                    .oldest_staged_at_ms(id)?
                    .map(|oldest| oldest.saturating_add(interval_ms))
            } else {
                None
            };
            named.push(TriggeredWebhook {
                id: webhook.id.to_string(),
                name: webhook.name,
                staged,
                staged_due_ms,
            });
        }
        Ok(named)
    })
    .await?;
    let report = TriggerReport {
        event: triggered.kind.name,
        count: triggered.event_ids.len(),
        batch: batch.then(|| {
            (
                crate::format_duration(admin.batch_interval),
                admin.batch_size,
            )
        }),
        webhooks,
    };
    Ok(page(html::trigger(&values, &[], None, Some(&report))))
}
