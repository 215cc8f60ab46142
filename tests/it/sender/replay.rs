//! `sender replay` against the fake endpoint (SPEC section 4 and 5): a directory of capture
//! and envelope files, `--concurrency` as the endpoint measures it, `--mode resign` with
//! Basic credentials; a replay nobody answers, and the warning before a verbatim replay of
//! captures signed too long ago.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use verify::{BasicCredentials, CaptureRecord, Verdict};

use crate::support::endpoint::{FakeEndpoint, Received, Reply};

const SENDER: &str = env!("CARGO_BIN_EXE_it-sender");

/// Runs `sender --state DB ARGS` with `envs` to completion in a blocking thread, so the
/// endpoint in this runtime keeps answering.
async fn sender(db: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut command = Command::new(SENDER);
    command
        .arg("--state")
        .arg(format!("sqlite:{}", db.display()))
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("SENDER_BASIC_PASSWORD");
    for (name, value) in envs {
        command.env(name, value);
    }
    tokio::task::spawn_blocking(move || command.output().expect("run sender"))
        .await
        .expect("joined")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// An envelope of one event; `layout` varies the bytes (not the meaning) so byte-exactness
/// is what is tested.
fn body(event_id: &str, layout: usize) -> String {
    let compact = format!(
        r#"{{"accountId":1010,"events":[{{"eventId":"{event_id}","eventName":"COURSE_ENROLLMENT","timestamp":"2026-11-27T10:00:00.000Z","data":{{"userId":1}}}}]}}"#
    );
    match layout % 3 {
        0 => compact,
        1 => compact.replacen("{\"accountId\":1010,", "{ \"accountId\" : 1010 , ", 1),
        _ => compact.replace(",\"", ", \""),
    }
}

fn capture(body: &str, headers: &[(&str, &str)]) -> CaptureRecord {
    CaptureRecord {
        received_at_ms: 1_795_000_000_000,
        method: "POST".into(),
        path: "/webhook".into(),
        headers: headers
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect(),
        body: body.as_bytes().to_vec(),
        verdict: Verdict::Accepted,
        reason: None,
    }
}

fn bodies(received: &[Received]) -> Vec<String> {
    received.iter().map(|r| text(&r.body)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_of_capture_and_envelope_files_is_replayed_in_name_order_byte_exact() {
    let dir = tempfile::tempdir().expect("dir");
    let source = dir.path().join("captured");
    std::fs::create_dir(&source).expect("mkdir");
    let json = [("content-type", "application/json")];
    // Written out of order: files are read in name order, lines in file order.
    let pretty = "{\n  \"accountId\": 1010,\n  \"events\": [\n    {\"eventId\": \"e3\", \"eventName\": \"CI_STATS\", \"timestamp\": 1795000000000, \"data\": {}}\n  ]\n}";
    std::fs::write(source.join("2-envelope.json"), format!("{pretty}\n")).expect("write");
    std::fs::write(
        source.join("3-envelopes.ndjson"),
        format!("{}\n\n{}\n", body("e4", 0), body("e5", 1)),
    )
    .expect("write");
    std::fs::write(
        source.join("1-capture.jsonl"),
        format!(
            "{}\n{}\n",
            capture(&body("e1", 1), &json).to_json_line(),
            capture(&body("e2", 2), &json).to_json_line()
        ),
    )
    .expect("write");
    // Neither JSON nor named like it: skipped, not an error.
    std::fs::write(source.join("notes.txt"), "exported by hand, do not replay").expect("write");

    let endpoint = FakeEndpoint::start().await;
    // The third request is refused: the run fails and says which file it came from.
    endpoint.script([Reply::ok(), Reply::ok(), Reply::status(500)]);
    let report = dir.path().join("report.json");
    let output = sender(
        &dir.path().join("sender.db"),
        &[
            "replay",
            &source.display().to_string(),
            "--to",
            &endpoint.url(),
            "--report",
            &report.display().to_string(),
        ],
        &[],
    )
    .await;
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "one refused: {stdout}");

    let received = endpoint.received();
    assert_eq!(
        bodies(&received),
        [
            body("e1", 1),
            body("e2", 2),
            pretty.to_owned(),
            body("e4", 0),
            body("e5", 1)
        ],
        "every request of every file, in order, bytes as they stood"
    );
    assert!(received
        .iter()
        .all(|r| r.header("content-type") == Some("application/json")));
    assert!(stdout.contains("4 of 5 acknowledged"), "{stdout}");
    let origin = source.join("2-envelope.json").display().to_string();
    assert!(
        stdout.contains(&format!("not acknowledged: {origin}: 500")),
        "{stdout}"
    );
    let summary: Value =
        serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("JSON report");
    assert_eq!(
        (
            summary["attempted"].as_u64(),
            summary["acknowledged"].as_u64(),
            summary["byStatusClass"]["5xx"].as_u64()
        ),
        (Some(5), Some(4), Some(1))
    );
    assert_eq!(summary["failures"][0]["origin"], origin.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_bounds_the_requests_in_flight_and_is_used() {
    const REQUESTS: usize = 12;
    const CONCURRENCY: usize = 3;
    let dir = tempfile::tempdir().expect("dir");
    let lines: Vec<String> = (0..REQUESTS).map(|i| body(&format!("c{i}"), i)).collect();
    let source = dir.path().join("envelopes.jsonl");
    std::fs::write(&source, lines.join("\n") + "\n").expect("write");
    let endpoint = FakeEndpoint::start().await;
    // A slow endpoint: the sender's limit, not its speed, decides how many overlap.
    endpoint.answer(Reply::ok().delayed(Duration::from_millis(150)));

    let output = sender(
        &dir.path().join("sender.db"),
        &[
            "replay",
            &source.display().to_string(),
            "--to",
            &endpoint.url(),
            "--concurrency",
            &CONCURRENCY.to_string(),
        ],
        &[],
    )
    .await;
    assert!(output.status.success(), "{output:?}");
    let received = endpoint.received();
    let mut seen = bodies(&received);
    seen.sort();
    let mut expected = lines.clone();
    expected.sort();
    assert_eq!(seen, expected, "each request once");
    let most = endpoint.max_in_flight();
    assert!(
        most <= CONCURRENCY,
        "{most} requests in flight at once with --concurrency {CONCURRENCY}"
    );
    assert!(
        most >= 2,
        "--concurrency {CONCURRENCY} never had two requests in flight"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resign_with_basic_sends_the_given_credentials_instead_of_the_captured_ones() {
    let dir = tempfile::tempdir().expect("dir");
    let stale = BasicCredentials::new("old", "old-password").expect("credentials");
    let captured_body = body("r1", 1);
    let record = capture(
        &captured_body,
        &[
            ("content-type", "application/json"),
            ("authorization", &stale.authorization_header()),
            ("webhook-id", "msg_captured"),
            ("webhook-timestamp", "1795000000"),
            ("webhook-signature", "v1,c3RhbGU="),
        ],
    );
    let source = dir.path().join("capture.jsonl");
    std::fs::write(&source, record.to_json_line() + "\n").expect("write");
    let endpoint = FakeEndpoint::start().await;
    let db = dir.path().join("sender.db");
    let (source, to) = (source.display().to_string(), endpoint.url());
    let password = "pa ss:w0rd";
    let expected = BasicCredentials::new("crm", password).expect("credentials");

    // The password as a flag, and (with --auth basic) from SENDER_BASIC_PASSWORD.
    let flag = sender(
        &db,
        &[
            "replay",
            &source,
            "--to",
            &to,
            "--mode",
            "resign",
            "--username",
            "crm",
            "--password",
            password,
        ],
        &[],
    )
    .await;
    assert!(flag.status.success(), "{flag:?}");
    let env = sender(
        &db,
        &[
            "replay",
            &source,
            "--to",
            &to,
            "--mode",
            "resign",
            "--auth",
            "basic",
            "--username",
            "crm",
        ],
        &[("SENDER_BASIC_PASSWORD", password)],
    )
    .await;
    assert!(env.status.success(), "{env:?}");

    let received = endpoint.received();
    assert_eq!(received.len(), 2);
    for request in &received {
        let authorizations: Vec<&str> = request
            .headers
            .iter()
            .filter(|(name, _)| name == "authorization")
            .map(|(_, value)| value.as_str())
            .collect();
        assert_eq!(
            authorizations,
            [expected.authorization_header().as_str()],
            "one Authorization, the new credentials"
        );
        expected.verify(&request.headers).expect("Basic crm");
        assert!(
            request.header("webhook-signature").is_none(),
            "the captured signature is dropped"
        );
        assert_eq!(request.body, captured_body.as_bytes(), "same bytes");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resign_with_two_signature_files_of_one_scheme_sends_one_set_of_headers_both_verify() {
    let dir = tempfile::tempdir().expect("dir");
    // Two files of the same scheme, as during a rotation handed over as two downloads.
    let keyrings: Vec<verify::Keyring> = ["a", "b"]
        .iter()
        .map(|name| {
            let secret = verify::SigningSecret::generate();
            let keyring = verify::Keyring::single(secret.clone());
            let file = verify::SignatureFile::new(
                name,
                name,
                keyring.scheme(),
                &secret,
                verify::unix_now() - 60,
            );
            let path = dir.path().join(format!("{name}.json"));
            std::fs::write(&path, file.to_json_pretty()).expect("write");
            keyring
        })
        .collect();
    let source = dir.path().join("envelope.json");
    let sent_body = body("two-files", 0);
    std::fs::write(&source, &sent_body).expect("write");
    let endpoint = FakeEndpoint::start().await;
    let db = dir.path().join("sender.db");
    let (source, to) = (source.display().to_string(), endpoint.url());
    let (a, b) = (
        dir.path().join("a.json").display().to_string(),
        dir.path().join("b.json").display().to_string(),
    );
    let output = sender(
        &db,
        &[
            "replay",
            &source,
            "--to",
            &to,
            "--signature-file",
            &a,
            "--signature-file",
            &b,
        ],
        &[],
    )
    .await;
    assert!(output.status.success(), "{output:?}");
    let received = endpoint.received();
    assert_eq!(received.len(), 1);
    let request = &received[0];
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        let count = request.headers.iter().filter(|(n, _)| n == name).count();
        assert_eq!(count, 1, "one {name} header");
    }
    let signatures = request.header("webhook-signature").expect("signed");
    assert_eq!(signatures.split(' ').count(), 2, "{signatures}");
    // A receiver holding either file alone accepts the request.
    for keyring in &keyrings {
        keyring
            .verify(&request.headers, &request.body)
            .expect("verifies with each file's secret");
    }
    assert_eq!(request.body, sent_body.as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_nobody_answers_says_none_was_acknowledged_and_fails() {
    let dir = tempfile::tempdir().expect("dir");
    let lines: Vec<String> = (0..8).map(|i| body(&format!("n{i}"), i)).collect();
    let source = dir.path().join("envelopes.jsonl");
    std::fs::write(&source, lines.join("\n") + "\n").expect("write");
    // Bound once and released: a loopback port nobody listens on.
    let nobody = crate::support::receiver::free_addr();
    let to = format!("http://{nobody}/webhook");
    let source = source.display().to_string();
    let db = dir.path().join("sender.db");

    let output = sender(&db, &["replay", &source, "--to", &to], &[]).await;
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("0 of 8 acknowledged") && stdout.contains("8 got no answer"),
        "{stdout}"
    );
    assert!(
        stderr.contains("replay: 8/8 tried, 0 acknowledged"),
        "{stderr}"
    );
    for misleading in ["8/8 sent", "sent 8"] {
        assert!(
            !stdout.contains(misleading) && !stderr.contains(misleading),
            "says {misleading:?}: {stdout}\n{stderr}"
        );
    }

    let output = sender(&db, &["--json", "replay", &source, "--to", &to], &[]).await;
    assert_eq!(output.status.code(), Some(1));
    let summary: Value = serde_json::from_slice(&output.stdout).expect("JSON summary");
    assert_eq!(
        (
            summary["attempted"].as_u64(),
            summary["acknowledged"].as_u64(),
            summary["errors"].as_u64()
        ),
        (Some(8), Some(0), Some(8)),
        "{summary}"
    );
}

/// A capture of `body` signed with Standard Webhooks `seconds_ago`.
fn signed_capture(body: &str, seconds_ago: i64) -> CaptureRecord {
    let at = verify::unix_now() - seconds_ago;
    let secret = verify::SigningSecret::generate();
    let mut record = capture(body, &[("content-type", "application/json")]);
    record.received_at_ms = at * 1000;
    record
        .headers
        .extend(verify::Keyring::single(secret).sign_headers("msg_old", at, body.as_bytes()));
    record
}

/// A signature file whose `toleranceSeconds` is `tolerance`.
fn file_with_tolerance(dir: &Path, tolerance: i64) -> String {
    let mut file: Value = serde_json::from_str(
        &verify::SignatureFile::new(
            "wh_t",
            "tolerance",
            &verify::Scheme::default(),
            &verify::SigningSecret::generate(),
            verify::unix_now(),
        )
        .to_json_pretty(),
    )
    .expect("JSON");
    file["toleranceSeconds"] = Value::from(tolerance);
    let path = dir.join(format!("tolerance-{tolerance}.json"));
    std::fs::write(&path, file.to_string()).expect("write");
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verbatim_replay_warns_before_sending_captures_older_than_their_tolerance() {
    let dir = tempfile::tempdir().expect("dir");
    let source = dir.path().join("capture.jsonl");
    // Two signed an hour ago, one a minute ago, one envelope without a signature.
    std::fs::write(
        &source,
        format!(
            "{}\n{}\n{}\n{}\n",
            signed_capture(&body("old1", 0), 3600).to_json_line(),
            signed_capture(&body("new1", 1), 60).to_json_line(),
            signed_capture(&body("old2", 2), 4000).to_json_line(),
            body("bare", 0)
        ),
    )
    .expect("write");
    let endpoint = FakeEndpoint::start().await;
    let db = dir.path().join("sender.db");
    let (source, to) = (source.display().to_string(), endpoint.url());
    let replay = |extra: Vec<String>| {
        let mut args: Vec<String> = ["replay", &source, "--to", &to, "--mode", "verbatim"]
            .iter()
            .map(|arg| (*arg).to_owned())
            .collect();
        args.extend(extra);
        let db = db.clone();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            sender(&db, &args, &[]).await
        }
    };

    // The default window (300 s): two are stale, said once, before the first send.
    let output = replay(Vec::new()).await;
    assert!(output.status.success(), "{output:?}");
    let stderr = text(&output.stderr);
    let warning = stderr
        .find("2 of 4 capture(s) were signed more than 300 s ago (the oldest 4000 s)")
        .unwrap_or_else(|| panic!("no warning: {stderr}"));
    assert!(
        stderr.contains("timestamp_too_old") && stderr.contains("--mode resign"),
        "{stderr}"
    );
    assert!(
        warning < stderr.find("replay: 4/4 tried").expect("progress"),
        "the warning comes before sending: {stderr}"
    );
    assert_eq!(endpoint.received().len(), 4, "warned, not stopped");

    // A signature file's toleranceSeconds is the window: 7200 s passes all, 1800 s two.
    let wide = file_with_tolerance(dir.path(), 7200);
    let output = replay(vec!["--signature-file".into(), wide]).await;
    assert!(output.status.success(), "{output:?}");
    let stderr = text(&output.stderr);
    assert!(!stderr.contains("were signed more than"), "{stderr}");
    let narrow = file_with_tolerance(dir.path(), 1800);
    let output = replay(vec!["--signature-file".into(), narrow]).await;
    assert!(output.status.success(), "{output:?}");
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("2 of 4 capture(s) were signed more than 1800 s ago"),
        "{stderr}"
    );
    // Re-signing has nothing to warn of: every signature is fresh.
    let output = sender(&db, &["replay", &source, "--to", &to], &[]).await;
    assert!(output.status.success(), "{output:?}");
    assert!(!text(&output.stderr).contains("were signed more than"));
}
