//! Receiver tests over real HTTP on loopback: the answer table, authentication, the stored
//! bytes, hardening, the command line, crashes, store outages and TLS.

// Test helpers outside `#[test]` functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod answers;
mod answers_with_auth;
mod auth;
mod backup;
mod check;
mod crash;
mod dedupe_keys;
mod environment;
mod erase;
mod events_cli;
mod export;
mod files;
mod forward;
mod forward_parking;
mod forward_targets;
mod forward_upgrade;
mod hardening;
mod inspector;
mod inspector_browser;
mod inspector_browser_overview;
mod inspector_curl;
mod inspector_findings;
mod inspector_forwarding;
mod inspector_guard;
mod inspector_overview;
mod inspector_resign;
mod layout;
mod metrics_format;
mod outage;
mod postgres_secrets;
mod postgres_tls;
mod process;
mod reload;
mod reporting_sql;
mod retention;
mod samples;
mod scale_out;
mod schemes;
mod search_cli;
mod spoofing;
mod tls;
