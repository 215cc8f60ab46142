//! The files the receiver writes, as an operator meets them: the store and its `-wal` and
//! `-shm`, and exports, are readable by their owner only (mode 0600 under the usual umask
//! 022); an export never lands on the store it reads, under any name, nor on any other SQLite
//! database; it goes through a FIFO, a symbolic link or a descriptor of the process as they
//! are (never replacing them); and an export that fails half-way leaves the previous file
//! where it was.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Stdio};

use http::StatusCode;

use crate::support::receiver::{
    binary, envelope, open_db, output_within, post, run_cli, InProcess,
};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Stores three accepted requests (ids `f1`, `f2`, `f3`) in a SQLite store in `dir`.
async fn store_three(dir: &Path) -> String {
    let receiver = InProcess::start_in(dir).await;
    for id in ["f1", "f2", "f3"] {
        let reply = receiver.post(&[], envelope(1, &[id])).await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    receiver.stop().await.unwrap();
    format!("sqlite:{}", dir.join("receiver.db").display())
}

fn event_count(store: &str) -> String {
    let (code, stdout, stderr) = run_cli(&["events", "count", "--store", store], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    stdout.trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_onto_the_store_or_its_companions_is_refused_and_the_store_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_three(dir.path()).await;
    let db = dir.path().join("receiver.db");
    assert_eq!(event_count(&store), "3");
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let hard_link = dir.path().join("events.jsonl");
    std::fs::hard_link(&db, &hard_link).unwrap();
    let symbolic_link = dir.path().join("latest.jsonl");
    std::os::unix::fs::symlink(&db, &symbolic_link).unwrap();
    let cases = [
        (db.clone(), "the database itself"),
        (dir.path().join("sub/../receiver.db"), "the database itself"),
        (hard_link, "the database itself"),
        (symbolic_link, "the database itself"),
        // The log and the index need not exist (the listener is stopped) to be refused.
        (dir.path().join("receiver.db-wal"), "write-ahead log"),
        (
            dir.path().join("sub/../receiver.db-shm"),
            "shared-memory index",
        ),
    ];
    for (out, what) in cases {
        let out = out.display().to_string();
        let (code, stdout, stderr) = run_cli(&["export", "--store", &store, "--out", &out], &[]);
        assert_eq!(code, Some(2), "--out {out}: {stderr}");
        assert!(stdout.is_empty(), "{stdout}");
        assert!(
            stderr.starts_with("error: --out ") && stderr.contains(what),
            "--out {out}: {stderr}"
        );
        assert_eq!(event_count(&store), "3", "--out {out} left the store whole");
    }
    // Every request is still there, byte for byte, and exports still work.
    let (code, stdout, stderr) = run_cli(&["export", "--store", &store], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_goes_through_pipes_and_links_and_never_onto_another_database() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_three(dir.path()).await;
    let (_, expected, _) = run_cli(&["export", "--store", &store], &[]);
    assert_eq!(expected.lines().count(), 3, "{expected}");

    // Another receiver's store (a SQLite database under any name): refused, untouched.
    let other_dir = dir.path().join("other");
    std::fs::create_dir(&other_dir).unwrap();
    let other = store_three(&other_dir).await;
    let other_db = other_dir.join("receiver.db");
    let renamed = dir.path().join("backup.jsonl");
    std::fs::copy(&other_db, &renamed).unwrap();
    for target in [&other_db, &renamed] {
        let before = std::fs::read(target).unwrap();
        let out = target.display().to_string();
        let (code, _, stderr) = run_cli(&["export", "--store", &store, "--out", &out], &[]);
        assert_eq!(code, Some(2), "--out {out}: {stderr}");
        assert!(stderr.contains("is a SQLite database"), "{stderr}");
        assert_eq!(std::fs::read(target).unwrap(), before, "{out} untouched");
    }
    assert_eq!(event_count(&other), "3");

    // A symbolic link stays a link; the file it leads to gets the export.
    let real = dir.path().join("exports-2026.jsonl");
    let link = dir.path().join("latest.jsonl");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    for _ in 0..2 {
        let out = link.display().to_string();
        let (code, _, stderr) = run_cli(&["export", "--store", &store, "--out", &out], &[]);
        assert_eq!(code, Some(0), "{stderr}");
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read_to_string(&real).unwrap(), expected);
    }

    // A FIFO stays a FIFO, and its reader gets every line.
    let fifo = dir.path().join("export.fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read_to_string(fifo).unwrap())
    };
    // Bounded: a program that waited on the FIFO for something else would never end.
    let exported = output_within(
        Command::new(binary())
            .args(["export", "--store", &store, "--out"])
            .arg(&fifo)
            .env("RUST_LOG", "warn"),
        std::time::Duration::from_secs(30),
    );
    assert!(exported.status.success(), "{exported:?}");
    // Before joining: a FIFO replaced by a file would leave the reader waiting for ever.
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(
        &std::fs::symlink_metadata(&fifo).unwrap().file_type()
    ));
    assert_eq!(reader.join().unwrap(), expected);

    // One of the process's own descriptors (what `--out >(gzip)` names): written through it.
    let (code, stdout, stderr) = run_cli(&["export", "--store", &store, "--out", "/dev/fd/1"], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_export_leaves_the_previous_file_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_three(dir.path()).await;
    let out = dir.path().join("exports").join("capture.jsonl");
    std::fs::create_dir(out.parent().unwrap()).unwrap();
    let out_arg = out.display().to_string();
    let (code, _, stderr) = run_cli(&["export", "--store", &store, "--out", &out_arg], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    let good = std::fs::read_to_string(&out).unwrap();
    assert_eq!(good.lines().count(), 3, "{good}");

    // The last request becomes unreadable: the export fails after writing the first two.
    open_db(&dir.path().join("receiver.db"))
        .execute(
            "UPDATE requests SET headers = x'ff00ff' WHERE id = (SELECT max(id) FROM requests)",
            [],
        )
        .unwrap();
    let (code, _, stderr) = run_cli(&["export", "--store", &store, "--out", &out_arg], &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        good,
        "the previous export is left as it was"
    );
    // And nothing half-written is left beside it.
    let names: Vec<_> = std::fs::read_dir(out.parent().unwrap())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("capture.jsonl")]);
}

/// `receiver ARGS` under umask 022 (as on most systems, so what the program asks for is
/// what the files get), standard error into `stderr`.
fn under_umask_022(args: &[&str], stderr: Stdio) -> Command {
    let mut command = Command::new("sh");
    command
        .args(["-c", "umask 022 && exec \"$0\" \"$@\""])
        .arg(binary())
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stderr(stderr);
    command
}

/// Starts `receiver listen` on `store` under umask 022 and gives it with its address once
/// it listens.
async fn listen(store: &str, stderr: Stdio) -> (std::process::Child, std::net::SocketAddr) {
    let mut child = under_umask_022(
        &["listen", "--listen", "127.0.0.1:0", "--ui", "off"],
        stderr,
    )
    .args(["--store", store, "--output", "quiet"])
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    let stdout = child.stdout.take().unwrap();
    let first_line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
        line
    })
    .await
    .unwrap();
    let addr = first_line
        .trim()
        .strip_prefix("listening on http://")
        .and_then(|rest| rest.split('/').next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("{first_line:?}"));
    (child, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_its_wal_and_shm_and_exports_are_0600() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite:{}", dir.path().join("receiver.db").display());
    let (mut child, addr) = listen(&store, Stdio::null()).await;
    let reply = post(addr, "/webhook", &[], envelope(1, &["p1", "p2"])).await;
    assert_eq!(reply.status, StatusCode::OK);
    // While the listener runs, SQLite keeps its log and index beside the store.
    for name in ["receiver.db", "receiver.db-wal", "receiver.db-shm"] {
        assert_eq!(mode(&dir.path().join(name)), 0o600, "{name}");
    }
    let out = dir.path().join("capture.jsonl");
    let out_arg = out.display().to_string();
    let export = under_umask_022(
        &["export", "--store", &store, "--out", &out_arg],
        Stdio::piped(),
    )
    .output()
    .unwrap();
    assert!(export.status.success(), "{export:?}");
    assert_eq!(mode(&out), 0o600, "the export holds whole bodies");
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_store_open_to_others_is_left_as_it_is_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_three(dir.path()).await;
    let db = dir.path().join("receiver.db");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o640)).unwrap();
    let log = dir.path().join("stderr.log");
    let (mut child, addr) = listen(&store, std::fs::File::create(&log).unwrap().into()).await;
    let reply = post(addr, "/webhook", &[], envelope(1, &["p3"])).await;
    assert_eq!(reply.status, StatusCode::OK);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(mode(&db), 0o640, "the owner's choice stands");
    let warnings = std::fs::read_to_string(&log).unwrap();
    assert!(
        warnings.contains("can be read by other users") && warnings.contains("chmod 600"),
        "{warnings}"
    );
}
