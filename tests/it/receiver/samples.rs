//! The documented Learning Manager payload forms are accepted and stored as sent, byte for
//! byte; `receiver events` and `receiver export` give them back.

use http::StatusCode;

use crate::support::receiver::{run_cli, InProcess};

/// The SPEC sample as documented: pretty-printed, epoch-ms timestamp, batch event.
const DOCUMENTED: &str = r#"{"accountId": 1010,
 "events": [{"eventId": "d5fb7071-10a9-46b2-9f9e-79dde346c052",
             "eventName": "COURSE_ENROLLMENT_BATCH",
             "timestamp": 1727414643000,
             "eventInfo": "1727414643000-047210-84242-0",
             "data": {"userId": 4279332, "loId": "course:7374992",
                      "loInstanceId": "course:7376092_10250977", "loType": "course",
                      "enrollmentSource": "ADMIN_ENROLL", "dateEnrolled": 1727414643}}]}"#;

/// Today's form: ISO timestamps, real-time event.
const ISO: &str = r#"{"accountId":1010,"events":[{"eventId":"e6a1c3de-0d0c-4d7a-9a57-0b1b2c3d4e5f","eventName":"COURSE_COMPLETED","timestamp":"2024-11-08T03:49:52.000Z","eventInfo":"1731037792000-1-2-0","data":{"userId":4279332,"loId":"course:7374992","loInstanceId":"course:7374992_10250977","loType":"course","enrollmentSource":"SELF_ENROLL","dateCompleted":"2024-11-08T03:49:50.000Z","hasPassed":true}}]}"#;

/// No `eventInfo`, epoch seconds, learner progress.
const NO_EVENT_INFO: &str = r#"{"accountId":2020,"events":[{"eventId":"lp-1","eventName":"LEARNER_PROGRESS","timestamp":1727414643,"data":{"userId":7,"loId":"learningProgram:55","loInstanceId":"learningProgram:55_66","loType":"learningProgram","dateStarted":1727400000,"progressPercent":40}}]}"#;

/// User-group answers echo the original request, with unicode escapes kept as sent.
const USER_GROUP: &str = r#"{"accountId":1010,"events":[{"eventId":"ug-1","eventName":"RESPONSE:ASYNCAPI_USERGROUP_USER_ADDED","timestamp":"2024-11-08T03:50:00.000Z","data":{"status":"SUCCESS","request":{"userGroupId":"ug:9","users":[{"id":"12","name":"J\u00f6rg"}]}}},{"eventId":"ug-2","eventName":"RESPONSE:ASYNCAPI_USERGROUP_USER_REMOVED","timestamp":"2024-11-08T03:50:01.000Z","data":{"status":"SUCCESS","request":{"userGroupId":"ug:9","users":[{"id":"13"}]}}}]}"#;

/// Several events in one request, with an unknown name and extra fields.
const BATCH: &str = "{\"accountId\":1010,\"extra\":{\"k\":1},\"events\":[\n  {\"eventId\":\"b-1\",\"eventName\":\"LEARNING_PATH_ENROLLMENT_BATCH\",\"timestamp\":1727414643000,\"eventInfo\":\"x\",\"data\":{\"userId\":1,\"loId\":\"learningProgram:1\",\"loInstanceId\":\"learningProgram:1_1\",\"loType\":\"learning_program\",\"enrollmentSource\":\"MANAGER_ENROLL\",\"dateEnrolled\":1727414643000}},\n  {\"eventId\":\"b-2\",\"eventName\":\"CERTIFICATION_COMPLETED_BATCH\",\"timestamp\":\"2024-11-08T04:00:00.000Z\",\"data\":{\"userId\":2,\"loId\":\"certification:3\",\"loInstanceId\":\"certification:3_4\",\"loType\":\"certification\",\"enrollmentSource\":\"SELF_ENROLL\",\"dateCompleted\":\"2024-11-08T04:00:00.000Z\"},\"future\":true},\n  {\"eventId\":\"b-3\",\"eventName\":\"SOMETHING_NEW_2027\",\"timestamp\":1727414700000,\"data\":{}}\n]}";

const SAMPLES: &[&str] = &[DOCUMENTED, ISO, NO_EVENT_INFO, USER_GROUP, BATCH];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documented_payloads_are_stored_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = InProcess::start_in(dir.path()).await;
    for sample in SAMPLES {
        let reply = receiver.post(&[], *sample).await;
        assert_eq!(reply.status, StatusCode::OK, "{sample}");
        assert_eq!(reply.json()["duplicates"], 0);
    }
    let db = receiver.db();
    let bodies: Vec<Vec<u8>> = db
        .prepare("SELECT body FROM requests ORDER BY id")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let sent: Vec<Vec<u8>> = SAMPLES.iter().map(|s| s.as_bytes().to_vec()).collect();
    assert_eq!(bodies, sent, "bodies are the received bytes");

    // Each raw event is the exact slice of its body, with its whitespace and escapes (the
    // store keeps it as offsets into the body).
    let rows: Vec<(String, String, i64, bool, String)> = db
        .prepare(
            "SELECT e.event_id, e.event_name, e.timestamp_ms, e.known,
                    CAST(substr(r.body, e.raw_start + 1, e.raw_length) AS TEXT)
             FROM events e JOIN requests r ON r.id = e.request_id ORDER BY e.id",
        )
        .unwrap()
        .query_map([], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows.len(), 8);
    for (event_id, _, _, _, raw) in &rows {
        assert!(
            SAMPLES.iter().any(|sample| sample.contains(raw.as_str())),
            "{event_id}: {raw}"
        );
        assert!(raw.starts_with('{') && raw.ends_with('}'));
    }
    let summary: Vec<(&str, i64, bool)> = rows
        .iter()
        .map(|(id, _, ms, known, _)| (id.as_str(), *ms, *known))
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "d5fb7071-10a9-46b2-9f9e-79dde346c052",
                1_727_414_643_000,
                true
            ),
            (
                "e6a1c3de-0d0c-4d7a-9a57-0b1b2c3d4e5f",
                1_731_037_792_000,
                true
            ),
            ("lp-1", 1_727_414_643_000, true),
            ("ug-1", 1_731_037_800_000, true),
            ("ug-2", 1_731_037_801_000, true),
            ("b-1", 1_727_414_643_000, true),
            ("b-2", 1_731_038_400_000, true),
            ("b-3", 1_727_414_700_000, false),
        ]
    );
    assert!(rows[3].4.contains(r#""name":"J\u00f6rg""#), "escape kept");
    receiver.stop().await.unwrap();

    // The command line reads the same store.
    let store = format!("sqlite:{}", dir.path().join("receiver.db").display());
    let (code, stdout, stderr) = run_cli(&["events", "list", "--store", &store, "--json"], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    let listed: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 8);
    assert_eq!(listed[0]["accountId"], 1010);
    assert_eq!(listed[0]["eventId"], "d5fb7071-10a9-46b2-9f9e-79dde346c052");
    assert_eq!(listed[0]["eventName"], "COURSE_ENROLLMENT_BATCH");
    assert_eq!(listed[0]["timestamp"], 1_727_414_643_000_i64);
    assert!(listed[0]["receivedAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(listed[7]["known"], false);
    for (row, item) in rows.iter().zip(listed) {
        assert_eq!(
            item["raw"].as_str().unwrap(),
            row.4,
            "raw exactly as received"
        );
    }

    let list = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["events", "list", "--store", &store, "--json"];
        all.extend_from_slice(args);
        let (code, stdout, stderr) = run_cli(&all, &[]);
        assert_eq!(code, Some(0), "{stderr}");
        let value: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        value
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item["eventId"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(list(&["--account", "2020"]), vec!["lp-1"]);
    assert_eq!(
        list(&[
            "--event-name",
            "RESPONSE:ASYNCAPI_USERGROUP_USER_ADDED",
            "--event-name",
            "LEARNER_PROGRESS"
        ]),
        vec!["lp-1", "ug-1"]
    );
    assert_eq!(
        list(&[
            "--since",
            "2024-11-08T03:50:00Z",
            "--until",
            "2024-11-08T04:00:00Z"
        ]),
        vec!["ug-1", "ug-2"]
    );
    assert_eq!(list(&["--until", "1727414643001"]).len(), 3);

    let (code, stdout, _) = run_cli(&["events", "count", "--store", &store, "--json"], &[]);
    assert_eq!(code, Some(0));
    assert_eq!(stdout.trim(), r#"{"count":8}"#);
    let (_, stdout, _) = run_cli(
        &[
            "events",
            "count",
            "--store",
            &store,
            "--json",
            "--account",
            "1010",
        ],
        &[("RECEIVER_STORE", "sqlite:/nonexistent")],
    );
    assert_eq!(stdout.trim(), r#"{"count":7}"#);
    let (code, stdout, _) = run_cli(
        &["events", "count", "--json"],
        &[("RECEIVER_STORE", store.as_str())],
    );
    assert_eq!(
        (code, stdout.trim()),
        (Some(0), r#"{"count":8}"#),
        "RECEIVER_STORE"
    );

    let (code, stdout, _) = run_cli(
        &["events", "show", "ug-2", "--store", &store, "--json"],
        &[],
    );
    assert_eq!(code, Some(0));
    let shown: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        shown["eventName"],
        "RESPONSE:ASYNCAPI_USERGROUP_USER_REMOVED"
    );
    let (code, _, stderr) = run_cli(&["events", "show", "nope", "--store", &store], &[]);
    assert_eq!(code, Some(1));
    assert!(stderr.starts_with("error: no stored event"), "{stderr}");

    let (code, stdout, _) = run_cli(&["export", "--store", &store], &[]);
    assert_eq!(code, Some(0));
    let exported: Vec<verify::CaptureRecord> = stdout
        .lines()
        .map(|line| verify::CaptureRecord::from_json_line(line).unwrap())
        .collect();
    let exported_bodies: Vec<Vec<u8>> = exported.iter().map(|r| r.body.clone()).collect();
    assert_eq!(exported_bodies, sent);
    assert!(exported
        .iter()
        .all(|r| r.verdict == verify::Verdict::Accepted));
}

#[test]
fn events_commands_fail_clearly_on_a_missing_store() {
    let (code, _, stderr) = run_cli(
        &["events", "list", "--store", "sqlite:/nonexistent/r.db"],
        &[],
    );
    assert_eq!(code, Some(2));
    assert!(
        stderr.starts_with("error: no store at /nonexistent/r.db"),
        "{stderr}"
    );
    let (code, _, stderr) = run_cli(&["events", "list", "--since", "soon"], &[]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("--since"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_then_check_gives_the_same_verdicts_offline() {
    let dir = tempfile::tempdir().unwrap();
    let now = verify::unix_now();
    let secret = verify::SigningSecret::generate();
    let file = verify::SignatureFile::new("wh_1", "crm", &verify::Scheme::default(), &secret, now);
    let signature_path = dir.path().join("sig.json");
    std::fs::write(&signature_path, file.to_json_pretty()).unwrap();
    let mut config = receiver::Config::for_tests(dir.path().join("r.db"));
    config.authentication = verify::Authentication::Signature(vec![file.keyring().unwrap()]);
    let receiver = InProcess::start(config).await;
    let keyring = verify::Keyring::single(secret);
    let signed = |body: &str| keyring.sign_headers("msg", now, body.as_bytes());
    for body in [ISO, NO_EVENT_INFO, "{\"accountId\":"] {
        let headers = signed(body);
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        receiver.post(&headers, body).await;
    }
    assert_eq!(
        receiver.post(&[], ISO).await.status,
        StatusCode::UNAUTHORIZED
    );
    // Refusals are kept off the answer path: wait (bounded) until both are written.
    let db = receiver.db();
    let kept = crate::support::receiver::wait_until(std::time::Duration::from_secs(10), || {
        let count: i64 = db
            .query_row("SELECT COUNT(*) FROM refused_requests", [], |row| {
                row.get(0)
            })
            .unwrap_or(0);
        async move { count == 2 }
    })
    .await;
    assert!(kept);
    drop(db);
    receiver.stop().await.unwrap();

    let store = format!("sqlite:{}", dir.path().join("r.db").display());
    let capture = dir.path().join("capture.jsonl");
    let capture_arg = capture.display().to_string();
    let (code, _, stderr) = run_cli(
        &[
            "export",
            "--store",
            &store,
            "--include-refused",
            "--out",
            &capture_arg,
        ],
        &[],
    );
    assert_eq!(code, Some(0), "{stderr}");
    let signature_arg = signature_path.display().to_string();
    let (code, stdout, stderr) = run_cli(
        &["check", &capture_arg, "--signature-file", &signature_arg],
        &[],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stdout.ends_with("4 checked, 2 accepted, 2 refused\n"),
        "{stdout}"
    );
    assert!(stdout.contains("refused  invalid_json"), "{stdout}");
    assert!(
        stdout.contains("refused  missing_header:webhook-id"),
        "{stdout}"
    );
    assert!(
        stderr.starts_with("error: 2 of 4 requests would be refused"),
        "{stderr}"
    );

    // Bare envelopes in a directory, no authentication: all pass.
    let envelopes = dir.path().join("envelopes");
    std::fs::create_dir(&envelopes).unwrap();
    std::fs::write(envelopes.join("a.json"), DOCUMENTED).unwrap();
    std::fs::write(envelopes.join("b.jsonl"), format!("{ISO}\n{BATCH_LINE}\n")).unwrap();
    let (code, stdout, _) = run_cli(&["check", &envelopes.display().to_string(), "--json"], &[]);
    assert_eq!(code, Some(0), "{stdout}");
    let verdicts: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let events: Vec<u64> = verdicts
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["events"].as_u64().unwrap())
        .collect();
    assert_eq!(events, vec![1, 1, 2]);
}

/// Two events on one line, for JSON Lines input.
const BATCH_LINE: &str = r#"{"accountId":5,"events":[{"eventId":"l1","eventName":"CI_STATS","timestamp":1,"data":{}},{"eventId":"l2","eventName":"CI_STATS","timestamp":2,"data":{}}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captured_headers_keep_the_order_they_arrived_in_with_repeats_interleaved() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = crate::support::receiver::InProcess::start_in(dir.path()).await;
    // Two pipelined requests on one connection, the second with a chunked body, then a close.
    let first = crate::support::receiver::envelope(1010, &["order-1"]);
    let second = crate::support::receiver::envelope(1010, &["order-2"]);
    let wire = format!(
        "POST /webhook HTTP/1.1\r\nHost: x\r\nX-Trace: a\r\nContent-Type: application/json\r\n\
         X-Other: 1\r\nX-Trace: b\r\nContent-Length: {}\r\n\r\n{first}\
         POST /webhook HTTP/1.1\r\nX-Trace: c\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\
         Content-Type: application/json\r\nX-Trace: d\r\nConnection: close\r\n\r\n{:x}\r\n{second}\r\n0\r\n\r\n",
        first.len(),
        second.len()
    );
    let answers = crate::support::receiver::raw_exchange(receiver.addr, wire.as_bytes()).await;
    assert_eq!(answers.matches("HTTP/1.1 200").count(), 2, "{answers}");
    let headers: Vec<String> = receiver
        .db()
        .prepare("SELECT headers FROM requests ORDER BY id")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        headers[0],
        format!(
            r#"[["host","x"],["x-trace","a"],["content-type","application/json"],["x-other","1"],["x-trace","b"],["content-length","{}"]]"#,
            first.len()
        )
    );
    assert_eq!(
        headers[1],
        r#"[["x-trace","c"],["host","x"],["transfer-encoding","chunked"],["content-type","application/json"],["x-trace","d"],["connection","close"]]"#
    );
    receiver.stop().await.unwrap();
}
