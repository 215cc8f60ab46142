//! A trigger's count is bounded (issue 20, item 4): one authenticated `POST /api/trigger` with
//! `"count": 1000000000` used to abort `sender admin` (it tried to allocate 216 GB of events).
//! Now the API answers 422 with the field, the Trigger page shows the error beside **Count**,
//! `sender trigger` exits 2, the process keeps serving, and a count at the bound is delivered
//! whole.

use std::collections::BTreeSet;
use std::time::Duration;

use http::Method;
use serde_json::{json, Value};

use crate::support::admin::{AdminProcess, TOKEN};
use crate::support::endpoint::FakeEndpoint;

/// The bound, as `sender/src/manage.rs` names it.
const BOUND: usize = sender::manage::MAX_TRIGGER_COUNT;

#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_count_is_refused_everywhere_and_the_bound_itself_is_delivered() {
    let dir = tempfile::tempdir().expect("dir");
    let state = format!("sqlite:{}", dir.path().join("sender.db").display());
    let endpoint = FakeEndpoint::start().await;
    let admin = AdminProcess::start(&state).await;
    // A batch event: the bound's events go out in requests of 100, quickly.
    admin
        .json(
            Method::POST,
            "/api/webhooks",
            Some(json!({"name": "bulk", "url": endpoint.url(),
                        "events": ["COURSE_ENROLLMENT_BATCH"]})),
            201,
        )
        .await;

    // The API: 422, the field, the bound named; the answer is one the document declares.
    let refused = admin
        .json(
            Method::POST,
            "/api/trigger",
            Some(json!({"event": "COURSE_ENROLLMENT_BATCH", "count": 1_000_000_000u64})),
            422,
        )
        .await;
    assert_eq!(
        (refused["error"].as_str(), refused["field"].as_str()),
        (Some("invalid"), Some("count")),
        "{refused}"
    );
    let message = refused["message"].as_str().expect("message");
    assert!(
        message.contains("Count 1000000000") && message.contains(&BOUND.to_string()),
        "{message}"
    );
    // Still alive and serving.
    let listed = admin.json(Method::GET, "/api/webhooks", None, 200).await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1));

    // The Trigger page, posted as its own form: the error beside Count, what was typed kept.
    let origin = format!("http://{}", admin.addr);
    let page = admin
        .raw(
            Method::POST,
            &format!("/trigger?token={TOKEN}"),
            &[
                ("origin", origin.as_str()),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            "event=COURSE_ENROLLMENT_BATCH&count=1000000000&account=1010&set=",
        )
        .await;
    let html = String::from_utf8_lossy(&page.body);
    assert_eq!(page.status.as_u16(), 422, "{html}");
    let beside_count = html
        .split("id=\"count-error\"")
        .nth(1)
        .and_then(|rest| rest.split("</p>").next())
        .unwrap_or_else(|| panic!("no error beside Count: {html}"));
    assert!(
        beside_count.contains("Count 1000000000") && beside_count.contains(&BOUND.to_string()),
        "{beside_count}"
    );
    assert!(html.contains("value=\"1000000000\""), "{html}");
    assert!(
        html.contains(&format!("max=\"{BOUND}\"")),
        "the field says its bound"
    );

    // The command line: exit 2, the same words; nothing queued by any of the three.
    let (code, _, stderr) = admin.cli(&[
        "trigger",
        "COURSE_ENROLLMENT_BATCH",
        "--count",
        "1000000000",
        "--enqueue-only",
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("error: --count 1000000000 is more than 10000"),
        "{stderr}"
    );
    let (code, listed, _) = admin.cli(&["deliveries", "list", "--json"]);
    assert_eq!(code, Some(0));
    assert_eq!(listed.trim(), "[]", "nothing was queued");

    // At the bound: accepted, every event made, queued and delivered.
    let triggered = admin
        .json(
            Method::POST,
            "/api/trigger",
            Some(json!({"event": "COURSE_ENROLLMENT_BATCH", "count": BOUND})),
            202,
        )
        .await;
    let ids: BTreeSet<&str> = triggered["eventIds"]
        .as_array()
        .expect("eventIds")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(ids.len(), BOUND, "{BOUND} distinct events");
    let wanted: BTreeSet<String> = ids.iter().map(|id| (*id).to_owned()).collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let mut delivered = BTreeSet::new();
        for request in endpoint.received() {
            let body: Value = serde_json::from_slice(&request.body).expect("JSON body");
            for event in body["events"].as_array().expect("events") {
                delivered.insert(event["eventId"].as_str().expect("eventId").to_owned());
            }
        }
        if delivered == wanted {
            break;
        }
        assert!(
            delivered.is_subset(&wanted) && std::time::Instant::now() < deadline,
            "{} of {BOUND} events delivered (only those triggered may come)",
            delivered.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    admin.stop().await;
}
