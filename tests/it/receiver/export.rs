//! `receiver export`: capture JSON Lines of the kept requests, byte-identical bodies, accepted
//! by default, refused on request, filtered by verdict, account, event name and receive time.

use std::time::Duration;

use http::StatusCode;
use verify::{CaptureRecord, Verdict};

use crate::support::receiver::{run_cli, wait_until, InProcess};
use crate::support::store::{for_each_store, TestStore};

for_each_store!(filters_verdicts_and_byte_identical_bodies);

/// Pretty, with non-ASCII text, escapes and trailing whitespace: only the bytes tell.
const A1: &[u8] = "{ \"accountId\": 1,\n  \"events\": [ {\"eventId\":\"a1\",\"eventName\":\"COURSE_ENROLLMENT\",\"timestamp\":\"2026-11-27T10:00:00.000Z\",\"data\":{\"userId\":1,\"name\":\"Jörg \\u00e9\\n\"}} ] }  \n".as_bytes();
const A2: &[u8] = br#"{"accountId":2,"events":[{"eventId":"a2","eventName":"LEARNER_PROGRESS","timestamp":1727414643000,"data":{"userId":2,"progressPercent":40}}]}"#;
/// Refused (empty eventId) but readable: account 1, a COURSE_ENROLLMENT.
const R1: &[u8] = br#"{"accountId":1,"events":[{"eventId":"","eventName":"COURSE_ENROLLMENT","timestamp":1,"data":{}}]}"#;
const A3: &[u8] = br#"{"accountId":1,"events":[{"eventId":"a3","eventName":"COURSE_COMPLETED_BATCH","timestamp":1,"data":{}},{"eventId":"a3b","eventName":"LEARNER_PROGRESS","timestamp":2,"data":{}}]}"#;
/// Not UTF-8: exported base64, still byte-identical.
const R2: &[u8] = b"\xff\xfe{not json";

fn export(store: &str, args: &[&str]) -> Vec<CaptureRecord> {
    let mut all = vec!["export", "--store", store];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = run_cli(&all, &[]);
    assert_eq!(code, Some(0), "{args:?}: {stderr}");
    stdout
        .lines()
        .map(|line| CaptureRecord::from_json_line(line).unwrap())
        .collect()
}

fn bodies(records: &[CaptureRecord]) -> Vec<&[u8]> {
    records
        .iter()
        .map(|record| record.body.as_slice())
        .collect()
}

async fn filters_verdicts_and_byte_identical_bodies(store: TestStore) {
    let receiver = InProcess::start(store.config()).await;
    assert_eq!(receiver.post(&[], A1).await.status, StatusCode::OK);
    assert_eq!(receiver.post(&[], A2).await.status, StatusCode::OK);
    assert_eq!(receiver.post(&[], R1).await.status, StatusCode::BAD_REQUEST);
    // A point in time strictly between the first three requests and the rest.
    let middle = verify::unix_now_ms() + 1;
    let clock_passed = wait_until(Duration::from_secs(5), || async {
        verify::unix_now_ms() > middle
    })
    .await;
    assert!(clock_passed);
    assert_eq!(receiver.post(&[], A3).await.status, StatusCode::OK);
    // All duplicates: acknowledged and kept as a request, so it is exported too.
    assert_eq!(receiver.post(&[], A2).await.json()["duplicates"], 1);
    assert_eq!(receiver.post(&[], R2).await.status, StatusCode::BAD_REQUEST);
    let kept = wait_until(Duration::from_secs(10), || async {
        store.scalar("SELECT COUNT(*) FROM {refused}").await == 2
    })
    .await;
    assert!(kept);
    receiver.stop().await.unwrap();
    let dir = store.dir().to_owned();
    let store = store.store_arg();

    // Accepted only, by default, in arrival order, bytes as POSTed.
    let accepted = export(&store, &[]);
    assert_eq!(bodies(&accepted), vec![A1, A2, A3, A2]);
    assert!(accepted
        .iter()
        .all(|r| r.verdict == Verdict::Accepted && r.reason.is_none()));
    assert!(accepted
        .iter()
        .all(|r| r.method == "POST" && r.path == "/webhook"));
    assert!(accepted[0]
        .headers
        .iter()
        .any(|(name, value)| name == "content-type" && value == "application/json"));

    // Refused too, with their reasons; the non-UTF-8 body survives byte for byte.
    let all = export(&store, &["--include-refused"]);
    assert_eq!(all.len(), 6);
    assert_eq!(bodies(&export(&store, &["--verdict", "all"])), bodies(&all));
    let refused = export(&store, &["--verdict", "refused"]);
    assert_eq!(bodies(&refused), vec![R1, R2]);
    assert_eq!(refused[0].reason.as_deref(), Some("invalid_envelope"));
    assert_eq!(refused[1].reason.as_deref(), Some("invalid_json"));
    let (_, stdout, _) = run_cli(&["export", "--store", &store, "--verdict", "refused"], &[]);
    assert!(stdout.contains("\"bodyEncoding\":\"base64\""), "{stdout}");

    // Account, event name and receive time.
    assert_eq!(bodies(&export(&store, &["--account", "1"])), vec![A1, A3]);
    assert_eq!(
        bodies(&export(&store, &["--account", "1", "--include-refused"])),
        vec![A1, R1, A3]
    );
    assert_eq!(
        bodies(&export(&store, &["--event-name", "LEARNER_PROGRESS"])),
        vec![A2, A3, A2]
    );
    assert_eq!(
        bodies(&export(
            &store,
            &["--event-name", "COURSE_ENROLLMENT", "--verdict", "all"]
        )),
        vec![A1, R1]
    );
    let middle = middle.to_string();
    assert_eq!(bodies(&export(&store, &["--since", &middle])), vec![A3, A2]);
    assert_eq!(
        bodies(&export(&store, &["--until", &middle, "--include-refused"])),
        vec![A1, A2, R1]
    );
    assert!(export(&store, &["--since", "2999-01-01"]).is_empty());

    // --out writes the same lines to a file.
    let out = dir.join("capture.jsonl");
    let out_arg = out.display().to_string();
    let (code, stdout, stderr) = run_cli(
        &[
            "export",
            "--store",
            &store,
            "--include-refused",
            "--out",
            &out_arg,
        ],
        &[],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.is_empty());
    assert!(stderr.contains("exported 6 requests"), "{stderr}");
    let (_, expected, _) = run_cli(&["export", "--store", &store, "--include-refused"], &[]);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), expected);

    // Bad usage exits 2.
    for args in [
        vec!["--since", "soon"],
        vec!["--include-refused", "--verdict", "accepted"],
        vec!["--verdict", "maybe"],
    ] {
        let mut all = vec!["export", "--store", store.as_str()];
        all.extend(args.iter().copied());
        let (code, _, stderr) = run_cli(&all, &[]);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
    }
}
