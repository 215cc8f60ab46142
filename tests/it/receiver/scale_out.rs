//! Scale-out on PostgreSQL with real processes (SPEC section 7): three `receiver listen`
//! processes on one database under concurrent signed load, some requests sent to two
//! receivers at the same moment, receivers SIGKILLed and restarted at random, and the database
//! stopped in the middle of it all.
//!
//! Afterwards: every request was finally acknowledged (its sender retried, as Learning Manager
//! does), every event is stored exactly once, each answer's `stored` + `duplicates` is what it
//! received, and the `stored` counts of a request's answers add up to its events (exactly,
//! when no attempt of it was lost to a kill: so two receivers racing on one event never both
//! claim it). While the database was down, no request got a 2xx, at least one got 503, and the
//! receivers that lived through the outage answer again without a restart.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use verify::{unix_now, Keyring, Scheme, SignatureFile, SigningSecret};

use crate::support::receiver::{
    completed_envelope as body_of, get, request, wait_until, Connection, Process, Rng,
};

const RECEIVERS: usize = 3;
const CLIENTS: usize = 6;
/// Kills before the outage and in all.
const KILLS_BEFORE_OUTAGE: usize = 7;
const KILLS: usize = 12;
/// The whole test stays under a minute on a loaded two-core machine.
const BUDGET: Duration = Duration::from_secs(60);
/// How long a client keeps retrying one request before the test fails.
const RETRY_FOR: Duration = Duration::from_secs(25);

/// The receivers' current addresses (`None` while one is being restarted).
type Fleet = Arc<Mutex<Vec<Option<SocketAddr>>>>;

/// `count` distinct live receivers, at random.
fn pick(fleet: &Fleet, rng: &mut Rng, count: usize) -> Vec<SocketAddr> {
    let mut live: Vec<SocketAddr> = fleet.lock().unwrap().iter().flatten().copied().collect();
    let mut picked = Vec::new();
    while picked.len() < count && !live.is_empty() {
        picked.push(live.swap_remove(rng.below(live.len() as u64) as usize));
    }
    picked
}

/// One attempt: when it left, when its answer came, and the answer (status and the
/// `received`/`stored`/`duplicates` of a 2xx) or why there was none.
struct Attempt {
    sent: Instant,
    answered: Instant,
    outcome: Result<(StatusCode, Option<[u64; 3]>), String>,
}

/// One request as its sender saw it, across its attempts.
struct Sent {
    account: i64,
    ids: Vec<String>,
    twin: bool,
    attempts: Vec<Attempt>,
}

impl Sent {
    fn acknowledged(&self) -> bool {
        self.attempts
            .iter()
            .any(|attempt| matches!(attempt.outcome, Ok((status, _)) if status.is_success()))
    }
}

/// One signed POST on a fresh connection.
async fn attempt(addr: SocketAddr, keyring: &Keyring, message_id: &str, body: &str) -> Attempt {
    let sent = Instant::now();
    let signed = keyring.sign_headers(message_id, unix_now(), body.as_bytes());
    let mut headers: Vec<(&str, &str)> = signed
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    headers.push(("content-type", "application/json"));
    let outcome = match Connection::try_open(addr).await {
        Ok(mut connection) => connection
            .send(request(
                addr,
                Method::POST,
                "/webhook",
                &headers,
                body.to_owned(),
            ))
            .await
            .map(|reply| {
                let counts = reply.status.is_success().then(|| {
                    let answer = reply.json();
                    ["received", "stored", "duplicates"]
                        .map(|field| answer[field].as_u64().expect("a count"))
                });
                (reply.status, counts)
            })
            .map_err(|error| error.to_string()),
        Err(error) => Err(error.to_string()),
    };
    Attempt {
        sent,
        answered: Instant::now(),
        outcome,
    }
}

/// A client: requests of 1 to 4 new events, a third of them sent to two receivers at once,
/// each retried (same `webhook-id`, same body) until acknowledged.
async fn client(
    number: usize,
    seed: u64,
    fleet: Fleet,
    keyring: Arc<Keyring>,
    stop: Arc<AtomicBool>,
    done: Arc<Mutex<Vec<Sent>>>,
    refused_503: Arc<AtomicUsize>,
) {
    let mut rng = Rng(seed ^ ((number as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1);
    let mut sequence = 0;
    while !stop.load(Ordering::Relaxed) {
        let account = 1 + rng.below(3) as i64;
        let ids: Vec<String> = (0..1 + rng.below(4))
            .map(|n| format!("c{number}-s{sequence}-{n}"))
            .collect();
        let message_id = format!("msg_c{number}_s{sequence}");
        sequence += 1;
        let body = body_of(account, &ids);
        let mut sent = Sent {
            account,
            ids,
            twin: rng.below(3) == 0,
            attempts: Vec::new(),
        };
        let deadline = Instant::now() + RETRY_FOR;
        while !sent.acknowledged() {
            assert!(
                Instant::now() < deadline,
                "request {message_id} was never acknowledged"
            );
            let targets = pick(&fleet, &mut rng, if sent.twin { 2 } else { 1 });
            let attempts = targets.into_iter().map(|addr| {
                let (keyring, message_id, body) =
                    (Arc::clone(&keyring), message_id.clone(), body.clone());
                async move { attempt(addr, &keyring, &message_id, &body).await }
            });
            for attempt in futures_join(attempts).await {
                if matches!(attempt.outcome, Ok((StatusCode::SERVICE_UNAVAILABLE, _))) {
                    refused_503.fetch_add(1, Ordering::Relaxed);
                }
                sent.attempts.push(attempt);
            }
            if !sent.acknowledged() {
                // A sender's retry delay (short, to keep the test quick), not a synchronisation.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        done.lock().unwrap().push(sent);
    }
}

/// Runs the attempts at the same moment, as spawned tasks, and returns them in order.
async fn futures_join(
    attempts: impl Iterator<Item = impl std::future::Future<Output = Attempt> + Send + 'static>,
) -> Vec<Attempt> {
    let tasks: Vec<_> = attempts.map(tokio::spawn).collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("attempt task"));
    }
    results
}

/// Starts a receiver process on the database, signed requests only.
async fn spawn_receiver(url: &str, signature_file: &str) -> Process {
    let (url, signature_file) = (url.to_owned(), signature_file.to_owned());
    tokio::task::spawn_blocking(move || {
        Process::spawn(
            &[
                "listen",
                "--listen",
                "127.0.0.1:0",
                "--signature-file",
                &signature_file,
                "--output",
                "quiet",
            ],
            // The URL holds the password: the environment keeps it out of `ps`.
            &[("RECEIVER_STORE", &url)],
        )
    })
    .await
    .expect("spawn task")
}

/// Kills a random receiver and starts a new one in its slot.
async fn kill_one(
    processes: &mut [Process],
    fleet: &Fleet,
    rng: &mut Rng,
    url: &str,
    signature_file: &str,
) {
    let slot = rng.below(processes.len() as u64) as usize;
    fleet.lock().unwrap()[slot] = None;
    let fresh = spawn_receiver(url, signature_file).await;
    fleet.lock().unwrap()[slot] = Some(fresh.addr);
    std::mem::replace(&mut processes[slot], fresh).kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_receivers_one_database_kills_and_an_outage_lose_nothing_and_count_truly() {
    let what = "three_receivers_one_database_kills_and_an_outage_lose_nothing_and_count_truly";
    let started = Instant::now();
    let cluster = match common::test_postgres::TestCluster::start() {
        Ok(cluster) => Arc::new(cluster),
        Err(error) => return common::test_postgres::skip_or_fail(what, &error),
    };
    let url = cluster.create_database().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let secret = SigningSecret::generate();
    let signature_path = dir.path().join("signature.json");
    let file = SignatureFile::new("wh_1", "CRM sync", &Scheme::default(), &secret, unix_now());
    std::fs::write(&signature_path, file.to_json_pretty()).unwrap();
    let signature_file = signature_path.display().to_string();
    let keyring = Arc::new(Keyring::single(secret));
    let (mut rng, seed) = Rng::from_clock();
    eprintln!("scale-out test seed {seed}");

    let mut processes = Vec::new();
    for _ in 0..RECEIVERS {
        processes.push(spawn_receiver(&url, &signature_file).await);
    }
    let fleet: Fleet = Arc::new(Mutex::new(
        processes.iter().map(|process| Some(process.addr)).collect(),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(Mutex::new(Vec::new()));
    let refused_503 = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|number| {
            tokio::spawn(client(
                number,
                seed,
                Arc::clone(&fleet),
                Arc::clone(&keyring),
                Arc::clone(&stop),
                Arc::clone(&done),
                Arc::clone(&refused_503),
            ))
        })
        .collect();
    let acknowledged_so_far = |at_least: usize| {
        let done = Arc::clone(&done);
        async move { done.lock().unwrap().len() >= at_least }
    };

    // Kills at random moments: after a random number of further acknowledged requests.
    let mut kills = 0;
    while kills < KILLS_BEFORE_OUTAGE {
        let target = done.lock().unwrap().len() + 5 + rng.below(40) as usize;
        assert!(
            wait_until(Duration::from_secs(20), || acknowledged_so_far(target)).await,
            "the receivers answer under load"
        );
        kill_one(&mut processes, &fleet, &mut rng, &url, &signature_file).await;
        kills += 1;
    }

    // The database goes away under load, and comes back.
    let stopping = Arc::clone(&cluster);
    tokio::task::spawn_blocking(move || stopping.stop())
        .await
        .unwrap()
        .expect("stop the database");
    let down_from = Instant::now();
    let before = refused_503.load(Ordering::Relaxed);
    assert!(
        wait_until(Duration::from_secs(15), || {
            let refused_503 = Arc::clone(&refused_503);
            async move { refused_503.load(Ordering::Relaxed) >= before + 3 }
        })
        .await,
        "a stopped database gives 503"
    );
    let down_until = Instant::now();
    let restarting = Arc::clone(&cluster);
    tokio::task::spawn_blocking(move || restarting.restart())
        .await
        .unwrap()
        .expect("restart the database");
    // The receivers that lived through the outage recover by themselves.
    let survivors: Vec<SocketAddr> = processes.iter().map(|process| process.addr).collect();
    for addr in survivors {
        assert!(
            wait_until(Duration::from_secs(15), || async move {
                get(addr, "/healthz").await.status == StatusCode::OK
            })
            .await,
            "receiver {addr} recovers without a restart"
        );
    }

    while kills < KILLS {
        let target = done.lock().unwrap().len() + 5 + rng.below(40) as usize;
        assert!(
            wait_until(Duration::from_secs(20), || acknowledged_so_far(target)).await,
            "the receivers answer under load after the outage"
        );
        kill_one(&mut processes, &fleet, &mut rng, &url, &signature_file).await;
        kills += 1;
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        tokio::time::timeout(RETRY_FOR + Duration::from_secs(5), client)
            .await
            .expect("client ends")
            .expect("client task");
    }
    for process in processes {
        process.kill();
    }
    let done = std::mem::take(&mut *done.lock().unwrap());

    // No 2xx while the database was down.
    let during_outage: Vec<&Attempt> = done
        .iter()
        .flat_map(|sent| &sent.attempts)
        .filter(|attempt| attempt.sent >= down_from && attempt.answered <= down_until)
        .collect();
    assert!(
        during_outage
            .iter()
            .all(|attempt| !matches!(attempt.outcome, Ok((status, _)) if status.is_success())),
        "a 2xx while the database was down"
    );
    // The outage was seen: a 503 only arises from it. Any attempt counts, not only those wholly
    // inside the window, because on a loaded machine an attempt may straddle its edges.
    assert!(
        done.iter()
            .flat_map(|sent| &sent.attempts)
            .any(|attempt| matches!(attempt.outcome, Ok((StatusCode::SERVICE_UNAVAILABLE, _)))),
        "no 503 during the outage"
    );

    // The answers add up.
    let mut clean_twins = 0;
    for sent in &done {
        let events = sent.ids.len() as u64;
        let answers: Vec<[u64; 3]> = sent
            .attempts
            .iter()
            .filter_map(|attempt| {
                attempt
                    .outcome
                    .as_ref()
                    .ok()
                    .and_then(|(_, counts)| *counts)
            })
            .collect();
        for [received, stored, duplicates] in &answers {
            assert_eq!(*received, events);
            assert_eq!(stored + duplicates, events, "{:?}", sent.ids);
        }
        let stored: u64 = answers.iter().map(|[_, stored, _]| stored).sum();
        assert!(
            stored <= events,
            "events claimed stored twice: {:?}",
            sent.ids
        );
        let every_attempt_answered_2xx = answers.len() == sent.attempts.len();
        if every_attempt_answered_2xx {
            // Nothing of it was committed by an attempt whose answer was lost.
            assert_eq!(stored, events, "{:?}", sent.ids);
            if sent.twin && answers.len() == 2 {
                clean_twins += 1;
            }
        }
    }
    assert!(
        clean_twins >= 5,
        "only {clean_twins} requests raced on two receivers"
    );

    // Every event stored exactly once, nothing else stored.
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let rows = client
        .query("SELECT account_id, event_id FROM receiver_events", &[])
        .await
        .unwrap();
    let stored: Vec<(i64, String)> = rows.iter().map(|row| (row.get(0), row.get(1))).collect();
    let unique: HashSet<&(i64, String)> = stored.iter().collect();
    assert_eq!(unique.len(), stored.len(), "an event stored twice");
    let sent: HashSet<(i64, String)> = done
        .iter()
        .flat_map(|sent| sent.ids.iter().map(|id| (sent.account, id.clone())))
        .collect();
    assert_eq!(
        unique,
        sent.iter().collect::<HashSet<_>>(),
        "stored events differ from the acknowledged ones"
    );
    let attempts: usize = done.iter().map(|sent| sent.attempts.len()).sum();
    eprintln!(
        "scale-out test: {RECEIVERS} receivers, {kills} kills, {} requests ({clean_twins} raced on two receivers), {attempts} attempts, {} events stored once each, in {:?}",
        done.len(),
        stored.len(),
        started.elapsed()
    );
    assert!(started.elapsed() < BUDGET, "over budget");
}
