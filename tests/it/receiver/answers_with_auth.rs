//! The 400/404/405/413/415 rows of the SPEC section 3 answer table when the receiver
//! requires Basic or Signature authentication (`answers` covers them without).
//!
//! SPEC section 3 lists the rows but not their order. The receiver checks cheapest first
//! (`receiver/src/service.rs`: route, size, content type, body, authentication, envelope), so
//! these tests hold it to that: 404, 405, 413 and 415 are answered the same with or without
//! credentials, and never with a Basic challenge, while a body is parsed only once the
//! request is authenticated: invalid JSON without credentials is a 401, not a 400, so an
//! unauthenticated client learns nothing about the parser.

use bytes::Bytes;
use http::{Method, StatusCode};
use verify::{unix_now, Authentication, BasicCredentials, Keyring, SigningSecret};

use crate::support::receiver::{envelope, post, raw_exchange, request, send, InProcess, Reply};

/// The receiver's `--max-body` in these tests.
const MAX_BODY: usize = 1000;

/// The two authenticated setups: the receiver's configuration, and how a client that has the
/// credentials authenticates a body.
enum Setup {
    Basic(BasicCredentials),
    Signature(SigningSecret),
}

impl Setup {
    fn authentication(&self) -> Authentication {
        match self {
            Setup::Basic(credentials) => Authentication::Basic(credentials.clone()),
            Setup::Signature(secret) => {
                Authentication::Signature(vec![Keyring::single(secret.clone())])
            }
        }
    }

    /// The headers a client with the credentials sends with `body`.
    fn headers(&self, body: &[u8]) -> Vec<(String, String)> {
        match self {
            Setup::Basic(credentials) => {
                vec![("authorization".into(), credentials.authorization_header())]
            }
            Setup::Signature(secret) => {
                Keyring::single(secret.clone()).sign_headers("msg_answers", unix_now(), body)
            }
        }
    }

    /// The reason code of a request without credentials.
    fn missing(&self) -> &'static str {
        match self {
            Setup::Basic(_) => "basic_missing",
            Setup::Signature(_) => "missing_header:webhook-id",
        }
    }
}

/// `extra` plus the credentials for `body` when `authenticated`.
fn headers_for(
    setup: &Setup,
    authenticated: bool,
    body: &[u8],
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = extra
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
    if authenticated {
        headers.extend(setup.headers(body));
    }
    headers
}

fn as_refs(headers: &[(String, String)]) -> Vec<(&str, &str)> {
    headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect()
}

/// Asserts status and `error`, and that only a Basic 401 challenges.
fn expect(reply: &Reply, status: StatusCode, error: &str, what: &str) {
    assert_eq!(reply.status, status, "{what}: {:?}", reply.body);
    assert_eq!(reply.error(), error, "{what}");
    if status != StatusCode::UNAUTHORIZED {
        assert!(
            !reply.headers.contains_key("www-authenticate"),
            "{what}: a {status} is no auth challenge"
        );
    }
}

async fn check_rows(setup: Setup) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = receiver::Config::for_tests(dir.path().join("r.db"));
    config.authentication = setup.authentication();
    config.limits.max_body_bytes = MAX_BODY;
    let receiver = InProcess::start(config).await;
    let addr = receiver.addr;

    for authenticated in [true, false] {
        let with = if authenticated { "with" } else { "without" };
        let body = envelope(1, &[&format!("refused-{with}")]);

        // 404: another path, even for a well-formed, authenticated request.
        let headers = headers_for(&setup, authenticated, body.as_bytes(), &[]);
        let reply = post(addr, "/other", &as_refs(&headers), body.clone()).await;
        expect(
            &reply,
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("404 {with}"),
        );

        // 405: another method on the webhook path.
        for method in [Method::GET, Method::PUT] {
            let reply = send(
                addr,
                request(
                    addr,
                    method.clone(),
                    "/webhook",
                    &as_refs(&headers),
                    Bytes::new(),
                ),
            )
            .await;
            assert_eq!(
                reply.status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {with}"
            );
            assert_eq!(reply.headers["allow"], "POST", "{method} {with}");
            assert!(!reply.headers.contains_key("www-authenticate"));
        }

        // 413: a body over --max-body (declared), signed as it is.
        let large = format!("{body:<1001}");
        let headers = headers_for(&setup, authenticated, large.as_bytes(), &[]);
        let reply = post(addr, "/webhook", &as_refs(&headers), large).await;
        expect(
            &reply,
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            &format!("413 {with}"),
        );

        // 415: a content type that is not JSON.
        let headers = headers_for(
            &setup,
            authenticated,
            body.as_bytes(),
            &[("content-type", "text/plain")],
        );
        let reply = post(addr, "/webhook", &as_refs(&headers), body.clone()).await;
        expect(
            &reply,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            &format!("415 {with}"),
        );

        // 400 only once authenticated; before that the body is not looked at: 401.
        for (bad, reason) in [
            ("{not json", "invalid_json"),
            (r#"{"events":[]}"#, "invalid_envelope"),
        ] {
            let headers = headers_for(&setup, authenticated, bad.as_bytes(), &[]);
            let reply = post(addr, "/webhook", &as_refs(&headers), bad).await;
            if authenticated {
                expect(&reply, StatusCode::BAD_REQUEST, reason, bad);
                assert!(reply.json()["detail"].is_string(), "{bad}: a detail");
            } else {
                expect(&reply, StatusCode::UNAUTHORIZED, setup.missing(), bad);
            }
        }
    }

    // A chunked body over the limit (no length declared) is cut off while read: 413, even
    // without credentials.
    let chunk = vec![b' '; MAX_BODY + 1];
    let mut raw = format!(
        "POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n",
        chunk.len()
    )
    .into_bytes();
    raw.extend_from_slice(&chunk);
    raw.extend_from_slice(b"\r\n0\r\n\r\n");
    let answer = raw_exchange(addr, &raw).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    // The same receiver does accept an authenticated request, and refused ones store nothing.
    let good = envelope(1, &["accepted"]);
    let headers = headers_for(&setup, true, good.as_bytes(), &[]);
    let reply = post(addr, "/webhook", &as_refs(&headers), good).await;
    assert_eq!(reply.status, StatusCode::OK);
    let stored: Vec<String> = {
        let db = receiver.db();
        let mut statement = db.prepare("SELECT event_id FROM events").unwrap();
        let rows = statement.query_map([], |row| row.get(0)).unwrap();
        rows.map(Result::unwrap).collect()
    };
    assert_eq!(stored, ["accepted"]);
    receiver.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answer_rows_with_basic_auth() {
    check_rows(Setup::Basic(
        BasicCredentials::new("crm", "s3cret").unwrap(),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answer_rows_with_signature_auth() {
    check_rows(Setup::Signature(SigningSecret::generate())).await;
}
