//! Cross-check: Python's `standardwebhooks` package (not our code) verifies every request the
//! sender signs, for every catalogue event, before and during a secret rotation.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use sender::registry::{Auth, AuthMethod};

use super::{fast_config, Harness, Spawned};

const LISTENER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/py/standardwebhooks_listener.py"
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_standardwebhooks_verifies_every_signed_request() {
    if !crate::support::external::python_module(
        "standardwebhooks",
        "standardwebhooks",
        "the cross-check with Python's standardwebhooks",
    ) {
        return;
    }
    let harness = Harness::new();
    // The URL is set once the listener knows its port.
    let webhook = harness.add("http://127.0.0.1:9/placeholder", "all", |c| {
        c.auth = Some(AuthMethod::Signature);
    });
    // Rotate first in a copy so the listener knows both secrets, but the sender signs with the
    // first alone until the rotation is stored.
    let Auth::Signature(original) = webhook.auth.clone() else {
        panic!("signature webhook")
    };
    let mut rotated = original.clone();
    rotated.rotate(&verify::SigningSecret::generate(), verify::unix_now(), 3600);
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("sig.json");
    std::fs::write(&file, rotated.to_json_pretty()).expect("write");

    let mut listener = Spawned::spawn(Command::new("python3").arg(LISTENER).arg(&file));
    let first = listener.next_line(Duration::from_secs(20)).await;
    let url = first
        .strip_prefix("listening on ")
        .expect("banner")
        .to_owned();

    let mut stored = harness.state.webhook(&webhook.id).expect("r").expect("w");
    stored.url = url.parse().expect("a Target URL");
    harness
        .state
        .update_webhook(&stored, stored.updated_at_ms)
        .expect("update");
    let mut names = 0;
    for (index, kind) in verify::CATALOG.iter().enumerate() {
        harness.enqueue(kind.name, 2, index as u64);
        names += 1;
    }
    harness.drain(fast_config(), &[&webhook.id]).await;
    stored.auth = Auth::Signature(rotated);
    harness
        .state
        .update_webhook(&stored, stored.updated_at_ms)
        .expect("rotate");
    harness.enqueue("COURSE_ENROLLMENT", 3, 99);
    harness.drain(fast_config(), &[&webhook.id]).await;

    // Batch events share requests (up to the batch size), so count events, not requests.
    let expected_events = names * 2 + 3;
    let mut verdicts: Vec<Value> = Vec::new();
    let mut events = 0;
    while events < expected_events {
        let line = listener.next_line(Duration::from_secs(20)).await;
        let verdict: Value = serde_json::from_str(&line).expect("JSON verdict");
        events += verdict["events"].as_u64().expect("n") as usize;
        verdicts.push(verdict);
    }
    assert_eq!(events, expected_events, "every event verified");
    let expected_requests = verdicts.len();
    let (before, during) = verdicts.split_at(expected_requests - 3);
    for verdict in before {
        assert_eq!(verdict["verifiedBy"], serde_json::json!([0]), "{verdict}");
    }
    for verdict in during {
        assert_eq!(
            verdict["verifiedBy"],
            serde_json::json!([0, 1]),
            "{verdict}"
        );
    }
    assert_eq!(
        harness.state.counts(None).expect("c").delivered as usize,
        expected_requests
    );
    drop(listener.child.stdin.take());
    assert!(listener.wait(Duration::from_secs(10)).await.success());
}
