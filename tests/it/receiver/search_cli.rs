//! `receiver events list --where PATH=VALUE --contains TEXT` and `--format csv` (SPEC section
//! 10), as a support person and a spreadsheet user use them, on both stores: a learner found
//! whether the sender wrote the id as a number or a string, never by a prefix; two conditions
//! together; a text in the JSON; CSV read back by Python's `csv` module.

use std::io::Write as _;
use std::process::{Command, Stdio};

use crate::support::external;
use crate::support::receiver::{run_cli, InProcess};
use crate::support::store::{for_each_store, TestStore};

for_each_store!(
    where_finds_a_learner_by_number_or_string_whole_and_conditions_add_up,
    csv_is_rfc_4180_that_a_csv_reader_reads_back,
);

/// One event of `name` with `data` (JSON object text).
fn event(id: &str, name: &str, data: &str) -> String {
    format!(
        r#"{{"eventId":"{id}","eventName":"{name}","timestamp":"2026-11-27T10:00:00.000Z","data":{data}}}"#
    )
}

/// The requests of these tests: each a list of events.
fn requests() -> Vec<Vec<String>> {
    vec![
        vec![event(
            "e1",
            "COURSE_COMPLETED",
            r#"{"userId":4279332,"loId":"course:7374992","hasPassed":true}"#,
        )],
        // The same learner, the id written as a string.
        vec![event(
            "e2",
            "COURSE_ENROLLMENT",
            r#"{"userId":"4279332","loId":"course:1","enrollmentSource":"SELF_ENROLL"}"#,
        )],
        // A learner whose id starts with the first one's.
        vec![event(
            "e3",
            "COURSE_COMPLETED",
            r#"{"userId":42793320,"loId":"course:7374992","hasPassed":false}"#,
        )],
        vec![event(
            "e4",
            "LEARNER_PROGRESS",
            r#"{"userId":1,"loId":"course:7374992","progressPercent":50,"note":"a, \"quoted\"\nline","tags":["x",{"y":1}]}"#,
        )],
        // A batch: two learners in one request.
        vec![
            event(
                "e5",
                "COURSE_ENROLLMENT_BATCH",
                r#"{"userId":7,"loId":"lp:9","enrollmentSource":"ADMIN_ENROLL"}"#,
            ),
            event(
                "e6",
                "COURSE_ENROLLMENT_BATCH",
                r#"{"userId":8,"loId":"lp:9","enrollmentSource":"ADMIN_ENROLL"}"#,
            ),
        ],
    ]
}

/// Stores [`requests`] through a receiver on `store`.
async fn store_requests(store: &TestStore) {
    let receiver = InProcess::start(store.config()).await;
    for events in requests() {
        let body = format!(r#"{{"accountId":1010,"events":[{}]}}"#, events.join(","));
        assert_eq!(receiver.post(&[], body).await.status, 200);
    }
    receiver.stop().await.unwrap();
}

/// `receiver events ARGS --store STORE`: exit code, stdout, stderr.
fn events(store: &TestStore, args: &[&str]) -> (Option<i32>, String, String) {
    let store = store.store_arg();
    let mut all = vec!["events"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--store", &store]);
    run_cli(&all, &[])
}

/// The eventIds `events list ARGS --json` prints, in order.
fn ids(store: &TestStore, args: &[&str]) -> Vec<String> {
    let mut all = vec!["list"];
    all.extend_from_slice(args);
    all.push("--json");
    let (code, stdout, stderr) = events(store, &all);
    assert_eq!(code, Some(0), "{args:?}: {stderr}");
    let listed: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    listed
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["eventId"].as_str().unwrap().to_owned())
        .collect()
}

async fn where_finds_a_learner_by_number_or_string_whole_and_conditions_add_up(store: TestStore) {
    store_requests(&store).await;
    let learner = ["--where", "data.userId=4279332"];
    // The number and the string form; not 42793320, whose id only starts the same.
    assert_eq!(ids(&store, &learner), ["e1", "e2"]);
    assert!(ids(&store, &["--where", "data.userId=427933"]).is_empty());
    assert_eq!(ids(&store, &["--where", "data.userId=42793320"]), ["e3"]);
    // Two conditions: both must hold.
    assert_eq!(
        ids(
            &store,
            &[
                "--where",
                "data.userId=4279332",
                "--where",
                "data.loId=course:7374992"
            ]
        ),
        ["e1"]
    );
    // Paths without a column of their own, and the event's own fields.
    assert_eq!(
        ids(
            &store,
            &[
                "--where",
                "eventName=COURSE_COMPLETED",
                "--where",
                "data.loId=course:7374992"
            ]
        ),
        ["e1", "e3"]
    );
    assert_eq!(ids(&store, &["--where", "data.progressPercent=50"]), ["e4"]);
    assert!(ids(&store, &["--where", "data.progressPercent=5"]).is_empty());
    assert_eq!(ids(&store, &["--where", "data.tags.1.y=1"]), ["e4"]);
    // One learner of a batch, not the other.
    assert_eq!(ids(&store, &["--where", "data.userId=8"]), ["e6"]);
    // With the other filters and a limit.
    assert_eq!(
        ids(
            &store,
            &[
                "--where",
                "data.loId=course:7374992",
                "--event-name",
                "LEARNER_PROGRESS"
            ]
        ),
        ["e4"]
    );
    assert_eq!(
        ids(
            &store,
            &["--where", "data.loId=course:7374992", "--limit", "2"]
        ),
        ["e1", "e3"]
    );
    // --contains: the JSON as received, case and all.
    assert_eq!(
        ids(&store, &["--contains", "COURSE_COMPLETED"]),
        ["e1", "e3"]
    );
    assert_eq!(
        ids(&store, &["--contains", r#""userId":"4279332""#]),
        ["e2"]
    );
    assert!(ids(&store, &["--contains", "course_completed"]).is_empty());
    assert_eq!(
        ids(
            &store,
            &["--contains", "ADMIN_ENROLL", "--where", "data.userId=7"]
        ),
        ["e5"]
    );
    // The same conditions count.
    let (code, count, _) = events(&store, &["count", "--where", "data.userId=4279332"]);
    assert_eq!((code, count.trim()), (Some(0), "2"));
    let (code, count, _) = events(&store, &["count", "--contains", "lp:9"]);
    assert_eq!((code, count.trim()), (Some(0), "2"));
    // The text output finds the same.
    let (code, lines, _) = events(&store, &["list", "--where", "data.userId=4279332"]);
    assert_eq!(code, Some(0));
    assert_eq!(lines.lines().count(), 2, "{lines}");
    // A condition that is not PATH=VALUE is a usage error.
    let (code, _, stderr) = events(&store, &["list", "--where", "data.userId"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("PATH=VALUE"), "{stderr}");
}

/// The rows Python's `csv` module reads from `csv` (RFC 4180, CRLF).
fn read_with_python(csv: &str) -> Option<Vec<Vec<String>>> {
    if !external::program(
        "python3",
        "CSV read back by Python",
        "apt-get install python3",
    ) {
        return None;
    }
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import csv, io, json, sys\n\
             rows = list(csv.reader(io.TextIOWrapper(sys.stdin.buffer, encoding='utf-8', newline=''), strict=True))\n\
             print(json.dumps(rows))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(csv.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    Some(serde_json::from_slice(&output.stdout).unwrap())
}

async fn csv_is_rfc_4180_that_a_csv_reader_reads_back(store: TestStore) {
    store_requests(&store).await;
    let fields = "eventId,eventName,data.userId,data.note,data.tags,data.missing,accountId";
    let (code, csv, stderr) = events(
        &store,
        &[
            "list",
            "--format",
            "csv",
            "--fields",
            fields,
            "--where",
            "data.loId=course:7374992",
        ],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(csv.ends_with("\r\n") && csv.starts_with(&format!("{fields}\r\n")));
    let Some(rows) = read_with_python(&csv) else {
        return;
    };
    let expected = [
        fields.split(',').collect::<Vec<_>>(),
        vec!["e1", "COURSE_COMPLETED", "4279332", "", "", "", "1010"],
        vec!["e3", "COURSE_COMPLETED", "42793320", "", "", "", "1010"],
        vec![
            "e4",
            "LEARNER_PROGRESS",
            "1",
            "a, \"quoted\"\nline",
            r#"["x",{"y":1}]"#,
            "",
            "1010",
        ],
    ];
    assert_eq!(rows, expected);

    // The default columns: receive time, account, id, name, the event's timestamp as sent,
    // learner and learning object.
    let (code, csv, _) = events(&store, &["list", "--format", "csv", "--limit", "1"]);
    assert_eq!(code, Some(0));
    let rows = read_with_python(&csv).unwrap();
    assert_eq!(
        rows[0],
        [
            "receivedAt",
            "accountId",
            "eventId",
            "eventName",
            "timestamp",
            "data.userId",
            "data.loId"
        ]
    );
    assert_eq!(
        rows[1][1..],
        [
            "1010",
            "e1",
            "COURSE_COMPLETED",
            "2026-11-27T10:00:00.000Z",
            "4279332",
            "course:7374992"
        ]
    );
    assert!(verify::timestamp::parse_iso_millis(&rows[1][0]).is_some());
    // --fields belongs to the CSV.
    let (code, _, stderr) = events(&store, &["list", "--fields", "eventId"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("--format csv"), "{stderr}");
}
