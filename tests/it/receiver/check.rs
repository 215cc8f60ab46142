//! `receiver check`: one test per diagnosis, through the real command line. Captures are
//! written by the tests (with chosen times) or exported from a real receiver.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use http::StatusCode;
use verify::{CaptureRecord, Keyring, Scheme, SignatureFile, SigningSecret, Verdict};

use crate::support::receiver::{binary, run_cli, wait_until, InProcess};

/// When the captures of these tests arrived.
const ARRIVED: i64 = 1_795_000_000;
/// A body in the sender's form: compact, keys in the documented order.
const BODY: &str = r#"{"accountId":1010,"events":[{"eventId":"e1","eventName":"COURSE_ENROLLMENT","timestamp":"2026-11-18T08:26:40.000Z","eventInfo":"i-1","data":{"userId":1,"loId":"course:1","loInstanceId":"course:1_1","loType":"course","enrollmentSource":"SELF_ENROLL","dateEnrolled":"2026-11-18T08:26:40.000Z"}}]}"#;
/// The same JSON with the envelope's and the events' keys sorted, as some frameworks
/// re-serialise it.
const SORTED: &str = r#"{"accountId":1010,"events":[{"data":{"userId":1,"loId":"course:1","loInstanceId":"course:1_1","loType":"course","enrollmentSource":"SELF_ENROLL","dateEnrolled":"2026-11-18T08:26:40.000Z"},"eventId":"e1","eventInfo":"i-1","eventName":"COURSE_ENROLLMENT","timestamp":"2026-11-18T08:26:40.000Z"}]}"#;
/// Every object's keys sorted, `data` included. `verify` restores the documented order of the
/// envelope and event keys but not of `data`'s, so this one is called re-serialised without
/// the "DOES verify" proof.
const SORTED_DEEP: &str = r#"{"accountId":1010,"events":[{"data":{"dateEnrolled":"2026-11-18T08:26:40.000Z","enrollmentSource":"SELF_ENROLL","loId":"course:1","loInstanceId":"course:1_1","loType":"course","userId":1},"eventId":"e1","eventInfo":"i-1","eventName":"COURSE_ENROLLMENT","timestamp":"2026-11-18T08:26:40.000Z"}]}"#;

fn secret(fill: u8) -> SigningSecret {
    SigningSecret::from_bytes(vec![fill; 32]).unwrap()
}

/// A capture line of `body` with `headers`, received at `at_secs`.
fn capture(headers: Vec<(String, String)>, body: &str, at_secs: i64) -> String {
    CaptureRecord {
        received_at_ms: at_secs * 1000 + 123,
        method: "POST".into(),
        path: "/webhook".into(),
        headers,
        body: body.as_bytes().to_vec(),
        verdict: Verdict::Accepted,
        reason: None,
    }
    .to_json_line()
}

/// Headers signed with `secret` at `at_secs` for `body`.
fn signed(secret: SigningSecret, at_secs: i64, body: &str) -> Vec<(String, String)> {
    Keyring::single(secret).sign_headers("msg_1", at_secs, body.as_bytes())
}

/// A signature file of one secret with the given creation and expiry.
fn signature_file(
    dir: &Path,
    secret: &SigningSecret,
    created: i64,
    expires: Option<i64>,
) -> String {
    let mut file = SignatureFile::new("wh_1", "crm", &Scheme::default(), secret, created);
    file.secrets[0].expires_at = expires.map(verify::timestamp::format_iso_seconds);
    let path = dir.join(format!("sig-{created}-{}.json", expires.unwrap_or(0)));
    std::fs::write(&path, file.to_json_pretty()).unwrap();
    path.display().to_string()
}

/// Writes `lines` as a capture file and runs `receiver check FILE ARGS`.
fn check(dir: &Path, lines: &[String], args: &[&str]) -> (Option<i32>, String, String) {
    let path = dir.join("capture.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let path = path.display().to_string();
    let mut all = vec!["check", path.as_str()];
    all.extend_from_slice(args);
    run_cli(&all, &[])
}

fn assert_says(stdout: &str, needles: &[&str]) {
    for needle in needles {
        assert!(stdout.contains(needle), "missing {needle:?} in\n{stdout}");
    }
}

#[test]
fn accepted_capture_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let file = signature_file(dir.path(), &secret(1), ARRIVED - 86_400, None);
    let line = capture(signed(secret(1), ARRIVED, BODY), BODY, ARRIVED);
    let (code, stdout, stderr) = check(dir.path(), &[line], &["--signature-file", &file]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert_says(
        &stdout,
        &["  accepted  1 events", "1 checked, 1 accepted, 0 refused"],
    );
}

#[test]
fn missing_header_names_it_and_what_the_file_expects() {
    let dir = tempfile::tempdir().unwrap();
    let file = signature_file(dir.path(), &secret(1), ARRIVED - 86_400, None);
    let mut headers = signed(secret(1), ARRIVED, BODY);
    headers.retain(|(name, _)| name != "webhook-signature");
    let line = capture(headers, BODY, ARRIVED);
    let (code, stdout, _) = check(dir.path(), &[line], &["--signature-file", &file]);
    assert_eq!(code, Some(1), "{stdout}");
    assert_says(
        &stdout,
        &[
            "refused  missing_header:webhook-signature",
            "the request has no webhook-signature header",
            "expect webhook-signature, webhook-id, webhook-timestamp (standard-webhooks)",
            "another authentication method",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_capture_from_a_real_receiver_only_has_the_time_off() {
    let dir = tempfile::tempdir().unwrap();
    let file = signature_file(dir.path(), &secret(2), 0, None);
    let mut config = receiver::Config::for_tests(dir.path().join("r.db"));
    config.authentication = verify::Authentication::Signature(vec![Keyring::single(secret(2))]);
    let receiver = InProcess::start(config).await;
    // A verbatim replay of an hour-old request.
    let headers = signed(secret(2), verify::unix_now() - 3600, BODY);
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let reply = receiver.post(&headers, BODY).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(
        reply.error().starts_with("timestamp_too_old:36"),
        "{}",
        reply.error()
    );
    let db = receiver.db();
    let kept = wait_until(Duration::from_secs(10), || {
        let count: i64 = db
            .query_row("SELECT COUNT(*) FROM refused_requests", [], |row| {
                row.get(0)
            })
            .unwrap_or(0);
        async move { count == 1 }
    })
    .await;
    assert!(kept);
    drop(db);
    receiver.stop().await.unwrap();

    let store = format!("sqlite:{}", dir.path().join("r.db").display());
    let (code, exported, _) = run_cli(&["export", "--store", &store, "--verdict", "refused"], &[]);
    assert_eq!(code, Some(0));
    let (code, stdout, stderr) = check(
        dir.path(),
        &[exported.trim().to_owned()],
        &["--signature-file", &file],
    );
    assert_eq!(code, Some(1), "{stdout}");
    assert_says(
        &stdout,
        &[
            "refused  timestamp_too_old:36",
            "more than the 300 s tolerance",
            "s later",
            "the signature itself is valid: only the time is off",
        ],
    );
    assert!(
        stderr.starts_with("error: 1 of 1 requests would be refused"),
        "{stderr}"
    );
}

#[test]
fn expired_secret_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let file = signature_file(dir.path(), &secret(3), ARRIVED - 86_400, Some(ARRIVED - 60));
    let line = capture(signed(secret(3), ARRIVED, BODY), BODY, ARRIVED);
    let (code, stdout, _) = check(dir.path(), &[line], &["--signature-file", &file]);
    assert_eq!(code, Some(1));
    assert_says(
        &stdout,
        &[
            "refused  secret_expired",
            "no secret of the keyring was in force",
            "secret #0 expired at",
            "before the request was received",
        ],
    );
}

#[test]
fn a_secret_created_after_the_request_could_not_have_signed_it() {
    let dir = tempfile::tempdir().unwrap();
    // The team rotated and kept only the new secret's file; the capture is older.
    let file = signature_file(dir.path(), &secret(5), ARRIVED + 3600, None);
    let line = capture(signed(secret(4), ARRIVED, BODY), BODY, ARRIVED);
    let (code, stdout, _) = check(dir.path(), &[line], &["--signature-file", &file]);
    assert_eq!(code, Some(1));
    assert_says(
        &stdout,
        &[
            "refused  no_matching_signature",
            "secret #0 was created at",
            "after the request was received: the sender could not have used it",
        ],
    );
}

#[test]
fn re_serialised_bodies_are_recognised_and_the_rewritten_form_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let file = signature_file(dir.path(), &secret(6), 0, None);
    let value: serde_json::Value = serde_json::from_str(BODY).unwrap();
    let pretty = serde_json::to_string_pretty(&value).unwrap();
    let headers = signed(secret(6), ARRIVED, BODY);
    let lines = [
        capture(headers.clone(), &pretty, ARRIVED),
        capture(headers.clone(), SORTED, ARRIVED),
        capture(headers, SORTED_DEEP, ARRIVED),
    ];
    let (code, stdout, _) = check(dir.path(), &lines, &["--signature-file", &file, "--json"]);
    assert_eq!(code, Some(1));
    let reports: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let findings = |index: usize| -> String {
        let report = &reports[index];
        assert_eq!(report["verdict"], "refused");
        assert_eq!(report["reason"], "no_matching_signature");
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|finding| finding.as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let pretty_findings = findings(0);
    assert_says(&pretty_findings, &["whitespace differs", "DOES verify"]);
    let sorted_findings = findings(1);
    assert_says(
        &sorted_findings,
        &["not in the order the sender writes", "DOES verify"],
    );
    assert!(
        !sorted_findings.contains("whitespace differs"),
        "{sorted_findings}"
    );
    assert_says(&findings(2), &["not in the order the sender writes"]);
    assert!(reports[0]["source"]
        .as_str()
        .unwrap()
        .ends_with("capture.jsonl:1"));
    assert!(reports[1]["source"]
        .as_str()
        .unwrap()
        .ends_with("capture.jsonl:2"));
    assert!(reports[0]["checkedAt"]
        .as_str()
        .unwrap()
        .starts_with("2026-11-18T"));
    assert_eq!(reports[0]["captured"]["verdict"], "accepted");
}

#[test]
fn wrong_secret_with_an_untouched_body_blames_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let file = signature_file(dir.path(), &secret(8), 0, None);
    let line = capture(signed(secret(7), ARRIVED, BODY), BODY, ARRIVED);
    let (code, stdout, _) = check(dir.path(), &[line], &["--signature-file", &file]);
    assert_eq!(code, Some(1));
    assert_says(
        &stdout,
        &[
            "refused  no_matching_signature",
            "the body is in the sender's compact form",
            "the secret differs from the sender's",
            "on arrival the receiver accepted it",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_captures_say_the_credentials_were_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = receiver::Config::for_tests(dir.path().join("r.db"));
    let credentials = verify::BasicCredentials::new("crm", "s3cret").unwrap();
    let authorization = credentials.authorization_header();
    config.authentication = verify::Authentication::Basic(credentials);
    let receiver = InProcess::start(config).await;
    let reply = receiver
        .post(&[("authorization", &authorization)], BODY)
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    receiver.stop().await.unwrap();
    let store = format!("sqlite:{}", dir.path().join("r.db").display());
    let (_, exported, _) = run_cli(&["export", "--store", &store], &[]);
    assert!(exported.contains("Basic [redacted]"), "{exported}");
    assert!(!exported.contains("s3cret") && !exported.contains(&authorization[6..]));
    let basic = ["--basic-user", "crm", "--basic-password", "s3cret"];
    let (code, stdout, stderr) = check(dir.path(), &[exported.trim().to_owned()], &basic);
    assert_eq!(code, Some(1), "{stdout}");
    assert_says(
        &stdout,
        &[
            "unchecked  credentials_redacted",
            "credentials were redacted at capture; cannot re-check Basic",
            "1 checked, 0 accepted, 0 refused, 1 unchecked",
        ],
    );
    assert!(!stdout.contains("basic_malformed"), "{stdout}");
    assert!(stderr.contains("could not be re-checked"), "{stderr}");
}

#[test]
fn standard_input_bare_envelopes_and_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    // A pretty envelope on standard input: no headers, so checked without authentication.
    let value: serde_json::Value = serde_json::from_str(BODY).unwrap();
    let mut child = Command::new(binary())
        .args(["check", "-", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string_pretty(&value).unwrap().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    let reports: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(reports[0]["source"], "-");
    assert_eq!(reports[0]["verdict"], "accepted");
    assert_eq!(reports[0]["events"], 1);

    let (code, _, stderr) = run_cli(&["check", "/nonexistent/capture.jsonl"], &[]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.starts_with("error: reading /nonexistent/capture.jsonl"),
        "{stderr}"
    );
    let (code, _, stderr) = check(
        dir.path(),
        &[BODY.to_owned(), "{\"hello\":1}".to_owned()],
        &[],
    );
    assert_eq!(code, Some(2));
    assert!(stderr.contains("line 2"), "{stderr}");
    let (code, _, _) = run_cli(&["check"], &[]);
    assert_eq!(code, Some(2));
}
