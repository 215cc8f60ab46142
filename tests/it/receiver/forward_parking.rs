//! A forward job that cannot be delivered never blocks its queue silently, with real
//! `receiver` processes and real HTTP apps, on both stores: a request the app refuses with
//! 400 is parked at once while the later ones flow, `show` gives every attempt, and `retry`
//! delivers it once the app takes it; a request that keeps getting 503 holds its queue (and
//! only its own target's), the metrics show the backlog and its age, until `skip` moves it
//! out of the way.

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;

use crate::support::forwarding::{
    event_ids, forward_cli, forward_list, forward_show, forwarding_receiver, named_envelope,
};
use crate::support::receiver::{free_addr, labeled_metric, metric, post, wait_until, FakeApp};
use crate::support::store::{for_each_store, TestStore};

fn enrolment(id: &str) -> String {
    named_envelope(7, &[(id, "COURSE_ENROLLMENT")])
}

fn bodies(ids: &[&str]) -> Vec<Bytes> {
    ids.iter().map(|id| Bytes::from(enrolment(id))).collect()
}

for_each_store!(
    a_request_the_app_refuses_is_parked_at_once_while_later_ones_flow_then_retry_delivers_it
);

async fn a_request_the_app_refuses_is_parked_at_once_while_later_ones_flow_then_retry_delivers_it(
    test_store: TestStore,
) {
    let store = test_store.store_arg();
    let app = FakeApp::start_at(free_addr(), 200).await;
    // The app's code cannot handle one payload: it says so with 400, every time.
    app.answer_containing(
        "poison-1",
        400,
        r#"{"error":"cannot handle the payload of poison-1"}"#,
    );
    let url = format!("http://{}/crm", app.addr);
    let receiver = forwarding_receiver(&store, std::slice::from_ref(&url));
    for id in ["e1", "poison-1", "e2", "e3"] {
        let reply = post(receiver.addr, "/webhook", &[], enrolment(id)).await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    // The later requests flow past it; it was tried once, not again and again.
    assert!(app.wait_acknowledged(3, Duration::from_secs(15)).await);
    assert_eq!(app.acknowledged_bodies(), bodies(&["e1", "e2", "e3"]));
    let poison = Bytes::from(enrolment("poison-1"));
    let tries = || {
        app.requests()
            .iter()
            .filter(|request| request.body == poison)
            .count()
    };
    assert_eq!(tries(), 1, "parked at once");

    let parked = forward_list(&store, &["--state", "parked"]);
    assert_eq!(parked.len(), 1, "{parked:?}");
    let job = &parked[0];
    assert_eq!(event_ids(job), "poison-1");
    assert_eq!(job["target"], url.as_str());
    assert_eq!(job["attempts"], 1);
    assert_eq!(job["lastError"], "the app answered 400 Bad Request");
    let job_id = job["id"].as_i64().unwrap();
    let addr = receiver.addr;
    let target = url.clone();
    let counted = wait_until(Duration::from_secs(10), || {
        let target = target.clone();
        async move {
            labeled_metric(
                addr,
                "receiver_forward_jobs",
                &[("target", &target), ("state", "parked")],
            )
            .await
                == Some(1.0)
        }
    })
    .await;
    assert!(counted, "the metrics count the parked job");
    assert_eq!(
        labeled_metric(
            addr,
            "receiver_forward_attempts_total",
            &[("target", &url), ("outcome", "parked")]
        )
        .await,
        Some(1.0)
    );

    // `show` gives the attempt: time, status, latency, the app's answer.
    let shown = forward_show(&store, job_id);
    assert_eq!(shown["state"], "parked");
    let log = shown["attemptLog"].as_array().unwrap();
    assert_eq!(log.len(), 1, "{shown}");
    assert_eq!(log[0]["status"], 400);
    assert_eq!(log[0]["error"], serde_json::Value::Null);
    assert_eq!(log[0]["outcome"], "parked");
    assert_eq!(
        log[0]["answer"],
        r#"{"error":"cannot handle the payload of poison-1"}"#
    );
    assert!(log[0]["latencyMs"].as_f64().unwrap() >= 0.0);
    assert!(log[0]["at"].as_str().unwrap().ends_with('Z'));
    let (code, text, stderr) = forward_cli(&store, &["show", &job_id.to_string()]);
    assert_eq!(code, Some(0), "{stderr}");
    for expected in [
        format!("job {job_id}  parked"),
        format!("target      {url}"),
        "last error  the app answered 400 Bad Request".to_owned(),
        "400 Bad Request".to_owned(),
        r#"answer: {"error":"cannot handle the payload of poison-1"}"#.to_owned(),
    ] {
        assert!(text.contains(&expected), "{expected:?} in\n{text}");
    }

    // The app is fixed; `retry` puts the job back at the end of the queue: after e3, before
    // what arrives next.
    app.forget("poison-1");
    let (code, stdout, stderr) = forward_cli(&store, &["retry", &job_id.to_string()]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains(&format!(
            "job {job_id} back at the end of the queue of {url}"
        )),
        "{stdout}"
    );
    assert!(app.wait_acknowledged(4, Duration::from_secs(15)).await);
    let reply = post(receiver.addr, "/webhook", &[], enrolment("e4")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(app.wait_acknowledged(5, Duration::from_secs(15)).await);
    assert_eq!(
        app.acknowledged_bodies(),
        bodies(&["e1", "e2", "e3", "poison-1", "e4"])
    );
    let shown = forward_show(&store, job_id);
    assert_eq!(shown["state"], "forwarded");
    let outcomes: Vec<&str> = shown["attemptLog"]
        .as_array()
        .unwrap()
        .iter()
        .map(|attempt| attempt["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["parked", "delivered"]);

    // What cannot be done is refused, and changes nothing.
    let (code, _, stderr) = forward_cli(&store, &["retry", &job_id.to_string()]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("forwarded already"), "{stderr}");
    let (code, _, stderr) = forward_cli(&store, &["skip", "999999", &job_id.to_string()]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("no forward job 999999") && stderr.contains("nothing was changed"),
        "{stderr}"
    );
    let (code, stdout, _) = forward_cli(&store, &["retry", "--all-parked"]);
    assert_eq!(code, Some(0));
    assert_eq!(stdout.trim(), "no parked job");
    receiver.kill();
}

for_each_store!(
    a_request_that_keeps_failing_holds_its_queue_with_the_backlog_in_the_metrics_until_skipped
);

async fn a_request_that_keeps_failing_holds_its_queue_with_the_backlog_in_the_metrics_until_skipped(
    test_store: TestStore,
) {
    let store = test_store.store_arg();
    // The CRM fails on one request with 503, which may pass: order first, it holds its queue.
    // The archive takes everything and is not held up by the CRM's trouble.
    let crm = FakeApp::start_at(free_addr(), 200).await;
    crm.answer_containing("stuck-1", 503, "down for maintenance");
    let archive = FakeApp::start_at(free_addr(), 200).await;
    let crm_url = format!("http://{}/crm", crm.addr);
    let archive_url = format!("http://{}/archive", archive.addr);
    let receiver = forwarding_receiver(&store, &[crm_url.clone(), archive_url.clone()]);
    for id in ["stuck-1", "s2", "s3"] {
        let reply = post(receiver.addr, "/webhook", &[], enrolment(id)).await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    assert!(archive.wait_acknowledged(3, Duration::from_secs(15)).await);
    let stuck = Bytes::from(enrolment("stuck-1"));
    let retried = wait_until(Duration::from_secs(15), || async {
        crm.requests()
            .iter()
            .filter(|request| request.body == stuck)
            .count()
            >= 4
    })
    .await;
    assert!(retried, "the failing request is tried again");
    assert!(
        crm.requests().iter().all(|request| request.body == stuck),
        "nothing overtakes it"
    );

    // The metrics show the CRM's backlog and how old it is; the archive has none.
    let addr = receiver.addr;
    let gauge = |name: &'static str, target: String, state: Option<&'static str>| async move {
        let mut labels = vec![("target", target.as_str())];
        if let Some(state) = state {
            labels.push(("state", state));
        }
        labeled_metric(addr, name, &labels).await
    };
    let backlog = wait_until(Duration::from_secs(10), || async {
        gauge("receiver_forward_jobs", crm_url.clone(), Some("pending")).await == Some(3.0)
            && gauge(
                "receiver_forward_oldest_pending_seconds",
                crm_url.clone(),
                None,
            )
            .await
            .is_some_and(|age| age >= 1.0)
    })
    .await;
    assert!(
        backlog,
        "3 wait at the CRM, the oldest for a second and more"
    );
    assert_eq!(
        gauge(
            "receiver_forward_jobs",
            archive_url.clone(),
            Some("pending")
        )
        .await,
        Some(0.0)
    );
    assert_eq!(
        gauge(
            "receiver_forward_oldest_pending_seconds",
            archive_url.clone(),
            None
        )
        .await,
        Some(0.0)
    );
    assert!(labeled_metric(
        addr,
        "receiver_forward_attempts_total",
        &[("target", &crm_url), ("outcome", "failed")]
    )
    .await
    .is_some_and(|failed| failed >= 3.0));
    assert_eq!(metric(addr, "receiver_forward_pending").await, Some(3.0));

    // The list says which job holds the queue, why, and when it is tried next.
    let pending = forward_list(&store, &["--target", &crm_url, "--state", "pending"]);
    let ids: Vec<String> = pending.iter().map(event_ids).collect();
    assert_eq!(ids, ["stuck-1", "s2", "s3"], "in queue order");
    let head = &pending[0];
    assert!(head["attempts"].as_i64().unwrap() >= 1, "{head}");
    assert_eq!(
        head["lastError"],
        "the app answered 503 Service Unavailable"
    );
    assert!(head["nextAttemptAt"].is_string(), "{head}");
    assert_eq!(pending[1]["attempts"], 0);

    // `skip` moves it out of the way: the queue goes on, in order.
    let stuck_job = head["id"].as_i64().unwrap();
    let (code, stdout, stderr) = forward_cli(&store, &["skip", &stuck_job.to_string()]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains(&format!("job {stuck_job} skipped")),
        "{stdout}"
    );
    assert!(crm.wait_acknowledged(2, Duration::from_secs(15)).await);
    assert_eq!(crm.acknowledged_bodies(), bodies(&["s2", "s3"]));
    let drained = wait_until(Duration::from_secs(10), || async {
        gauge("receiver_forward_jobs", crm_url.clone(), Some("pending")).await == Some(0.0)
            && gauge(
                "receiver_forward_oldest_pending_seconds",
                crm_url.clone(),
                None,
            )
            .await
                == Some(0.0)
    })
    .await;
    assert!(drained, "the backlog is gone from the metrics");
    let skipped = forward_list(&store, &["--state", "skipped"]);
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0]["id"], stuck_job);
    // Skipped stays skipped: the app never got it acknowledged, and it is not tried again.
    let tries_then = crm.requests().len();
    let (code, stdout, _) = forward_cli(&store, &["skip", &stuck_job.to_string()]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("skipped already"), "{stdout}");
    let reply = post(receiver.addr, "/webhook", &[], enrolment("s4")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(crm.wait_acknowledged(3, Duration::from_secs(15)).await);
    assert_eq!(crm.requests().len(), tries_then + 1, "only s4 came since");
    receiver.kill();
}
