//! The admin JSON API over real HTTP, against a real `sender admin` process: every operation
//! and every refusal, each answer checked against the OpenAPI document (`support::openapi`).
//! Each runs on both stores (`on_each_store!`): a SQLite file and a PostgreSQL database; the
//! command line and the pages are checked to be two views of one state on both.

use std::time::Duration;

use http::Method;
use serde_json::{json, Value};

use common::on_each_store;

use crate::sender::Harness;
use crate::support::admin::{AdminProcess, TOKEN};
use crate::support::endpoint::{FakeEndpoint, Reply};

/// A webhook body for `POST /api/webhooks`.
fn webhook(name: &str, url: &str) -> Value {
    json!({"name": name, "url": url, "events": ["COURSE_ENROLLMENT"]})
}

/// Polls (bounded) the webhook's deliveries until `done` holds.
async fn deliveries_until(
    admin: &AdminProcess,
    id: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let answer = admin
            .json(
                Method::GET,
                &format!("/api/webhooks/{id}/deliveries"),
                None,
                200,
            )
            .await;
        let deliveries = answer["deliveries"].as_array().cloned().unwrap_or_default();
        if done(&deliveries) {
            return deliveries;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "deliveries never reached the expected state: {deliveries:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The body of the first request `received` with this `webhook-id`.
fn received_body(
    received: &[crate::support::endpoint::Received],
    webhook_id: &str,
) -> bytes::Bytes {
    received
        .iter()
        .find(|request| request.header("webhook-id") == Some(webhook_id))
        .expect("received before")
        .body
        .clone()
}

on_each_store! {
#[tokio::test(flavor = "multi_thread")]
async fn every_operation_answers_as_its_openapi_document_says(harness: Harness) {
    every_operation(harness.location.clone()).await;
}
}

async fn every_operation(state: String) {
    let endpoint = FakeEndpoint::start().await;
    let admin = AdminProcess::start(&state).await;

    // Add a Signature webhook with two trigger events.
    let added = admin
        .json(
            Method::POST,
            "/api/webhooks",
            Some(
                json!({"name": "CRM sync", "description": "first", "url": endpoint.url(),
                "auth": "signature", "events": ["COURSE_ENROLLMENT", "COURSE_COMPLETED"]}),
            ),
            201,
        )
        .await;
    let id = added["id"].as_str().expect("id").to_owned();
    assert_eq!(added["scheme"], "standard-webhooks");
    assert_eq!(added["secrets"], 1);
    assert_eq!(added["active"], true);
    let listed = admin.json(Method::GET, "/api/webhooks", None, 200).await;
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["lastDelivery"], Value::Null);
    let shown = admin
        .json(Method::GET, &format!("/api/webhooks/{id}"), None, 200)
        .await;
    let path = format!("/api/webhooks/{id}");

    // Edit the description, naming the version read.
    let edited = admin
        .json(
            Method::PATCH,
            &path,
            Some(json!({"description": "second", "version": shown["version"]})),
            200,
        )
        .await;
    assert_eq!(edited["description"], "second");
    assert_eq!(
        edited["events"],
        json!(["COURSE_ENROLLMENT", "COURSE_COMPLETED"])
    );
    assert!(edited["version"].as_i64() > shown["version"].as_i64());

    // Retire and activate.
    let retired = admin
        .json(Method::POST, &format!("{path}/retire"), None, 200)
        .await;
    assert_eq!(
        (retired["status"].clone(), retired["active"].clone()),
        (json!("retired"), json!(false))
    );
    let active = admin
        .json(
            Method::POST,
            &format!("{path}/activate"),
            Some(json!({"version": retired["version"]})),
            200,
        )
        .await;
    assert_eq!(active["status"], "active");

    // The signature file verifies what Test webhook sends.
    let file = admin
        .call(Method::GET, &format!("{path}/signature"), None)
        .await;
    assert_eq!(file.status, http::StatusCode::OK);
    assert!(file.headers["content-disposition"]
        .to_str()
        .expect("text")
        .starts_with("attachment"));
    let file = verify::SignatureFile::from_json(&file.body).expect("a signature file");
    assert_eq!(file.webhook_id, id);
    let tested = admin
        .json(Method::POST, &format!("{path}/test"), None, 200)
        .await;
    assert_eq!(
        (tested["ok"].clone(), tested["status"].clone()),
        (json!(true), json!(200))
    );
    let received = endpoint.wait_for(1, Duration::from_secs(10)).await;
    file.keyring()
        .expect("keyring")
        .verify(&received[0].headers, &received[0].body)
        .expect("the test event verifies with the downloaded file");
    assert_eq!(
        tested["webhookId"],
        received[0].header("webhook-id").expect("id")
    );

    // Before Save: a pending signature and its file, and a test of a webhook not registered
    // that signs with it (`before_save.rs` follows it through the save).
    let pending = admin
        .json(
            Method::POST,
            "/api/pending-signatures",
            Some(json!({"name": "Reporting", "scheme": "standard-webhooks"})),
            201,
        )
        .await;
    let pending_id = pending["id"].as_str().expect("id");
    let early = admin
        .call(
            Method::GET,
            &format!("/api/pending-signatures/{pending_id}"),
            None,
        )
        .await;
    assert_eq!(early.status, http::StatusCode::OK);
    let early = verify::SignatureFile::from_json(&early.body).expect("a signature file");
    assert_eq!(early.webhook_id, pending["webhookId"].as_str().expect("id"));
    let unsaved = admin
        .json(
            Method::POST,
            "/api/test",
            Some(
                json!({"webhook": {"name": "Reporting", "url": endpoint.url(),
                "events": ["LEARNER_PROGRESS"], "auth": "signature",
                "pendingSignature": pending_id}}),
            ),
            200,
        )
        .await;
    assert_eq!(unsaved["ok"], true, "{unsaved}");
    let received = endpoint.wait_for(2, Duration::from_secs(10)).await;
    early
        .keyring()
        .expect("keyring")
        .verify(&received[1].headers, &received[1].body)
        .expect("the unsaved webhook's test verifies with the file got before Save");
    assert_eq!(
        admin
            .json(Method::GET, "/api/webhooks", None, 200)
            .await
            .as_array()
            .map(Vec::len),
        Some(1),
        "a test registers nothing"
    );

    // A refusal of the credentials comes with the auth hint.
    endpoint.script([Reply::status(401)]);
    let refused = admin
        .json(
            Method::POST,
            &format!("{path}/test"),
            Some(json!({"event": "COURSE_COMPLETED"})),
            200,
        )
        .await;
    assert_eq!(
        (refused["ok"].clone(), refused["status"].clone()),
        (json!(false), json!(401))
    );
    assert!(
        refused["hint"]
            .as_str()
            .expect("hint")
            .contains("credentials"),
        "{refused}"
    );

    // Trigger: the worker of the same process delivers, retrying a failure; every attempt shows.
    endpoint.script([Reply::status(503)]);
    let triggered = admin
        .json(
            Method::POST,
            "/api/trigger",
            Some(
                json!({"event": "COURSE_ENROLLMENT", "count": 2, "account": 2020,
                "set": {"userId": 42}}),
            ),
            202,
        )
        .await;
    assert_eq!(triggered["webhooks"], json!([id]));
    let event_ids = triggered["eventIds"].as_array().expect("ids").clone();
    assert_eq!(event_ids.len(), 2);
    let deliveries = deliveries_until(&admin, &id, |all| {
        all.len() == 2 && all.iter().all(|d| d["state"] == "delivered")
    })
    .await;
    let first = &deliveries[0];
    assert_eq!(first["eventIds"], json!([event_ids[0]]), "oldest first");
    assert_eq!(first["accountId"], 2020);
    let attempts = first["attemptLog"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 2, "{first:#}");
    assert_eq!(
        (attempts[0]["status"].clone(), attempts[1]["status"].clone()),
        (json!(503), json!(200))
    );
    assert!(first["body"]
        .as_str()
        .expect("body")
        .contains("\"userId\":42"));
    let one = admin
        .json(
            Method::GET,
            &format!("/api/deliveries/{}", first["id"].as_str().expect("id")),
            None,
            200,
        )
        .await;
    assert_eq!(one["attemptLog"], first["attemptLog"].clone());
    let listed = admin.json(Method::GET, "/api/webhooks", None, 200).await;
    assert_eq!(listed[0]["lastDelivery"]["state"], "delivered");

    // Resend a delivered request: a new request with the same webhook-id goes behind the queue.
    let first_id = first["id"].as_str().expect("id");
    let resent = admin
        .json(
            Method::POST,
            &format!("/api/deliveries/{first_id}/resend"),
            None,
            202,
        )
        .await;
    assert_eq!(
        (resent["id"].as_str(), resent["webhookId"].as_str()),
        (Some(first_id), Some(id.as_str()))
    );
    deliveries_until(&admin, &id, |all| {
        all.len() == 3 && all.iter().all(|d| d["state"] == "delivered")
    })
    .await;
    let again = endpoint.wait_for(4, Duration::from_secs(10)).await;
    let last = again.last().expect("the resent request");
    assert_eq!(last.header("webhook-id"), Some(first_id));
    assert_eq!(last.body, received_body(&again, first_id));
    // Recover counts first (two messages delivered, one of them twice), then queues.
    let counted = admin
        .json(
            Method::POST,
            &format!("{path}/recover"),
            Some(json!({"status": "delivered", "dryRun": true})),
            200,
        )
        .await;
    assert_eq!(
        (counted["requests"].clone(), counted["dryRun"].clone()),
        (json!(2), json!(true))
    );
    assert_eq!(
        counted["ids"][0].as_str(),
        Some(first_id),
        "in their first order"
    );
    let expired = admin
        .json(Method::POST, &format!("{path}/recover"), None, 202)
        .await;
    assert_eq!(
        (expired["status"].clone(), expired["requests"].clone()),
        (json!("expired"), json!(0))
    );
    let retried = admin
        .json(Method::POST, &format!("{path}/retry"), None, 200)
        .await;
    assert_eq!(retried["request"], Value::Null, "nothing pending");

    // Rotate: two secrets sign until the overlap ends; the new file holds both.
    let rotated = admin
        .json(
            Method::POST,
            &format!("{path}/rotate"),
            Some(json!({"overlap": "1h"})),
            200,
        )
        .await;
    assert_eq!(rotated["secrets"], 2);
    assert!(rotated["overlapEnds"].is_string());
    let file = admin
        .call(Method::GET, &format!("{path}/signature"), None)
        .await;
    let file = verify::SignatureFile::from_json(&file.body).expect("a signature file");
    assert_eq!(file.secrets.len(), 2);
    assert!(file.secrets[0].expires_at.is_some() && file.secrets[1].expires_at.is_none());

    // Delete: gone for every view.
    let deleted = admin.json(Method::DELETE, &path, None, 200).await;
    assert_eq!(deleted["deleted"], true);
    admin.json(Method::GET, &path, None, 404).await;
    let (code, listed, _) = admin.cli(&["webhooks", "list", "--json"]);
    assert_eq!((code, listed.trim()), (Some(0), "[]"));

    assert_eq!(
        admin.uncovered(),
        Vec::<String>::new(),
        "operations never called"
    );
    admin.stop().await;
}

on_each_store! {
#[tokio::test(flavor = "multi_thread")]
async fn refusals_say_which_field_and_why(harness: Harness) {
    refusals(harness.location.clone()).await;
}
}

async fn refusals(state: String) {
    let admin = AdminProcess::start(&state).await;
    let url = "http://127.0.0.1:9/webhook";

    let refused = |field: &'static str, contains: &'static str| {
        move |answer: Value| {
            assert_eq!(answer["error"], "invalid", "{answer}");
            assert_eq!(answer["field"], field, "{answer}");
            let message = answer["message"].as_str().expect("message");
            assert!(message.contains(contains), "{message:?} lacks {contains:?}");
        }
    };
    // A bad URL, an unknown event name, Basic without a password: 422, field named.
    let mut bad = webhook("x", "ftp://127.0.0.1/hook");
    refused("url", "must start with http:// or https://")(
        admin
            .json(Method::POST, "/api/webhooks", Some(bad.clone()), 422)
            .await,
    );
    bad = webhook("x", url);
    bad["events"] = json!(["COURSE_ENROLMENT"]);
    refused("events", "did you mean COURSE_ENROLLMENT")(
        admin
            .json(Method::POST, "/api/webhooks", Some(bad), 422)
            .await,
    );
    bad = webhook("x", url);
    bad["auth"] = json!("basic");
    bad["username"] = json!("crm");
    refused("password", "Password")(
        admin
            .json(Method::POST, "/api/webhooks", Some(bad), 422)
            .await,
    );
    bad = webhook("x", url);
    bad["events"] = json!([]);
    refused("events", "Choose at least one trigger event")(
        admin
            .json(Method::POST, "/api/webhooks", Some(bad), 422)
            .await,
    );
    // Every problem at once, one a field, in plain words.
    let all = admin
        .json(
            Method::POST,
            "/api/webhooks",
            Some(json!({"name": " ", "url": "crm.example.com", "auth": "basic"})),
            422,
        )
        .await;
    let errors: Vec<(String, String)> = all["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|error| {
            (
                error["field"].as_str().expect("field").to_owned(),
                error["message"].as_str().expect("message").to_owned(),
            )
        })
        .collect();
    let fields: Vec<&str> = errors.iter().map(|(field, _)| field.as_str()).collect();
    assert_eq!(fields, ["url", "events", "name", "username"], "{all}");
    assert_eq!(all["field"], "url");
    for (_, message) in &errors {
        assert!(
            !message.contains('`') && !message.contains("--") && !message.contains("sender "),
            "{message:?} is not plain"
        );
    }
    assert_eq!(errors[2].1, "Name is required");
    let answer = admin
        .json(
            Method::POST,
            "/api/webhooks",
            Some(json!({"colour": "red"})),
            400,
        )
        .await;
    assert_eq!(answer["error"], "bad_request");

    // Five webhooks, then the sixth is refused.
    let mut ids = Vec::new();
    for n in 0..5 {
        let added = admin
            .json(
                Method::POST,
                "/api/webhooks",
                Some(webhook(&format!("hook {n}"), url)),
                201,
            )
            .await;
        ids.push(added["id"].as_str().expect("id").to_owned());
    }
    let sixth = admin
        .json(
            Method::POST,
            "/api/webhooks",
            Some(webhook("sixth", url)),
            409,
        )
        .await;
    assert_eq!(sixth["error"], "limit");
    assert!(
        !sixth["message"].as_str().expect("message").contains('`'),
        "{sixth}"
    );
    assert!(
        sixth["message"].as_str().expect("message").contains('5'),
        "{sixth}"
    );

    // Changed meanwhile: a version read before a change by the command line is refused, and
    // nothing is written.
    let path = format!("/api/webhooks/{}", ids[0]);
    let read = admin.json(Method::GET, &path, None, 200).await;
    let (code, _, stderr) =
        admin.cli(&["webhooks", "edit", &ids[0], "--description", "by the CLI"]);
    assert_eq!(code, Some(0), "{stderr}");
    for (method, target, body) in [
        (
            Method::PATCH,
            path.clone(),
            json!({"name": "stale", "version": read["version"]}),
        ),
        (
            Method::POST,
            format!("{path}/retire"),
            json!({"version": read["version"]}),
        ),
        (
            Method::POST,
            format!("{path}/rotate"),
            json!({"version": read["version"]}),
        ),
    ] {
        let answer = admin.json(method, &target, Some(body), 409).await;
        assert_eq!(answer["error"], "changed", "{target}: {answer}");
        let message = answer["message"].as_str().expect("message");
        assert!(
            message.contains("changed meanwhile (by the delivery worker") && !message.contains('`'),
            "{message:?} is not in plain words"
        );
    }
    let now = admin.json(Method::GET, &path, None, 200).await;
    assert_eq!(
        (now["name"].clone(), now["description"].clone()),
        (json!("hook 0"), json!("by the CLI"))
    );
    // Rotating a webhook without a signature says why.
    refused("form", "only signature webhooks")(
        admin
            .json(Method::POST, &format!("{path}/rotate"), None, 422)
            .await,
    );
    admin
        .json(Method::GET, "/api/webhooks/wh_nothing", None, 404)
        .await;
    // Resend and recover: what is not there is 404, a wrong choice says which field.
    admin
        .json(
            Method::POST,
            "/api/deliveries/msg_nothing/resend",
            None,
            404,
        )
        .await;
    admin
        .json(Method::POST, "/api/webhooks/wh_nothing/recover", None, 404)
        .await;
    refused("status", "use expired, failed, delivered or all")(
        admin
            .json(
                Method::POST,
                &format!("{path}/recover"),
                Some(json!({"status": "lost"})),
                422,
            )
            .await,
    );
    refused("since", "is not a time")(
        admin
            .json(
                Method::POST,
                &format!("{path}/recover"),
                Some(json!({"since": "yesterday-ish"})),
                422,
            )
            .await,
    );
    refused("since", "before")(
        admin
            .json(
                Method::POST,
                &format!("{path}/recover"),
                Some(json!({"since": "2026-11-28", "until": "2026-11-27"})),
                422,
            )
            .await,
    );
    refused("events", "unknown event")(
        admin
            .json(
                Method::POST,
                "/api/trigger",
                Some(json!({"event": "NO_SUCH_EVENT"})),
                422,
            )
            .await,
    );
    refused("count", "Count")(
        admin
            .json(
                Method::POST,
                "/api/trigger",
                Some(json!({"event": "COURSE_ENROLLMENT", "count": 0})),
                422,
            )
            .await,
    );

    // A wrong token, or none: 401, reads and changes alike.
    for headers in [vec![("x-admin-token", "wrong")], vec![]] {
        let answer = admin.raw(Method::GET, "/api/webhooks", &headers, "").await;
        assert_eq!(answer.status, http::StatusCode::UNAUTHORIZED);
        admin.conforms(&Method::GET, "/api/webhooks", &answer);
        let answer = admin.raw(Method::DELETE, &path, &headers, "").await;
        assert_eq!(answer.status, http::StatusCode::UNAUTHORIZED);
        admin.conforms(&Method::DELETE, &path, &answer);
    }
    let answer = admin
        .raw(Method::GET, "/api/webhooks?token=wrong", &[], "")
        .await;
    assert_eq!(answer.status, http::StatusCode::UNAUTHORIZED);

    // The cookie alone reads, but a change needs the header or an Origin of this server: a
    // form posted from another site is refused.
    let cookie = admin.sign_in().await;
    let reads = admin
        .raw(Method::GET, "/api/webhooks", &[("cookie", &cookie)], "")
        .await;
    assert_eq!(reads.status, http::StatusCode::OK);
    let evil = "http://evil.example";
    for headers in [
        vec![("cookie", cookie.as_str())],
        vec![("cookie", cookie.as_str()), ("origin", evil)],
    ] {
        let answer = admin.raw(Method::DELETE, &path, &headers, "").await;
        assert_eq!(answer.status, http::StatusCode::FORBIDDEN);
        assert_eq!(answer.json()["error"], "cross_site");
        admin.conforms(&Method::DELETE, &path, &answer);
        let answer = admin
            .raw(Method::GET, &format!("{path}/delete"), &headers, "")
            .await;
        assert_ne!(
            answer.status,
            http::StatusCode::FORBIDDEN,
            "a GET changes nothing"
        );
    }
    admin.json(Method::GET, &path, None, 200).await;
    let origin = format!("http://{}", admin.addr);
    let answer = admin
        .raw(
            Method::DELETE,
            &path,
            &[("cookie", &cookie), ("origin", &origin)],
            "",
        )
        .await;
    assert_eq!(
        answer.status,
        http::StatusCode::OK,
        "same origin with the cookie"
    );
    admin.stop().await;
}

on_each_store! {
#[tokio::test(flavor = "multi_thread")]
async fn the_command_line_and_the_api_are_two_views_of_one_state(harness: Harness) {
    two_views(harness.location.clone()).await;
}
}

async fn two_views(state: String) {
    let admin = AdminProcess::start(&state).await;
    let (code, id, stderr) = admin.cli(&[
        "webhooks",
        "add",
        "--name",
        "from the CLI",
        "--url",
        "http://127.0.0.1:9/a",
        "--events",
        "CI_STATS",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let listed = admin.json(Method::GET, "/api/webhooks", None, 200).await;
    assert_eq!(listed[0]["id"], id.trim());
    assert_eq!(listed[0]["name"], "from the CLI");
    let added = admin
        .json(
            Method::POST,
            "/api/webhooks",
            Some(webhook("from the API", "http://127.0.0.1:9/b")),
            201,
        )
        .await;
    let (code, shown, _) = admin.cli(&[
        "webhooks",
        "show",
        added["id"].as_str().expect("id"),
        "--json",
    ]);
    assert_eq!(code, Some(0));
    let shown: Value = serde_json::from_str(&shown).expect("JSON");
    assert_eq!(shown["name"], "from the API");
    assert_eq!(shown["events"], json!(["COURSE_ENROLLMENT"]));

    // The pages too: what the command line added is on the Webhooks page, and what the Add
    // webhook form saves is in `sender webhooks list`.
    let cookie = admin.sign_in().await;
    let page = admin
        .raw(Method::GET, "/", &[("cookie", &cookie)], "")
        .await;
    assert_eq!(page.status, http::StatusCode::OK);
    let page = String::from_utf8_lossy(&page.body).into_owned();
    assert!(
        page.contains(">from the CLI</a>") && page.contains(">from the API</a>"),
        "{page}"
    );
    let origin = format!("http://{}", admin.addr);
    let form = "name=from+the+page&url=http%3A%2F%2F127.0.0.1%3A9%2Fc&auth=none&events=LEARNER_PROGRESS&active=on";
    let saved = admin
        .raw(
            Method::POST,
            "/webhooks",
            &[
                ("cookie", &cookie),
                ("origin", &origin),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            form,
        )
        .await;
    assert_eq!(saved.status, http::StatusCode::SEE_OTHER, "{saved:?}");
    // The list's switch, rendered before a change by the command line, is refused and says so.
    let stale = listed[0]["version"].as_i64().expect("version").to_string();
    let (code, _, _) = admin.cli(&["webhooks", "retire", id.trim()]);
    assert_eq!(code, Some(0));
    // The stale switch asks to activate: were it not refused, the retire would be undone.
    let form = format!("version={stale}&active=on");
    let headers = [
        ("cookie", cookie.as_str()),
        ("origin", origin.as_str()),
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    let switched = admin
        .raw(
            Method::POST,
            &format!("/webhooks/{}/status", id.trim()),
            &headers,
            form,
        )
        .await;
    assert_eq!(switched.headers["location"], "/?done=changed");
    let page = admin
        .raw(Method::GET, "/?done=changed", &[("cookie", &cookie)], "")
        .await;
    assert!(String::from_utf8_lossy(&page.body).contains("changed meanwhile"));
    let (code, listed, _) = admin.cli(&["webhooks", "list", "--json"]);
    assert_eq!(code, Some(0));
    let listed: Value = serde_json::from_str(&listed).expect("JSON");
    let retired = listed
        .as_array()
        .expect("array")
        .iter()
        .find(|webhook| webhook["id"].as_str() == Some(id.trim()))
        .expect("still listed");
    assert_eq!(retired["active"], false, "the retire stands: {retired}");
    let names: Vec<&str> = listed
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|webhook| webhook["name"].as_str())
        .collect();
    assert_eq!(names, ["from the CLI", "from the API", "from the page"]);
    admin.stop().await;
}

#[test]
fn the_token_rules_are_the_inspectors() {
    let run = |args: &[&str], envs: &[(&str, &str)]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_it-sender"));
        let dir = tempfile::tempdir().expect("dir");
        command
            .args([
                "--state",
                &format!("sqlite:{}", dir.path().join("s.db").display()),
                "admin",
            ])
            .args(args)
            .env("RUST_LOG", "warn")
            .env_remove("SENDER_ADMIN_TOKEN");
        for (name, value) in envs {
            command.env(name, value);
        }
        // Bounded: a token wrongly accepted would serve for ever.
        crate::support::receiver::output_within(&mut command, Duration::from_secs(30))
    };
    // Beyond loopback without a token: a configuration error, exit 2.
    let output = run(&["--listen", "0.0.0.0:0"], &[]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("not a loopback address") && stderr.contains("--token"),
        "{stderr}"
    );
    // An address given explicitly that is taken: exit 2.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = taken.local_addr().expect("addr").to_string();
    let output = run(&["--listen", &address], &[]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot listen on"));
    // A token that would need escaping is refused.
    let output = run(&["--listen", "127.0.0.1:0", "--token", "a b"], &[]);
    assert_eq!(output.status.code(), Some(2));
    // So is one under 16 characters, from the flag or the environment: it would be guessed.
    for (args, envs) in [
        (
            &["--listen", "127.0.0.1:0", "--token", "fifteen-chars-x"][..],
            &[][..],
        ),
        (
            &["--listen", "127.0.0.1:0"][..],
            &[("SENDER_ADMIN_TOKEN", "short")][..],
        ),
    ] {
        let output = run(args, envs);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?} {envs:?}: {stderr}");
        assert!(
            stderr.contains("--token (or SENDER_ADMIN_TOKEN)")
                && stderr.contains("at least 16 characters"),
            "{stderr}"
        );
        assert!(output.stdout.is_empty(), "nothing served");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_random_token_per_start_guards_every_request() {
    let dir = tempfile::tempdir().expect("dir");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_it-sender"));
    command
        .args([
            "--state",
            &format!("sqlite:{}", dir.path().join("s.db").display()),
        ])
        .args(["admin", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .env_remove("SENDER_ADMIN_TOKEN");
    let mut process = crate::sender::Spawned::spawn(&mut command);
    let line = process.next_line(Duration::from_secs(20)).await;
    let (addr, token) = line
        .strip_prefix("admin on http://")
        .and_then(|rest| rest.split_once("/?token="))
        .unwrap_or_else(|| panic!("first line {line:?}"));
    assert_eq!(token.len(), 48);
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
    let addr: std::net::SocketAddr = addr.parse().expect("address");
    let get = |path: String| async move {
        crate::support::receiver::send(
            addr,
            crate::support::receiver::request(addr, Method::GET, &path, &[], ""),
        )
        .await
    };
    let first = get(format!("/?token={token}")).await;
    assert_eq!(first.status, http::StatusCode::OK);
    let cookie = first.headers["set-cookie"].to_str().expect("cookie");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    // A cookie of this port's own, holding a session key rather than the token: browsers send
    // it to every port of the host.
    assert!(
        cookie.starts_with(&format!("sender_admin_{}=", addr.port())),
        "{cookie}"
    );
    assert!(!cookie.contains(token), "{cookie}");
    for path in [
        "/",
        "/api/webhooks",
        "/api/openapi.json",
        "/assets/web.css",
        "/trigger",
    ] {
        assert_eq!(
            get(path.to_owned()).await.status,
            http::StatusCode::UNAUTHORIZED,
            "{path}"
        );
    }
    crate::sender::send_signal(process.child.id(), "TERM");
    assert!(process.wait(Duration::from_secs(15)).await.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_tokens_are_slowed_down_per_client_and_the_right_one_still_works() {
    let dir = tempfile::tempdir().expect("dir");
    let admin = AdminProcess::start(&format!("sqlite:{}", dir.path().join("s.db").display())).await;
    let cookie = admin.sign_in().await;
    // Ten wrong tokens a minute are told 401; the eleventh waits, whatever it carries.
    for guess in 0..10 {
        let wrong = format!("wrong-token-guess-{guess:02}");
        let answer = admin
            .raw(
                Method::GET,
                "/api/webhooks",
                &[("x-admin-token", &wrong)],
                "",
            )
            .await;
        assert_eq!(
            answer.status,
            http::StatusCode::UNAUTHORIZED,
            "guess {guess}"
        );
    }
    for headers in [
        vec![("x-admin-token", "wrong-token-guess-10")],
        vec![("x-admin-token", TOKEN)],
    ] {
        let answer = admin.raw(Method::GET, "/api/webhooks", &headers, "").await;
        assert_eq!(answer.status, http::StatusCode::TOO_MANY_REQUESTS);
        admin.conforms(&Method::GET, "/api/webhooks", &answer);
        let retry_after: u64 = answer.headers["retry-after"]
            .to_str()
            .expect("ASCII")
            .parse()
            .expect("seconds");
        assert!((1..=60).contains(&retry_after), "{retry_after}");
    }
    let answer = admin
        .raw(Method::GET, &format!("/?token={TOKEN}"), &[], "")
        .await;
    assert_eq!(answer.status, http::StatusCode::TOO_MANY_REQUESTS);
    // The page already signed in on that client keeps working, and another client's script
    // gets in at once.
    let page = admin
        .raw(Method::GET, "/", &[("cookie", &cookie)], "")
        .await;
    assert_eq!(page.status, http::StatusCode::OK);
    let other = crate::support::receiver::send_from(
        std::net::Ipv4Addr::new(127, 0, 0, 2),
        admin.addr,
        crate::support::receiver::request(
            admin.addr,
            Method::GET,
            "/api/webhooks",
            &[("x-admin-token", TOKEN)],
            "",
        ),
    )
    .await;
    assert_eq!(other.status, http::StatusCode::OK);
    admin.stop().await;
}
