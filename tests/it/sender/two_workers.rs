//! Two `sender run` processes on one state, one webhook (issue 16): the worker that does not
//! hold the webhook's lease waits for it quietly (no CPU to speak of, a line or two of log)
//! while the holder retries a failing endpoint; every event is still acknowledged once and in
//! order; and when the holder is killed (SIGKILL) the other takes over within the lease TTL.
//!
//! The scenario runs on each store (`on_each_store!`): a SQLite file, and a PostgreSQL database
//! (skipped loudly without PostgreSQL, failed under `CI=true`).

use std::process::Command;
use std::time::{Duration, Instant};

use common::on_each_store;
use serde_json::Value;

use super::{enqueue, Harness};
use crate::support::endpoint::{FakeEndpoint, Reply};
use crate::support::logged::Logged;
use crate::support::receiver::wait_until;

const SENDER: &str = env!("CARGO_BIN_EXE_it-sender");

/// The lease TTL the workers run with.
const LEASE_TTL: Duration = Duration::from_secs(4);
/// How much later than the lease TTL after the kill the survivor may take over: a holder
/// killed right after renewing leaves a lease that lapses a whole TTL later, which is what a
/// store that cannot see the dead process (another host) waits for, plus one look. (Here both
/// stores see the dead pid, in the same pid space, and take over within a poll interval or
/// so.)
const TAKEOVER_SLACK: Duration = Duration::from_millis(500);
/// How often the workers look for work (and the waiting one at the lease).
const POLL: &str = "100ms";
/// Failed attempts the holder makes before the endpoint recovers: at one per 300 ms retry,
/// about three seconds of failing.
const FAILURES: usize = 10;
/// Most CPU the waiting worker may use over the failing window (about 3 s). Waiting costs it
/// a read of the lease and a look for work per poll interval; the spinning worker of the issue
/// used a whole core, that is the full window.
const IDLE_CPU_BOUND: Duration = Duration::from_millis(300);
/// Most lines the waiting worker may write to standard error over that window.
const IDLE_STDERR_LINES: usize = 3;

on_each_store! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_waits_quietly_and_takes_over_when_the_holder_dies(harness: Harness) {
    let state = harness.location.as_str();
    let endpoint = FakeEndpoint::start().await;
    endpoint.answer(Reply::status(500));
    let added = sender(
        state,
        &[
            "webhooks",
            "add",
            "--name",
            "crm",
            "--url",
            &endpoint.url(),
            "--events",
            "all",
            "--json",
        ],
    )
    .await;
    assert!(added["id"].is_string(), "{added}");
    let mut expected = enqueue(state, 10).await;

    // The first worker takes the lease and keeps it while it retries the failing endpoint.
    let first = spawn_run(state);
    endpoint.wait_for(1, Duration::from_secs(15)).await;
    let second = spawn_run(state);
    second
        .wait_for_stderr(
            "another worker delivers to this webhook",
            Duration::from_secs(15),
        )
        .await;
    let cpu_before = cpu_time(second.id());
    let lines_before = second.stderr().lines().count();
    let window = Instant::now();
    endpoint
        .wait_for(1 + FAILURES, Duration::from_secs(30))
        .await;
    let (cpu_used, window) = (cpu_time(second.id()) - cpu_before, window.elapsed());
    let waiting_log = second.stderr();
    eprintln!(
        "waiting worker: {cpu_used:?} of CPU over {window:?}, {} line(s) of stderr",
        waiting_log.lines().count()
    );
    assert!(
        cpu_used < IDLE_CPU_BOUND,
        "the waiting worker used {cpu_used:?} of CPU in {window:?}\n{waiting_log}"
    );
    assert!(
        waiting_log.lines().count() <= IDLE_STDERR_LINES,
        "the waiting worker wrote {} lines (before the window: {lines_before}):\n{waiting_log}",
        waiting_log.lines().count()
    );
    assert_eq!(
        count_in(&waiting_log, "another worker delivers"),
        1,
        "said once who delivers, not once per look:\n{waiting_log}"
    );
    assert!(
        !first.stderr().contains("another worker delivers"),
        "the first worker held the lease throughout:\n{}",
        first.stderr()
    );

    endpoint.answer(Reply::ok());
    wait_acknowledged(&endpoint, expected.len(), Duration::from_secs(30)).await;
    assert_acknowledged_once_in_order(&endpoint, &expected);

    // The endpoint fails again for new events; whichever worker holds the lease now is killed
    // while it retries, and the other one must deliver within the lease TTL.
    endpoint.answer(Reply::status(500));
    let failed_before = (attempts_failed(&first), attempts_failed(&second));
    expected.extend(enqueue(state, 5).await);
    let deadline = Instant::now() + Duration::from_secs(15);
    // Only the lease holder attempts: its count of failures is the one that grows.
    let (mut holder, survivor) = loop {
        if attempts_failed(&first) > failed_before.0 {
            break (first, second);
        }
        if attempts_failed(&second) > failed_before.1 {
            break (second, first);
        }
        assert!(
            Instant::now() < deadline,
            "no worker retried the new events"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let killed_at = Instant::now();
    holder.signal("KILL");
    holder.wait_exit(Duration::from_secs(10)).await;
    let attempts_at_kill = endpoint.received().len();
    endpoint.answer(Reply::ok());
    wait_acknowledged(&endpoint, expected.len(), Duration::from_secs(30)).await;
    let taken_over = endpoint.received()[attempts_at_kill].at - killed_at;
    eprintln!("the survivor's first attempt came {taken_over:?} after the SIGKILL");
    assert!(
        taken_over < LEASE_TTL + TAKEOVER_SLACK,
        "the survivor took over after {taken_over:?}, past the lease TTL {LEASE_TTL:?}\n{}",
        survivor.stderr()
    );
    assert_acknowledged_once_in_order(&endpoint, &expected);
}}

/// `sender --state STATE ARGS` run to success; its standard output as JSON.
async fn sender(state: &str, args: &[&str]) -> Value {
    let output = super::run_sender(state, args).await;
    serde_json::from_slice(&output.stdout).expect("JSON output")
}

/// `sender run` with compressed durations, logging at `info` as a user would run it.
fn spawn_run(state: &str) -> Logged {
    let lease_ttl = format!("{}ms", LEASE_TTL.as_millis());
    Logged::spawn(
        Command::new(SENDER)
            .args(["--state", state, "run", "--poll-interval", POLL])
            .args(["--lease-ttl", &lease_ttl])
            .args(["--retry-initial", "300ms", "--retry-max", "300ms"])
            .env("RUST_LOG", "info"),
    )
}

fn count_in(text: &str, needle: &str) -> usize {
    text.lines().filter(|line| line.contains(needle)).count()
}

fn attempts_failed(process: &Logged) -> usize {
    count_in(&process.stderr(), "attempt failed")
}

/// Waits (bounded) until `count` events have been answered with a 2xx.
async fn wait_acknowledged(endpoint: &FakeEndpoint, count: usize, timeout: Duration) {
    assert!(
        wait_until(timeout, || async { acknowledged(endpoint).len() >= count }).await,
        "{} of {count} events acknowledged within {timeout:?}",
        acknowledged(endpoint).len()
    );
}

/// The `eventId`s the endpoint answered with a 2xx, in the order they arrived.
fn acknowledged(endpoint: &FakeEndpoint) -> Vec<String> {
    endpoint
        .received()
        .iter()
        .filter(|request| (200..300).contains(&request.status))
        .flat_map(|request| request.event_ids())
        .collect()
}

/// Each event acknowledged exactly once, in the order it was enqueued: two workers on the
/// webhook at once would show as a repeat or a swap.
fn assert_acknowledged_once_in_order(endpoint: &FakeEndpoint, expected: &[String]) {
    assert_eq!(acknowledged(endpoint), expected);
}

/// The CPU time (user + system) the process has used so far, from `/proc/PID/stat`.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // Fields after the command name, which is in parentheses and may hold spaces: the state
    // is field 3, utime field 14 and stime field 15 (proc(5)).
    let after_name = &stat[stat.rfind(')').expect("(comm)") + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    Duration::from_millis(ticks * 1000 / clock_ticks_per_second())
}

/// `sysconf(_SC_CLK_TCK)`, asked of getconf(1): the workspace forbids `unsafe`.
fn clock_ticks_per_second() -> u64 {
    let output = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .expect("run getconf");
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .expect("CLK_TCK")
}
