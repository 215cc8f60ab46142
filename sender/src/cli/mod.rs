//! The `sender` command line (SPEC section 5): parsing, dispatch, exit codes.
//!
//! One file per command family, as mini-redis keeps one per command: the clap types of a
//! command sit beside its handler, and this module only parses, opens the state when the
//! command needs it, and hands over:
//! - `webhooks.rs`: `webhooks add|list|show|edit|delete|retire|activate|signature|
//!   rotate-secret`; `webhook_test.rs`: `webhooks test`;
//! - `trigger.rs`: `trigger`; `run.rs`: `run` and `admin` (the delivery worker, alone or
//!   behind the admin pages); `args.rs`: the engine's flags both share, and the auth method a
//!   one-off request's flags imply; `operations.rs`: `--metrics` and `--notify-url`, which
//!   `run` and `admin` share;
//! - `deliveries.rs`: `deliveries list|show`, `recover.rs`: `deliveries resend|recover`;
//!   `sign.rs`: `sign`; `replay.rs`: `replay`;
//!   `events.rs`: `events`; `secret_key.rs`: `secret-key generate|rotate`;
//! - `signature_file.rs`: the signature files the commands read and write (mode 0600);
//!   `output.rs`: `--json` records.
//!
//! Exit status: 0 success, 1 the work failed (a delivery, a test), 2 bad usage or
//! configuration ([`UsageError`] anywhere in the error chain).

mod args;
mod deliveries;
mod events;
mod operations;
mod output;
mod recover;
mod replay;
mod run;
mod secret_key;
mod sign;
mod signature_file;
mod trigger;
mod webhook_test;
mod webhooks;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use common::cli::{CompletionsArgs, ManArgs};
use common::logging::LogFormat;
use common::store_location::StoreLocation;

use crate::sealing::SecretKey;
use crate::store::State;
use crate::UsageError;

/// Plays Adobe Learning Manager against a webhook listener: registrations, realistic events,
/// delivery with Learning Manager's ordering, timeouts and retries.
#[derive(Debug, Parser)]
#[command(name = "sender", version)]
struct Cli {
    /// Where registrations and the delivery queue live: sqlite:PATH (sqlite://PATH is the
    /// same: sqlite:///PATH is absolute), or postgres://USER[:PASSWORD]@HOST[:PORT]/DB shared
    /// by many workers.
    #[arg(
        long,
        env = "SENDER_STATE",
        default_value = "sqlite:./sender.db",
        global = true
    )]
    state: String,
    /// The key that seals the secrets in the state (Basic passwords, signing secrets) at rest;
    /// `sender secret-key generate` makes one. Given once, it is needed from then on.
    #[arg(
        long,
        env = "SENDER_SECRET_KEY_FILE",
        global = true,
        value_name = "FILE"
    )]
    secret_key_file: Option<PathBuf>,
    /// Print records as JSON.
    #[arg(long, global = true)]
    json: bool,
    /// Log format on stderr (filter with RUST_LOG).
    #[arg(
        long,
        value_enum,
        default_value = "text",
        global = true,
        env = "SENDER_LOG_FORMAT"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Register and manage webhooks (at most 5).
    Webhooks {
        #[command(subcommand)]
        command: webhooks::WebhooksCommand,
    },
    /// Generate catalogue events and deliver them to every active subscribed webhook.
    Trigger(trigger::TriggerArgs),
    /// The delivery worker: works the queue until SIGINT or SIGTERM.
    Run(run::RunArgs),
    /// The Integration Admin pages and their JSON API (webhooks, deliveries, trigger), with
    /// the delivery worker running in the same process.
    Admin(run::AdminArgs),
    /// Show delivery requests and their attempts.
    Deliveries {
        #[command(subcommand)]
        command: deliveries::DeliveriesCommand,
    },
    /// Print the signature headers for a body, and a ready curl command.
    Sign(sign::SignArgs),
    /// Send captured traffic again: capture JSON Lines, envelope files, or a directory of them.
    ///
    /// --since and --until compare with a capture's receive time, or a bare envelope's first
    /// event timestamp.
    Replay(replay::ReplayArgs),
    /// List the event catalogue: every event name, real-time or batch, and its data fields.
    Events,
    /// The key that seals the state's secrets at rest: make one, or move the secrets to a new
    /// one.
    SecretKey {
        #[command(subcommand)]
        command: secret_key::SecretKeyCommand,
    },
    /// Print the shell completion script (e.g. `source <(sender completions bash)`).
    Completions(CompletionsArgs),
    /// Print the manual page, or write one per subcommand with --out DIR.
    Man(ManArgs),
}

/// The command line as parsed, completed and documented: no help text shows the value of an
/// environment variable (see `common::cli::hide_env_values`); `--config FILE` is one more
/// global flag.
fn command() -> clap::Command {
    common::cli::hide_env_values(common::config_file::add_flag(
        Cli::command(),
        "SENDER_CONFIG",
    ))
}

/// The config file's keys whose values are secrets, whatever they look like (a state URL with
/// a password is found by its form).
const SECRET_KEYS: &[&str] = &["password", "token"];

/// Runs the `sender` command line and gives the exit status.
pub fn cli_main() -> ExitCode {
    // `--config FILE`: the file's values become the flags' defaults, so a flag and then the
    // environment still win (common::config_file).
    let (configured, config_file) = match common::config_file::load(command(), SECRET_KEYS) {
        Ok(loaded) => loaded,
        Err(error) => return common::cli::failure(&error, 2),
    };
    let parsed = configured
        .try_get_matches()
        .and_then(|matches| Cli::from_arg_matches(&matches));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(error) => return common::cli::clap_exit(&error),
    };
    common::logging::init("sender", cli.log_format);
    if let Some(config_file) = &config_file {
        config_file.warn_if_readable_by_others();
    }
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            let usage = error.chain().any(|cause| {
                cause.is::<UsageError>()
                    || cause
                        .downcast_ref::<crate::manage::Refusal>()
                        .is_some_and(crate::manage::Refusal::is_usage)
            });
            common::cli::failure(&error, if usage { 2 } else { 1 })
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let json = cli.json;
    // Commands that need no state run before `--state` is even read.
    match &cli.command {
        Command::Events => return events::print_catalogue(json),
        Command::SecretKey {
            command: secret_key::SecretKeyCommand::Generate { out },
        } => return secret_key::generate(out, json),
        Command::Completions(args) => return args.print(command()).map(|()| ExitCode::SUCCESS),
        Command::Man(args) => return args.write(command()).map(|()| ExitCode::SUCCESS),
        _ => {}
    }
    let location = StoreLocation::parse(&cli.state)
        .map_err(|error| UsageError(format!("--state: {error:#}")))?;
    if let Some((flag, output)) = cli.command.output_file() {
        let database = match &location {
            StoreLocation::Sqlite(database) => Some(database.as_path()),
            StoreLocation::Postgres(_) => None,
        };
        common::files::refuse_database_files(flag, output, database)
            .map_err(|error| UsageError(format!("{error:#}")))?;
    }
    let secret_key_file = cli.secret_key_file.clone();
    let open = || -> anyhow::Result<Arc<dyn State>> {
        let secret_key = secret_key_file
            .as_deref()
            .map(|path| SecretKey::read("--secret-key-file", path))
            .transpose()?;
        // A state database that cannot be opened is a configuration problem: exit 2.
        crate::store::open(&location, secret_key).map_err(|error| {
            UsageError(format!(
                "cannot open the state database {location}: {error:#}"
            ))
            .into()
        })
    };
    match cli.command {
        Command::Webhooks { command } => match command {
            webhooks::WebhooksCommand::Test(args) => {
                runtime.block_on(webhook_test::webhook_test(open, args, json))
            }
            other => webhooks::webhooks(&*open()?, other, json),
        },
        Command::Trigger(args) => runtime.block_on(trigger::trigger(open()?, args, json)),
        Command::Run(args) => runtime.block_on(run::run_worker(open()?, args)),
        Command::Admin(args) => runtime.block_on(run::run_admin(open()?, args)),
        Command::Deliveries { command } => deliveries::deliveries(&*open()?, command, json),
        Command::Sign(args) => sign::sign(args, json),
        Command::Replay(args) => runtime.block_on(replay::replay(args, json)),
        Command::SecretKey {
            command: secret_key::SecretKeyCommand::Rotate { new_key_file },
        } => secret_key::rotate(&*open()?, &new_key_file, json),
        Command::Events
        | Command::Completions(_)
        | Command::Man(_)
        | Command::SecretKey {
            command: secret_key::SecretKeyCommand::Generate { .. },
        } => {
            anyhow::bail!("handled before the state is opened")
        }
    }
}

impl Command {
    /// The file this command writes over, if any, with its flag: it must not be the state.
    fn output_file(&self) -> Option<(&'static str, &Path)> {
        match self {
            Self::Webhooks {
                command: webhooks::WebhooksCommand::Signature { out: Some(out), .. },
            } => Some(("--out", out)),
            Self::Replay(replay::ReplayArgs {
                report: Some(report),
                ..
            }) => Some(("--report", report)),
            _ => None,
        }
    }
}
