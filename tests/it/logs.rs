//! What the two programs write to their logs (SPEC section 6):
//! - `--log-format json` (and `RECEIVER_LOG_FORMAT=json`) makes every line on standard error a
//!   JSON object with a level, a target and the event's fields;
//! - no secret (a Basic password, right or wrong, its `Authorization` token, a `whsec_`
//!   secret or its key) appears in anything either program prints, at the most verbose log
//!   level, across every command that handles one.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use verify::BasicCredentials;

use crate::support::endpoint::{FakeEndpoint, Reply};
use crate::support::logged::Logged;

const SENDER: &str = env!("CARGO_BIN_EXE_it-sender");
const RECEIVER: &str = env!("CARGO_BIN_EXE_it-receiver");

/// Every non-empty line of `stderr` parsed as a JSON object with the fields of a
/// `tracing-subscriber` JSON line.
fn json_lines(stderr: &str, what: &str) -> Vec<Value> {
    let lines: Vec<Value> = stderr
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let value: Value = serde_json::from_str(line)
                .unwrap_or_else(|_| panic!("{what}: not a JSON line: {line:?}"));
            assert!(
                value["level"].is_string()
                    && value["target"].is_string()
                    && value["timestamp"].is_string()
                    && value["fields"]["message"].is_string(),
                "{what}: not a log record: {line}"
            );
            value
        })
        .collect();
    assert!(!lines.is_empty(), "{what}: logged nothing");
    lines
}

/// The records whose message is `message`.
fn with_message<'a>(records: &'a [Value], message: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|record| record["fields"]["message"] == message)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_format_json_writes_one_json_record_per_line() {
    let dir = tempfile::tempdir().expect("dir");
    let store = format!("sqlite:{}", dir.path().join("r.db").display());

    // The receiver, by flag: its start, a refusal and its shutdown as JSON records.
    let mut receiver = Logged::spawn(
        Command::new(RECEIVER)
            .args([
                "listen",
                "--log-format",
                "json",
                "--listen",
                "127.0.0.1:0",
                "--store",
                &store,
                "--output",
                "quiet",
            ])
            .env("RUST_LOG", "debug"),
    );
    let addr = receiver.wait_listening().await;
    let refused = crate::support::receiver::post(
        addr,
        "/webhook",
        &[("content-type", "text/plain")],
        "hello",
    )
    .await;
    assert_eq!(refused.status, 415);
    receiver.signal("TERM");
    assert_eq!(
        receiver.wait_exit(Duration::from_secs(15)).await.code(),
        Some(0)
    );
    let records = json_lines(&receiver.stderr(), "receiver --log-format json");
    let listening = with_message(&records, "listening");
    assert_eq!(listening.len(), 1, "{records:?}");
    assert_eq!(listening[0]["fields"]["address"], addr.to_string());
    let refusal = with_message(&records, "refused");
    assert_eq!(refusal.len(), 1, "{records:?}");
    assert_eq!(refusal[0]["level"], "INFO");
    assert_eq!(refusal[0]["fields"]["status"], 415);
    assert_eq!(refusal[0]["fields"]["reason"], "unsupported_media_type");
    assert!(!with_message(&records, "SIGTERM received").is_empty());

    // The receiver, by RECEIVER_LOG_FORMAT alone.
    let mut receiver = Logged::spawn(
        Command::new(RECEIVER)
            .args(["listen", "--listen", "127.0.0.1:0", "--store", &store])
            .env("RECEIVER_LOG_FORMAT", "json")
            .env("RUST_LOG", "info"),
    );
    receiver.wait_listening().await;
    receiver.signal("INT");
    assert_eq!(
        receiver.wait_exit(Duration::from_secs(15)).await.code(),
        Some(0)
    );
    let records = json_lines(&receiver.stderr(), "RECEIVER_LOG_FORMAT=json");
    assert!(!with_message(&records, "SIGINT received").is_empty());

    // The sender delivering (one failed attempt, then success): JSON records on stderr, the
    // `--json` result alone on stdout.
    let endpoint = FakeEndpoint::start().await;
    endpoint.script([Reply::status(500)]);
    let db = dir.path().join("sender.db");
    let url = endpoint.url();
    let added = sender_async(
        &db,
        &[
            "webhooks", "add", "--name", "crm", "--url", &url, "--events", "all",
        ],
    )
    .await;
    assert!(added.status.success(), "{added:?}");
    let output = sender_async(
        &db,
        &[
            "--log-format",
            "json",
            "trigger",
            "COURSE_ENROLLMENT",
            "--json",
            "--retry-initial",
            "20ms",
        ],
    )
    .await;
    assert!(output.status.success(), "{output:?}");
    let result: Value = serde_json::from_slice(&output.stdout).expect("stdout is the result");
    assert_eq!(result["webhooks"][0]["delivered"], 1);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let records = json_lines(&stderr, "sender --log-format json");
    let failed = with_message(&records, "attempt failed");
    assert_eq!(failed.len(), 1, "{records:?}");
    assert_eq!(failed[0]["level"], "WARN");
    assert_eq!(failed[0]["fields"]["outcome"], "500");
    let delivered = with_message(&records, "delivered");
    assert_eq!(delivered.len(), 1, "{records:?}");
    assert_eq!(delivered[0]["fields"]["attempt"], 2);

    // Lines meant for the person at the terminal are records too in JSON mode, even with
    // RUST_LOG=warn (which hides info records): the queued summary of `trigger` without
    // `--json`, the progress of `replay`, the summary of `receiver export --out`, errors.
    let mut quiet = Command::new(SENDER);
    quiet
        .arg("--state")
        .arg(format!("sqlite:{}", db.display()))
        .args(["--log-format", "json", "trigger", "COURSE_COMPLETED"])
        .env("RUST_LOG", "warn");
    let output = tokio::task::spawn_blocking(move || quiet.output().unwrap())
        .await
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let records = json_lines(&String::from_utf8_lossy(&output.stderr), "trigger");
    assert!(
        records.iter().any(|record| record["level"] == "INFO"
            && record["fields"]["message"]
                .as_str()
                .unwrap()
                .starts_with("queued 1 COURSE_COMPLETED event(s) for 1 webhook(s)")),
        "{records:?}"
    );
    let envelope = dir.path().join("envelope.json");
    std::fs::write(
        &envelope,
        r#"{"accountId":1,"events":[{"eventId":"e1","eventName":"COURSE_ENROLLMENT","timestamp":1,"data":{}}]}"#,
    )
    .unwrap();
    let envelope_arg = envelope.display().to_string();
    let output = sender_async(
        &db,
        &[
            "--log-format",
            "json",
            "replay",
            &envelope_arg,
            "--to",
            &url,
            "--mode",
            "verbatim",
        ],
    )
    .await;
    assert!(output.status.success(), "{output:?}");
    let records = json_lines(&String::from_utf8_lossy(&output.stderr), "replay");
    assert!(
        !with_message(&records, "replay: 1/1 tried, 1 acknowledged").is_empty(),
        "{records:?}"
    );
    let output = sender_async(&db, &["--log-format", "json", "webhooks", "show", "nope"]).await;
    assert!(!output.status.success());
    let records = json_lines(&String::from_utf8_lossy(&output.stderr), "error");
    assert_eq!(records.last().unwrap()["level"], "ERROR", "{records:?}");
    let out = dir.path().join("capture.jsonl");
    let exported = Command::new(RECEIVER)
        .args(["export", "--log-format", "json", "--store", &store, "--out"])
        .arg(&out)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let records = json_lines(&String::from_utf8_lossy(&exported.stderr), "export");
    assert!(
        records.iter().any(|record| record["fields"]["message"]
            .as_str()
            .unwrap()
            .starts_with("exported ")),
        "{records:?}"
    );
}

/// Runs `sender --state DB ARGS` (`RUST_LOG=info`) in a blocking thread, so the endpoint in
/// this runtime keeps answering.
async fn sender_async(db: &Path, args: &[&str]) -> std::process::Output {
    let mut command = Command::new(SENDER);
    command
        .arg("--state")
        .arg(format!("sqlite:{}", db.display()))
        .args(args)
        .env("RUST_LOG", "info");
    tokio::task::spawn_blocking(move || command.output().expect("run sender"))
        .await
        .expect("joined")
}

/// What one command printed, labelled for the failure message.
struct Printed {
    what: String,
    text: String,
}

/// Runs `sender --state DB ARGS` at the most verbose level and keeps all it printed.
fn sender_traced(db: &Path, args: &[&str], printed: &mut Vec<Printed>) -> std::process::Output {
    let output = Command::new(SENDER)
        .arg("--state")
        .arg(format!("sqlite:{}", db.display()))
        .args(args)
        .env("RUST_LOG", "trace")
        .env_remove("SENDER_BASIC_PASSWORD")
        .output()
        .expect("run sender");
    printed.push(Printed {
        what: format!("sender {args:?}"),
        text: format!(
            "{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    });
    output
}

/// Runs `receiver ARGS` to completion at the most verbose level and keeps all it printed.
fn receiver_traced(args: &[&str], printed: &mut Vec<Printed>) -> std::process::Output {
    let output = Command::new(RECEIVER)
        .args(args)
        .env("RUST_LOG", "trace")
        .output()
        .expect("run receiver");
    printed.push(Printed {
        what: format!("receiver {args:?}"),
        text: format!(
            "{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    });
    output
}

fn succeeded(output: &std::process::Output) -> String {
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// The secret of a signature file, and its key without the `whsec_` prefix.
fn secrets_of(path: &Path) -> Vec<String> {
    let file = verify::SignatureFile::from_json(&std::fs::read(path).expect("read")).expect("file");
    file.secrets
        .iter()
        .flat_map(|record| {
            let key = record.secret.trim_start_matches("whsec_").to_owned();
            [record.secret.clone(), key]
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_appears_in_any_output_at_trace_level() {
    const PASSWORD: &str = "Rcv-basic-pw-71c3e";
    const WRONG_PASSWORD: &str = "Typo-basic-pw-0d2f";
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("sender.db");
    let mut printed: Vec<Printed> = Vec::new();
    let path = |name: &str| dir.path().join(name).display().to_string();

    // Receiver A: Basic. Receiver B: Signature, with the file of the sender's webhook.
    let store_a = format!("sqlite:{}", path("a.db"));
    let mut basic = Logged::spawn(
        Command::new(RECEIVER)
            .args([
                "listen",
                "--listen",
                "127.0.0.1:0",
                "--store",
                &store_a,
                "--output",
                "pretty",
                "--basic-user",
                "crm",
                "--basic-password",
                PASSWORD,
            ])
            .env("RUST_LOG", "trace"),
    );
    let basic_url = format!("http://{}/webhook", basic.wait_listening().await);

    let basic_id = succeeded(&sender_traced(
        &db,
        &[
            "webhooks",
            "add",
            "--name",
            "basic",
            "--url",
            &basic_url,
            "--events",
            "COURSE_ENROLLMENT",
            "--auth",
            "basic",
            "--username",
            "crm",
            "--password",
            PASSWORD,
        ],
        &mut printed,
    ));
    let wrong_id = succeeded(&sender_traced(
        &db,
        &[
            "webhooks",
            "add",
            "--name",
            "typo",
            "--url",
            &basic_url,
            "--events",
            "COURSE_COMPLETED",
            "--auth",
            "basic",
            "--username",
            "crm",
            "--password",
            WRONG_PASSWORD,
        ],
        &mut printed,
    ));
    let signed_id = succeeded(&sender_traced(
        &db,
        &[
            "webhooks",
            "add",
            "--name",
            "signed",
            "--url",
            "http://127.0.0.1:9/webhook",
            "--events",
            "COURSE_ENROLLMENT",
            "--auth",
            "signature",
        ],
        &mut printed,
    ));
    let signature_file = path("signature.json");
    succeeded(&sender_traced(
        &db,
        &[
            "webhooks",
            "signature",
            &signed_id,
            "--out",
            &signature_file,
        ],
        &mut printed,
    ));
    let store_b = format!("sqlite:{}", path("b.db"));
    let mut signed = Logged::spawn(
        Command::new(RECEIVER)
            .args([
                "listen",
                "--listen",
                "127.0.0.1:0",
                "--store",
                &store_b,
                "--output",
                "pretty",
                "--signature-file",
                &signature_file,
            ])
            .env("RUST_LOG", "trace"),
    );
    let signed_url = format!("http://{}/webhook", signed.wait_listening().await);
    succeeded(&sender_traced(
        &db,
        &["webhooks", "edit", &signed_id, "--url", &signed_url],
        &mut printed,
    ));

    // Every command that handles a secret, and the ones that show what was stored.
    let fast = ["--retry-initial", "20ms", "--retry-max", "40ms"];
    for id in [&basic_id, &signed_id] {
        succeeded(&sender_traced(&db, &["webhooks", "test", id], &mut printed));
        succeeded(&sender_traced(&db, &["webhooks", "show", id], &mut printed));
        succeeded(&sender_traced(
            &db,
            &["webhooks", "show", id, "--json"],
            &mut printed,
        ));
    }
    let refused = sender_traced(&db, &["webhooks", "test", &wrong_id], &mut printed);
    assert_eq!(
        refused.status.code(),
        Some(1),
        "the receiver refuses the typo"
    );
    let mut args = vec!["trigger", "COURSE_ENROLLMENT", "--count", "2"];
    args.extend(fast);
    succeeded(&sender_traced(&db, &args, &mut printed));
    let mut args = vec!["trigger", "COURSE_COMPLETED", "--wait", "300ms"];
    args.extend(fast);
    let failing = sender_traced(&db, &args, &mut printed);
    assert_eq!(
        failing.status.code(),
        Some(1),
        "401s are retried, not delivered"
    );
    succeeded(&sender_traced(
        &db,
        &["webhooks", "rotate-secret", &signed_id, "--overlap", "1h"],
        &mut printed,
    ));
    let rotated_file = path("rotated.json");
    succeeded(&sender_traced(
        &db,
        &["webhooks", "signature", &signed_id, "--out", &rotated_file],
        &mut printed,
    ));
    let mut args = vec!["trigger", "COURSE_ENROLLMENT"];
    args.extend(fast);
    succeeded(&sender_traced(&db, &args, &mut printed));
    for list in [
        &["webhooks", "list"][..],
        &["webhooks", "list", "--json"],
        &["deliveries", "list"],
    ] {
        succeeded(&sender_traced(&db, list, &mut printed));
    }
    let deliveries: Value = serde_json::from_str(&succeeded(&sender_traced(
        &db,
        &["deliveries", "list", "--json"],
        &mut printed,
    )))
    .expect("JSON");
    for row in deliveries.as_array().expect("rows") {
        let id = row["id"].as_str().expect("id");
        succeeded(&sender_traced(
            &db,
            &["deliveries", "show", id],
            &mut printed,
        ));
        succeeded(&sender_traced(
            &db,
            &["deliveries", "show", id, "--json"],
            &mut printed,
        ));
    }

    // The receivers' own commands on what they kept, then replay and sign with the secrets.
    let captures_a = path("a.jsonl");
    let captures_b = path("b.jsonl");
    for (store, out) in [(&store_a, &captures_a), (&store_b, &captures_b)] {
        succeeded(&receiver_traced(
            &["export", "--store", store, "--include-refused"],
            &mut printed,
        ));
        succeeded(&receiver_traced(
            &["export", "--store", store, "--out", out],
            &mut printed,
        ));
        succeeded(&receiver_traced(
            &["events", "list", "--store", store],
            &mut printed,
        ));
    }
    printed.push(Printed {
        what: "receiver export --out (basic)".into(),
        text: std::fs::read_to_string(&captures_a).expect("capture file"),
    });
    succeeded(&receiver_traced(
        &["check", "--signature-file", &signature_file, &captures_b],
        &mut printed,
    ));
    // A Basic check of signed captures, with the typo: refused, and the password not shown.
    let check = receiver_traced(
        &[
            "check",
            "--basic-user",
            "crm",
            "--basic-password",
            WRONG_PASSWORD,
            &captures_b,
        ],
        &mut printed,
    );
    assert_eq!(check.status.code(), Some(1), "{check:?}");
    let replays: [(&str, &str, &[&str]); 2] = [
        (
            &captures_a,
            &basic_url,
            &["--username", "crm", "--password", PASSWORD],
        ),
        (
            &captures_b,
            &signed_url,
            &["--signature-file", &signature_file],
        ),
    ];
    for (source, to, auth) in replays {
        let mut args = vec!["replay", source, "--to", to];
        args.extend_from_slice(auth);
        succeeded(&sender_traced(&db, &args, &mut printed));
        args.push("--dry-run");
        succeeded(&sender_traced(&db, &args, &mut printed));
    }
    let body = path("body.json");
    std::fs::write(&body, br#"{"accountId":1,"events":[]}"#).expect("write body");
    succeeded(&sender_traced(
        &db,
        &["sign", "--signature-file", &rotated_file, &body],
        &mut printed,
    ));

    for (receiver, name) in [(&mut basic, "basic"), (&mut signed, "signed")] {
        receiver.signal("TERM");
        assert_eq!(
            receiver.wait_exit(Duration::from_secs(15)).await.code(),
            Some(0)
        );
        printed.push(Printed {
            what: format!("receiver listen ({name})"),
            text: format!("{}\n{}", receiver.stdout(), receiver.stderr()),
        });
    }

    // The traffic really carried the secrets: accepted, refused, and logged in detail.
    let basic_out = &printed[printed.len() - 2].text;
    let signed_out = &printed[printed.len() - 1].text;
    assert!(basic_out.contains("auth=basic:ok"), "{basic_out}");
    assert!(
        basic_out.contains("REFUSED 401 basic_mismatch"),
        "{basic_out}"
    );
    assert!(signed_out.contains("auth=signature:ok"), "{signed_out}");
    assert!(
        basic_out.contains("TRACE") || basic_out.contains("DEBUG"),
        "{basic_out}"
    );

    let mut secrets: Vec<String> = vec![PASSWORD.into(), WRONG_PASSWORD.into()];
    for password in [PASSWORD, WRONG_PASSWORD] {
        let header = BasicCredentials::new("crm", password)
            .expect("credentials")
            .authorization_header();
        secrets.push(header.trim_start_matches("Basic ").to_owned());
    }
    secrets.extend(secrets_of(Path::new(&rotated_file)));
    assert_eq!(
        secrets.len(),
        8,
        "two passwords, two tokens, two secrets with their keys"
    );
    for secret in &secrets {
        for output in &printed {
            assert!(
                !output.text.contains(secret.as_str()),
                "a secret ({}…) in the output of {}:\n{}",
                &secret[..6],
                output.what,
                output.text
            );
        }
    }
}

/// Forwarding's log: each failed attempt with its backoff step, and each parked job, per
/// target; a flood of refusals (an app answering 401 to everything) gives a trickle of lines
/// that say how many were left out, not a line per job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_logs_each_backoff_step_and_a_flood_of_refusals_stays_a_trickle() {
    use crate::support::forwarding::named_envelope;
    use crate::support::receiver::{free_addr, post, wait_until, FakeApp};

    let dir = tempfile::tempdir().expect("dir");
    let store = format!("sqlite:{}", dir.path().join("r.db").display());
    let held = FakeApp::start_at(free_addr(), 503).await;
    let refusing = FakeApp::start_at(free_addr(), 401).await;
    let held_url = format!("http://{}/held", held.addr);
    let refusing_url = format!("http://{}/refusing", refusing.addr);
    let mut receiver = Logged::spawn(
        Command::new(RECEIVER)
            .args([
                "listen",
                "--log-format",
                "json",
                "--listen",
                "127.0.0.1:0",
                "--store",
                &store,
                "--output",
                "quiet",
                "--ui",
                "off",
                "--forward-retry-min",
                "50ms",
                "--forward-retry-max",
                "100ms",
                "--forward-to",
                &format!("LEARNER_PROGRESS={held_url}"),
                "--forward-to",
                &format!("COURSE_ENROLLMENT={refusing_url}"),
            ])
            .env("RUST_LOG", "info"),
    );
    let addr = receiver.wait_listening().await;
    let reply = post(
        addr,
        "/webhook",
        &[],
        named_envelope(7, &[("held-1", "LEARNER_PROGRESS")]),
    )
    .await;
    assert_eq!(reply.status, 200);
    const FLOOD: usize = 300;
    let flood_started = std::time::Instant::now();
    for index in 0..FLOOD {
        let body = named_envelope(7, &[(&format!("flood-{index}"), "COURSE_ENROLLMENT")]);
        assert_eq!(post(addr, "/webhook", &[], body).await.status, 200);
    }
    let refused_all = wait_until(Duration::from_secs(30), || async {
        refusing.requests().len() >= FLOOD && held.requests().len() >= 6
    })
    .await;
    assert!(refused_all, "every request refused, the held one retried");
    // A fast store refuses the whole flood within the burst's second; the limit allows the
    // next line a second after the flood began, and that line says how many were left out.
    let a_second_on = wait_until(Duration::from_secs(5), || async {
        flood_started.elapsed() >= Duration::from_millis(1100)
    })
    .await;
    assert!(a_second_on);
    let body = named_envelope(7, &[("flood-last", "COURSE_ENROLLMENT")]);
    assert_eq!(post(addr, "/webhook", &[], body).await.status, 200);
    let refused_last = wait_until(Duration::from_secs(30), || async {
        refusing.requests().len() > FLOOD
    })
    .await;
    assert!(refused_last, "the request after the flood refused too");
    receiver.signal("TERM");
    assert_eq!(
        receiver.wait_exit(Duration::from_secs(15)).await.code(),
        Some(0)
    );
    let records = json_lines(&receiver.stderr(), "forwarding");
    let of = |message: &str, target: &str| -> Vec<Value> {
        with_message(&records, message)
            .into_iter()
            .filter(|record| record["fields"]["target"] == target)
            .cloned()
            .collect()
    };

    // The held request: its steps in order, each with the wait before the next try.
    let failed = of(
        "forwarding failed; the job holds its queue and is tried again",
        &held_url,
    );
    let steps: Vec<i64> = failed
        .iter()
        .map(|record| record["fields"]["step"].as_i64().expect("step"))
        .collect();
    assert!(steps.len() >= 5, "{failed:?}");
    assert_eq!(steps[..5], [1, 2, 3, 4, 5], "each step, in order");
    assert_eq!(failed[0]["level"], "WARN");
    assert_eq!(
        failed[0]["fields"]["error"],
        "the app answered 503 Service Unavailable"
    );
    assert!(failed[0]["fields"]["retry_in"].is_string(), "{}", failed[0]);

    // The flood: a burst, then a line a second, each saying how many were left out.
    let parked = of(
        "the app refused the request for good: job parked, the queue moves on \
         (`receiver forward retry JOB` once the app takes it)",
        &refusing_url,
    );
    assert!(!parked.is_empty(), "the parks are logged");
    assert!(
        parked.len() < FLOOD / 5,
        "a trickle, not a line per refusal: {} lines for {FLOOD} refusals",
        parked.len()
    );
    let left_out: i64 = parked
        .iter()
        .map(|record| record["fields"]["left_out"].as_i64().expect("left_out"))
        .sum();
    assert!(left_out > 0, "the lines say what was left out: {parked:?}");
    assert_eq!(
        parked[0]["fields"]["error"],
        "the app answered 401 Unauthorized"
    );
}
