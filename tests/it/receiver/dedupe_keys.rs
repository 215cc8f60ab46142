//! The SQLite store's dedupe keys live in the listener's memory (issue 26): read again from
//! the store at each start, they refuse every duplicate across a restart, however many keys
//! there are, those of pruned events within the dedupe window too, and stay exact when another
//! process prunes; and one listener per store, since a second one would hold keys of its own.

use std::path::Path;
use std::time::Duration;

use crate::support::receiver::{binary, envelope, open_db, output_within, post, run_cli, Process};

/// Requests of the first life, and events in each.
const REQUESTS: usize = 40;
const EVENTS_PER_REQUEST: usize = 50;

fn listen(store: &str) -> Process {
    Process::spawn(
        &[
            "listen",
            "--listen",
            "127.0.0.1:0",
            "--store",
            store,
            "--output",
            "quiet",
            "--ui",
            "off",
        ],
        &[],
    )
}

/// The ids of request `request`'s events: UUID-like, as Learning Manager's.
fn ids(request: usize) -> Vec<String> {
    (0..EVENTS_PER_REQUEST)
        .map(|event| format!("{request:08x}-0000-4000-8000-{event:012x}"))
        .collect()
}

fn body(account: i64, ids: &[String]) -> String {
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    envelope(account, &ids)
}

/// `(stored, duplicates)` of a 200 answer.
async fn post_events(process: &Process, body: String) -> (u64, u64) {
    let reply = post(process.addr, "/webhook", &[], body).await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let answer = reply.json();
    (
        answer["stored"].as_u64().unwrap(),
        answer["duplicates"].as_u64().unwrap(),
    )
}

fn stored_events(db_path: &Path) -> (i64, i64) {
    let db = open_db(db_path);
    db.query_row(
        "SELECT COUNT(*), COUNT(DISTINCT account_id || '/' || event_id) FROM events",
        [],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_thousands_of_keys_still_refuses_every_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("receiver.db");
    let store = format!("sqlite:{}", db_path.display());

    let first = listen(&store);
    for request in 0..REQUESTS {
        let answer = post_events(&first, body(1010, &ids(request))).await;
        assert_eq!(answer, (EVENTS_PER_REQUEST as u64, 0));
    }
    // The same event id in another account is another event.
    assert_eq!(post_events(&first, body(1011, &ids(0))).await, (50, 0));
    // Killed, not stopped: the keys come back from the store alone.
    first.kill();

    let second = listen(&store);
    for request in 0..REQUESTS {
        let answer = post_events(&second, body(1010, &ids(request))).await;
        assert_eq!(answer, (0, EVENTS_PER_REQUEST as u64), "request {request}");
    }
    assert_eq!(post_events(&second, body(1011, &ids(0))).await, (0, 50));
    // Old and new together: only the new ones are stored, and a new one sent twice in the
    // same request once.
    let mut mixed = ids(7)[..10].to_vec();
    let fresh = ids(REQUESTS)[..10].to_vec();
    mixed.extend(fresh.iter().cloned());
    mixed.push(fresh[0].clone());
    assert_eq!(post_events(&second, body(1010, &mixed)).await, (10, 11));
    // Concurrent retries of one new batch after the restart: stored once between them.
    let racing = body(1010, &ids(REQUESTS + 1));
    let answers = futures_join(&second, &racing, 8).await;
    assert_eq!(
        answers.iter().map(|(stored, _)| stored).sum::<u64>(),
        EVENTS_PER_REQUEST as u64,
        "{answers:?}"
    );
    let expected = (REQUESTS * EVENTS_PER_REQUEST + 50 + 10 + EVENTS_PER_REQUEST) as i64;
    assert_eq!(stored_events(&db_path), (expected, expected));

    // `receiver prune` from another process while the listener runs: every request goes,
    // each event's key stays as a tombstone for the 30-day window, and the listener, which
    // was not told, still refuses them all.
    let tomorrow = (verify::unix_now_ms() + 86_400_000).to_string();
    prune(&store, &["--before", &tomorrow, "--dedupe-window", "30d"]);
    assert_eq!(stored_events(&db_path), (0, 0));
    for request in [0, REQUESTS - 1] {
        let answer = post_events(&second, body(1010, &ids(request))).await;
        assert_eq!(answer, (0, EVENTS_PER_REQUEST as u64), "request {request}");
    }
    second.kill();

    // Tombstones only now, and a restart: read back with the store, still duplicates.
    let third = listen(&store);
    for request in 0..REQUESTS {
        let answer = post_events(&third, body(1010, &ids(request))).await;
        assert_eq!(answer, (0, EVENTS_PER_REQUEST as u64), "request {request}");
    }
    assert_eq!(post_events(&third, body(1011, &ids(0))).await, (0, 50));
    // Once their window ended (dropped by another process, again untold), an event is
    // new again: the keys in memory never refuse what the store no longer holds.
    prune(&store, &["--before", "0", "--dedupe-window", "1ms"]);
    assert_eq!(post_events(&third, body(1010, &ids(3))).await, (50, 0));
    third.kill();
    assert_eq!(stored_events(&db_path), (50, 50));
}

/// `receiver prune ARGS --store STORE`, which must succeed.
fn prune(store: &str, args: &[&str]) {
    let mut all = vec!["prune"];
    all.extend(args);
    all.extend(["--store", store]);
    let (code, _, stderr) = run_cli(&all, &[]);
    assert_eq!(code, Some(0), "{all:?}: {stderr}");
}

/// `copies` posts of `body` at once.
async fn futures_join(process: &Process, body: &str, copies: usize) -> Vec<(u64, u64)> {
    let addr = process.addr;
    let tasks: Vec<_> = (0..copies)
        .map(|_| {
            let body = body.to_owned();
            tokio::spawn(async move {
                let reply = post(addr, "/webhook", &[], body).await;
                assert_eq!(reply.status, 200);
                let answer = reply.json();
                (
                    answer["stored"].as_u64().unwrap(),
                    answer["duplicates"].as_u64().unwrap(),
                )
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_listener_on_the_same_store_is_refused_and_the_first_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("receiver.db");
    let store = format!("sqlite:{}", db_path.display());
    let first = listen(&store);
    assert_eq!(post_events(&first, body(1010, &ids(0))).await, (50, 0));

    let output = output_within(
        std::process::Command::new(binary()).args([
            "listen",
            "--listen",
            "127.0.0.1:0",
            "--store",
            &store,
            "--output",
            "quiet",
            "--ui",
            "off",
        ]),
        Duration::from_secs(30),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    // As any store that cannot be opened: 2, the --store given is not usable.
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("error: ")
            && stderr.contains("another `receiver listen`")
            && stderr.contains(&format!("(process {})", first.child.id()))
            && stderr.contains(&db_path.display().to_string()),
        "{stderr}"
    );
    // The first one never noticed: its keys still decide.
    assert_eq!(post_events(&first, body(1010, &ids(0))).await, (0, 50));
    assert_eq!(post_events(&first, body(1010, &ids(1))).await, (50, 0));
    first.kill();

    // Its lock went with it, SIGKILL or not.
    let again = listen(&store);
    assert_eq!(post_events(&again, body(1010, &ids(1))).await, (0, 50));
    again.kill();
    assert_eq!(stored_events(&db_path), (100, 100));
}
