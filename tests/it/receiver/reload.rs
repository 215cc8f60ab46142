//! Reload without a restart, with the real program and real signals: SIGHUP while signed
//! requests keep coming on keep-alive connections. A rotation of the signature file (a second
//! secret added, then a broken file, then the first secret removed), the Basic credentials of
//! the config file, and the TLS certificate swapped: nothing that should pass is refused or
//! dropped, the new secret passes within a second, the removed one is refused after, a failed
//! reload keeps what was in force, and the log says what was reloaded and never a secret.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use verify::{unix_now, BasicCredentials, Keyring, Scheme, SignatureFile, SigningSecret};

use super::tls::{connector, make_certificate};
use crate::support::receiver::{envelope, post, request, wait_until, Connection, Process};

/// What a reload must take effect within.
const WITHIN: Duration = Duration::from_secs(1);

/// Replaces `path` with `text` whole (a temporary file renamed over it), as an operator's
/// tools do, so a reload never reads half a file.
fn replace(path: &Path, text: &str) {
    let temporary = path.with_extension("new");
    std::fs::write(&temporary, text).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

/// The headers that sign `body` with `secret`, as borrowed pairs.
fn signed(secret: &SigningSecret, id: &str, body: &str) -> Vec<(String, String)> {
    Keyring::single(secret.clone()).sign_headers(id, unix_now(), body.as_bytes())
}

fn as_refs(headers: &[(String, String)]) -> Vec<(&str, &str)> {
    headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect()
}

/// One request signed with `secret` on a fresh connection: its status.
async fn probe(addr: std::net::SocketAddr, secret: &SigningSecret, id: &str) -> StatusCode {
    let body = envelope(1, &[id]);
    let headers = signed(secret, id, &body);
    post(addr, "/webhook", &as_refs(&headers), body)
        .await
        .status
}

/// Polls `probe` until it answers `expected`; how long that took, or `None` after `limit`.
async fn answered_within(
    limit: Duration,
    mut probe: impl FnMut(u64) -> std::pin::Pin<Box<dyn std::future::Future<Output = StatusCode>>>,
    expected: StatusCode,
) -> Option<Duration> {
    let started = Instant::now();
    let mut attempt = 0;
    while started.elapsed() < limit {
        attempt += 1;
        if probe(attempt).await == expected {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

/// The counts of a load that runs until stopped.
#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    /// Answers other than 200 (each one a request refused that should have passed).
    refused: AtomicU64,
    /// Requests that got no answer (a connection dropped).
    dropped: AtomicU64,
}

/// `lanes` keep-alive connections sending requests signed with the secret `signing` holds
/// at each moment, until `stop`.
fn signed_load(
    addr: std::net::SocketAddr,
    lanes: usize,
    signing: Arc<RwLock<SigningSecret>>,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinSet<()> {
    let mut load = tokio::task::JoinSet::new();
    for lane in 0..lanes {
        let (signing, tally, stop) = (signing.clone(), tally.clone(), stop.clone());
        load.spawn(async move {
            let mut connection = Connection::open(addr).await;
            let mut index = 0;
            while !stop.load(Ordering::SeqCst) {
                index += 1;
                let id = format!("load-{lane}-{index}");
                let body = envelope(1, &[&id]);
                let secret = signing.read().unwrap().clone();
                let headers = signed(&secret, &id, &body);
                let mut all = as_refs(&headers);
                all.push(("content-type", "application/json"));
                let sent = request(addr, Method::POST, "/webhook", &all, body);
                tally.sent.fetch_add(1, Ordering::SeqCst);
                match connection.send(sent).await {
                    Ok(reply) if reply.status == StatusCode::OK => {}
                    Ok(_) => {
                        tally.refused.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(_) => {
                        tally.dropped.fetch_add(1, Ordering::SeqCst);
                        connection = Connection::open(addr).await;
                    }
                }
            }
        });
    }
    load
}

/// The receiver's log so far.
fn log_of(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Waits (bounded) until the log holds `text` `count` times.
async fn logged(path: &Path, text: &str, count: usize) -> bool {
    wait_until(Duration::from_secs(10), || async {
        log_of(path).matches(text).count() >= count
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotating_a_signature_file_under_load_refuses_nothing_that_should_pass() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (SigningSecret::generate(), SigningSecret::generate());
    let now = unix_now();
    let only_first = SignatureFile::new("wh_1", "crm", &Scheme::default(), &first, now);
    let mut both = only_first.clone();
    both.rotate(&second, now, 3600);
    let only_second = SignatureFile::new("wh_1", "crm", &Scheme::default(), &second, now);
    let file = dir.path().join("crm.json");
    replace(&file, &only_first.to_json_pretty());
    let log = dir.path().join("receiver.log");
    let store = format!("sqlite:{}", dir.path().join("r.db").display());
    let file_arg = file.display().to_string();
    let process = Process::spawn_logging(
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
            "--signature-file",
            &file_arg,
        ],
        &[],
        &log,
    );
    let addr = process.addr;
    let signing = Arc::new(RwLock::new(first.clone()));
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = signed_load(addr, 4, signing.clone(), tally.clone(), stop.clone());
    assert!(
        wait_until(Duration::from_secs(10), || async {
            tally.sent.load(Ordering::SeqCst) > 20
        })
        .await
    );
    assert_eq!(
        probe(addr, &second, "early").await,
        StatusCode::UNAUTHORIZED
    );

    // A second secret added: it passes within a second of the signal.
    replace(&file, &both.to_json_pretty());
    process.signal("HUP");
    let took = answered_within(
        WITHIN,
        |attempt| {
            let second = second.clone();
            Box::pin(async move { probe(addr, &second, &format!("added-{attempt}")).await })
        },
        StatusCode::OK,
    )
    .await;
    assert!(took.is_some(), "the added secret passes within {WITHIN:?}");
    assert!(logged(&log, "reloaded the signature files", 1).await);
    // The sender moves to the new secret, as it does during a rotation.
    *signing.write().unwrap() = second.clone();

    // A broken file: the reload fails, both secrets stay in force.
    replace(&file, "{\"version\": 1, \"secrets\": [");
    process.signal("HUP");
    assert!(logged(&log, "reload failed; what was in force stays", 1).await);
    assert_eq!(probe(addr, &first, "kept-1").await, StatusCode::OK);
    assert_eq!(probe(addr, &second, "kept-2").await, StatusCode::OK);

    // The first secret removed: refused from then on.
    replace(&file, &only_second.to_json_pretty());
    process.signal("HUP");
    let took = answered_within(
        WITHIN,
        |attempt| {
            let first = first.clone();
            Box::pin(async move { probe(addr, &first, &format!("removed-{attempt}")).await })
        },
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert!(
        took.is_some(),
        "the removed secret is refused within {WITHIN:?}"
    );
    assert_eq!(
        probe(addr, &first, "removed-after").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(probe(addr, &second, "still").await, StatusCode::OK);
    assert!(logged(&log, "reloaded the signature files", 2).await);
    let at_last_reload = tally.sent.load(Ordering::SeqCst);
    assert!(
        wait_until(Duration::from_secs(10), || async {
            tally.sent.load(Ordering::SeqCst) > at_last_reload + 20
        })
        .await
    );

    stop.store(true, Ordering::SeqCst);
    while let Some(lane) = load.join_next().await {
        lane.unwrap();
    }
    let sent = tally.sent.load(Ordering::SeqCst);
    assert!(sent > 60, "{sent} requests sent");
    assert_eq!(tally.refused.load(Ordering::SeqCst), 0, "of {sent}");
    assert_eq!(tally.dropped.load(Ordering::SeqCst), 0, "of {sent}");

    let text = log_of(&log);
    assert!(text.contains("1 signature key in force"), "{text}");
    assert!(
        text.contains("reading signature file"),
        "why it failed: {text}"
    );
    for secret in [&first, &second] {
        let whsec = secret.expose_whsec();
        let encoded = whsec.trim_start_matches("whsec_");
        assert!(!text.contains(encoded), "a secret in the log: {text}");
    }
    process.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_credentials_of_the_config_file_reload() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("receiver.toml");
    let store = dir.path().join("r.db");
    let settings = |password: &str| {
        format!(
            "listen = \"127.0.0.1:0\"\nui = \"off\"\noutput = \"quiet\"\nstore = \"sqlite:{}\"\n\
             basic-user = \"alm\"\nbasic-password = \"{password}\"\n",
            store.display()
        )
    };
    replace(&config, &settings("first-password"));
    std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let log = dir.path().join("receiver.log");
    let config_arg = config.display().to_string();
    let process = Process::spawn_logging(&["--config", &config_arg], &[], &log);
    let addr = process.addr;
    let basic = |password: &str| {
        BasicCredentials::new("alm", password)
            .unwrap()
            .authorization_header()
    };
    let with = |password: String, id: u64| async move {
        let header = [("authorization", password.as_str())];
        post(addr, "/webhook", &header, envelope(1, &[&format!("b{id}")]))
            .await
            .status
    };
    assert_eq!(with(basic("first-password"), 0).await, StatusCode::OK);

    replace(&config, &settings("second-password"));
    process.signal("HUP");
    let second = basic("second-password");
    let took = answered_within(
        WITHIN,
        |attempt| Box::pin(with(second.clone(), attempt)),
        StatusCode::OK,
    )
    .await;
    assert!(took.is_some(), "the new password passes within {WITHIN:?}");
    assert_eq!(
        with(basic("first-password"), 99).await,
        StatusCode::UNAUTHORIZED
    );
    assert!(logged(&log, "reloaded the config file", 1).await);
    let text = log_of(&log);
    assert!(text.contains("Basic credentials"), "{text}");
    assert!(
        !text.contains("first-password") && !text.contains("second-password"),
        "{text}"
    );
    process.kill();
}

/// A keep-alive HTTPS connection trusting only `certificate`.
async fn tls_connection(
    addr: std::net::SocketAddr,
    certificate: &CertificateDer<'static>,
) -> anyhow::Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
    let tcp = TcpStream::connect(addr).await?;
    let tls = connector(certificate)
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// Writes a new certificate and key over `cert.pem` and `key.pem` in `dir` (each replaced
/// whole); returns the certificate.
fn new_certificate(dir: &Path) -> CertificateDer<'static> {
    let made = tempfile::tempdir().unwrap();
    let certificate = make_certificate(made.path());
    for name in ["key.pem", "cert.pem"] {
        let text = std::fs::read_to_string(made.path().join(name)).unwrap();
        replace(&dir.join(name), &text);
    }
    certificate
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tls_certificate_swapped_under_load_drops_no_connection() {
    let dir = tempfile::tempdir().unwrap();
    let old = make_certificate(dir.path());
    let log = dir.path().join("receiver.log");
    let store = format!("sqlite:{}", dir.path().join("r.db").display());
    let (cert, key): (PathBuf, PathBuf) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let (cert_arg, key_arg) = (cert.display().to_string(), key.display().to_string());
    let process = Process::spawn_logging(
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
            "--tls-cert",
            &cert_arg,
            "--tls-key",
            &key_arg,
        ],
        &[],
        &log,
    );
    let addr = process.addr;
    // Connections opened before the swap keep sending through it.
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = tokio::task::JoinSet::new();
    for lane in 0..3 {
        let mut sender = tls_connection(addr, &old).await.unwrap();
        let (tally, stop) = (tally.clone(), stop.clone());
        load.spawn(async move {
            let mut index = 0;
            while !stop.load(Ordering::SeqCst) {
                index += 1;
                let body = envelope(1, &[&format!("tls-{lane}-{index}")]);
                let sent = request(
                    addr,
                    Method::POST,
                    "/webhook",
                    &[("content-type", "application/json")],
                    body,
                );
                tally.sent.fetch_add(1, Ordering::SeqCst);
                let answered = async {
                    sender.ready().await?;
                    let response = sender.send_request(sent).await?;
                    let status = response.status();
                    response.into_body().collect().await?;
                    anyhow::Ok(status)
                };
                match answered.await {
                    Ok(StatusCode::OK) => {}
                    Ok(_) => {
                        tally.refused.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(_) => {
                        tally.dropped.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                }
            }
        });
    }
    assert!(
        wait_until(Duration::from_secs(10), || async {
            tally.sent.load(Ordering::SeqCst) > 20
        })
        .await
    );

    let new = new_certificate(dir.path());
    process.signal("HUP");
    let took = answered_within(
        WITHIN,
        |_| {
            let new = new.clone();
            Box::pin(async move {
                match tls_connection(addr, &new).await {
                    Ok(_) => StatusCode::OK,
                    Err(_) => StatusCode::SERVICE_UNAVAILABLE,
                }
            })
        },
        StatusCode::OK,
    )
    .await;
    assert!(took.is_some(), "new connections get the new certificate");
    assert!(
        tls_connection(addr, &old).await.is_err(),
        "and no longer the old one"
    );
    assert!(logged(&log, "reloaded", 1).await);

    // A key that does not go with the certificate: the reload fails, the new pair stays.
    let other = tempfile::tempdir().unwrap();
    make_certificate(other.path());
    replace(
        &key,
        &std::fs::read_to_string(other.path().join("key.pem")).unwrap(),
    );
    process.signal("HUP");
    assert!(logged(&log, "reload failed; what was in force stays", 1).await);
    assert!(tls_connection(addr, &new).await.is_ok());

    let at_reload = tally.sent.load(Ordering::SeqCst);
    assert!(
        wait_until(Duration::from_secs(10), || async {
            tally.sent.load(Ordering::SeqCst) > at_reload + 20
        })
        .await
    );
    stop.store(true, Ordering::SeqCst);
    while let Some(lane) = load.join_next().await {
        lane.unwrap();
    }
    let sent = tally.sent.load(Ordering::SeqCst);
    assert_eq!(tally.refused.load(Ordering::SeqCst), 0, "of {sent}");
    assert_eq!(tally.dropped.load(Ordering::SeqCst), 0, "of {sent}");
    let text = log_of(&log);
    assert!(text.contains("do not go together"), "why it failed: {text}");
    assert!(!text.contains("PRIVATE KEY"), "{text}");
    process.kill();
}
