//! `receiver backup --out FILE` while a listener keeps storing: the copy holds every request
//! acknowledged before the backup began and opens as a store; it is written 0600 and whole;
//! a PostgreSQL store is pointed to `pg_dump`.

use std::os::unix::fs::PermissionsExt as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, StatusCode};

use crate::support::receiver::{
    envelope, request, run_cli, wait_until, Connection, InProcess, Process,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_under_load_holds_every_request_acknowledged_before_it_began() {
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("receiver.db");
    let store = format!("sqlite:{}", store_path.display());
    let process = Process::spawn(
        &[
            "listen",
            "--listen",
            "127.0.0.1:0",
            "--ui",
            "off",
            "--output",
            "quiet",
            "--store",
            &store,
        ],
        &[],
    );
    let addr = process.addr;
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = tokio::task::JoinSet::new();
    for lane in 0..4 {
        let (acknowledged, stop) = (acknowledged.clone(), stop.clone());
        load.spawn(async move {
            let mut connection = Connection::open(addr).await;
            let mut index = 0;
            while !stop.load(Ordering::SeqCst) {
                index += 1;
                let id = format!("b-{lane}-{index}");
                let sent = request(
                    addr,
                    Method::POST,
                    "/webhook",
                    &[("content-type", "application/json")],
                    envelope(1, &[&id]),
                );
                let reply = connection.send(sent).await.unwrap();
                assert_eq!(reply.status, StatusCode::OK);
                acknowledged.lock().unwrap().push(id);
            }
        });
    }
    let count = || acknowledged.lock().unwrap().len();
    assert!(wait_until(Duration::from_secs(15), || async { count() >= 300 }).await);

    // Everything acknowledged so far must be in the copy; the load goes on meanwhile.
    let before: Vec<String> = acknowledged.lock().unwrap().clone();
    let copy = dir.path().join("backup.db");
    let copy_arg = copy.display().to_string();
    let args = [
        "backup",
        "--out",
        copy_arg.as_str(),
        "--store",
        store.as_str(),
    ]
    .map(str::to_owned);
    let (code, _, stderr) = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_cli(&args, &[("RUST_LOG", "info")])
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("backed up"), "{stderr}");
    let after_backup = count();
    assert!(
        wait_until(Duration::from_secs(15), || async {
            count() > after_backup + 100
        })
        .await
    );
    stop.store(true, Ordering::SeqCst);
    while let Some(lane) = load.join_next().await {
        lane.unwrap();
    }
    process.kill();

    assert_eq!(
        std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let copy_store = format!("sqlite:{}", copy.display());
    let (code, listed, stderr) =
        run_cli(&["events", "list", "--json", "--store", &copy_store], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let in_copy: std::collections::HashSet<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["eventId"].as_str().unwrap())
        .collect();
    let missing: Vec<&String> = before
        .iter()
        .filter(|id| !in_copy.contains(id.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged before the backup, not in it: {missing:?}"
    );
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".tmp"))
        .collect();
    assert!(names.is_empty(), "no temporary file left: {names:?}");

    // The copy is a store a listener serves (and writes) as it is.
    let receiver = InProcess::start(receiver::Config::for_tests(copy.clone())).await;
    let reply = receiver.post(&[], envelope(1, &["after-restore"])).await;
    assert_eq!(reply.json()["stored"], 1);
    let duplicate = receiver.post(&[], envelope(1, &[before[0].as_str()])).await;
    assert_eq!(duplicate.json()["duplicates"], 1);
    receiver.stop().await.unwrap();
}

#[test]
fn a_backup_never_overwrites_its_store_and_points_postgres_to_pg_dump() {
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("receiver.db");
    let store = format!("sqlite:{}", store_path.display());
    let (code, _, stderr) = run_cli(
        &[
            "backup",
            "--out",
            &format!("{}-wal", store_path.display()),
            "--store",
            &store,
        ],
        &[],
    );
    assert_eq!(code, Some(2), "no store yet: {stderr}");
    assert!(stderr.contains("no store at"), "{stderr}");
    // A store made by a listener.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let receiver = InProcess::start(receiver::Config::for_tests(store_path.clone())).await;
        receiver.post(&[], envelope(1, &["kept"])).await;
        receiver.stop().await.unwrap();
    });
    for onto in [
        store_path.display().to_string(),
        format!("{}-wal", store_path.display()),
    ] {
        let (code, _, stderr) = run_cli(&["backup", "--out", &onto, "--store", &store], &[]);
        assert_eq!(code, Some(2), "{onto}: {stderr}");
        assert!(stderr.contains("--out"), "{stderr}");
    }
    // A first copy is made; a second one onto it is refused (it is a database) and the first
    // one is left as it was.
    let copy = dir.path().join("copy.db");
    let copy_text = copy.display().to_string();
    let (code, _, stderr) = run_cli(&["backup", "--out", &copy_text, "--store", &store], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    let first_copy = std::fs::read(&copy).unwrap();
    let (code, _, stderr) = run_cli(&["backup", "--out", &copy_text, "--store", &store], &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("is a SQLite database"), "{stderr}");
    assert_eq!(std::fs::read(&copy).unwrap(), first_copy);
    let (code, _, stderr) = run_cli(
        &[
            "backup",
            "--out",
            "x.dump",
            "--store",
            "postgres://receiver:hunter2-secret@127.0.0.1:9/webhooks",
        ],
        &[],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("pg_dump"), "{stderr}");
    assert!(!stderr.contains("hunter2-secret"), "{stderr}");
}
