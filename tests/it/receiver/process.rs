//! The `receiver` program as a real process: its first line, its flags and environment
//! variables, its exit codes, and graceful shutdown on SIGTERM and SIGINT.

use std::time::Duration;

use http::StatusCode;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use verify::{unix_now, Scheme, SignatureFile, SigningSecret};

use crate::support::receiver::{envelope, open_db, post, read_to_close, run_cli, Process};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_line_in_every_output_mode_and_lines_per_event() {
    let dir = tempfile::tempdir().unwrap();
    for mode in ["quiet", "json", "pretty"] {
        let store = format!("sqlite:{}", dir.path().join(format!("{mode}.db")).display());
        let process = Process::spawn(
            &[
                "listen",
                "--listen",
                "127.0.0.1:0",
                "--path",
                "/hook",
                "--store",
                &store,
                "--output",
                mode,
            ],
            &[],
        );
        assert_eq!(
            process.first_line,
            format!("listening on http://{}/hook", process.addr)
        );
        let reply = post(process.addr, "/hook", &[], envelope(5, &["one", "one"])).await;
        assert_eq!(reply.status, StatusCode::OK);
        post(
            process.addr,
            "/hook",
            &[("content-type", "text/plain")],
            "x",
        )
        .await;
        match mode {
            "json" => {
                let first: serde_json::Value =
                    serde_json::from_str(&process.next_line().unwrap()).unwrap();
                assert_eq!(first["eventId"], "one");
                assert_eq!(first["duplicate"], false);
                assert_eq!(first["auth"], "none");
                let second: serde_json::Value =
                    serde_json::from_str(&process.next_line().unwrap()).unwrap();
                assert_eq!(second["duplicate"], true);
                let refusal: serde_json::Value =
                    serde_json::from_str(&process.next_line().unwrap()).unwrap();
                assert_eq!(refusal["type"], "refusal");
                assert_eq!(refusal["reason"], "unsupported_media_type");
            }
            "pretty" => {
                let first = process.next_line().unwrap();
                assert!(
                    first.contains("COURSE_ENROLLMENT")
                        && first.contains("account=5 event=one")
                        && first.contains("auth=none:ok")
                        && first.ends_with("new"),
                    "{first}"
                );
                assert!(process.next_line().unwrap().ends_with("duplicate"));
                let refusal = process.next_line().unwrap();
                assert!(
                    refusal.contains("REFUSED 415 unsupported_media_type"),
                    "{refusal}"
                );
            }
            _ => {
                // Quiet: after a clean stop, nothing followed the `listening on` line.
                process.signal("TERM");
                let mut printed = Vec::new();
                while let Ok(line) = process.lines.recv_timeout(Duration::from_secs(10)) {
                    printed.push(line);
                }
                assert!(printed.is_empty(), "quiet printed {printed:?}");
            }
        }
        process.kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_subcommand_means_listen_and_environment_variables_configure_it() {
    let dir = tempfile::tempdir().unwrap();
    let now = unix_now();
    let old = SigningSecret::generate();
    let new = SigningSecret::generate();
    // Two files, as a team might hold across a rotation; RECEIVER_SIGNATURE_FILE lists both.
    let first = SignatureFile::new("wh_1", "crm", &Scheme::default(), &old, now);
    let second = SignatureFile::new("wh_1", "crm", &Scheme::default(), &new, now);
    let first_path = dir.path().join("old.json");
    let second_path = dir.path().join("new.json");
    std::fs::write(&first_path, first.to_json_pretty()).unwrap();
    std::fs::write(&second_path, second.to_json_pretty()).unwrap();
    let files = format!("{},{}", first_path.display(), second_path.display());
    let store = format!("sqlite:{}", dir.path().join("env.db").display());
    let process = Process::spawn(
        &[],
        &[
            ("RECEIVER_LISTEN", "127.0.0.1:0"),
            ("RECEIVER_PATH", "/env"),
            ("RECEIVER_STORE", &store),
            ("RECEIVER_SIGNATURE_FILE", &files),
            ("RECEIVER_OUTPUT", "quiet"),
            ("RECEIVER_MAX_BODY", "2KiB"),
        ],
    );
    assert!(
        process.first_line.ends_with("/env"),
        "{}",
        process.first_line
    );
    for (index, secret) in [old, new].into_iter().enumerate() {
        let body = envelope(1, &[&format!("e{index}")]);
        let headers =
            verify::Keyring::single(secret).sign_headers("m", unix_now(), body.as_bytes());
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let reply = post(process.addr, "/env", &headers, body).await;
        assert_eq!(reply.status, StatusCode::OK, "secret {index}");
    }
    let unsigned = post(process.addr, "/env", &[], envelope(1, &["u"])).await;
    assert_eq!(unsigned.error(), "missing_header:webhook-id");
    let big = post(process.addr, "/env", &[], vec![b' '; 2049]).await;
    assert_eq!(big.status, StatusCode::PAYLOAD_TOO_LARGE);
    process.kill();
}

#[test]
fn configuration_errors_exit_2_with_one_error_line() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite:{}", dir.path().join("r.db").display());
    let bad_file = dir.path().join("bad.json");
    std::fs::write(&bad_file, "{\"version\": 9}").unwrap();
    let bad_file = bad_file.display().to_string();
    let expired_file = dir.path().join("expired.json");
    std::fs::write(
        &expired_file,
        r#"{"version": 1, "webhookId": "wh_app", "webhookName": "app",
            "scheme": "standard-webhooks", "algorithm": "HMAC-SHA256", "toleranceSeconds": 300,
            "secrets": [{"secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                         "createdAt": "2020-01-01T00:00:00Z", "expiresAt": "2020-02-01T00:00:00Z"}]}"#,
    )
    .unwrap();
    let expired_file = expired_file.display().to_string();
    // A v1a receiver file: public keys verify but cannot sign what is forwarded.
    let public_file = dir.path().join("public.json");
    let v1a = SignatureFile::with_key(
        "wh_app",
        "app",
        &Scheme::default(),
        verify::ed25519::SecretKey::generate().into(),
        unix_now(),
    );
    std::fs::write(&public_file, v1a.for_receiver().unwrap().to_json_pretty()).unwrap();
    let public_file = public_file.display().to_string();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "--forward-to",
                "http://127.0.0.1:9/app",
                "--forward-signature-file",
                &public_file,
            ],
            "only whpk_ public keys",
        ),
        (
            vec![
                "--forward-to",
                "http://127.0.0.1:9/app",
                "--forward-signature-file",
                &expired_file,
            ],
            "every secret in it has expired",
        ),
        (vec!["--max-body", "lots"], "--max-body"),
        (
            vec!["--signature-file", "/nonexistent/sig.json"],
            "reading signature file /nonexistent/sig.json",
        ),
        (
            vec!["--signature-file", &bad_file],
            "reading signature file",
        ),
        (
            vec!["--basic-user", "crm"],
            "--basic-user needs --basic-password",
        ),
        (vec!["--store", "mysql://db/x"], "--store"),
        // A PostgreSQL URL that does not parse; one that parses but whose server is down is
        // no configuration error: the receiver starts and answers 503 until it comes up.
        (
            vec!["--store", "postgres://crm:pw@db:port/x"],
            "invalid PostgreSQL URL",
        ),
        (
            vec!["--store", "sqlite:/nonexistent/dir/r.db"],
            "opening the store",
        ),
        (
            vec!["--path", "webhook"],
            "--path \"webhook\" must start with '/'",
        ),
        (
            vec![
                "--tls-cert",
                "/nonexistent/c.pem",
                "--tls-key",
                "/nonexistent/k.pem",
            ],
            "reading TLS certificate",
        ),
        (vec!["--output", "loud"], "invalid value 'loud'"),
    ];
    for (args, message) in cases {
        let mut all = vec!["listen", "--listen", "127.0.0.1:0"];
        all.extend(args.iter().copied());
        if !args.contains(&"--store") {
            all.extend(["--store", store.as_str()]);
        }
        let (code, stdout, stderr) = run_cli(&all, &[]);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(!stdout.contains("listening on"), "{args:?}");
    }
    let (code, _, stderr) = run_cli(&["--listen", "not-an-address"], &[]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.starts_with("error: listening on not-an-address"),
        "{stderr}"
    );
    // A password never shows in an error, even when the credentials themselves are refused.
    for args in [
        &["--basic-user", "a:b", "--basic-password", "hunter2-secret"][..],
        &["--basic-password", "hunter2-secret"][..],
    ] {
        let (code, _, stderr) = run_cli(args, &[]);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{stderr}");
        assert!(!stderr.contains("hunter2-secret"), "{stderr}");
    }
    let (code, _, stderr) = run_cli(&[], &[("RECEIVER_BASIC_PASSWORD", "hunter2-secret")]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(!stderr.contains("hunter2-secret"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_request_in_flight_then_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("r.db");
    let store = format!("sqlite:{}", db_path.display());
    let mut process = Process::spawn(
        &[
            "--listen",
            "127.0.0.1:0",
            "--store",
            &store,
            "--output",
            "quiet",
        ],
        &[],
    );
    let body = envelope(9, &["in-flight"]);
    let (head_and_half, rest) = {
        let raw = format!(
            "POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let split = raw.len() - 20;
        (raw[..split].to_owned(), raw[split..].to_owned())
    };
    let mut stream = TcpStream::connect(process.addr).await.unwrap();
    stream.write_all(head_and_half.as_bytes()).await.unwrap();
    // Make sure the request is in the server before the signal: its metrics show a connection.
    let addr = process.addr;
    let seen =
        crate::support::receiver::wait_until(std::time::Duration::from_secs(5), || async move {
            let metrics = crate::support::receiver::get(addr, "/metrics").await;
            String::from_utf8_lossy(&metrics.body).contains("receiver_connections_open 2")
        })
        .await;
    assert!(seen, "the request is in flight");
    process.signal("TERM");
    stream.write_all(rest.as_bytes()).await.unwrap();
    let answer = read_to_close(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert_eq!(process.wait_exit(), Some(0));
    // Closed cleanly: the WAL was checkpointed, the event is in the main file.
    let stored: i64 = open_db(&db_path)
        .query_row(
            "SELECT COUNT(*) FROM events WHERE event_id = 'in-flight'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(stored, 1);
    assert!(
        !dir.path().join("r.db-wal").exists()
            || std::fs::metadata(dir.path().join("r.db-wal"))
                .unwrap()
                .len()
                == 0
    );

    // SIGINT too.
    let mut process = Process::spawn(&["--listen", "127.0.0.1:0", "--store", &store], &[]);
    process.signal("INT");
    assert_eq!(process.wait_exit(), Some(0));
}
