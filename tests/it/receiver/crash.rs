//! The crash test: the real receiver process under concurrent load, killed with SIGKILL at
//! random moments, again and again. After each restart every event that got a 2xx is in the
//! store, none is stored twice, and SQLite's integrity check passes.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Method, StatusCode};

use crate::support::receiver::{
    completed_envelope as body_of, open_db, request, wait_until, Connection, Process, Rng,
};

const KILLS: usize = 20;
const CLIENTS: usize = 8;
/// The whole test stays well under a minute even on a loaded two-core machine.
const BUDGET: Duration = Duration::from_secs(60);

/// What the clients were told was stored: `account/eventId`.
type Acked = Arc<Mutex<Vec<(i64, String)>>>;

/// Every acknowledged event is stored exactly once, and the file is sound.
fn check_store(db_path: &Path, acked: &[(i64, String)]) {
    let db = open_db(db_path);
    let integrity: String = db
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    let dangling: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM events e LEFT JOIN requests r ON r.id = e.request_id WHERE r.id IS NULL",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(dangling, 0, "every event belongs to a stored request");
    let twice: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM (SELECT 1 FROM events GROUP BY account_id, event_id HAVING COUNT(*) > 1)",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(twice, 0, "no event stored twice");
    let stored: HashSet<(i64, String)> = db
        .prepare("SELECT account_id, event_id FROM events")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let missing: Vec<&(i64, String)> = acked.iter().filter(|key| !stored.contains(*key)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events lost, e.g. {:?}",
        missing.len(),
        missing.first()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_never_loses_an_acknowledged_event() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("crash.db");
    let store = format!("sqlite:{}", db_path.display());
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("crash test seed {seed}");
    let mut rng = Rng(seed);
    let acked: Acked = Arc::new(Mutex::new(Vec::new()));
    let mut total_requests_acked = 0;

    for round in 0..KILLS {
        assert!(
            started.elapsed() < BUDGET,
            "crash test over budget at round {round}"
        );
        let process = Process::spawn(
            &[
                "listen",
                "--listen",
                "127.0.0.1:0",
                "--store",
                &store,
                "--output",
                "quiet",
            ],
            &[],
        );
        // The restarted receiver opened (and recovered) the store: check it now.
        check_store(&db_path, &acked.lock().unwrap());

        let addr = process.addr;
        let stop = Arc::new(AtomicBool::new(false));
        let acks = Arc::new(AtomicUsize::new(0));
        let mut clients = Vec::new();
        for client in 0..CLIENTS {
            let stop = Arc::clone(&stop);
            let acks = Arc::clone(&acks);
            let acked = Arc::clone(&acked);
            let mut rng =
                Rng(seed ^ ((round * CLIENTS + client + 1) as u64).wrapping_mul(0x9E37_79B9));
            clients.push(tokio::spawn(async move {
                let Ok(mut connection) = Connection::try_open(addr).await else {
                    return;
                };
                let mut sequence = 0;
                while !stop.load(Ordering::Relaxed) {
                    let account = 1 + rng.below(3) as i64;
                    let mut ids: Vec<String> = (0..1 + rng.below(4))
                        .map(|n| format!("r{round}-c{client}-s{sequence}-{n}"))
                        .collect();
                    sequence += 1;
                    // Now and then resend an event already acknowledged: a retry after a crash.
                    let resent = {
                        let acked = acked.lock().unwrap();
                        if !acked.is_empty() && rng.below(4) == 0 {
                            let (acc, id) = acked[rng.below(acked.len() as u64) as usize].clone();
                            Some((acc, id))
                        } else {
                            None
                        }
                    };
                    let account = match &resent {
                        Some((acc, id)) => {
                            ids.push(id.clone());
                            *acc
                        }
                        None => account,
                    };
                    let body = body_of(account, &ids);
                    let request = request(
                        addr,
                        Method::POST,
                        "/webhook",
                        &[("content-type", "application/json")],
                        body,
                    );
                    match connection.send(request).await {
                        Ok(reply) if reply.status == StatusCode::OK => {
                            let answer: serde_json::Value =
                                serde_json::from_slice(&reply.body).unwrap();
                            if resent.is_some() {
                                assert!(
                                    answer["duplicates"].as_u64().unwrap() >= 1,
                                    "an acknowledged event is a duplicate: {answer}"
                                );
                            }
                            let mut acked = acked.lock().unwrap();
                            acked.extend(ids.into_iter().map(|id| (account, id)));
                            acks.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(reply) => panic!("unexpected answer {}", reply.status),
                        // The kill: the connection is gone, this request was never acknowledged.
                        Err(_) => return,
                    }
                }
            }));
        }
        // Kill at a random moment: after a random number of acknowledgements, with requests
        // from every client in flight.
        let target = 5 + rng.below(120) as usize;
        let reached = wait_until(Duration::from_secs(15), || {
            let acks = Arc::clone(&acks);
            async move { acks.load(Ordering::Relaxed) >= target }
        })
        .await;
        assert!(reached, "round {round}: the receiver answers under load");
        total_requests_acked += acks.load(Ordering::Relaxed);
        process.kill();
        stop.store(true, Ordering::Relaxed);
        for client in clients {
            tokio::time::timeout(Duration::from_secs(20), client)
                .await
                .expect("client ends after the kill")
                .expect("client task");
        }
    }

    // One last restart and check.
    let process = Process::spawn(
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
    let acked = acked.lock().unwrap().clone();
    check_store(&db_path, &acked);
    process.kill();
    eprintln!(
        "crash test: {KILLS} kills, {total_requests_acked} requests and {} events acknowledged, none lost, in {:?}",
        acked.len(),
        started.elapsed()
    );
}
