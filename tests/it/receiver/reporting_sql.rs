//! One reporting SQL for both stores (SPEC section 10): the README's three reports, read from
//! the README itself, run unchanged by the clients reporting teams use, `sqlite3` on the
//! SQLite file (Debian stable's 3.40 reads the `receiver_events` view) and `psql` on the
//! PostgreSQL database, over the same events stored through a receiver, and give the same
//! rows.

use std::io::Write as _;
use std::process::{Command, Stdio};

use crate::support::external;
use crate::support::receiver::InProcess;
use crate::support::store::{for_each_store, StoreKind, TestStore};

for_each_store!(the_readmes_reports_give_the_same_rows_through_sqlite3_and_psql);

/// 2026-11-27T00:00:00Z and the next day, epoch ms.
const DAY_1: i64 = 1_795_737_600_000;
const DAY_2: i64 = 1_795_824_000_000;

/// The `sql` blocks of the README's Reporting section, in order.
fn readme_reports() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let section = readme
        .split("\n### Reporting")
        .nth(1)
        .expect("a Reporting section");
    let section = section.split("\n### ").next().unwrap_or_default();
    section
        .split("```sql\n")
        .skip(1)
        .map(|block| block.split("```").next().unwrap_or_default().to_owned())
        .collect()
}

fn event(id: &str, name: &str, time: &str, data: &str) -> String {
    format!(r#"{{"eventId":"{id}","eventName":"{name}","timestamp":"{time}","data":{data}}}"#)
}

/// What a reporting team would have received: completions over two days, enrolments from
/// several sources, progress reports, and a retry of one request (stored once).
fn requests() -> Vec<String> {
    let day_1 = "2026-11-27T09:00:00.000Z";
    let later = "2026-11-27T10:00:00.000Z";
    let day_2 = "2026-11-28T09:00:00.000Z";
    let envelope =
        |events: &[String]| format!(r#"{{"accountId":1010,"events":[{}]}}"#, events.join(","));
    let completed = |id: &str, name: &str, time: &str, user: &str, lo: &str| {
        event(
            id,
            name,
            time,
            &format!(
                r#"{{"userId":{user},"loId":"{lo}","loType":"course","enrollmentSource":"SELF_ENROLL","hasPassed":true}}"#
            ),
        )
    };
    let enrolled = |id: &str, name: &str, user: i64, source: &str| {
        event(
            id,
            name,
            day_1,
            &format!(r#"{{"userId":{user},"loId":"course:1","enrollmentSource":"{source}"}}"#),
        )
    };
    let progress = |id: &str, time: &str, user: &str, lo: &str, percent: i64| {
        event(
            id,
            "LEARNER_PROGRESS",
            time,
            &format!(r#"{{"userId":{user},"loId":"{lo}","progressPercent":{percent}}}"#),
        )
    };
    let first = envelope(&[completed("c1", "COURSE_COMPLETED", day_1, "1", "course:1")]);
    vec![
        first.clone(),
        envelope(&[completed("c2", "COURSE_COMPLETED", later, "2", "course:1")]),
        envelope(&[
            completed("c3", "COURSE_COMPLETED_BATCH", day_1, "1", "course:2"),
            completed("c4", "COURSE_COMPLETED_BATCH", day_2, "3", "course:1"),
        ]),
        // A retry: its event is a duplicate, counted once.
        first,
        envelope(&[enrolled("n1", "COURSE_ENROLLMENT", 1, "SELF_ENROLL")]),
        envelope(&[enrolled("n2", "COURSE_ENROLLMENT", 2, "SELF_ENROLL")]),
        envelope(&[enrolled("n3", "COURSE_ENROLLMENT", 3, "ADMIN_ENROLL")]),
        envelope(&[
            enrolled("n4", "LEARNING_PATH_ENROLLMENT_BATCH", 1, "MANAGER_ENROLL"),
            enrolled("n5", "CERTIFICATION_ENROLLMENT_BATCH", 2, "ADMIN_ENROLL"),
        ]),
        // Not an enrolment, whatever its source.
        envelope(&[enrolled("u1", "COURSE_UNENROLLMENT", 1, "SELF_ENROLL")]),
        envelope(&[progress("p1", day_1, "1", "course:1", 30)]),
        envelope(&[progress("p2", later, "1", "course:1", 80)]),
        // The learner written as a string: the same learner.
        envelope(&[progress("p3", day_1, r#""2""#, "course:1", 10)]),
        envelope(&[progress("p4", day_1, "1", "course:2", 100)]),
    ]
}

/// The rows each report must give, as `|`-separated lines.
fn expected() -> [Vec<String>; 3] {
    let at = |time: &str| {
        verify::timestamp::parse_iso_millis(time)
            .unwrap()
            .to_string()
    };
    [
        vec![
            format!("course:1|{DAY_1}|2"),
            format!("course:2|{DAY_1}|1"),
            format!("course:1|{DAY_2}|1"),
        ],
        vec![
            "ADMIN_ENROLL|2".to_owned(),
            "SELF_ENROLL|2".to_owned(),
            "MANAGER_ENROLL|1".to_owned(),
        ],
        vec![
            format!("1|course:1|80|{}", at("2026-11-27T10:00:00.000Z")),
            format!("1|course:2|100|{}", at("2026-11-27T09:00:00.000Z")),
            format!("2|course:1|10|{}", at("2026-11-27T09:00:00.000Z")),
        ],
    ]
}

/// Runs `sql` with the store's own client, given on its standard input as a file would be
/// (`sqlite3 receiver.db < report.sql`); its rows as `|`-separated lines, or `None` when the
/// client is not installed (skipped loudly, or failed under CI).
fn run_report(store: &TestStore, sql: &str) -> Option<Vec<String>> {
    let mut command = match store.kind {
        StoreKind::Sqlite => {
            if !external::program(
                "sqlite3",
                "reports through sqlite3",
                "apt-get install sqlite3",
            ) {
                return None;
            }
            let path = store.store_arg();
            let path = path.strip_prefix("sqlite:").unwrap_or(&path).to_owned();
            let mut command = Command::new("sqlite3");
            command.args(["-batch", "-bail", "-readonly", "-separator", "|", &path]);
            command
        }
        StoreKind::Postgres => {
            if !external::program(
                "psql",
                "reports through psql",
                "apt-get install postgresql-client",
            ) {
                return None;
            }
            let mut command = Command::new("psql");
            command.args([
                "-X",
                "--no-align",
                "--tuples-only",
                "--field-separator=|",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                &store.store_arg(),
            ]);
            command
        }
    };
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(sql.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{sql}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|line| !line.is_empty())
            .map(str::to_owned)
            .collect(),
    )
}

async fn the_readmes_reports_give_the_same_rows_through_sqlite3_and_psql(store: TestStore) {
    let receiver = InProcess::start(store.config()).await;
    for body in requests() {
        assert_eq!(receiver.post(&[], body).await.status, 200);
    }
    receiver.stop().await.unwrap();

    let reports = readme_reports();
    assert_eq!(reports.len(), 3, "the README shows three reports");
    for (sql, expected) in reports.iter().zip(expected()) {
        let Some(rows) = run_report(&store, sql) else {
            return;
        };
        assert_eq!(rows, expected, "{sql}");
    }
    // The relation has the same columns on both stores, in the same order.
    let columns = run_report(
        &store,
        "SELECT id, account_id, event_id, request_id, event_name, timestamp_ms, received_at_ms, \
         CAST(known AS INTEGER), event FROM receiver_events WHERE event_id = 'c2';",
    )
    .unwrap();
    let row: Vec<&str> = columns[0].split('|').collect();
    assert_eq!(row[1..5], ["1010", "c2", "2", "COURSE_COMPLETED"]);
    assert_eq!(row[7], "1");
    let event = row[8..].join("|");
    assert!(event.starts_with(r#"{"eventId":"c2""#), "{event}");
}
