//! Capture, export, check and replay across the two programs (issue 5):
//! - traffic from the sender, captured by one receiver, exported and replayed re-signed into a
//!   second receiver, arrives byte-identical and verified;
//! - a verbatim replay of a capture older than the tolerance is warned of before it is sent,
//!   refused with `timestamp_too_old`, and `receiver check` explains it;
//! - re-signing skips what the first receiver refused, so a forgery captured there is not
//!   laundered into a second receiver as signed (issue 20, item 14);
//! - `--rate 200` for 5 seconds sends 1000 requests on schedule.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use verify::{
    CaptureRecord, EventGenerator, Keyring, Scheme, SignatureFile, SigningSecret, Verdict,
};

use crate::support::endpoint::FakeEndpoint;
use crate::support::receiver::{envelope, post, run_cli, Process};

/// Runs `sender ARGS` to completion: (exit code, stdout, stderr).
fn run_sender(state: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    crate::sender::sender_output(&format!("sqlite:{}", state.display()), args)
}

fn ok(result: (Option<i32>, String, String), what: &str) -> String {
    let (code, stdout, stderr) = result;
    assert_eq!(code, Some(0), "{what}: stdout {stdout}\nstderr {stderr}");
    stdout
}

fn start_receiver(store: &Path, signature_file: &Path) -> Process {
    let store = format!("sqlite:{}", store.display());
    let file = signature_file.display().to_string();
    Process::spawn(
        &[
            "listen",
            "--listen",
            "127.0.0.1:0",
            "--store",
            &store,
            "--output",
            "quiet",
            "--signature-file",
            &file,
        ],
        &[],
    )
}

/// The bodies of a capture file, in order.
fn capture_bodies(text: &str) -> Vec<Vec<u8>> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            CaptureRecord::from_json_line(line)
                .expect("capture line")
                .body
        })
        .collect()
}

fn export(store: &Path, extra: &[&str]) -> String {
    let store = format!("sqlite:{}", store.display());
    let mut args = vec!["export", "--store", &store];
    args.extend_from_slice(extra);
    ok(run_cli(&args, &[]), "receiver export")
}

fn write_signature_file(path: &Path, secret: &SigningSecret) {
    let file = SignatureFile::new(
        "wh_test",
        "replay test",
        &Scheme::default(),
        secret,
        verify::unix_now(),
    );
    std::fs::write(path, file.to_json_pretty()).expect("write signature file");
}

#[test]
fn sender_traffic_captured_exported_and_resigned_arrives_byte_identical() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("sender.db");
    let capture_file = dir.path().join("capture.jsonl");
    let first_file = dir.path().join("first.json");
    let second_file = dir.path().join("second.json");

    // The sender's own webhook and secret; the first receiver verifies with its file.
    let added = ok(
        run_sender(
            &state,
            &[
                "webhooks",
                "add",
                "--name",
                "crm",
                "--url",
                "http://127.0.0.1:9/webhook",
                "--auth",
                "signature",
                "--events",
                "all",
                "--json",
            ],
        ),
        "webhooks add",
    );
    let record: Value = serde_json::from_str(added.trim()).expect("webhook json");
    let id = record["id"].as_str().expect("id").to_owned();
    let first_path = first_file.display().to_string();
    ok(
        run_sender(
            &state,
            &["webhooks", "signature", &id, "--out", &first_path],
        ),
        "signature",
    );
    let first = start_receiver(&dir.path().join("first.db"), &first_file);
    let url = format!("http://{}/webhook", first.addr);
    ok(
        run_sender(&state, &["webhooks", "edit", &id, "--url", &url]),
        "webhooks edit",
    );
    ok(
        run_sender(&state, &["trigger", "COURSE_ENROLLMENT", "--count", "3"]),
        "trigger real-time",
    );
    ok(
        run_sender(
            &state,
            &["trigger", "COURSE_COMPLETED_BATCH", "--count", "5"],
        ),
        "trigger batch",
    );

    let captured = export(
        &dir.path().join("first.db"),
        &["--out", &capture_file.display().to_string()],
    );
    assert!(
        captured.trim().is_empty(),
        "--out writes the file, not stdout"
    );
    let captured = std::fs::read_to_string(&capture_file).expect("capture file");
    let first_bodies = capture_bodies(&captured);
    assert_eq!(
        first_bodies.len(),
        4,
        "3 real-time requests and one batch of 5"
    );

    // A second receiver with a secret of its own: only a fresh signature can pass.
    write_signature_file(&second_file, &SigningSecret::generate());
    let second = start_receiver(&dir.path().join("second.db"), &second_file);
    let report = dir.path().join("report.json");
    ok(
        run_sender(
            &state,
            &[
                "replay",
                &capture_file.display().to_string(),
                "--to",
                &format!("http://{}/webhook", second.addr),
                "--mode",
                "resign",
                "--signature-file",
                &second_file.display().to_string(),
                "--report",
                &report.display().to_string(),
            ],
        ),
        "replay --mode resign",
    );
    let summary: Value =
        serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("report json");
    assert_eq!(
        (
            summary["attempted"].as_u64(),
            summary["acknowledged"].as_u64()
        ),
        (Some(4), Some(4))
    );

    let replayed = export(&dir.path().join("second.db"), &["--include-refused"]);
    let second_bodies = capture_bodies(&replayed);
    assert_eq!(
        second_bodies, first_bodies,
        "the same bytes, in the same order"
    );
    for line in replayed.lines() {
        let record = CaptureRecord::from_json_line(line).expect("capture line");
        assert_eq!(
            record.verdict,
            Verdict::Accepted,
            "verified by the second receiver"
        );
    }
    drop((first, second));
}

#[test]
fn verbatim_replay_of_a_stale_capture_is_refused_and_check_explains_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = SigningSecret::generate();
    let signature_file = dir.path().join("crm.json");
    write_signature_file(&signature_file, &secret);
    let signature_path = signature_file.display().to_string();

    // A request signed an hour ago, captured when it was fresh.
    let hour_ago = verify::unix_now() - 3600;
    let body = EventGenerator::new(5)
        .envelope(
            1010,
            verify::lookup("COURSE_COMPLETED").expect("catalogue"),
            1,
            hour_ago * 1000,
        )
        .to_bytes();
    let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
    headers.extend(Keyring::single(secret).sign_headers("msg_stale", hour_ago, &body));
    let capture = CaptureRecord {
        received_at_ms: hour_ago * 1000 + 20,
        method: "POST".into(),
        path: "/webhook".into(),
        headers,
        body,
        verdict: Verdict::Accepted,
        reason: None,
    };
    let capture_file = dir.path().join("old.jsonl");
    std::fs::write(&capture_file, capture.to_json_line() + "\n").expect("write capture");

    let store = dir.path().join("listener.db");
    let listener = start_receiver(&store, &signature_file);
    let state = dir.path().join("sender.db");
    let (code, stdout, stderr) = run_sender(
        &state,
        &[
            "replay",
            &capture_file.display().to_string(),
            "--to",
            &format!("http://{}/webhook", listener.addr),
            "--mode",
            "verbatim",
        ],
    );
    assert_eq!(
        code,
        Some(1),
        "a refused replay fails the run: {stdout}\n{stderr}"
    );
    let warned = stderr
        .find("1 of 1 capture(s) were signed more than 300 s ago")
        .unwrap_or_else(|| panic!("no warning before sending: {stderr}"));
    assert!(
        warned < stderr.find("replay: 1/1").expect("progress"),
        "{stderr}"
    );
    assert!(stderr.contains("timestamp_too_old"), "{stderr}");
    assert!(stdout.contains("4xx: 1"), "{stdout}");
    assert!(
        stdout.contains("timestamp_too_old"),
        "the 401 body names the reason: {stdout}"
    );

    // A refusal is written by the store after the 401 went out: wait for it (bounded).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let refused = loop {
        let refused = export(&store, &["--verdict", "refused"]);
        if !refused.trim().is_empty() || std::time::Instant::now() > deadline {
            break refused;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let record = CaptureRecord::from_json_line(refused.trim()).expect("one refused capture");
    let reason = record.reason.clone().unwrap_or_default();
    assert!(reason.starts_with("timestamp_too_old:"), "{reason}");
    let seconds: i64 = reason["timestamp_too_old:".len()..]
        .parse()
        .expect("seconds");
    assert!((3600..3700).contains(&seconds), "{seconds}");

    let refused_file = dir.path().join("refused.jsonl");
    std::fs::write(&refused_file, &refused).expect("write");
    let (code, stdout, _) = run_cli(
        &[
            "check",
            "--signature-file",
            &signature_path,
            &refused_file.display().to_string(),
        ],
        &[],
    );
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("timestamp_too_old"), "{stdout}");
    assert!(stdout.contains("only the time is off"), "{stdout}");

    // The original capture, checked at its own receive time, was fine.
    let (code, stdout, _) = run_cli(
        &[
            "check",
            "--signature-file",
            &signature_path,
            &capture_file.display().to_string(),
        ],
        &[],
    );
    assert_eq!(code, Some(0), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_at_200_per_second_keeps_to_the_schedule() {
    const COUNT: usize = 1000;
    const RATE: f64 = 200.0;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut generator = EventGenerator::new(11);
    let kind = verify::lookup("LEARNING_OBJECT_MODIFICATION").expect("catalogue");
    let lines: Vec<String> = (0..COUNT)
        .map(|index| {
            let body = generator
                .envelope(1010, kind, 1, 1_795_000_000_000 + index as i64)
                .to_bytes();
            String::from_utf8(body).expect("utf8")
        })
        .collect();
    let source = dir.path().join("envelopes.jsonl");
    std::fs::write(&source, lines.join("\n") + "\n").expect("write source");

    let endpoint = FakeEndpoint::start().await;
    let state = dir.path().join("sender.db");
    let to = endpoint.url();
    let source_arg = source.display().to_string();
    let report = dir.path().join("report.json");
    let report_arg = report.display().to_string();
    let run = tokio::task::spawn_blocking(move || {
        run_sender(
            &state,
            &[
                "replay",
                &source_arg,
                "--to",
                &to,
                "--rate",
                "200",
                "--concurrency",
                "16",
                "--report",
                &report_arg,
            ],
        )
    });
    let received = endpoint.wait_for(COUNT, Duration::from_secs(30)).await;
    ok(run.await.expect("join"), "replay --rate 200");
    assert_eq!(received.len(), COUNT);

    let mut arrivals: Vec<f64> = received
        .iter()
        .map(|request| request.at.duration_since(received[0].at).as_secs_f64())
        .collect();
    arrivals.sort_by(f64::total_cmp);
    let intended = (COUNT - 1) as f64 / RATE;
    let span = arrivals[COUNT - 1] - arrivals[0];
    assert!(
        (span - intended).abs() <= 0.05 * intended,
        "1000 requests took {span:.3} s, intended {intended:.3} s"
    );
    // Every request within 5% of the run's length of its own slot.
    let worst = arrivals
        .iter()
        .enumerate()
        .map(|(index, at)| (at - index as f64 / RATE).abs())
        .fold(0.0, f64::max);
    assert!(
        worst <= 0.05 * intended,
        "a request was {worst:.3} s off its slot"
    );

    let summary: Value =
        serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("json");
    assert_eq!(summary["acknowledged"].as_u64(), Some(COUNT as u64));
    assert_eq!(summary["byStatusClass"]["2xx"].as_u64(), Some(COUNT as u64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_sends_nothing_and_event_id_cuts_one_event_out_of_a_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let batch = r#"{"accountId":7,"events":[{"eventId":"a","eventName":"COURSE_ENROLLMENT_BATCH","timestamp":1795000000000,"data":{"userId":1}}, {"eventId":"b","eventName":"COURSE_ENROLLMENT_BATCH","timestamp":1795000001000,"data":{"userId":2}}]}"#;
    let source = dir.path().join("batch.json");
    std::fs::write(&source, batch).expect("write");
    let endpoint = FakeEndpoint::start().await;
    let state = dir.path().join("sender.db");
    let (to, source_arg) = (endpoint.url(), source.display().to_string());

    let dry = {
        let (state, to, source_arg) = (state.clone(), to.clone(), source_arg.clone());
        tokio::task::spawn_blocking(move || {
            run_sender(
                &state,
                &[
                    "replay",
                    &source_arg,
                    "--to",
                    &to,
                    "--username",
                    "crm",
                    "--password",
                    "hunter22",
                    "--dry-run",
                ],
            )
        })
    };
    let printed = ok(dry.await.expect("join"), "dry run");
    assert!(
        printed.contains("authorization: Basic [redacted]"),
        "{printed}"
    );
    assert!(
        !printed.contains("hunter22"),
        "no secret in the dry run: {printed}"
    );

    let single = tokio::task::spawn_blocking(move || {
        run_sender(
            &state,
            &["replay", &source_arg, "--to", &to, "--event-id", "b"],
        )
    });
    ok(single.await.expect("join"), "replay --event-id");
    let received = endpoint.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(
        received.len(),
        1,
        "the dry run sent nothing, --event-id sent one request"
    );
    assert_eq!(
        received[0].body,
        r#"{"accountId":7,"events":[{"eventId":"b","eventName":"COURSE_ENROLLMENT_BATCH","timestamp":1795000001000,"data":{"userId":2}}]}"#.as_bytes()
    );
}

/// Headers as `post` takes them.
fn borrowed(headers: &[(String, String)]) -> Vec<(&str, &str)> {
    headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resigning_skips_refused_captures_so_a_forgery_is_not_laundered_into_another_receiver() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first_secret = SigningSecret::generate();
    let first_file = dir.path().join("first.json");
    write_signature_file(&first_file, &first_secret);
    let first_store = dir.path().join("first.db");
    let first = start_receiver(&first_store, &first_file);

    // A genuine request, and a forgery: another account, signed with a secret nobody gave.
    let now = verify::unix_now();
    let genuine = envelope(1010, &["genuine-1"]);
    let signed = Keyring::single(first_secret).sign_headers("msg_genuine", now, genuine.as_bytes());
    let answer = post(first.addr, "/webhook", &borrowed(&signed), genuine.clone()).await;
    assert_eq!(answer.status.as_u16(), 200);
    let forged = envelope(6666, &["forged-1"]);
    let signed = Keyring::single(SigningSecret::generate()).sign_headers(
        "msg_forged",
        now,
        forged.as_bytes(),
    );
    let answer = post(first.addr, "/webhook", &borrowed(&signed), forged.clone()).await;
    assert_eq!(answer.status.as_u16(), 401);
    assert_eq!(answer.error(), "no_matching_signature");
    // The refusal is kept after the 401 went out: wait for it (bounded).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while export(&first_store, &["--verdict", "refused"])
        .trim()
        .is_empty()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the refusal was never kept"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let capture_file = dir.path().join("capture.jsonl");
    export(
        &first_store,
        &[
            "--include-refused",
            "--out",
            &capture_file.display().to_string(),
        ],
    );
    let captured = std::fs::read_to_string(&capture_file).expect("capture file");
    assert_eq!(captured.lines().count(), 2, "{captured}");

    // Replayed, re-signed (the default), into a second receiver with a secret of its own.
    let second_file = dir.path().join("second.json");
    write_signature_file(&second_file, &SigningSecret::generate());
    let second_store = dir.path().join("second.db");
    let second = start_receiver(&second_store, &second_file);
    let state = dir.path().join("sender.db");
    let replay = |extra: &[&str]| {
        let mut args = vec![
            "replay".to_owned(),
            capture_file.display().to_string(),
            "--to".to_owned(),
            format!("http://{}/webhook", second.addr),
            "--signature-file".to_owned(),
            second_file.display().to_string(),
        ];
        args.extend(extra.iter().map(|arg| (*arg).to_owned()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_sender(&state, &args)
    };
    let (code, stdout, stderr) = replay(&[]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let stored: Vec<String> = capture_bodies(&export(&second_store, &["--include-refused"]))
        .into_iter()
        .map(|body| String::from_utf8_lossy(&body).into_owned())
        .collect();
    assert_eq!(
        stored,
        std::slice::from_ref(&genuine),
        "the second receiver got the genuine request only"
    );
    assert!(
        stderr.contains("skipped 1 capture(s) the receiver refused")
            && stderr.contains("--include-refused"),
        "{stderr}"
    );
    assert!(stdout.contains("1 of 1 acknowledged"), "{stdout}");

    // Asked for by name, the refused capture is re-signed too (and passes: the user's call).
    let (code, stdout, stderr) = replay(&["--include-refused"]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(!stderr.contains("skipped"), "{stderr}");
    let stored = capture_bodies(&export(&second_store, &[]));
    assert!(stored.contains(&forged.into_bytes()), "{stored:?}");
    drop((first, second));
}
