//! Each row of the SPEC section 3 answer table, over real HTTP (503 is in `outage`), on
//! every store: each test runs once on SQLite and once on PostgreSQL.

use bytes::Bytes;
use http::{Method, StatusCode};

use crate::support::receiver::{envelope, get, post, request, send, InProcess};
use crate::support::store::{for_each_store, TestStore};

for_each_store!(
    ok_counts_received_stored_and_duplicates_only_after_commit,
    bad_bodies_are_400_and_store_nothing,
    other_paths_methods_sizes_and_content_types,
    compressed_bodies_are_415_and_kept_as_refused_requests,
    healthz_and_metrics,
    refused_requests_are_kept_bounded_with_their_reason,
    concurrent_requests_share_commits_and_racing_duplicates_are_stored_once,
);

async fn ok_counts_received_stored_and_duplicates_only_after_commit(store: TestStore) {
    let receiver = InProcess::start(store.config()).await;

    let first = receiver.post(&[], envelope(1010, &["a", "b"])).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(
        first.json(),
        serde_json::json!({"received": 2, "stored": 2, "duplicates": 0})
    );
    // The answer came after the commit: another connection sees the rows at once.
    let stored = store.scalar("SELECT COUNT(*) FROM {events}").await;
    assert_eq!(stored, 2);

    // b again, c new, c twice in the same request.
    let second = receiver.post(&[], envelope(1010, &["b", "c", "c"])).await;
    assert_eq!(
        second.json(),
        serde_json::json!({"received": 3, "stored": 1, "duplicates": 2})
    );
    // The same eventId in another account is another event.
    let other = receiver.post(&[], envelope(2020, &["a"])).await;
    assert_eq!(other.json()["stored"], 1);
    // An empty batch is acknowledged and stores nothing.
    let empty = receiver
        .post(&[], r#"{"accountId":1010,"events":[]}"#)
        .await;
    assert_eq!(
        empty.json(),
        serde_json::json!({"received": 0, "stored": 0, "duplicates": 0})
    );
    let events = store.scalar("SELECT COUNT(*) FROM {events}").await;
    let requests = store.scalar("SELECT COUNT(*) FROM {requests}").await;
    assert_eq!((events, requests), (4, 4));
    receiver.stop().await.unwrap();
}

async fn bad_bodies_are_400_and_store_nothing(store: TestStore) {
    let receiver = InProcess::start(store.config()).await;
    let cases: &[(&str, &str, &str)] = &[
        ("{not json", "invalid_json", "key must be a string"),
        ("", "invalid_json", "EOF"),
        ("[1,2]", "invalid_envelope", "JSON object"),
        (r#"{"events":[]}"#, "invalid_envelope", "accountId"),
        (
            // One bad event makes the whole request refused: all or nothing.
            r#"{"accountId":1,"events":[{"eventId":"ok","eventName":"COURSE_COMPLETED","timestamp":1,"data":{}},{"eventId":"","eventName":"X","timestamp":1,"data":{}}]}"#,
            "invalid_envelope",
            "events[1].eventId",
        ),
        // A key given twice: JSON readers disagree on which one counts.
        (
            r#"{"accountId":1,"events":[],"accountId":2}"#,
            "invalid_envelope",
            "duplicate key accountId",
        ),
        (
            r#"{"accountId":1,"events":[{"eventId":"a","eventName":"COURSE_COMPLETED","eventId":"b","timestamp":1,"data":{}}]}"#,
            "invalid_envelope",
            "events[0]: duplicate key eventId",
        ),
    ];
    for (body, error, detail) in cases {
        let reply = receiver.post(&[], body.to_string()).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(reply.error(), *error, "{body}");
        let got = reply.json()["detail"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(got.contains(detail), "{body}: {got}");
    }
    let stored = store.scalar("SELECT COUNT(*) FROM {events}").await;
    assert_eq!(stored, 0);
    receiver.stop().await.unwrap();
}

async fn other_paths_methods_sizes_and_content_types(store: TestStore) {
    let mut config = store.config();
    config.path = "/hooks/alm".to_owned();
    config.limits.max_body_bytes = 1000;
    let receiver = InProcess::start(config).await;
    let addr = receiver.addr;
    let body = envelope(1, &["e"]);

    let not_found = post(addr, "/webhook", &[], body.clone()).await;
    assert_eq!(not_found.status, StatusCode::NOT_FOUND);
    assert_eq!(not_found.error(), "not_found");

    for method in [Method::GET, Method::PUT, Method::DELETE] {
        let reply = send(
            addr,
            request(addr, method.clone(), "/hooks/alm", &[], Bytes::new()),
        )
        .await;
        assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(reply.headers["allow"], "POST");
    }
    let post_health = post(addr, "/healthz", &[], "{}").await;
    assert_eq!(post_health.status, StatusCode::METHOD_NOT_ALLOWED);

    let too_large = post(addr, "/hooks/alm", &[], vec![b' '; 1001]).await;
    assert_eq!(too_large.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(too_large.error(), "body_too_large");
    let just_fits = format!("{body:<1000}");
    assert_eq!(
        post(addr, "/hooks/alm", &[], just_fits).await.status,
        StatusCode::OK
    );

    for (content_type, expected) in [
        ("text/plain", StatusCode::UNSUPPORTED_MEDIA_TYPE),
        (
            "application/x-www-form-urlencoded",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        ("application/json; charset=utf-8", StatusCode::OK),
        ("application/vnd.alm+json", StatusCode::OK),
    ] {
        let reply = post(
            addr,
            "/hooks/alm",
            &[("content-type", content_type)],
            body.clone(),
        )
        .await;
        assert_eq!(reply.status, expected, "{content_type}");
        if expected != StatusCode::OK {
            assert_eq!(reply.error(), "unsupported_media_type");
        }
    }
    // No content type at all: the body decides (documented choice).
    let bare = send(
        addr,
        request(addr, Method::POST, "/hooks/alm", &[], body.clone()),
    )
    .await;
    assert_eq!(bare.status, StatusCode::OK);
    receiver.stop().await.unwrap();
}

/// `gzip` run on `bytes`: a real compressed body.
fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut child = std::process::Command::new("gzip")
        .arg("-c")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("gzip runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(bytes)
        .expect("to gzip");
    let output = child.wait_with_output().expect("gzip output");
    assert!(output.status.success());
    output.stdout
}

async fn compressed_bodies_are_415_and_kept_as_refused_requests(store: TestStore) {
    let receiver = InProcess::start(store.config()).await;
    let addr = receiver.addr;
    let body = envelope(1, &["encoded"]);
    let compressed = gzip(body.as_bytes());
    assert_eq!(&compressed[..2], b"\x1f\x8b", "a gzip stream");
    let refused: [(&str, Vec<u8>); 4] = [
        ("gzip", compressed),
        // A plain body labelled gzip is refused too: the label says it is not JSON.
        ("gzip", body.clone().into_bytes()),
        ("Identity, GZip", body.clone().into_bytes()),
        ("br", body.clone().into_bytes()),
    ];
    for (encoding, bytes) in &refused {
        let reply = post(
            addr,
            "/webhook",
            &[("content-encoding", encoding)],
            bytes.clone(),
        )
        .await;
        assert_eq!(
            reply.status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{encoding}"
        );
        assert_eq!(reply.error(), "unsupported_content_encoding", "{encoding}");
    }
    // `identity` is no encoding at all.
    let plain = post(
        addr,
        "/webhook",
        &[("content-encoding", "identity")],
        envelope(1, &["plain"]),
    )
    .await;
    assert_eq!(plain.status, StatusCode::OK);
    let kept = crate::support::receiver::wait_until(std::time::Duration::from_secs(10), || async {
        store.scalar("SELECT COUNT(*) FROM {refused}").await == refused.len() as i64
    })
    .await;
    assert!(kept, "every refusal is kept");
    assert_eq!(store.scalar("SELECT COUNT(*) FROM {events}").await, 1);
    assert_eq!(
        store
            .text("SELECT MAX(event_id) FROM {events}")
            .await
            .as_deref(),
        Some("plain"),
        "nothing of the encoded bodies is stored as an event"
    );
    let metrics = String::from_utf8(get(addr, "/metrics").await.body.to_vec()).unwrap();
    for line in [
        "receiver_requests_total{answer=\"415\"} 4",
        "receiver_refusals_total{reason=\"unsupported_content_encoding\"} 4",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "missing {line}:\n{metrics}"
        );
    }
    receiver.stop().await.unwrap();
    // The refused requests are in the capture export, each with the bytes it came with.
    let (code, exported, stderr) = crate::support::receiver::run_cli(
        &["export", "--store", &store.store_arg(), "--include-refused"],
        &[],
    );
    assert_eq!(code, Some(0), "{stderr}");
    let refusals: Vec<verify::CaptureRecord> = exported
        .lines()
        .map(|line| verify::CaptureRecord::from_json_line(line).unwrap())
        .filter(|record| record.verdict == verify::Verdict::Refused)
        .collect();
    assert_eq!(refusals.len(), refused.len(), "{exported}");
    for (record, (encoding, bytes)) in refusals.iter().zip(&refused) {
        assert_eq!(
            record.reason.as_deref(),
            Some("unsupported_content_encoding")
        );
        assert!(record
            .headers
            .iter()
            .any(|(name, value)| name == "content-encoding" && value == encoding));
        assert_eq!(&record.body, bytes, "{encoding}");
    }
}

async fn healthz_and_metrics(store: TestStore) {
    let receiver = InProcess::start(store.config()).await;
    let health = get(receiver.addr, "/healthz").await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.json()["status"], "ok");

    receiver.post(&[], envelope(1, &["x", "y"])).await;
    receiver.post(&[], envelope(1, &["x"])).await;
    receiver.post(&[("content-type", "text/plain")], "hi").await;
    let metrics = get(receiver.addr, "/metrics").await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(metrics.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = String::from_utf8(metrics.body.to_vec()).unwrap();
    for line in [
        "receiver_requests_total{answer=\"200\"} 2",
        "receiver_requests_total{answer=\"415\"} 1",
        "receiver_refusals_total{reason=\"unsupported_media_type\"} 1",
        "receiver_events_stored_total 2",
        "receiver_events_duplicate_total 1",
        "receiver_store_up 1",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
    }
    assert!(text.contains("receiver_commit_seconds_bucket{le=\"+Inf\"}"));
    assert!(text.contains("receiver_commit_batch_requests_count"));
    receiver.stop().await.unwrap();
}

async fn refused_requests_are_kept_bounded_with_their_reason(store: TestStore) {
    let mut config = store.config();
    config.keep_refused = 5;
    let receiver = InProcess::start(config).await;
    for index in 0..12 {
        let reply = receiver.post(&[], format!("not json {index}")).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    }
    // Refusals are kept off the answer path, so wait (bounded) for the last one.
    let kept = crate::support::receiver::wait_until(std::time::Duration::from_secs(10), || async {
        store
            .bytes("SELECT body FROM {refused} ORDER BY id DESC LIMIT 1")
            .await
            .as_deref()
            == Some(b"not json 11".as_slice())
    })
    .await;
    assert!(kept, "the last refusal is kept");
    let rows = store.scalar("SELECT COUNT(*) FROM {refused}").await;
    assert_eq!(rows, 5, "only the newest 5 are kept");
    let reason = store.text("SELECT MAX(reason) FROM {refused}").await;
    assert_eq!(reason.as_deref(), Some("invalid_json"));
    receiver.stop().await.unwrap();
}

async fn concurrent_requests_share_commits_and_racing_duplicates_are_stored_once(store: TestStore) {
    let receiver = InProcess::start(store.config()).await;
    let addr = receiver.addr;
    const REQUESTS: usize = 48;
    // Request i carries events i and i+1, so every event but the ends races with a neighbour.
    let mut tasks = Vec::new();
    for index in 0..REQUESTS {
        tasks.push(tokio::spawn(async move {
            let ids = [format!("e{index}"), format!("e{}", index + 1)];
            let body = envelope(1, &[ids[0].as_str(), ids[1].as_str()]);
            post(addr, "/webhook", &[], body).await.json()
        }));
    }
    let mut stored = 0;
    let mut duplicates = 0;
    for task in tasks {
        let answer = task.await.unwrap();
        stored += answer["stored"].as_u64().unwrap();
        duplicates += answer["duplicates"].as_u64().unwrap();
    }
    assert_eq!(
        stored,
        REQUESTS as u64 + 1,
        "each distinct event stored by exactly one request"
    );
    assert_eq!(duplicates, REQUESTS as u64 - 1);
    let rows = store.scalar("SELECT COUNT(*) FROM {events}").await;
    assert_eq!(rows, REQUESTS as i64 + 1);

    let metrics = String::from_utf8(get(addr, "/metrics").await.body.to_vec()).unwrap();
    let commits: u64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("receiver_commit_batch_requests_count "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        commits < REQUESTS as u64,
        "concurrent requests share commits: {commits} commits for {REQUESTS} requests"
    );
    receiver.stop().await.unwrap();
}
