//! Every answer the receiver gives, built in one place: status, JSON body, and the headers
//! that go with it (`WWW-Authenticate` for Basic, `Allow` for 405, `Connection: close` when
//! the rest of the connection cannot be trusted or read).

use std::borrow::Cow;

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, CONNECTION, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{Response, StatusCode};
use http_body_util::Full;
use serde_json::json;

/// The response type of the service.
pub(crate) type HttpResponse = Response<Full<Bytes>>;

/// Why a request was refused: the status, the reason code (SPEC section 2 codes for auth,
/// the 400 codes of section 3, and the receiver's own for the other rows), and what the
/// answer needs besides.
#[derive(Debug, Clone)]
pub(crate) struct Refusal {
    pub(crate) status: StatusCode,
    pub(crate) reason: Cow<'static, str>,
    pub(crate) detail: Option<String>,
    /// Basic authentication failed: ask for credentials.
    pub(crate) challenge_basic: bool,
    /// Methods allowed on this path, for 405.
    pub(crate) allow: Option<&'static str>,
    /// Close the connection after answering (body not read, or framing suspect).
    pub(crate) close: bool,
}

impl Refusal {
    pub(crate) fn new(status: StatusCode, reason: impl Into<Cow<'static, str>>) -> Self {
        Self {
            status,
            reason: reason.into(),
            detail: None,
            challenge_basic: false,
            allow: None,
            close: false,
        }
    }

    pub(crate) fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub(crate) fn closing(mut self) -> Self {
        self.close = true;
        self
    }

    pub(crate) fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found")
    }

    pub(crate) fn method_not_allowed(allow: &'static str) -> Self {
        Self {
            allow: Some(allow),
            ..Self::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
        }
    }

    pub(crate) fn too_large(limit: usize) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large")
            .detail(format!("the body is over the {limit}-byte limit"))
            .closing()
    }

    pub(crate) fn store_unavailable() -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable")
    }

    /// The HTTP answer.
    pub(crate) fn into_response(self) -> HttpResponse {
        let body = match &self.detail {
            Some(detail) => json!({"error": self.reason, "detail": detail}),
            None => json!({"error": self.reason}),
        };
        let mut response = json_response(self.status, &body);
        let headers = response.headers_mut();
        if self.challenge_basic {
            let challenge = format!("Basic realm=\"{}\"", verify::basic::REALM);
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                headers.insert(WWW_AUTHENTICATE, value);
            }
        }
        if let Some(allow) = self.allow {
            headers.insert(ALLOW, HeaderValue::from_static(allow));
        }
        if self.close {
            headers.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// A JSON answer.
pub(crate) fn json_response(status: StatusCode, body: &serde_json::Value) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The 200 answer, sent only after the commit.
pub(crate) fn accepted(received: usize, stored: usize, duplicates: usize) -> HttpResponse {
    // Written directly rather than through a `serde_json::Value`: this is the answer of every
    // accepted request, and three integers need no map, no allocation per key.
    let body = format!(r#"{{"received":{received},"stored":{stored},"duplicates":{duplicates}}}"#);
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The metrics text.
pub(crate) fn metrics_text(text: String) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::from(text)));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;

    #[tokio::test]
    async fn accepted_body_is_the_spec_text() {
        let response = accepted(3, 2, 1);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], br#"{"received":3,"stored":2,"duplicates":1}"#);
    }
}
