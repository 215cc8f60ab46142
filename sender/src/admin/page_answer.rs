//! What every page handler answers with, and the small reads they share: a page, a redirect,
//! a failure as a page, the user's mistake in an error chain, a form field, a webhook by id.
//! Used by the router ([`super::pages`]) and the pages it routes to.

use common::web::{self, WebBody};
use http::{Response, StatusCode};

use super::html;
use super::{blocking, Admin};
use crate::manage::{self, Problem, Refusal};
use crate::registry::Webhook;
use crate::UsageError;

/// What a page handler answers.
pub(super) type Answer = anyhow::Result<Response<WebBody>>;

pub(super) fn page(html: String) -> Response<WebBody> {
    web::html(StatusCode::OK, html)
}

/// A 303 to `location` (one of our own paths).
pub(super) fn see_other(location: &str) -> Response<WebBody> {
    let mut response = web::text(StatusCode::SEE_OTHER, format!("see {location}\n"));
    if let Ok(value) = http::HeaderValue::from_str(location) {
        response.headers_mut().insert(http::header::LOCATION, value);
    }
    response
}

/// What could not be done, as a page with the navigation: a missing webhook is a 404, a
/// refusal says what to do, a storage failure is logged and the page says to try again.
pub(super) fn failed_page(failure: &anyhow::Error) -> Response<WebBody> {
    let (status, text) = match Refusal::of(failure) {
        Some(Refusal::NotFound(_)) => (
            StatusCode::NOT_FOUND,
            "There is no such webhook: it may have been deleted.".to_owned(),
        ),
        Some(refusal) => (
            StatusCode::CONFLICT,
            manage::field_error(&refusal.to_string()).1,
        ),
        None => match usage_of(failure) {
            Some(usage) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                Problem::from(usage).message,
            ),
            None => {
                tracing::warn!(error = %format!("{failure:#}"), "admin pages");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The state could not be read or written; try again in a moment (the log says why)."
                        .to_owned(),
                )
            }
        },
    };
    let title = if status == StatusCode::NOT_FOUND {
        "Not found"
    } else {
        "Not done"
    };
    web::html(status, html::message_page(title, &text))
}

/// The user's mistake in an error chain, if it is one (owned: a handler keeps it across an
/// `.await`, which a borrowed error cannot be).
pub(super) fn usage_of(failure: &anyhow::Error) -> Option<UsageError> {
    failure
        .chain()
        .find_map(|cause| cause.downcast_ref::<UsageError>())
        .cloned()
}

/// A form field's value.
pub(super) fn value<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// The webhook with `id`.
pub(super) async fn find(admin: &Admin, id: &str) -> anyhow::Result<Webhook> {
    let id = id.to_owned();
    blocking(admin, move |state| manage::find(state, &id)).await
}
