//! Helpers of the forwarding tests: a `receiver` process forwarding to several apps with short
//! backoff, bodies with the event names a test routes by, and `receiver forward …` read back.

use std::time::Duration;

use serde_json::Value;

use super::receiver::{run_cli, wait_until, Process};

/// A body of `account` with one event per `(eventId, eventName)`, in today's form.
pub fn named_envelope(account: i64, events: &[(&str, &str)]) -> String {
    let events: Vec<String> = events
        .iter()
        .map(|(id, name)| {
            format!(
                r#"{{"eventId":"{id}","eventName":"{name}","timestamp":"2026-11-27T10:00:00.000Z","eventInfo":"i","data":{{"userId":1,"loId":"course:1","loInstanceId":"course:1_1","loType":"course"}}}}"#
            )
        })
        .collect();
    format!(
        r#"{{"accountId":{account},"events":[{}]}}"#,
        events.join(",")
    )
}

/// The arguments of `receiver listen` on `store`, forwarding to each of `targets`
/// (`[EVENTS=]URL`) with a backoff of 20 ms to 200 ms, quiet, without the inspector.
pub fn listen_args(store: &str, targets: &[String]) -> Vec<String> {
    let mut args: Vec<String> = [
        "listen",
        "--listen",
        "127.0.0.1:0",
        "--store",
        store,
        "--output",
        "quiet",
        "--ui",
        "off",
        "--forward-retry-min",
        "20ms",
        "--forward-retry-max",
        "200ms",
        "--forward-timeout",
        "5s",
    ]
    .iter()
    .map(|arg| (*arg).to_owned())
    .collect();
    for target in targets {
        args.push("--forward-to".to_owned());
        args.push(target.clone());
    }
    args
}

/// A `receiver` process on `store` forwarding to `targets` (see [`listen_args`]).
pub fn forwarding_receiver(store: &str, targets: &[String]) -> Process {
    let args = listen_args(store, targets);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Process::spawn(&args, &[])
}

/// `receiver forward ARGS --store STORE`: (exit code, stdout, stderr).
pub fn forward_cli(store: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let mut all = vec!["forward"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--store", store]);
    run_cli(&all, &[])
}

/// `receiver forward list ARGS --json`, which must succeed: the jobs.
pub fn forward_list(store: &str, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["list", "--json"];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = forward_cli(store, &all);
    assert_eq!(code, Some(0), "forward list {args:?}: {stderr}");
    serde_json::from_str::<Value>(&stdout)
        .unwrap_or_else(|error| panic!("{error}: {stdout}"))
        .as_array()
        .expect("a JSON array")
        .clone()
}

/// `receiver forward show JOB --json`, which must succeed.
pub fn forward_show(store: &str, job: i64) -> Value {
    let (code, stdout, stderr) = forward_cli(store, &["show", &job.to_string(), "--json"]);
    assert_eq!(code, Some(0), "forward show {job}: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|error| panic!("{error}: {stdout}"))
}

/// The `eventIds` of a listed job, joined by `+` (one string per request, easy to compare).
pub fn event_ids(job: &Value) -> String {
    job["eventIds"]
        .as_array()
        .expect("eventIds")
        .iter()
        .map(|id| id.as_str().expect("an id"))
        .collect::<Vec<_>>()
        .join("+")
}

/// Waits (bounded) until every job listed is in `state` and there are `count` of them.
pub async fn wait_all_in_state(store: &str, count: usize, state: &str) -> bool {
    let store = store.to_owned();
    let state = state.to_owned();
    wait_until(Duration::from_secs(20), || {
        let (store, state) = (store.clone(), state.clone());
        async move {
            let jobs = tokio::task::spawn_blocking(move || forward_list(&store, &[]))
                .await
                .expect("forward list");
            jobs.len() == count && jobs.iter().all(|job| job["state"] == state.as_str())
        }
    })
    .await
}
