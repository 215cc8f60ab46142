//! The inspector's guard as an attacker and a careless operator meet it: a cookie of each
//! server's own (browsers send a host's cookies to all its ports), tokens too short to hold,
//! and guesses slowed down per client while everybody else gets in at once. The store does
//! not matter here: SQLite only.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use http::{Method, StatusCode};

use crate::support::inspector::{Inspected, TOKEN};
use crate::support::receiver::{binary, output_within, request, send_from, wait_until};

/// Another client than the tests' usual 127.0.0.1.
const OTHER_CLIENT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

fn config(dir: &std::path::Path, name: &str) -> receiver::Config {
    receiver::Config::for_tests(dir.join(format!("{name}.db")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_inspectors_on_one_host_keep_cookies_of_their_own() {
    let dir = tempfile::tempdir().unwrap();
    // The same token on both: only the cookie tells them apart.
    let first = Inspected::start(config(dir.path(), "a")).await;
    let second = Inspected::start(config(dir.path(), "b")).await;
    for inspected in [&first, &second] {
        let (name, value) = inspected.cookie.split_once('=').unwrap();
        assert_eq!(name, format!("receiver_inspector_{}", inspected.ui.port()));
        assert_ne!(value, TOKEN, "the cookie carries no token");
        assert_eq!(inspected.get("/").await.status, StatusCode::OK);
    }
    // A browser sends both cookies to both ports: each takes its own and only its own.
    let both = format!("{}; {}", first.cookie, second.cookie);
    for inspected in [&first, &second] {
        let reply = inspected.get_bare("/", &[("cookie", &both)]).await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    let swapped = [(&first, &second.cookie), (&second, &first.cookie)];
    for (inspected, others) in swapped {
        let reply = inspected.get_bare("/", &[("cookie", others)]).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{others}");
        // Even under this server's own cookie name, the other's session opens nothing.
        let (_, value) = others.split_once('=').unwrap();
        let renamed = format!("receiver_inspector_{}={value}", inspected.ui.port());
        let reply = inspected.get_bare("/", &[("cookie", &renamed)]).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{renamed}");
    }
    second.stop().await;
    first.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_tokens_are_slowed_down_per_client_and_the_right_one_still_works() {
    let dir = tempfile::tempdir().unwrap();
    let window = Duration::from_secs(3);
    let inspected = Inspected::start_with(config(dir.path(), "r"), TOKEN, |settings| {
        settings.wrong_token_limit = common::web::WrongTokenLimit {
            attempts: 5,
            window,
            ..common::web::WrongTokenLimit::default()
        };
    })
    .await;
    let ui = inspected.ui;
    let get_from = |client: Ipv4Addr, path: String| async move {
        send_from(client, ui, request(ui, Method::GET, &path, &[], "")).await
    };
    // A burst of guesses: the first five are told 401, then the client must wait.
    let burst_began = Instant::now();
    let mut statuses = Vec::new();
    for guess in 0..8 {
        let reply = get_from(
            Ipv4Addr::LOCALHOST,
            format!("/?token=guess-guess-guess-{guess:04}"),
        )
        .await;
        statuses.push(reply.status.as_u16());
        if reply.status == StatusCode::TOO_MANY_REQUESTS {
            let retry_after: u64 = reply.headers["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=3).contains(&retry_after), "Retry-After {retry_after}");
            assert!(!String::from_utf8_lossy(&reply.body).contains(TOKEN));
        }
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429, 429, 429]);
    // While it waits, even the right token from that client is not looked at ...
    let right = format!("/?token={TOKEN}");
    let reply = get_from(Ipv4Addr::LOCALHOST, right.clone()).await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    // ... but a browser of that client already signed in keeps working (a session key is no
    // guess) ...
    assert_eq!(inspected.get("/").await.status, StatusCode::OK);
    // ... and another client gets in with the right token at once.
    let asked = Instant::now();
    let reply = get_from(OTHER_CLIENT, right.clone()).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(asked.elapsed() < Duration::from_secs(2), "promptly");
    assert!(
        burst_began.elapsed() < window,
        "the burst took longer than the window; the checks above proved nothing"
    );
    // The window over, the first client gets in with the right token.
    let recovered = wait_until(window * 4, || {
        let right = right.clone();
        async move { get_from(Ipv4Addr::LOCALHOST, right).await.status == StatusCode::OK }
    })
    .await;
    assert!(recovered, "the client may try again after the window");
    inspected.stop().await;
}

#[test]
fn a_ui_token_under_16_characters_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite:{}", dir.path().join("r.db").display());
    let listen = [
        "listen",
        "--listen",
        "127.0.0.1:0",
        "--store",
        &store,
        "--ui",
        "127.0.0.1:0",
    ];
    let flag = [&listen[..], &["--ui-token", "fifteen-chars-x"]].concat();
    for (args, envs) in [
        (&flag[..], &[][..]),
        (&listen[..], &[("RECEIVER_UI_TOKEN", "short")][..]),
    ] {
        let mut command = std::process::Command::new(binary());
        command.args(args).env("RUST_LOG", "warn");
        for (name, value) in envs {
            command.env(name, value);
        }
        let output = output_within(&mut command, Duration::from_secs(30));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?} {envs:?}: {stderr}");
        assert!(
            stderr.contains("--ui-token (or RECEIVER_UI_TOKEN)")
                && stderr.contains("at least 16 characters"),
            "{stderr}"
        );
        assert!(output.stdout.is_empty(), "nothing served");
    }
}
