//! `receiver events list` as a person reads it: one line per stored event, oldest arrival
//! first, with the name (flagged when outside the catalogue), account, eventId and event time;
//! `--limit` keeps the first N of that order, with or without filters.

use verify::timestamp::{format_iso_millis, parse_iso_millis};

use crate::support::receiver::{envelope, run_cli, InProcess};
use crate::support::store::{for_each_store, TestStore};

for_each_store!(events_list_prints_one_line_per_event_oldest_first_and_limit_keeps_the_first);

/// Splits a line into its receive time and the rest.
fn split_line(line: &str) -> (&str, &str) {
    line.split_once("  ")
        .unwrap_or_else(|| panic!("no receive time in {line:?}"))
}

async fn events_list_prints_one_line_per_event_oldest_first_and_limit_keeps_the_first(
    store: TestStore,
) {
    let started = verify::unix_now_ms();
    let receiver = InProcess::start(store.config()).await;
    let unknown = r#"{"accountId":5,"events":[{"eventId":"c","eventName":"NOT_IN_CATALOGUE","timestamp":1795000000000,"data":{}}]}"#;
    for body in [
        envelope(5, &["a", "b"]),
        unknown.to_owned(),
        envelope(6, &["d"]),
    ] {
        assert_eq!(receiver.post(&[], body).await.status, 200);
    }
    receiver.stop().await.unwrap();
    let finished = verify::unix_now_ms();
    let store = store.store_arg();
    let list = |extra: &[&str]| -> Vec<String> {
        let mut args = vec!["events", "list", "--store", &store];
        args.extend_from_slice(extra);
        let (code, stdout, stderr) = run_cli(&args, &[]);
        assert_eq!(code, Some(0), "{extra:?}: {stderr}");
        stdout.lines().map(str::to_owned).collect()
    };

    let lines = list(&[]);
    let event_time = "2026-11-27T10:00:00.000Z";
    let unknown_time = format_iso_millis(1_795_000_000_000);
    let expected = [
        format!("COURSE_ENROLLMENT  account=5 event=a  event-time={event_time}"),
        format!("COURSE_ENROLLMENT  account=5 event=b  event-time={event_time}"),
        format!("NOT_IN_CATALOGUE (unknown name)  account=5 event=c  event-time={unknown_time}"),
        format!("COURSE_ENROLLMENT  account=6 event=d  event-time={event_time}"),
    ];
    let rests: Vec<&str> = lines.iter().map(|line| split_line(line).1).collect();
    assert_eq!(rests, expected, "{lines:#?}");
    // The receive times: ISO-8601 within the test, in arrival order.
    let received: Vec<i64> = lines
        .iter()
        .map(|line| {
            let time = split_line(line).0;
            parse_iso_millis(time).unwrap_or_else(|| panic!("not ISO-8601: {time:?}"))
        })
        .collect();
    assert!(
        received.iter().all(|at| (started..=finished).contains(at)),
        "{received:?}"
    );
    assert!(received.windows(2).all(|pair| pair[0] <= pair[1]));

    // --limit keeps the oldest N, also after a filter.
    assert_eq!(list(&["--limit", "2"]), lines[..2]);
    assert_eq!(list(&["--limit", "10"]), lines);
    assert_eq!(list(&["--account", "5", "--limit", "3"]), lines[..3]);
    assert_eq!(
        list(&["--event-name", "COURSE_ENROLLMENT", "--limit", "3"]),
        [lines[0].clone(), lines[1].clone(), lines[3].clone()]
    );
    // Nothing matching: no output at all, and success.
    assert!(list(&["--account", "999"]).is_empty());

    let (code, count, _) = run_cli(&["events", "count", "--store", &store], &[]);
    assert_eq!((code, count.trim()), (Some(0), "4"));
}
