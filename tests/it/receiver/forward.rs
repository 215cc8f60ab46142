//! `--forward-to`, the durable inbox: with the app down or failing, accepted requests pile up
//! and then all reach it in order, byte for byte, also across a SIGKILL of the receiver; only
//! requests with new events are forwarded; re-signing for the app.

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use receiver::forward::{ForwardConfig, RetryPolicy};
use verify::{BodyHmacFormat, KeyEntry, Keyring, Scheme, SignatureFile, SigningSecret};

use crate::support::receiver::{
    envelope, free_addr, metric, open_db, post, run_cli, FakeApp, InProcess, Process,
};
use crate::support::store::{for_each_store, TestStore};

/// Short delays and deadlines, so a test takes milliseconds per retry.
fn fast(url: &str) -> ForwardConfig {
    let mut forward = ForwardConfig::new(url.parse().unwrap());
    forward.retry = RetryPolicy {
        min: Duration::from_millis(20),
        max: Duration::from_millis(200),
    };
    forward.connect_timeout = Duration::from_secs(2);
    forward.response_timeout = Duration::from_secs(5);
    forward
}

/// `events list --json`: `eventId` → `forwarding`, in arrival order.
fn forwarding_states(store: &str) -> Vec<(String, String)> {
    let (code, stdout, stderr) = run_cli(&["events", "list", "--store", store, "--json"], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    let listed: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    listed
        .as_array()
        .unwrap()
        .iter()
        .map(|event| {
            (
                event["eventId"].as_str().unwrap().to_owned(),
                event["forwarding"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Request `index` of a run: its event ids, and a body whose layout varies (spaces, a
/// newline, a batch), so byte-exactness is tested, not just JSON equality.
fn body(run: &str, index: usize) -> String {
    let id = format!("{run}-{index}");
    let plain = envelope(7, &[&id]);
    match index % 3 {
        0 => plain,
        1 => plain.replacen("{\"accountId\":7,", "{ \"accountId\" : 7 ,\n  ", 1) + "\n",
        _ => envelope(7, &[&id, &format!("{id}-b"), &format!("{id}-c")]),
    }
}

for_each_store!(app_down_then_failing_then_up_gets_every_new_request_in_order_byte_exact);

async fn app_down_then_failing_then_up_gets_every_new_request_in_order_byte_exact(
    test_store: TestStore,
) {
    let store = test_store.store_arg();

    // Before forwarding was switched on: this event is never forwarded and shows `none`.
    let receiver = InProcess::start(test_store.config()).await;
    assert_eq!(
        receiver.post(&[], envelope(7, &["before"])).await.status,
        StatusCode::OK
    );
    receiver.stop().await.unwrap();

    let app_addr = free_addr();
    let mut config = test_store.config();
    config.forward = Some(fast(&format!("http://{app_addr}/inbox")));
    let receiver = InProcess::start(config).await;
    let mut sent: Vec<String> = Vec::new();
    for index in 0..12 {
        let body = body("down", index);
        let webhook_id = format!("msg_{index}");
        let reply = receiver
            .post(
                &[
                    ("webhook-id", &webhook_id),
                    ("x-custom", "kept"),
                    ("authorization", "Basic Y3JtOnB3"),
                ],
                body.clone(),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        sent.push(body);
    }
    // Not forwarded: a request whose events are all duplicates, a refused one, and a resend
    // of the event stored before forwarding was on.
    let duplicate = receiver.post(&[], body("down", 0)).await;
    assert_eq!(duplicate.json()["duplicates"], 1);
    let refused = receiver.post(&[], "{not json").await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        receiver.post(&[], envelope(7, &["before"])).await.json()["duplicates"],
        1
    );

    // The app is down: attempts fail, the pile stays whole.
    let addr = receiver.addr;
    let failing = crate::support::receiver::wait_until(Duration::from_secs(10), || async move {
        metric(addr, "receiver_forward_failures_total").await >= Some(3.0)
    })
    .await;
    assert!(failing, "the forwarder retries while the app is down");
    // The backlog is counted in the store (every receiver's jobs), within a second.
    let counted = crate::support::receiver::wait_until(Duration::from_secs(10), || async move {
        metric(addr, "receiver_forward_pending").await == Some(12.0)
    })
    .await;
    assert!(counted, "the 12 jobs wait");
    let states = forwarding_states(&store);
    assert_eq!(states[0], ("before".to_owned(), "none".to_owned()));
    assert!(
        states[1..].iter().all(|(_, state)| state == "pending"),
        "{states:?}"
    );

    // The app comes up but fails: the first request is retried, nothing overtakes it.
    let app = FakeApp::start_at(app_addr, 503).await;
    let retried = crate::support::receiver::wait_until(Duration::from_secs(10), || async {
        app.requests().len() >= 3
    })
    .await;
    assert!(retried, "the failing app is tried again");
    assert!(
        app.requests()
            .iter()
            .all(|request| request.body == sent[0].as_bytes()),
        "only the first request is retried while the app fails"
    );

    // The app recovers: everything arrives, in order, byte for byte, with its headers.
    app.set_status(200);
    assert!(
        app.wait_acknowledged(sent.len(), Duration::from_secs(15))
            .await,
        "all {} requests arrive, got {}",
        sent.len(),
        app.acknowledged_bodies().len()
    );
    let expected: Vec<Bytes> = sent.iter().map(|body| Bytes::from(body.clone())).collect();
    assert_eq!(
        app.acknowledged_bodies(),
        expected,
        "in order, byte-exact, nothing extra"
    );
    for (index, request) in app
        .requests()
        .iter()
        .filter(|request| request.status == 200)
        .enumerate()
    {
        let header = |name: &str| {
            request
                .headers
                .get(name)
                .map(|value| value.to_str().unwrap().to_owned())
        };
        assert_eq!(request.path, "/inbox");
        assert_eq!(header("webhook-id"), Some(format!("msg_{index}")));
        assert_eq!(header("x-custom").as_deref(), Some("kept"));
        assert_eq!(header("content-type").as_deref(), Some("application/json"));
        assert_eq!(
            header("authorization"),
            None,
            "redacted Basic is not replayed"
        );
        assert_eq!(
            header("content-length"),
            Some(request.body.len().to_string())
        );
    }
    let settled = crate::support::receiver::wait_until(Duration::from_secs(10), || async move {
        metric(addr, "receiver_forward_pending").await == Some(0.0)
    })
    .await;
    assert!(settled, "every job is marked done");
    assert_eq!(metric(addr, "receiver_forwarded_total").await, Some(12.0));
    let states = forwarding_states(&store);
    assert!(
        states[1..].iter().all(|(_, state)| state == "forwarded"),
        "{states:?}"
    );
    receiver.stop().await.unwrap();
    let pending = test_store
        .scalar("SELECT COUNT(*) FROM {forward_jobs} WHERE forwarded_at_ms IS NULL")
        .await;
    assert_eq!(pending, 0);
}

/// Two receivers with `--forward-to` on one PostgreSQL database: one forwards (the lease
/// holder), every request of both reaches the app in commit order, and when the holder stops
/// the other takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_receivers_on_one_database_forward_through_one_lease_in_commit_order() {
    let Some(test_store) =
        TestStore::postgres("two_receivers_on_one_database_forward_through_one_lease")
    else {
        return;
    };
    let app = FakeApp::start_at(free_addr(), 200).await;
    let start = || {
        let mut config = test_store.config();
        config.forward = Some(fast(&format!("http://{}/inbox", app.addr)));
        InProcess::start(config)
    };
    let (first, second) = (start().await, start().await);
    let mut sent = Vec::new();
    for index in 0..20 {
        let body = body("lease", index);
        // Alternating receivers, each answer awaited: commit order is this order.
        let receiver = if index % 2 == 0 { &first } else { &second };
        assert_eq!(
            receiver.post(&[], body.clone()).await.status,
            StatusCode::OK
        );
        sent.push(Bytes::from(body));
    }
    assert!(
        app.wait_acknowledged(sent.len(), Duration::from_secs(15))
            .await
    );
    // The holder stops: its session ends, the other receiver takes the lease.
    let holder_forwarded = metric(first.addr, "receiver_forwarded_total").await;
    let (holder, other) = if holder_forwarded > Some(0.0) {
        (first, second)
    } else {
        (second, first)
    };
    assert_eq!(
        metric(other.addr, "receiver_forwarded_total").await,
        Some(0.0),
        "one receiver forwards at a time"
    );
    holder.stop().await.unwrap();
    for index in 20..26 {
        let body = body("lease", index);
        assert_eq!(other.post(&[], body.clone()).await.status, StatusCode::OK);
        sent.push(Bytes::from(body));
    }
    assert!(
        app.wait_acknowledged(sent.len(), Duration::from_secs(15))
            .await,
        "the other receiver takes over"
    );
    assert_eq!(
        app.acknowledged_bodies(),
        sent,
        "every request once, in commit order"
    );
    other.stop().await.unwrap();
}

/// Two receivers with two targets on one PostgreSQL database: per target one receiver
/// forwards (its lease), so each app gets every request once, in commit order, whichever
/// receiver stored it; when a holder stops, the other takes its targets over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_receivers_and_two_targets_each_target_forwarded_by_one_receiver_at_a_time() {
    let Some(test_store) =
        TestStore::postgres("two_receivers_and_two_targets_each_target_forwarded_by_one")
    else {
        return;
    };
    let crm = FakeApp::start_at(free_addr(), 200).await;
    let archive = FakeApp::start_at(free_addr(), 200).await;
    let targets = [
        format!("http://{}/crm", crm.addr),
        format!("http://{}/archive", archive.addr),
    ];
    let start = || {
        let mut config = test_store.config();
        let mut forward = fast(&targets[0]);
        forward.targets.push(receiver::forward::ForwardTarget::new(
            targets[1].parse().unwrap(),
        ));
        config.forward = Some(forward);
        InProcess::start(config)
    };
    let receivers = [start().await, start().await];
    let mut sent = Vec::new();
    for index in 0..20 {
        let body = body("leases", index);
        let reply = receivers[index % 2].post(&[], body.clone()).await;
        assert_eq!(reply.status, StatusCode::OK);
        sent.push(Bytes::from(body));
    }
    for app in [&crm, &archive] {
        assert!(
            app.wait_acknowledged(sent.len(), Duration::from_secs(15))
                .await
        );
        assert_eq!(
            app.acknowledged_bodies(),
            sent,
            "every request once, in commit order"
        );
    }
    // Per target, the attempts were one receiver's.
    let mut holders = Vec::new();
    for target in &targets {
        let mut forwarding = Vec::new();
        for (index, receiver) in receivers.iter().enumerate() {
            let delivered = crate::support::receiver::labeled_metric(
                receiver.addr,
                "receiver_forward_attempts_total",
                &[("target", target), ("outcome", "delivered")],
            )
            .await
            .unwrap_or(0.0);
            if delivered > 0.0 {
                forwarding.push(index);
            }
        }
        assert_eq!(forwarding.len(), 1, "{target}: one receiver forwards");
        holders.push(forwarding[0]);
    }
    // The holder of the CRM's lease stops: the other receiver takes it over.
    let [first, second] = receivers;
    let (holder, other) = if holders[0] == 0 {
        (first, second)
    } else {
        (second, first)
    };
    holder.stop().await.unwrap();
    for index in 20..24 {
        let body = body("leases", index);
        assert_eq!(other.post(&[], body.clone()).await.status, StatusCode::OK);
        sent.push(Bytes::from(body));
    }
    for app in [&crm, &archive] {
        assert!(
            app.wait_acknowledged(sent.len(), Duration::from_secs(15))
                .await,
            "the other receiver takes over"
        );
        assert_eq!(app.acknowledged_bodies(), sent);
    }
    other.stop().await.unwrap();
}

fn process_args<'a>(store: &'a str, url: &'a str) -> Vec<&'a str> {
    vec![
        "listen",
        "--listen",
        "127.0.0.1:0",
        "--store",
        store,
        "--output",
        "quiet",
        "--forward-to",
        url,
        "--forward-retry-min",
        "20ms",
        "--forward-retry-max",
        "100ms",
        "--forward-timeout",
        "5s",
    ]
}

/// The indexes of `received` bodies in `sent`, checking that each is one of them.
fn indexes(sent: &[String], received: &[Bytes]) -> Vec<usize> {
    received
        .iter()
        .map(|body| {
            sent.iter()
                .position(|candidate| candidate.as_bytes() == body.as_ref())
                .unwrap_or_else(|| panic!("the app got a body never sent: {body:?}"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_nothing_queued_and_keeps_the_order() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kill.db");
    let store = format!("sqlite:{}", db.display());
    // The app answers 503 until it is "up": a port left free for it to bind later could be
    // taken meanwhile by another test's listener (it was, once, under a full suite).
    let app = FakeApp::start_at(free_addr(), 503).await;
    let url = format!("http://{}/inbox", app.addr);

    // 1. The app is down; 30 requests are acknowledged; the receiver is killed.
    let process = Process::spawn(&process_args(&store, &url), &[]);
    let mut sent: Vec<String> = Vec::new();
    for index in 0..30 {
        let body = body("kill", index);
        let reply = post(process.addr, "/webhook", &[], body.clone()).await;
        assert_eq!(reply.status, StatusCode::OK);
        sent.push(body);
    }
    process.kill();
    let queued: i64 = open_db(&db)
        .query_row(
            "SELECT COUNT(*) FROM forward_jobs WHERE forwarded_at_ms IS NULL",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(queued, 30, "every acknowledged request is queued on disk");

    // 2. Restart, bring the app up: all 30 arrive in order, none lost, none twice.
    let process = Process::spawn(&process_args(&store, &url), &[]);
    app.set_status(200);
    assert!(
        app.wait_acknowledged(30, Duration::from_secs(15)).await,
        "all arrive after the restart, got {}",
        app.acknowledged_bodies().len()
    );
    assert_eq!(
        indexes(&sent, &app.acknowledged_bodies()),
        (0..30).collect::<Vec<_>>()
    );

    // 3. Killed while forwarding (the app is slow, so requests are in flight): after the
    //    restart everything arrives, in order; at most the one in flight arrives twice.
    app.set_delay(Duration::from_millis(15));
    for index in 30..60 {
        let body = body("kill", index);
        let reply = post(process.addr, "/webhook", &[], body.clone()).await;
        assert_eq!(reply.status, StatusCode::OK);
        sent.push(body);
    }
    assert!(app.wait_acknowledged(40, Duration::from_secs(15)).await);
    process.kill();
    let process = Process::spawn(&process_args(&store, &url), &[]);
    app.set_delay(Duration::ZERO);
    let all_arrived = crate::support::receiver::wait_until(Duration::from_secs(15), || async {
        let seen = indexes(&sent, &app.acknowledged_bodies());
        (0..60).all(|index| seen.contains(&index))
    })
    .await;
    assert!(all_arrived, "nothing lost across the kill");
    let seen = indexes(&sent, &app.acknowledged_bodies());
    let mut first_seen: Vec<usize> = Vec::new();
    for index in &seen {
        if !first_seen.contains(index) {
            first_seen.push(*index);
        }
    }
    assert_eq!(first_seen, (0..60).collect::<Vec<_>>(), "in order");
    let repeats = seen.len() - first_seen.len();
    assert!(
        repeats <= 1,
        "at most the request in flight at the kill is sent again, got {repeats}: {seen:?}"
    );
    // A repeat may only be the re-send of the last request before the kill, right at the
    // restart: the order never goes back further.
    for pair in seen.windows(2) {
        assert!(
            pair[1] == pair[0] + 1 || pair[1] == pair[0],
            "order {seen:?}"
        );
    }
    let addr = process.addr;
    let settled = crate::support::receiver::wait_until(Duration::from_secs(10), || async move {
        metric(addr, "receiver_forward_pending").await == Some(0.0)
    })
    .await;
    assert!(settled);
    process.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resigned_for_the_app_with_a_fresh_timestamp_and_the_original_id() {
    let dir = tempfile::tempdir().unwrap();
    let inbound = Keyring::single(SigningSecret::generate());
    let app_secret = SigningSecret::generate();
    let app_keyring = Keyring::single(app_secret.clone());
    let hmac_keyring = Keyring::new(
        Scheme::BodyHmacSha256(BodyHmacFormat {
            prefix: "sha256=".to_owned(),
            ..BodyHmacFormat::default()
        }),
        vec![KeyEntry::new(app_secret)],
    );
    for (name, signing) in [
        ("standard", app_keyring.clone()),
        ("hmac", hmac_keyring.clone()),
    ] {
        let app_addr = free_addr();
        let app = FakeApp::start_at(app_addr, 200).await;
        let mut config = receiver::Config::for_tests(dir.path().join(format!("{name}.db")));
        config.authentication = verify::Authentication::Signature(vec![inbound.clone()]);
        let mut forward = fast(&format!("http://{}/app", app.addr));
        forward.targets[0].signing = Some(signing.clone());
        config.forward = Some(forward);
        let receiver = InProcess::start(config).await;
        let body = body(name, 0);
        // Signed a minute ago: still within the tolerance inbound, but the app must see a
        // fresh timestamp.
        let signed_at = verify::unix_now() - 60;
        let headers = inbound.sign_headers("msg_original", signed_at, body.as_bytes());
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            receiver.post(&headers, body.clone()).await.status,
            StatusCode::OK
        );
        assert!(app.wait_acknowledged(1, Duration::from_secs(10)).await);
        let request = app.requests().remove(0);
        assert_eq!(request.body, body.as_bytes(), "{name}");
        signing
            .verify(&request.headers, &request.body)
            .unwrap_or_else(|error| panic!("{name}: the app verifies: {error}"));
        assert!(
            inbound.verify(&request.headers, &request.body).is_err(),
            "{name}: the inbound signature is not passed on"
        );
        let header = |header: &str| {
            request
                .headers
                .get(header)
                .map(|value| value.to_str().unwrap().to_owned())
        };
        assert_eq!(
            header("webhook-id").as_deref(),
            Some("msg_original"),
            "{name}"
        );
        if name == "standard" {
            let timestamp: i64 = header("webhook-timestamp").unwrap().parse().unwrap();
            assert!(timestamp > signed_at + 30, "{name}: a fresh timestamp");
        } else {
            assert!(header("x-alm-signature").unwrap().starts_with("sha256="));
            assert_eq!(
                header("webhook-signature"),
                None,
                "{name}: old signature dropped"
            );
        }
        receiver.stop().await.unwrap();
    }

    // The command line reads the file and refuses what it cannot do.
    let file = SignatureFile::new(
        "wh_1",
        "app",
        &Scheme::default(),
        &SigningSecret::generate(),
        0,
    );
    let path = dir.path().join("app-sig.json");
    std::fs::write(&path, file.to_json_pretty()).unwrap();
    let store = format!("sqlite:{}", dir.path().join("cli.db").display());
    let cases: [(&[&str], &str); 6] = [
        (&["--forward-to", "https://app/x"], "only http:// targets"),
        (
            &[
                "--forward-to",
                "http://app/x",
                "--forward-to",
                "COURSE_*=http://app/x",
            ],
            "is given twice",
        ),
        (
            &["--forward-to", "COURSE_COMPLETED!=http://app/x"],
            "event names hold letters",
        ),
        (
            &[
                "--forward-to",
                "http://app/x",
                "--forward-signature-file",
                "http://app/y=app-sig.json",
            ],
            "no --forward-to target has this URL",
        ),
        (
            &[
                "--forward-to",
                "http://app/x",
                "--forward-retry-min",
                "soon",
            ],
            "--forward-retry-min",
        ),
        (
            &[
                "--forward-to",
                "http://app/x",
                "--forward-signature-file",
                "/nonexistent/sig.json",
            ],
            "--forward-signature-file",
        ),
    ];
    for (flags, message) in cases {
        let mut args = vec!["listen", "--listen", "127.0.0.1:0", "--store", &store];
        args.extend_from_slice(flags);
        let (code, _, stderr) = run_cli(&args, &[]);
        assert_eq!(code, Some(2), "{flags:?}: {stderr}");
        assert!(stderr.contains(message), "{flags:?}: {stderr}");
    }
    let path = path.display().to_string();
    let process = Process::spawn(
        &[
            "--listen",
            "127.0.0.1:0",
            "--store",
            &store,
            "--forward-to",
            "http://127.0.0.1:9/x",
            "--forward-signature-file",
            &path,
        ],
        &[],
    );
    assert!(process.first_line.starts_with("listening on http://"));
    process.kill();
}
