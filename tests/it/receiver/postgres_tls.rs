//! TLS to the database (`sslmode` in the store URL, libpq's meanings): a receiver on a
//! PostgreSQL server with `ssl=on` and a certificate made at test time connects encrypted with
//! `require`, checks the chain with `verify-ca`, and refuses a wrong root or, with
//! `verify-full`, a certificate for another name.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;

use http::StatusCode;

use crate::support::receiver::{envelope, InProcess};
use crate::support::store::TestStore;

/// A self-signed certificate for `names` and its key, as `NAME.pem` and `NAME.key`.
fn certificate(dir: &Path, file: &str, names: &[&str]) {
    let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
    let certified = rcgen::generate_simple_self_signed(names).unwrap();
    std::fs::write(dir.join(format!("{file}.pem")), certified.cert.pem()).unwrap();
    let key = dir.join(format!("{file}.key"));
    std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
    // The server refuses a key others may read.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Opening the store for reading, off the async workers: `Ok` or the error in words.
async fn read_store(url: String) -> Result<(), String> {
    tokio::task::spawn_blocking(move || {
        let location =
            common::store_location::StoreLocation::parse(&url).map_err(|e| format!("{e:#}"))?;
        receiver::store::open_reader(&location)
            .map(drop)
            .map_err(|error| format!("{error:#}"))
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_the_database_as_sslmode_says() {
    let what = "tls_to_the_database_as_sslmode_says";
    let dir = tempfile::tempdir().unwrap();
    // The server's certificate names another host than the 127.0.0.1 we connect to.
    certificate(dir.path(), "server", &["db.example"]);
    certificate(dir.path(), "other", &["db.example"]);
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let root_user = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .ok()
        == Some(0);
    if root_user {
        // As root the server runs as `postgres`, which must own its key.
        let status = Command::new("chown")
            .args(["-R", "postgres:"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success());
    }
    let cert = dir.path().join("server.pem").display().to_string();
    let key = dir.path().join("server.key").display().to_string();
    let cluster = match common::test_postgres::TestCluster::start_with_settings(&[
        ("ssl", "on"),
        ("ssl_cert_file", &cert),
        ("ssl_key_file", &key),
    ]) {
        Ok(cluster) => cluster,
        Err(error) => return common::test_postgres::skip_or_fail(what, &error),
    };
    let url = cluster.create_database().unwrap();
    let root = |file: &str| dir.path().join(file).display().to_string();

    // require: encrypted, the certificate not checked.
    let store = TestStore::at_url(&format!("{url}?sslmode=require"));
    let receiver = InProcess::start(store.config()).await;
    let reply = receiver.post(&[], envelope(1, &["over-tls"])).await;
    assert_eq!(reply.status, StatusCode::OK);
    let encrypted = store
        .scalar(
            "SELECT COUNT(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.application_name = 'receiver' AND s.ssl",
        )
        .await;
    assert!(encrypted >= 1, "the receiver's sessions are encrypted");
    receiver.stop().await.unwrap();

    // verify-ca with the right root: the chain is checked, the name is not.
    let verify_ca = format!("{url}?sslmode=verify-ca&sslrootcert={}", root("server.pem"));
    assert_eq!(read_store(verify_ca).await, Ok(()));

    // A wrong root, or verify-full for a certificate naming another host: refused.
    for (mode, file) in [("verify-ca", "other.pem"), ("verify-full", "server.pem")] {
        let refused = read_store(format!("{url}?sslmode={mode}&sslrootcert={}", root(file)))
            .await
            .expect_err(mode);
        assert!(refused.contains("certificate"), "{mode}: {refused}");
        assert!(!refused.contains(common::test_postgres::SUPERUSER_PASSWORD));
    }
    drop(cluster);
}
