//! Requests to internal addresses (issue 20, item 10; SPEC section 6): pages reachable from
//! other hosts refuse Target URLs and Send again targets that resolve to loopback, private,
//! link-local or unspecified addresses, and the clients check the resolved address again when
//! they connect. A webhook whose Target URL came through such pages keeps their rule in the
//! state: every worker (`sender run`, `trigger`, `webhooks test`, not only the admin's own)
//! refuses internal addresses for it at connect time.
//!
//! Nothing here binds or sends beyond 127.0.0.1. The rule is the one a non-loopback bind
//! computes (`TargetGuard::for_listener`, unit-tested in `common::target_guard`), set on
//! servers bound to 127.0.0.1 in this process. Names are answered by a table
//! (`TableResolver`), never by a DNS server; `localhost` by the system's resolver (the hosts
//! file). Addresses beyond loopback (`10.0.0.5`, `169.254.169.254`) appear only where nothing
//! connects (saving a webhook); where a request would go out, the target is a listener on
//! 127.0.0.1 that must see nothing, so even a broken check would stay on this machine.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use common::target_guard::{
    Resolve, Resolving, SystemResolver, TableResolver, TargetGuard, TargetPolicy,
};
use http::{Method, StatusCode};
use sender::delivery::{Engine, Mode};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::sender::{fast_config, Harness};
use crate::support::endpoint::FakeEndpoint;
use crate::support::inspector::Inspected;
use crate::support::receiver::{request, send, Reply};

/// The admin token of these tests.
const TOKEN: &str = "private-targets-token-42";

/// Names of the tests: `localhost` as the system resolves it, the rest from a table.
struct TestNames(TableResolver);

impl Resolve for TestNames {
    fn resolve<'a>(&'a self, host: &'a str, port: u16) -> Resolving<'a> {
        if host == "localhost" {
            SystemResolver.resolve(host, port)
        } else {
            self.0.resolve(host, port)
        }
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("address")
}

/// The rule of pages bound beyond loopback, with the test names: `public.test` is a public
/// address (nothing connects to it), `internal.test` is 10.0.0.5, and `rebinding.test` is
/// public at its first lookup and 127.0.0.1 at every one after.
fn public_only() -> TargetGuard {
    let table = TableResolver::default()
        .with("public.test", vec![vec![ip("203.0.113.7")]])
        .with("internal.test", vec![vec![ip("10.0.0.5")]])
        .with(
            "rebinding.test",
            vec![vec![ip("203.0.113.7")], vec![ip("127.0.0.1")]],
        );
    let guard =
        TargetGuard::new(TargetPolicy::PublicOnly).with_resolver(Arc::new(TestNames(table)));
    // What `sender admin --listen 0.0.0.0:8082` and `receiver --ui 0.0.0.0:8081` compute.
    assert_eq!(
        TargetPolicy::for_listener("0.0.0.0:8082".parse().expect("address"), false),
        guard.policy()
    );
    guard
}

/// `sender admin`'s pages and API in this process, on 127.0.0.1, under `targets`.
struct AdminPages {
    addr: std::net::SocketAddr,
    document: Value,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl AdminPages {
    async fn start(harness: &Harness, targets: TargetGuard) -> AdminPages {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let admin = sender::admin::Admin::new(
            common::web::Token::given(TOKEN).expect("token"),
            addr.port(),
            harness.state.clone(),
            &fast_config(),
            targets,
        )
        .expect("admin");
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(sender::admin::serve(
            listener,
            Arc::new(admin),
            async move {
                let _ = stopped.changed().await;
            },
        ));
        AdminPages {
            addr,
            document: serde_json::from_str(sender::admin::OPENAPI).expect("the document"),
            stop,
            task,
        }
    }

    /// Calls the API with the token header; the answer must be one the document declares.
    async fn api(&self, method: Method, path: &str, body: Value) -> Reply {
        let reply = send(
            self.addr,
            request(
                self.addr,
                method.clone(),
                path,
                &[
                    ("x-admin-token", TOKEN),
                    ("content-type", "application/json"),
                ],
                body.to_string(),
            ),
        )
        .await;
        crate::support::openapi::check(&self.document, method.as_str(), path, Some(&body), &reply)
            .unwrap_or_else(|error| panic!("{method} {path}: {error}"));
        reply
    }

    /// Posts a form as the pages' own forms are posted.
    async fn form(&self, path: &str, form: &str) -> (StatusCode, String) {
        let origin = format!("http://{}", self.addr);
        let reply = send(
            self.addr,
            request(
                self.addr,
                Method::POST,
                &format!("{path}?token={TOKEN}"),
                &[
                    ("origin", origin.as_str()),
                    ("content-type", "application/x-www-form-urlencoded"),
                ],
                form.to_owned(),
            ),
        )
        .await;
        (
            reply.status,
            String::from_utf8_lossy(&reply.body).into_owned(),
        )
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// The text of the error beside field `id` on a page.
fn beside(html: &str, id: &str) -> String {
    let marker = format!("id=\"{id}-error\"");
    html.split(&marker)
        .nth(1)
        .and_then(|rest| rest.split("</p>").next())
        .unwrap_or_else(|| panic!("no error beside {id}: {html}"))
        .to_owned()
}

/// Asserts a 422 `invalid` answer for the `url` field saying `says`.
fn refused_url(reply: &Reply, says: &str) {
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let answer = reply.json();
    assert_eq!(answer["error"], "invalid", "{answer}");
    assert_eq!(answer["field"], "url", "{answer}");
    let message = answer["message"].as_str().expect("message");
    assert!(
        message.starts_with("Target URL: ")
            && message.contains(says)
            && message.contains("--allow-private-targets"),
        "{message:?} lacks {says:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_pages_reachable_from_other_hosts_refuse_internal_targets() {
    let endpoint = FakeEndpoint::start().await;
    let port = endpoint
        .url()
        .parse::<http::Uri>()
        .expect("uri")
        .port_u16()
        .expect("port");
    let harness = Harness::new();
    let targets = public_only();
    let pages = AdminPages::start(&harness, targets.clone()).await;

    // Add (API): each internal target is a field error; nothing is saved.
    let localhost = format!("http://localhost:{port}/hook");
    for (url, says) in [
        ("http://10.0.0.5/", "10.0.0.5 is a private address"),
        (
            "http://169.254.169.254/latest",
            "169.254.169.254 is a link-local address",
        ),
        ("http://[::1]:1/", "::1 is a loopback address"),
        ("http://127.0.0.1:6379/", "127.0.0.1 is a loopback address"),
        ("http://0.0.0.0:8080/", "0.0.0.0 is an unspecified address"),
        (
            "http://internal.test/hook",
            "internal.test resolves to 10.0.0.5, a private address",
        ),
        (localhost.as_str(), "localhost resolves to"),
    ] {
        let body = json!({"name": "internal", "url": url, "events": ["COURSE_ENROLLMENT"]});
        let reply = pages.api(Method::POST, "/api/webhooks", body).await;
        refused_url(&reply, says);
    }
    assert!(harness.state.webhooks().expect("webhooks").is_empty());

    // A public name is saved (nothing connects to save it); editing its URL to an internal
    // one is refused, editing anything else is not.
    let body = json!({"name": "public", "url": "http://public.test/hook", "events": ["COURSE_ENROLLMENT"]});
    let added = pages.api(Method::POST, "/api/webhooks", body).await;
    assert_eq!(added.status, StatusCode::CREATED);
    let id = added.json()["id"].as_str().expect("id").to_owned();
    let path = format!("/api/webhooks/{id}");
    let reply = pages
        .api(
            Method::PATCH,
            &path,
            json!({"url": "http://169.254.169.254/latest"}),
        )
        .await;
    refused_url(&reply, "link-local");
    let reply = pages
        .api(Method::PATCH, &path, json!({"description": "kept"}))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["url"], "http://public.test/hook");

    // The pages: the error beside Target URL, what was typed kept.
    let (status, html) = pages
        .form(
            "/webhooks",
            "name=x&url=http%3A%2F%2F10.0.0.5%2F&events=COURSE_ENROLLMENT&auth=none",
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{html}");
    assert!(
        beside(&html, "url").contains("Target URL: 10.0.0.5 is a private address"),
        "{html}"
    );
    assert!(html.contains("value=\"http://10.0.0.5/\""), "{html}");
    let (status, html) = pages
        .form(
            &format!("/webhooks/{id}"),
            "name=public&url=http%3A%2F%2F127.0.0.1%3A6379%2F&events=COURSE_ENROLLMENT&auth=none&active=on",
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{html}");
    assert!(
        beside(&html, "url").contains("127.0.0.1 is a loopback address"),
        "{html}"
    );

    // Test webhook of a webhook the command line registered on loopback (the operator's
    // right there): refused beside its Target URL, by the API and the page; nothing sent.
    let local = harness.add(&format!("http://127.0.0.1:{port}/hook"), "all", |_| {});
    let reply = pages
        .api(
            Method::POST,
            &format!("/api/webhooks/{}/test", local.id),
            json!({}),
        )
        .await;
    refused_url(&reply, "127.0.0.1 is a loopback address");
    // The page's Test webhook sends the form as it is on screen: here the stored values.
    let (status, html) = pages
        .form(
            &format!("/webhooks/{}/test", local.id),
            &format!(
                "name=test&url=http%3A%2F%2F127.0.0.1%3A{port}%2Fhook&events=all&auth=none&active=on"
            ),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{html}");
    assert!(
        beside(&html, "url").contains("127.0.0.1 is a loopback address"),
        "{html}"
    );
    // Before Save, the same rules: the API's test of an unsaved webhook, and the Add page's.
    let reply = pages
        .api(
            Method::POST,
            "/api/test",
            json!({"webhook": {"name": "x", "url": format!("http://127.0.0.1:{port}/hook"),
                "events": ["COURSE_ENROLLMENT"]}}),
        )
        .await;
    refused_url(&reply, "127.0.0.1 is a loopback address");
    let (status, html) = pages
        .form(
            "/webhooks/new/test",
            "name=x&url=http%3A%2F%2F10.0.0.5%2F&events=COURSE_ENROLLMENT&auth=none",
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{html}");
    assert!(
        beside(&html, "url").contains("10.0.0.5 is a private address"),
        "{html}"
    );
    assert!(endpoint.received().is_empty(), "nothing was sent");
    pages.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_passed_its_check_and_then_resolves_to_loopback_is_refused_at_connect() {
    let endpoint = FakeEndpoint::start().await;
    let port = endpoint
        .url()
        .parse::<http::Uri>()
        .expect("uri")
        .port_u16()
        .expect("port");
    let harness = Harness::new();
    let targets = public_only();
    let pages = AdminPages::start(&harness, targets.clone()).await;
    // Saved: at its check the name was public.
    let url = format!("http://rebinding.test:{port}/hook");
    let body = json!({"name": "rebinding", "url": url, "events": ["COURSE_ENROLLMENT"]});
    let added = pages.api(Method::POST, "/api/webhooks", body).await;
    assert_eq!(added.status, StatusCode::CREATED, "{:?}", added.json());
    let id = sender::registry::WebhookId(added.json()["id"].as_str().expect("id").to_owned());
    pages.stop().await;

    // Now it answers 127.0.0.1, where the endpoint listens: the delivery worker of
    // `sender admin` (its engine takes the pages' guard) connects nowhere.
    harness.enqueue("COURSE_ENROLLMENT", 1, 7);
    let engine = Engine::http_guarded(harness.state.clone(), fast_config(), targets);
    let (stop, mut stopped) = watch::channel(false);
    let run = tokio::spawn({
        let id = id.clone();
        async move {
            engine
                .run(Mode::Drain(vec![id]), async move {
                    let _ = stopped.changed().await;
                })
                .await
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let error = loop {
        let rows = harness
            .state
            .deliveries(&sender::store::DeliveryFilter {
                webhook_id: Some(id.clone()),
                state: None,
                limit: 1,
            })
            .expect("deliveries");
        if let Some(error) = rows.first().and_then(|row| row.last_error.clone()) {
            break error;
        }
        assert!(
            endpoint.received().is_empty(),
            "the worker reached the endpoint"
        );
        assert!(std::time::Instant::now() < deadline, "no attempt recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let _ = stop.send(true);
    run.await.expect("joined").expect("engine ran");
    assert!(
        error.contains("rebinding.test resolves to 127.0.0.1, a loopback address"),
        "{error}"
    );
    assert!(
        endpoint.received().is_empty(),
        "nothing reached the endpoint"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inspector_reachable_from_other_hosts_refuses_internal_send_again_targets() {
    let dir = tempfile::tempdir().expect("dir");
    let endpoint = FakeEndpoint::start().await;
    let port = endpoint
        .url()
        .parse::<http::Uri>()
        .expect("uri")
        .port_u16()
        .expect("port");
    let config = receiver::Config::for_tests(dir.path().join("receiver.db"));
    let inspected = Inspected::start_with_targets(config, public_only()).await;
    let body = crate::support::receiver::envelope(1010, &["again-1"]);
    assert_eq!(inspected.post(&[], body).await.status, StatusCode::OK);

    // Refused beside the Target URL, the URL and the mode kept.
    for (to, says) in [
        (
            format!("http://127.0.0.1:{port}/hook"),
            "Target URL: 127.0.0.1 is a loopback address".to_owned(),
        ),
        (
            format!("http://localhost:{port}/hook"),
            "Target URL: localhost resolves to".to_owned(),
        ),
    ] {
        let reply = inspected
            .post_form("/requests/a1/send", &[("to", &to), ("mode", "resign")])
            .await;
        let html = String::from_utf8_lossy(&reply.body).into_owned();
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{html}");
        let error = beside(&html, "to");
        assert!(
            error.contains(&says) && error.contains("--allow-private-targets"),
            "{error}"
        );
        assert!(html.contains(&format!("value=\"{to}\"")), "{html}");
        assert!(
            html.contains("<option value=\"resign\" selected>"),
            "{html}"
        );
    }

    // A name public at its check and loopback when the client connects: refused at connect.
    let to = format!("http://rebinding.test:{port}/hook");
    let reply = inspected
        .post_form("/requests/a1/send", &[("to", &to), ("mode", "verbatim")])
        .await;
    let html = String::from_utf8_lossy(&reply.body).into_owned();
    assert_eq!(reply.status, StatusCode::OK, "{html}");
    assert!(
        html.contains("No answer:")
            && html.contains("rebinding.test resolves to 127.0.0.1, a loopback address"),
        "{html}"
    );
    assert!(endpoint.received().is_empty(), "nothing was sent");
    inspected.stop().await;

    // The inspector on loopback (its own rule): the same target is sent to, as before.
    let config = receiver::Config::for_tests(dir.path().join("local.db"));
    let local = Inspected::start(config).await;
    let body = crate::support::receiver::envelope(1010, &["again-2"]);
    assert_eq!(local.post(&[], body).await.status, StatusCode::OK);
    let to = format!("http://127.0.0.1:{port}/hook");
    let reply = local
        .post_form("/requests/a1/send", &[("to", &to), ("mode", "verbatim")])
        .await;
    assert!(
        String::from_utf8_lossy(&reply.body).contains("Answered 200"),
        "{reply:?}"
    );
    assert_eq!(endpoint.received().len(), 1);
    local.stop().await;
}

/// The last attempt's error of `webhook`'s newest request, once there is one.
async fn last_error(harness: &Harness, webhook: &sender::registry::WebhookId) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let rows = harness
            .state
            .deliveries(&sender::store::DeliveryFilter {
                webhook_id: Some(webhook.clone()),
                state: None,
                limit: 1,
            })
            .expect("deliveries");
        if let Some(error) = rows.first().and_then(|row| row.last_error.clone()) {
            return error;
        }
        assert!(std::time::Instant::now() < deadline, "no attempt recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

common::on_each_store! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_saved_through_pages_beyond_loopback_keeps_their_rule_in_every_worker(harness: Harness) {
    let endpoint = FakeEndpoint::start().await;
    let port = endpoint
        .url()
        .parse::<http::Uri>()
        .expect("uri")
        .port_u16()
        .expect("port");
    // The pages (bound beyond loopback, as far as their rule goes) save a name that is
    // public at its check; from then on it answers 127.0.0.1, where the endpoint listens.
    let pages = AdminPages::start(&harness, public_only()).await;
    let url = format!("http://rebinding.test:{port}/from-the-pages");
    let body = json!({"name": "pages", "url": url, "events": ["COURSE_ENROLLMENT"]});
    let added = pages.api(Method::POST, "/api/webhooks", body).await;
    assert_eq!(added.status, StatusCode::CREATED, "{:?}", added.json());
    let from_pages =
        sender::registry::WebhookId(added.json()["id"].as_str().expect("id").to_owned());
    pages.stop().await;
    // The operator registers the same kind of name on the command line: their own choice.
    let operator = harness.add(
        &format!("http://operator.test:{port}/from-the-command-line"),
        "COURSE_ENROLLMENT",
        |_| {},
    );
    harness.enqueue("COURSE_ENROLLMENT", 1, 11);

    // What `sender run` and `sender trigger` build (`Engine::http`: any address, the
    // command line's rule), with the test's resolver instead of the system's.
    let names = TableResolver::default()
        .with("rebinding.test", vec![vec![ip("127.0.0.1")]])
        .with("operator.test", vec![vec![ip("127.0.0.1")]]);
    let command_line =
        TargetGuard::new(TargetPolicy::AnyAddress).with_resolver(Arc::new(TestNames(names)));
    assert_eq!(
        command_line.policy(),
        TargetGuard::default().policy(),
        "the rule of sender run and trigger"
    );
    let engine = Engine::http_guarded(harness.state.clone(), fast_config(), command_line.clone());
    let (stop, mut stopped) = watch::channel(false);
    let run = tokio::spawn(async move {
        engine
            .run(Mode::Serve, async move {
                let _ = stopped.changed().await;
            })
            .await
    });
    let error = last_error(&harness, &from_pages).await;
    let delivered = endpoint.wait_for(1, Duration::from_secs(10)).await;
    let _ = stop.send(true);
    run.await.expect("joined").expect("engine ran");
    assert!(
        error.contains("rebinding.test resolves to 127.0.0.1, a loopback address")
            && error.contains("given through pages reachable from other hosts"),
        "{error}"
    );
    // The operator's webhook was delivered; the pages' one reached nothing.
    assert_eq!(delivered.len(), 1);
    assert!(
        endpoint
            .received()
            .iter()
            .all(|request| request.path == "/from-the-command-line"),
        "{:?}",
        endpoint.received()
    );
    let stored = harness
        .state
        .webhook(&operator.id)
        .expect("read")
        .expect("there");
    assert_eq!(stored.target_policy, TargetPolicy::AnyAddress);

    // `webhooks test` of it, through the command line's transport: refused too.
    let webhook = harness
        .state
        .webhook(&from_pages)
        .expect("read")
        .expect("there");
    assert_eq!(webhook.target_policy, TargetPolicy::PublicOnly);
    let transport = sender::delivery::HttpTransport::new(Duration::from_secs(1), Duration::from_secs(1))
        .with_targets(command_line);
    let outcome = sender::manage::send_test(&sender::manage::TestTarget::of(&webhook), None, &transport)
        .await
        .expect("tested");
    assert!(!outcome.ok, "{outcome:?}");
    assert!(
        outcome
            .error
            .as_deref()
            .is_some_and(|error| error.contains("public addresses only")),
        "{outcome:?}"
    );
    assert!(endpoint
        .received()
        .iter()
        .all(|request| request.path == "/from-the-command-line"));
}}
