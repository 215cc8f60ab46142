//! HTTPS with a certificate made at test time (rcgen), in process and as a real process.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::rustls::{self, pki_types::ServerName};
use tokio_rustls::TlsConnector;

use crate::support::receiver::{envelope, raw_exchange, request, InProcess, Process, Reply};

/// Writes a self-signed certificate for `localhost` and its key (`cert.pem`, `key.pem` in
/// `dir`); returns the certificate DER.
pub(super) fn make_certificate(dir: &Path) -> rustls::pki_types::CertificateDer<'static> {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    std::fs::write(dir.join("cert.pem"), certified.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), certified.key_pair.serialize_pem()).unwrap();
    certified.cert.der().clone()
}

/// A TLS client trusting only `certificate`.
pub(super) fn connector(certificate: &rustls::pki_types::CertificateDer<'static>) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certificate.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// POSTs over HTTPS, trusting only `certificate`.
pub(super) async fn post_tls(
    addr: SocketAddr,
    certificate: &rustls::pki_types::CertificateDer<'static>,
    body: String,
) -> (StatusCode, serde_json::Value) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = connector(certificate)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake with the test certificate");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request: http::Request<Full<Bytes>> = request(
        addr,
        Method::POST,
        "/webhook",
        &[("content-type", "application/json")],
        body,
    );
    let response = sender.send_request(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_certificate_made_at_test_time() {
    let dir = tempfile::tempdir().unwrap();
    let certificate = make_certificate(dir.path());
    let mut config = receiver::Config::for_tests(dir.path().join("r.db"));
    config.tls = Some(receiver::TlsFiles {
        cert: dir.path().join("cert.pem"),
        key: dir.path().join("key.pem"),
    });
    let receiver = InProcess::start(config).await;
    let (status, answer) = post_tls(receiver.addr, &certificate, envelope(1, &["tls"])).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["stored"], 1);

    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = raw_exchange(receiver.addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(!plain.starts_with("HTTP/1.1 200"), "{plain}");
    receiver.stop().await.unwrap();

    // The command line: flags, and the https:// first line.
    let store = format!("sqlite:{}", dir.path().join("p.db").display());
    let cert = dir.path().join("cert.pem").display().to_string();
    let key = dir.path().join("key.pem").display().to_string();
    let process = Process::spawn(
        &[
            "--listen",
            "127.0.0.1:0",
            "--store",
            &store,
            "--output",
            "quiet",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ],
        &[],
    );
    assert!(process
        .first_line
        .starts_with("listening on https://127.0.0.1:"));
    let (status, _) = post_tls(process.addr, &certificate, envelope(1, &["tls-cli"])).await;
    assert_eq!(status, StatusCode::OK);
    process.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_a_client_that_stops_reading_loses_its_slot_too() {
    use tokio::io::AsyncWriteExt as _;
    let dir = tempfile::tempdir().unwrap();
    let certificate = make_certificate(dir.path());
    let mut config = receiver::Config::for_tests(dir.path().join("r.db"));
    config.tls = Some(receiver::TlsFiles {
        cert: dir.path().join("cert.pem"),
        key: dir.path().join("key.pem"),
    });
    config.limits.max_connections = 1;
    config.limits.write_stall_timeout = std::time::Duration::from_millis(300);
    let receiver = InProcess::start(config).await;
    let addr = receiver.addr;

    // The only slot: a TLS client with a tiny receive buffer that pipelines requests for the
    // metrics page and never reads an answer (rustls buffers the plaintext, so only the
    // socket shows whether bytes move).
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(addr).await.unwrap();
    let mut stuck = connector(&certificate)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let writer = tokio::spawn(async move {
        let pipelined = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".repeat(5000);
        let _ = stuck.write_all(pipelined.as_bytes()).await;
        let _ = stuck.flush().await;
        tokio::time::sleep(std::time::Duration::from_secs(30)).await;
        drop(stuck);
    });

    let (status, answer) = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        post_tls(addr, &certificate, envelope(1, &["after-stall"])),
    )
    .await
    .expect("served after the stalled TLS connection was closed");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["stored"], 1);
    writer.abort();
    receiver.stop().await.unwrap();
}

/// GETs `path` over HTTPS with `headers`, trusting only `certificate`.
async fn get_tls(
    addr: SocketAddr,
    certificate: &rustls::pki_types::CertificateDer<'static>,
    path: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = connector(certificate)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake with the test certificate");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(connection);
    let response = sender
        .send_request(request(addr, Method::GET, path, headers, Bytes::new()))
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inspector_speaks_tls_with_the_receivers_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let certificate = make_certificate(dir.path());
    let store = format!("sqlite:{}", dir.path().join("r.db").display());
    let cert = dir.path().join("cert.pem").display().to_string();
    let key = dir.path().join("key.pem").display().to_string();
    let process = Process::spawn(
        &[
            "listen",
            "--listen",
            "127.0.0.1:0",
            "--ui",
            "127.0.0.1:0",
            "--store",
            &store,
            "--output",
            "quiet",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ],
        &[],
    );
    let line = process
        .inspector_line
        .clone()
        .expect("the inspector's line");
    let (ui, token) = line
        .strip_prefix("inspector on https://")
        .and_then(|rest| rest.split_once("/?token="))
        .unwrap_or_else(|| panic!("{line}"));
    let ui: SocketAddr = ui.parse().unwrap();
    let (status, _) = post_tls(process.addr, &certificate, envelope(1, &["tls-ui"])).await;
    assert_eq!(status, StatusCode::OK);

    // A client trusting the certificate opens it; the cookie never travels over plain HTTP,
    // and only a secure page of this host may set it (`__Host-`).
    let first = get_tls(ui, &certificate, &format!("/?token={token}"), &[]).await;
    assert_eq!(first.status, StatusCode::OK);
    let set_cookie = first.headers["set-cookie"].to_str().unwrap();
    assert!(
        set_cookie.starts_with(&format!("__Host-receiver_inspector_{}=", ui.port()))
            && set_cookie.contains("; Secure")
            && set_cookie.contains("HttpOnly"),
        "{set_cookie}"
    );
    let cookie = first.cookie();
    let page = get_tls(ui, &certificate, "/", &[("cookie", &cookie)]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&page.body).contains("tls-ui"));

    // Plain HTTP to it gets no HTTP answer.
    let plain = raw_exchange(
        ui,
        format!("GET /?token={token} HTTP/1.1\r\nHost: {ui}\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(!plain.starts_with("HTTP/1.1"), "{plain}");
    process.kill();
}
