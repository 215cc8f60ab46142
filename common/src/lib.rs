//! What the `receiver` and `sender` programs share, written once.
//!
//! The two binaries are separate products, but they are run the same way (the same flags for
//! logs and output, the same PostgreSQL connection strings, the same token-guarded web pages).
//! What they do alike lives here, one module per job:
//!
//! - [`cli`]: clap's exits, standard output that a closed pipe ends quietly (`out!`,
//!   `outln!`), the `completions` and `man` subcommands, event-name completion;
//! - [`config_file`]: `--config FILE`, a TOML file of long flag names whose values become the
//!   flags' defaults (so a flag, then the environment, still win), checked key by key;
//! - [`files`]: the files the programs write, mode 0600 and replaced whole or not at all
//!   (through a synced temporary file renamed into place), never onto a database they read;
//! - [`logging`]: the `tracing` set-up and `tell`, the lines meant for a person;
//! - [`parse`]: durations, byte sizes, instants and HTTP dates, read by well-kept crates;
//! - [`signal`]: the SIGINT / SIGTERM future of the long-running commands;
//! - [`text`]: showing text that came from a request (ids, names, headers, bodies) on a
//!   terminal or a page with its controls, bidirectional and invisible characters escaped;
//! - `postgres`: connection strings (`postgres://…`), TLS to the database, a small pool, and a
//!   printable form of the URL that never shows the password; [`postgres_schema`]: creating,
//!   upgrading (ordered steps) or refusing a program's tables, under an advisory lock;
//! - [`store_location`]: `receiver --store` and `sender --state`, read once (`sqlite:PATH`,
//!   `sqlite://PATH`, `postgres://…`);
//! - `test_postgres` (feature `test-postgres`): throwaway PostgreSQL servers for the store
//!   suites of both programs and of `tests/`;
//! - `web` (feature `web`): the token-guarded web pages' shared layer: guard, layout,
//!   stylesheet, script, escaping, server-sent events, and serving (binding, the token rules,
//!   the accept loop, forms, the same-origin check of changes);
//! - `client` (feature `client`): sending one HTTP request and reading its answer, for replay
//!   and the inspector's Send again;
//! - `target_guard` (feature `client`): which addresses a page reachable from other hosts may
//!   send to (no loopback, private, link-local, unspecified or reserved ones), checked when a
//!   target is given and again at connect time; its `TableResolver`, which answers names from
//!   a table, only with the feature `test-resolver` (tests);
//! - `target_url` (feature `client`): a Target URL, parsed and checked once by one rule set
//!   (absolute `http` or `https`, a host, no credentials) and carried typed to the client.
//!
//! This crate does no work of its own at start-up: each module is a set of functions and types
//! the binaries call.

pub mod cli;
pub mod config_file;
pub mod files;
pub mod logging;
pub mod parse;
pub mod postgres;
pub mod postgres_schema;
mod postgres_tls;
pub mod signal;
pub mod store_location;
pub mod text;

// Also built for this crate's own tests, which run the schema routine on a real server.
#[cfg(any(test, feature = "test-postgres"))]
pub mod test_postgres;

#[cfg(feature = "web")]
pub mod web;

#[cfg(feature = "client")]
pub mod client;

#[cfg(feature = "client")]
pub mod target_guard;

#[cfg(feature = "client")]
pub mod target_url;
