//! What a CRM developer ran into in the inspector while answering "did learner 4279332's
//! course completion arrive, and when?" (issue 25), each item with its test, on both stores:
//! a refused request's events are not called duplicates, and so on down the list.

use http::StatusCode;
use verify::{Keyring, SigningSecret};

use crate::support::inspector::Inspected;
use crate::support::receiver::{run_cli, wait_until};
use crate::support::store::{for_each_store, TestStore};

for_each_store!(a_refused_requests_events_are_not_stored_never_duplicate,);

/// A receiver that checks Standard Webhooks signatures with `secret`, and its inspector.
async fn signed_receiver(store: &TestStore, secret: &SigningSecret) -> Inspected {
    let mut config = store.config();
    config.authentication =
        verify::Authentication::Signature(vec![Keyring::single(secret.clone())]);
    Inspected::start(config).await
}

/// One event of a course completion for `user`.
fn completion(event_id: &str, user: i64) -> String {
    format!(
        r#"{{"accountId":1010,"events":[{{"eventId":"{event_id}","eventName":"COURSE_COMPLETED","timestamp":"2026-11-27T10:00:00.000Z","data":{{"userId":{user},"loId":"course:7374992","loType":"course","enrollmentSource":"ADMIN_ENROLL","dateCompleted":"2026-11-27T10:00:00.000Z","hasPassed":true}}}}]}}"#
    )
}

/// Waits until the store keeps `count` refused requests (they are written after the answer).
async fn refused_kept(store: &TestStore, count: i64) {
    let kept = wait_until(std::time::Duration::from_secs(10), || async {
        store.scalar("SELECT COUNT(*) FROM {refused}").await == count
    })
    .await;
    assert!(kept, "refused requests kept");
}

async fn a_refused_requests_events_are_not_stored_never_duplicate(store: TestStore) {
    let secret = SigningSecret::generate();
    let inspected = signed_receiver(&store, &secret).await;
    // Signed with another secret: refused, nothing stored.
    let forged = completion("e-forged-1", 4279332);
    let headers = Keyring::single(SigningSecret::generate()).sign_headers(
        "msg_forged",
        verify::unix_now(),
        forged.as_bytes(),
    );
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    let reply = inspected.post(&headers, forged).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    refused_kept(&store, 1).await;

    let page = inspected.page("/requests/r1").await;
    assert!(
        page.contains("<td><code>e-forged-1</code></td>"),
        "the event is listed: {page}"
    );
    assert!(
        page.contains("<td>not stored (refused)</td>"),
        "its state says it was not stored: {page}"
    );
    assert!(!page.contains("<td>duplicate</td>"), "{page}");
    // What the command line says about it agrees.
    let (code, _, stderr) = run_cli(
        &[
            "events",
            "show",
            "e-forged-1",
            "--store",
            &store.store_arg(),
        ],
        &[],
    );
    assert_eq!(code, Some(1));
    assert!(stderr.contains("no stored event"), "{stderr}");
    inspected.stop().await;
}
