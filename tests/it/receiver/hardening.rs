//! Hostile and broken clients over raw TCP: request smuggling, oversize bodies, slow heads and
//! bodies (slowloris), idle connections, the connection cap, and garbage.

use std::time::{Duration, Instant};

use http::StatusCode;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

use crate::support::receiver::{envelope, get, raw_exchange, read_to_close, Connection, InProcess};

fn chunked(body: &str) -> String {
    format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len())
}

async fn hardened(dir: &std::path::Path) -> InProcess {
    let mut config = receiver::Config::for_tests(dir.join("r.db"));
    config.limits.max_body_bytes = 4096;
    config.limits.header_read_timeout = Duration::from_millis(500);
    config.limits.body_read_timeout = Duration::from_millis(500);
    config.limits.max_connections = 4;
    InProcess::start(config).await
}

fn status_of(answer: &str) -> &str {
    answer.get(9..12).unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_with_transfer_encoding_is_refused_in_either_order() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = hardened(dir.path()).await;
    let body = envelope(1, &["smuggled"]);
    let heads = [
        "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n",
        "transfer-encoding: chunked\r\ncontent-length: 400\r\n",
    ];
    for head in heads {
        // A smuggled second request follows the chunked body on the same connection.
        let raw = format!(
            "POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{head}\r\n{}GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
            chunked(&body)
        );
        let answer = raw_exchange(receiver.addr, raw.as_bytes()).await;
        assert_eq!(status_of(&answer), "400", "{head}: {answer}");
        assert!(answer.contains("ambiguous_length"), "{answer}");
        assert!(answer.to_ascii_lowercase().contains("connection: close"));
        assert_eq!(
            answer.matches("HTTP/1.1").count(),
            1,
            "the smuggled request is never answered: {answer}"
        );
    }
    // The same with bare LF line ends, which hyper also accepts.
    let raw = format!(
        "POST /webhook HTTP/1.1\nHost: x\nContent-Type: application/json\nTransfer-Encoding: chunked\nContent-Length: 4\n\n{}",
        chunked(&body)
    );
    let answer = raw_exchange(receiver.addr, raw.as_bytes()).await;
    assert_eq!(status_of(&answer), "400", "bare LF: {answer}");
    assert!(answer.contains("ambiguous_length"), "{answer}");
    // A plain chunked request (no Content-Length) is fine, also after a length request on
    // the same connection.
    let raw = format!(
        "POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{}",
        body.len(),
        body,
        chunked(&envelope(1, &["chunked"]))
    );
    let answer = raw_exchange(receiver.addr, raw.as_bytes()).await;
    assert_eq!(answer.matches("HTTP/1.1 200 OK").count(), 2, "{answer}");
    let stored: Vec<String> = receiver
        .db()
        .prepare("SELECT event_id FROM events ORDER BY id")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(stored, vec!["smuggled", "chunked"]);
    receiver.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_bodies_are_refused_before_or_while_reading() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = hardened(dir.path()).await;

    // A declared length over the limit: 413 at once, without sending a byte of body.
    let mut stream = TcpStream::connect(receiver.addr).await.unwrap();
    stream
        .write_all(b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1073741824\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let answer = read_to_close(&mut stream).await;
    assert_eq!(status_of(&answer), "413", "{answer}");
    assert!(answer.contains("body_too_large"));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered before any body"
    );

    // A chunked body that grows past the limit: 413 while reading, connection closed.
    let mut stream = TcpStream::connect(receiver.addr).await.unwrap();
    stream
        .write_all(b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    let chunk = format!("400\r\n{}\r\n", " ".repeat(0x400));
    let mut refused = false;
    for _ in 0..64 {
        if stream.write_all(chunk.as_bytes()).await.is_err() {
            refused = true;
            break;
        }
    }
    let answer = read_to_close(&mut stream).await;
    assert!(
        status_of(&answer) == "413" || refused,
        "refused while reading: {answer}"
    );
    if !answer.is_empty() {
        assert_eq!(status_of(&answer), "413", "{answer}");
    }

    // A head over 64 KiB is refused by hyper.
    let raw = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(70_000)
    );
    let answer = raw_exchange(receiver.addr, raw.as_bytes()).await;
    assert!(answer.is_empty() || status_of(&answer) == "431", "{answer}");
    // Still serving.
    assert_eq!(get(receiver.addr, "/healthz").await.status, StatusCode::OK);
    receiver.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_heads_slow_bodies_and_idle_connections_are_cut() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = hardened(dir.path()).await;

    // Slowloris: half a head, then nothing. hyper's header timer closes it.
    let mut stream = TcpStream::connect(receiver.addr).await.unwrap();
    stream
        .write_all(b"POST /webhook HTTP/1.1\r\nHost: x\r\nX-Slow:")
        .await
        .unwrap();
    let started = Instant::now();
    let answer = read_to_close(&mut stream).await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(400) && waited < Duration::from_secs(5),
        "closed after the header timeout, not before: {waited:?} {answer}"
    );

    // A head, then a body that stalls: 408 after the body timeout.
    let mut stream = TcpStream::connect(receiver.addr).await.unwrap();
    stream
        .write_all(b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"acc")
        .await
        .unwrap();
    let answer = read_to_close(&mut stream).await;
    assert_eq!(status_of(&answer), "408", "{answer}");
    assert!(answer.contains("body_timeout"));

    // An idle keep-alive connection is closed after the same timeout.
    let mut stream = TcpStream::connect(receiver.addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let answer = read_to_close(&mut stream).await;
    assert_eq!(status_of(&answer), "200");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "idle connection closed"
    );
    receiver.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_wait_for_a_free_slot() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = receiver::Config::for_tests(dir.path().join("r.db"));
    config.limits.max_connections = 2;
    let receiver = InProcess::start(config).await;
    let addr = receiver.addr;

    let mut first = Connection::open(addr).await;
    let mut second = Connection::open(addr).await;
    let health = |addr| {
        crate::support::receiver::request(
            addr,
            http::Method::GET,
            "/healthz",
            &[],
            bytes::Bytes::new(),
        )
    };
    assert_eq!(
        first.send(health(addr)).await.unwrap().status,
        StatusCode::OK
    );
    assert_eq!(
        second.send(health(addr)).await.unwrap().status,
        StatusCode::OK
    );

    // The third connects (the kernel backlog takes it) but is not served while two are open.
    let third = tokio::spawn(async move {
        let mut third = Connection::open(addr).await;
        third.send(health(addr)).await.map(|reply| reply.status)
    });
    let early = tokio::time::timeout(Duration::from_millis(300), async {
        while !third.is_finished() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        early.is_err(),
        "the third connection waits while the cap is reached"
    );
    drop(first);
    let status = tokio::time::timeout(Duration::from_secs(10), third)
        .await
        .expect("served once a slot frees")
        .unwrap()
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    drop(second);
    receiver.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_never_takes_the_server_down() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = hardened(dir.path()).await;
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let prefixes: [&[u8]; 4] = [
        b"",
        b"POST /webhook HTTP/1.1\r\n",
        b"POST /webhook HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n",
        b"GET /\xff\xfe HTTP/1.1\r\n\r\n",
    ];
    for round in 0..40 {
        let mut bytes = prefixes[round % prefixes.len()].to_vec();
        let length = (next() % 200) as usize;
        bytes.extend((0..length).map(|_| (next() & 0xff) as u8));
        let mut stream = TcpStream::connect(receiver.addr).await.unwrap();
        let _ = stream.write_all(&bytes).await;
        let _ = stream.shutdown().await;
        let answer = read_to_close(&mut stream).await;
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 "),
            "{answer:?}"
        );
    }
    // Bodies that are JSON of every wrong shape.
    for body in ["null", "1", "\"s\"", "{\"accountId\":1e400,\"events\":[]}", "{\"accountId\":1,\"events\":[{}]}", "{\"accountId\":1,\"events\":[{\"eventId\":\"a\",\"eventName\":\"X\",\"timestamp\":99999999999999999999,\"data\":{}}]}"] {
        let reply = receiver.post(&[], body).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
    }
    assert_eq!(get(receiver.addr, "/healthz").await.status, StatusCode::OK);
    receiver.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_loses_its_slot_after_the_write_stall_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = receiver::Config::for_tests(dir.path().join("r.db"));
    config.limits.max_connections = 1;
    config.limits.write_stall_timeout = Duration::from_millis(300);
    let receiver = InProcess::start(config).await;
    let addr = receiver.addr;

    // The only slot: a client with a tiny receive buffer pipelines thousands of requests for
    // the metrics page (a few KiB each) and never reads an answer, so the server's writes
    // block once the socket buffers are full.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stuck = socket.connect(addr).await.unwrap();
    let pipelined = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".repeat(5000);
    let writer = tokio::spawn(async move {
        // The server stops reading too once it is stuck writing: this may never finish.
        let _ = stuck.write_all(pipelined.as_bytes()).await;
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(stuck);
    });

    // Another client waits in the backlog; it is served once the stuck one is cut off.
    let started = Instant::now();
    let health = tokio::time::timeout(Duration::from_secs(10), get(addr, "/healthz"))
        .await
        .expect("served after the stalled connection was closed");
    assert_eq!(health.status, StatusCode::OK);
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "the slot was really taken until the stall timeout ({:?})",
        started.elapsed()
    );
    writer.abort();
    receiver.stop().await.unwrap();
}
