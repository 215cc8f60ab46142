//! What `deliveries resend|recover` and the operations flags refuse, as a user would get it:
//! exit 2 and an `error:` line that says what to give, nothing queued.

use crate::sender::{sender_output, Harness};

#[test]
fn recover_resend_and_the_notification_flags_refuse_bad_input_with_exit_2() {
    let harness = Harness::new();
    let state = harness.location.as_str();
    let webhook = harness.add("http://127.0.0.1:9/webhook", "COURSE_ENROLLMENT", |_| {});
    let id = webhook.id.as_str();
    let dir = tempfile::tempdir().expect("dir");
    let github = dir.path().join("github.json");
    std::fs::write(
        &github,
        r#"{"version": 1, "webhookId": "x", "webhookName": "x", "scheme": "github",
            "algorithm": "HMAC-SHA256", "secrets": [{"secret": "abc123abc123abc123",
            "createdAt": "2026-12-01T00:00:00Z", "expiresAt": null}]}"#,
    )
    .expect("write");
    let github = github.display().to_string();
    for (args, says) in [
        (
            vec!["deliveries", "resend", "msg_nothing"],
            "no delivery \"msg_nothing\"",
        ),
        (
            vec!["deliveries", "recover", "--webhook", "wh_nothing"],
            "no webhook \"wh_nothing\"",
        ),
        (
            vec!["deliveries", "recover", "--webhook", id, "--status", "lost"],
            "use expired, failed, delivered or all",
        ),
        (
            vec![
                "deliveries",
                "recover",
                "--webhook",
                id,
                "--since",
                "2026-12-02",
                "--until",
                "2026-12-01",
            ],
            "--since must be before --until",
        ),
        (
            vec!["deliveries", "recover", "--webhook", id, "--since", "soon"],
            "is not a time",
        ),
        (
            vec!["run", "--notify-signature-file", &github],
            "needs --notify-url",
        ),
        (
            vec![
                "run",
                "--notify-url",
                "http://127.0.0.1:9/ops",
                "--notify-signature-file",
                &github,
            ],
            "give a file of scheme standard-webhooks",
        ),
        (
            vec!["run", "--notify-url", "ftp://ops.example/"],
            "--notify-url",
        ),
    ] {
        let (code, stdout, stderr) = sender_output(state, &args);
        assert_eq!(code, Some(2), "{args:?}: {stdout}{stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains(says),
            "{args:?}: {stderr}"
        );
        assert!(
            !stdout.contains("working the queue"),
            "{args:?} started: {stdout}"
        );
    }
    let (code, stdout, _) = sender_output(state, &["deliveries", "list", "--json"]);
    assert_eq!((code, stdout.trim()), (Some(0), "[]"), "nothing queued");
}
