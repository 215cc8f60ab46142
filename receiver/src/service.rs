//! Routing and the checks of `POST <path>`, in the order that refuses cheaply first:
//! route → framing (smuggling) → declared size → content type → body (size and time capped
//! while read) → content encoding → authentication → envelope → durable store → 200.
//!
//! Every refusal leaves through [`Shared::refuse`], which counts it, prints it, keeps it in the
//! store (bounded) and builds the answer.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING};
use http::request::Parts;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Limited};
use hyper::body::Incoming;
use verify::Authentication;

use crate::config::Limits;
use crate::guard::ConnectionWatch;
use crate::metrics::Metrics;
use crate::output::Output;
use crate::reload::LiveAuthentication;
use crate::response::{self, HttpResponse, Refusal};
use crate::store::{AcceptedRequest, NewEvent, RefusedRequest, Store};

/// What every connection's service shares.
pub(crate) struct Shared {
    pub(crate) path: String,
    /// Replaced whole by a reload; a request takes the one in force when its body is read.
    pub(crate) authentication: Arc<LiveAuthentication>,
    pub(crate) limits: Limits,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) output: Output,
}

/// A refusal together with the body bytes read before it (for the kept record).
type Refused = (Refusal, Bytes);

impl Shared {
    /// Answers one request. Never panics on any input; every error is an answer.
    pub(crate) async fn handle(
        &self,
        watch: &ConnectionWatch,
        request: Request<Incoming>,
    ) -> HttpResponse {
        let received_at_ms = verify::unix_now_ms();
        // Taken for every request, whatever its path, so heads and requests stay paired.
        let wire_order = watch.orders.next();
        let (parts, body) = request.into_parts();
        let kept = KeptHeaders {
            parts: &parts,
            wire_order,
            orders: &watch.orders,
        };
        let has_length = parts.headers.contains_key(CONTENT_LENGTH);
        let is_chunked = parts.headers.contains_key(TRANSFER_ENCODING);
        // Every request passes through the watch, whatever its path, so the counts line up.
        let ambiguous = watch.request_is_ambiguous(has_length, is_chunked);
        let webhook_path = parts.uri.path() == self.path;
        let outcome = match (&parts.method, parts.uri.path()) {
            _ if ambiguous => Err((
                Refusal::new(StatusCode::BAD_REQUEST, "ambiguous_length")
                    .detail("both Content-Length and Transfer-Encoding were sent")
                    .closing(),
                Bytes::new(),
            )),
            (&Method::POST, _) if webhook_path => self.webhook(&kept, body, received_at_ms).await,
            (&Method::GET, "/healthz") => return self.healthz().await,
            (&Method::GET, "/metrics") => return response::metrics_text(self.metrics.render()),
            _ if webhook_path => Err((Refusal::method_not_allowed("POST"), Bytes::new())),
            (_, "/healthz" | "/metrics") => Err((Refusal::method_not_allowed("GET"), Bytes::new())),
            _ => Err((Refusal::not_found(), Bytes::new())),
        };
        match outcome {
            Ok(answer) => {
                self.metrics.answered(answer.status().as_u16());
                answer
            }
            Err((refusal, body)) => self.refuse(&kept, received_at_ms, body, refusal),
        }
    }

    async fn healthz(&self) -> HttpResponse {
        match self.store.check_health().await {
            Ok(()) => response::json_response(StatusCode::OK, &serde_json::json!({"status": "ok"})),
            Err(error) => {
                tracing::warn!(%error, "health check failed");
                Refusal::store_unavailable().into_response()
            }
        }
    }

    fn refuse(
        &self,
        kept: &KeptHeaders<'_>,
        received_at_ms: i64,
        body: Bytes,
        refusal: Refusal,
    ) -> HttpResponse {
        let parts = kept.parts;
        let status = refusal.status.as_u16();
        let method = parts.method.as_str();
        let target = request_target(parts);
        if status == 404 || status == 405 {
            tracing::debug!(status, reason = %refusal.reason, %method, %target, "refused");
        } else {
            tracing::info!(status, reason = %refusal.reason, %method, %target, "refused");
        }
        self.metrics.answered(status);
        self.metrics.refused(&refusal.reason);
        self.output
            .refused(received_at_ms, method, &target, status, &refusal.reason);
        self.store.record_refusal(RefusedRequest {
            received_at_ms,
            method: method.to_owned(),
            path: target,
            headers_json: kept.json(),
            body: body.slice(..body.len().min(MAX_KEPT_REFUSED_BODY)),
            status,
            reason: refusal.reason.to_string(),
        });
        refusal.into_response()
    }

    async fn webhook(
        &self,
        kept: &KeptHeaders<'_>,
        body: Incoming,
        received_at_ms: i64,
    ) -> Result<HttpResponse, Refused> {
        let parts = kept.parts;
        let max = self.limits.max_body_bytes;
        if declared_length(parts).is_some_and(|length| length > max as u64) {
            // Refused before reading: the connection closes rather than drain the body.
            return Err((Refusal::too_large(max), Bytes::new()));
        }
        check_content_type(parts).map_err(|refusal| (refusal, Bytes::new()))?;
        let body = self.read_body(body).await?;
        // Checked once the body is read, so the kept refusal shows what was sent.
        check_content_encoding(parts).map_err(|refusal| (refusal, body.clone()))?;
        // Judged at the moment the head arrived, the time the capture record keeps, so
        // `receiver check` re-verifying the capture later reaches the same verdict.
        let received_at_secs = received_at_ms.div_euclid(1000);
        let authentication = self.authentication.current();
        if let Err(error) = authentication.verify_at(&parts.headers, &body, received_at_secs) {
            let mut refusal = Refusal::new(StatusCode::UNAUTHORIZED, error.reason_code());
            refusal.challenge_basic = matches!(*authentication, Authentication::Basic(_));
            // The detail may say which secret expired: for the operator's log, at debug
            // level; the 401 body carries just the reason code.
            tracing::debug!(%error, "authentication failed");
            return Err((refusal, body));
        }
        let request = match build_request(kept, &body, received_at_ms, &authentication) {
            Ok(request) => request,
            Err(error) => {
                let refusal = Refusal::new(StatusCode::BAD_REQUEST, error.reason_code())
                    .detail(error.detail());
                return Err((refusal, body));
            }
        };
        let received = request.events.len();
        // Shared with the store, so the printer can show it after the commit without a copy.
        let request = Arc::new(request);
        match self.store.accept(Arc::clone(&request)).await {
            Ok(outcome) => {
                tracing::debug!(
                    received,
                    stored = outcome.stored(),
                    duplicates = outcome.duplicates(),
                    "accepted"
                );
                self.output.accepted(&request, &outcome);
                Ok(response::accepted(
                    received,
                    outcome.stored(),
                    outcome.duplicates(),
                ))
            }
            Err(error) => {
                tracing::warn!(%error, "answering 503");
                Err((Refusal::store_unavailable(), body))
            }
        }
    }

    /// Reads the body, at most `max_body_bytes` and within `body_read_timeout`.
    async fn read_body(&self, body: Incoming) -> Result<Bytes, Refused> {
        let max = self.limits.max_body_bytes;
        let reading = Limited::new(body, max).collect();
        match tokio::time::timeout(self.limits.body_read_timeout, reading).await {
            Ok(Ok(collected)) => Ok(collected.to_bytes()),
            Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => {
                Err((Refusal::too_large(max), Bytes::new()))
            }
            Ok(Err(error)) => Err((
                Refusal::new(StatusCode::BAD_REQUEST, "body_unreadable")
                    .detail(error.to_string())
                    .closing(),
                Bytes::new(),
            )),
            Err(_) => Err((
                Refusal::new(StatusCode::REQUEST_TIMEOUT, "body_timeout")
                    .detail("the body did not arrive in time")
                    .closing(),
                Bytes::new(),
            )),
        }
    }
}

fn request_target(parts: &Parts) -> String {
    parts.uri.path_and_query().map_or_else(
        || parts.uri.path().to_owned(),
        |target| target.as_str().to_owned(),
    )
}

fn declared_length(parts: &Parts) -> Option<u64> {
    parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.trim().parse().ok())
}

/// JSON content types: `application/json` and `application/*+json`, with any parameters
/// (`; charset=utf-8`). A request without a content type is let through to the JSON parser,
/// since the body decides anyway and some senders omit it; anything else is 415.
fn check_content_type(parts: &Parts) -> Result<(), Refusal> {
    let Some(value) = parts.headers.get(CONTENT_TYPE) else {
        return Ok(());
    };
    let media_type = value
        .to_str()
        .ok()
        .and_then(|text| text.split(';').next())
        .map(str::trim)
        .unwrap_or_default();
    // Media types are case-insensitive; compared in place, without a lowercase copy.
    let is_json = match media_type.split_once('/') {
        Some((kind, subtype)) if kind.eq_ignore_ascii_case("application") => {
            subtype.eq_ignore_ascii_case("json")
                || subtype
                    .len()
                    .checked_sub(5)
                    .and_then(|start| subtype.get(start..))
                    .is_some_and(|suffix| suffix.eq_ignore_ascii_case("+json"))
        }
        _ => false,
    };
    if is_json {
        Ok(())
    } else {
        Err(
            Refusal::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type").detail(
                format!("content type {media_type:?} is not JSON (send application/json)"),
            ),
        )
    }
}

/// Bodies are taken as sent: a `Content-Encoding` other than `identity` (in any case, alone or
/// in a list, in one header or several) is 415. Decoding it would store, verify and forward
/// bytes other than those received (the bytes are the record); keeping it undecoded would
/// store as an event a body that is not the JSON it claims, and forward it still labelled.
fn check_content_encoding(parts: &Parts) -> Result<(), Refusal> {
    for value in parts.headers.get_all(CONTENT_ENCODING) {
        let text = String::from_utf8_lossy(value.as_bytes());
        let unsupported = text
            .split(',')
            .map(str::trim)
            .find(|coding| !coding.is_empty() && !coding.eq_ignore_ascii_case("identity"));
        if let Some(coding) = unsupported {
            return Err(Refusal::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_content_encoding",
            )
            .detail(format!(
                "content encoding {coding:?} is not supported (send the body uncompressed)"
            )));
        }
    }
    Ok(())
}

/// An `Authorization` value with its credentials replaced: the scheme is kept only when it is
/// a plain word followed by a space (`Basic [redacted]`), so a bare token or an odd separator
/// never slips through whole.
fn redacted_credentials(value: &str) -> String {
    match value.trim_start().split_once(' ') {
        Some((scheme, _))
            if !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric()) =>
        {
            format!("{scheme} {REDACTED}")
        }
        _ => REDACTED.to_owned(),
    }
}

/// What stands in place of credentials in the kept headers; `receiver check` recognises it.
pub(crate) const REDACTED: &str = "[redacted]";

/// Most bytes of a refused request's body kept in the refused table: enough to diagnose it,
/// while a flood of large refused bodies cannot fill memory and the store.
pub(crate) const MAX_KEPT_REFUSED_BODY: usize = 64 * 1024;

/// A request's headers as the kept record holds them.
/// Only requests that are kept (accepted or refused) need the order worked out, so `/healthz`
/// and `/metrics` never pay for it.
struct KeptHeaders<'a> {
    parts: &'a Parts,
    /// The header names as they arrived, when the connection's bytes were followed.
    wire_order: Option<crate::wire_order::Names>,
    /// The connection's queue of orders, given up when one does not match its request.
    orders: &'a crate::wire_order::HeadOrders,
}

impl KeptHeaders<'_> {
    /// The headers as a JSON array of `[name, value]`, in the order they arrived when that is
    /// known ([`crate::wire_order`]), else in hyper's (by first appearance of each name,
    /// repeats kept).
    fn json(&self) -> String {
        let Some(names) = &self.wire_order else {
            return headers_json(self.parts.headers.iter());
        };
        match crate::wire_order::in_wire_order(&self.parts.headers, names) {
            Some(pairs) => headers_json(pairs.into_iter()),
            None => {
                // Out of step with hyper: hyper's order from now on for this connection.
                self.orders.give_up();
                headers_json(self.parts.headers.iter())
            }
        }
    }
}

/// Headers as a JSON array of `[name, value]`, serialised straight from the request.
/// Credentials are redacted after their scheme: the store and the capture records must not
/// hold them.
fn headers_json<'h>(
    headers: impl Iterator<Item = (&'h http::HeaderName, &'h http::HeaderValue)>,
) -> String {
    let pairs: Vec<(&str, std::borrow::Cow<'_, str>)> = headers
        .map(|(name, value)| {
            let text = String::from_utf8_lossy(value.as_bytes());
            let text = if name == http::header::AUTHORIZATION
                || name == http::header::PROXY_AUTHORIZATION
            {
                std::borrow::Cow::Owned(redacted_credentials(&text))
            } else {
                text
            };
            (name.as_str(), text)
        })
        .collect();
    // Strings and string pairs always serialise.
    serde_json::to_string(&pairs).unwrap_or_else(|_| "[]".to_owned())
}

fn build_request(
    kept: &KeptHeaders<'_>,
    body: &Bytes,
    received_at_ms: i64,
    authentication: &Authentication,
) -> Result<AcceptedRequest, verify::PayloadError> {
    let envelope = verify::parse_envelope(body)?;
    let events = envelope
        .events
        .iter()
        .map(|event| NewEvent {
            event_id: event.event_id.to_string(),
            event_name: event.event_name.to_string(),
            timestamp_ms: event.timestamp.epoch_millis(),
            known: event.kind().is_some(),
            raw: range_within(body, event.raw.get().as_bytes()),
            user_id: crate::search::scalar_at(event.data, "userId"),
            lo_id: crate::search::scalar_at(event.data, "loId"),
        })
        .collect();
    Ok(AcceptedRequest {
        received_at_ms,
        method: "POST",
        path: request_target(kept.parts),
        headers_json: kept.json(),
        body: body.clone(),
        auth: authentication.method_name(),
        account_id: envelope.account_id,
        events,
    })
}

/// Where `part` stands in `whole`. The parser borrows each raw event from the body, so this
/// is pointer arithmetic; the search is a fallback that keeps it correct should a parser ever
/// hand out a copy.
fn range_within(whole: &[u8], part: &[u8]) -> std::ops::Range<usize> {
    let borrowed = (part.as_ptr() as usize)
        .checked_sub(whole.as_ptr() as usize)
        .filter(|start| start + part.len() <= whole.len());
    let start = borrowed
        .or_else(|| memchr::memmem::find(whole, part))
        .unwrap_or_default();
    start..start + part.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_events_are_located_in_their_body() {
        let body = Bytes::from_static(
            br#"{"accountId": 1, "events": [ {"eventId":"a","eventName":"X","timestamp":1,"data":{}} ,
                {"eventId" : "b", "eventName":"Y","timestamp":2,"data":{"k":"\u00e9"}}]}"#,
        );
        let parts = Request::builder().body(()).unwrap().into_parts().0;
        let orders = crate::wire_order::HeadOrders::default();
        let kept = KeptHeaders {
            parts: &parts,
            wire_order: None,
            orders: &orders,
        };
        let request = build_request(&kept, &body, 0, &Authentication::None).unwrap();
        let texts: Vec<&[u8]> = request
            .events
            .iter()
            .map(|event| event.raw_text(&body))
            .collect();
        assert_eq!(
            texts,
            [
                &br#"{"eventId":"a","eventName":"X","timestamp":1,"data":{}}"#[..],
                &br#"{"eventId" : "b", "eventName":"Y","timestamp":2,"data":{"k":"\u00e9"}}"#[..],
            ]
        );
        // A copy (not a borrow) is still found by its bytes.
        let copy = body[30..85].to_vec();
        assert_eq!(range_within(&body, &copy), 30..85);
    }

    #[test]
    fn credentials_are_redacted_whatever_their_shape() {
        for (value, kept) in [
            ("Basic Y3JtOnB3", "Basic [redacted]"),
            ("Bearer abc.def", "Bearer [redacted]"),
            ("Basic\tY3JtOnB3", "[redacted]"),
            ("Y3JtOnB3", "[redacted]"),
            ("", "[redacted]"),
        ] {
            assert_eq!(redacted_credentials(value), kept, "{value:?}");
        }
    }

    fn parts_with(content_type: Option<&str>) -> Parts {
        let mut builder = Request::builder().method("POST").uri("/webhook");
        if let Some(value) = content_type {
            builder = builder.header(CONTENT_TYPE, value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn json_content_types() {
        for accepted in [
            None,
            Some("application/json"),
            Some("application/json; charset=utf-8"),
            Some("Application/JSON;charset=UTF-8"),
            Some("application/cloudevents+json"),
            Some("application/Vnd.Alm+JSON"),
        ] {
            assert!(
                check_content_type(&parts_with(accepted)).is_ok(),
                "{accepted:?}"
            );
        }
        for refused in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "text/json",
            "application/jsonx",
            "",
        ] {
            assert!(
                check_content_type(&parts_with(Some(refused))).is_err(),
                "{refused}"
            );
        }
    }

    #[test]
    fn only_identity_content_encodings_pass() {
        let parts = |values: &[&str]| {
            let mut builder = Request::builder().method("POST").uri("/webhook");
            for value in values {
                builder = builder.header(CONTENT_ENCODING, *value);
            }
            builder.body(()).unwrap().into_parts().0
        };
        for passed in [
            &[][..],
            &["identity"],
            &["IDENTITY"],
            &[" Identity , identity"],
            &[""],
        ] {
            assert!(check_content_encoding(&parts(passed)).is_ok(), "{passed:?}");
        }
        for refused in [
            &["gzip"][..],
            &["GZip"],
            &["identity, gzip"],
            &["identity", "br"],
            &["x-custom"],
            &["deflate,"],
        ] {
            let refusal = check_content_encoding(&parts(refused)).unwrap_err();
            assert_eq!(refusal.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
            assert_eq!(
                refusal.reason, "unsupported_content_encoding",
                "{refused:?}"
            );
        }
    }

    #[test]
    fn authorization_is_redacted_in_kept_headers() {
        let parts = Request::builder()
            .header("authorization", "Basic Y3JtOnNlY3JldA==")
            .header("x-a", "1")
            .header("x-a", "2")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        assert_eq!(
            headers_json(parts.headers.iter()),
            r#"[["authorization","Basic [redacted]"],["x-a","1"],["x-a","2"]]"#
        );
    }
}
