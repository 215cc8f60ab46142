//! A store outage, on every store: the SQLite store's file system fills up (a real tmpfs of
//! 4 MiB, filled by a file), or the PostgreSQL server stops (a cluster of the test's own).
//! The receiver answers 503, `/healthz` says so, nothing half-stored remains, and once the
//! store is back it recovers without a restart. One test body, two outages.
//!
//! Mounting needs root (CAP_SYS_ADMIN), which the developers' machines and CI have here.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use http::StatusCode;

use crate::support::receiver::{get, wait_until, InProcess};
use crate::support::store::{StoreKind, TestStore};

/// A tmpfs mounted for the test and lazily unmounted when dropped.
struct SmallDisk {
    path: PathBuf,
}

impl SmallDisk {
    fn mount(path: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(path).unwrap();
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .expect("run mount");
        assert!(
            output.status.success(),
            "the outage test mounts a small tmpfs and needs root: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        SmallDisk {
            path: path.to_owned(),
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Writes zeros to `path` until the file system is full.
fn fill(path: &Path) {
    let mut file = std::fs::File::create(path).unwrap();
    let block = vec![0u8; 16 * 1024];
    while file.write_all(&block).is_ok() {}
    // Sub-block remainders too.
    while file.write_all(&[0u8; 512]).is_ok() {}
    let _ = file.sync_all();
}

fn big_envelope(id: &str) -> String {
    format!(
        r#"{{"accountId":1,"events":[{{"eventId":"{id}","eventName":"LEARNING_OBJECT_MODIFICATION","timestamp":1,"data":{{"loId":"course:1","loType":"course","note":"{}"}}}}]}}"#,
        "n".repeat(100 * 1024)
    )
}

/// The store going away and coming back.
enum Outage {
    /// The SQLite file's tmpfs, and the file that fills it.
    FullDisk { _disk: SmallDisk, filler: PathBuf },
    /// The PostgreSQL server, stopped and started again.
    DatabaseDown(common::test_postgres::TestCluster),
}

impl Outage {
    fn begin(&self) {
        match self {
            Outage::FullDisk { filler, .. } => fill(filler),
            Outage::DatabaseDown(cluster) => cluster.stop().expect("stop the database"),
        }
    }

    fn end(&self) {
        match self {
            Outage::FullDisk { filler, .. } => std::fs::remove_file(filler).unwrap(),
            Outage::DatabaseDown(cluster) => cluster.restart().expect("restart the database"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_gives_503_and_the_receiver_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let disk = SmallDisk::mount(&dir.path().join("disk"), "4m");
    let store = TestStore::sqlite_at(&disk.path.join("receiver.db"));
    let filler = disk.path.join("filler");
    store_outage_gives_503_and_the_receiver_recovers(
        store,
        Outage::FullDisk {
            _disk: disk,
            filler,
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_down_gives_503_and_the_receiver_recovers() {
    let what = "database_down_gives_503_and_the_receiver_recovers";
    let cluster = match common::test_postgres::TestCluster::start() {
        Ok(cluster) => cluster,
        Err(error) => return common::test_postgres::skip_or_fail(what, &error),
    };
    let store = TestStore::at_url(&cluster.create_database().unwrap());
    store_outage_gives_503_and_the_receiver_recovers(store, Outage::DatabaseDown(cluster)).await;
}

async fn store_outage_gives_503_and_the_receiver_recovers(store: TestStore, outage: Outage) {
    let receiver = InProcess::start(store.config()).await;
    assert_eq!(
        receiver.post(&[], big_envelope("before")).await.status,
        StatusCode::OK
    );

    outage.begin();
    // The WAL may still have room from earlier frames; keep sending until a commit needs new
    // space. Every 200 in the meantime must be a stored event.
    let mut acknowledged = Vec::new();
    let mut refused = None;
    for attempt in 0..60 {
        let id = format!("during-{attempt}");
        let reply = receiver.post(&[], big_envelope(&id)).await;
        match reply.status {
            StatusCode::OK => acknowledged.push(id),
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(
                    reply.json(),
                    serde_json::json!({"error": "store_unavailable"})
                );
                refused = Some(id);
                break;
            }
            other => panic!("unexpected {other}"),
        }
    }
    let refused = refused.expect("the store outage gives 503");
    if store.kind == StoreKind::Postgres {
        assert!(acknowledged.is_empty(), "no 2xx while the database is down");
    }
    assert_eq!(
        get(receiver.addr, "/healthz").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let metrics = String::from_utf8(get(receiver.addr, "/metrics").await.body.to_vec()).unwrap();
    assert!(metrics.contains("receiver_store_up 0"), "{metrics}");
    assert!(metrics.contains("receiver_refusals_total{reason=\"store_unavailable\"}"));

    // The store comes back: health recovers by itself, and the refused request now goes in.
    outage.end();
    let addr = receiver.addr;
    let healthy = wait_until(Duration::from_secs(10), || async move {
        get(addr, "/healthz").await.status == StatusCode::OK
    })
    .await;
    assert!(healthy, "healthz recovers");
    let retry = receiver.post(&[], big_envelope(&refused)).await;
    assert_eq!(retry.status, StatusCode::OK);
    assert_eq!(
        retry.json()["stored"],
        1,
        "the 503'd request had stored nothing"
    );

    if store.kind == StoreKind::Sqlite {
        let integrity: String = receiver
            .db()
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .unwrap();
        assert_eq!(integrity, "ok");
    }
    for id in acknowledged.iter().chain([&"before".to_owned(), &refused]) {
        let count = store
            .scalar(&format!(
                "SELECT COUNT(*) FROM {{events}} WHERE event_id = '{id}'"
            ))
            .await;
        assert_eq!(count, 1, "{id}");
    }
    receiver.stop().await.unwrap();
    drop(outage);
}
