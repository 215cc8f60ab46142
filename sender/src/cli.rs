//! The `sender` command line (SPEC section 5): parsing, output, exit codes.
//!
//! Exit status: 0 success, 1 the work failed (a delivery, a test), 2 bad usage or
//! configuration ([`UsageError`] anywhere in the error chain).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, CommandFactory as _, FromArgMatches as _, Parser, Subcommand, ValueEnum};
use common::cli::{event_names, CompletionsArgs, ManArgs, Selection};
use common::logging::LogFormat;
use common::parse::duration as parse_duration;
use common::store_location::StoreLocation;
use common::{out, outln};
use serde_json::{json, Value};
use verify::{SignatureFile, TimeStyle};

use crate::config::DeliveryConfig;
use crate::delivery::{Engine, HttpTransport, Mode, State};
use crate::generate::DEFAULT_ACCOUNT_ID;
use crate::manage::{TestOutcome, TestTarget, TriggerRequest, Triggered};
use crate::queue::DeliveryFilter;
use crate::registry::{
    check_url, Auth, AuthMethod, BasicAuth, Registry, SchemeName, Status, Webhook, WebhookChanges,
    WebhookId,
};
use crate::retry::RetryPolicy;
use crate::sealing::SecretKey;
use crate::{format_duration, UsageError};

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

mod secret_key;

/// Where a command that needs an event name points the user for the list.
const CATALOGUE_HINT: &str = "`sender events` lists every event name with its kind and data fields";

#[derive(Debug, Subcommand)]
enum Command {
    /// Register and manage webhooks (at most 5).
    Webhooks {
        #[command(subcommand)]
        command: WebhooksCommand,
    },
    /// Generate catalogue events and deliver them to every active subscribed webhook.
    Trigger(TriggerArgs),
    /// The delivery worker: works the queue until SIGINT or SIGTERM.
    Run(RunArgs),
    /// The Integration Admin pages and their JSON API (webhooks, deliveries, trigger), with
    /// the delivery worker running in the same process.
    Admin(AdminArgs),
    /// Show delivery requests and their attempts.
    Deliveries {
        #[command(subcommand)]
        command: DeliveriesCommand,
    },
    /// Print the signature headers for a body, and a ready curl command.
    Sign(SignArgs),
    /// Send captured traffic again: capture JSON Lines, envelope files, or a directory of them.
    ///
    /// --since and --until compare with a capture's receive time, or a bare envelope's first
    /// event timestamp.
    Replay(ReplayArgs),
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

/// `sender replay SOURCE --to URL …`
#[derive(Debug, Args)]
struct ReplayArgs {
    /// Capture JSON Lines (from `receiver export`), a bare envelope file, JSON Lines of
    /// envelopes, a directory of such files, or `-` for standard input.
    source: PathBuf,
    /// The Target URL to send to (http://).
    #[arg(long)]
    to: String,
    /// `resign`: same body bytes, fresh authentication; `verbatim`: captured headers and bytes
    /// unchanged (a stale signature stays stale).
    #[arg(long, value_enum, default_value = "resign")]
    mode: crate::replay::ReplayMode,
    /// Resign: authentication method (default: signature with --signature-file, basic with
    /// --username, none otherwise).
    #[arg(long, value_enum)]
    auth: Option<AuthMethod>,
    /// Resign: sign with the secrets in force of this signature file (repeatable). Verbatim:
    /// only its scheme and toleranceSeconds are read, to warn of captures too old to pass.
    #[arg(long = "signature-file")]
    signature_files: Vec<PathBuf>,
    /// Resign: Basic username.
    #[arg(long)]
    username: Option<String>,
    /// Resign: Basic password (or SENDER_BASIC_PASSWORD).
    #[arg(long, env = "SENDER_BASIC_PASSWORD")]
    password: Option<verify::RedactedString>,
    #[command(flatten)]
    selection: Selection,
    /// Replay only this event, cut out of its (batch) request as a one-event envelope.
    #[arg(long)]
    event_id: Option<String>,
    /// Resign: also re-sign captures the receiver refused (skipped by default: a fresh
    /// signature would make a forged request pass as signed).
    #[arg(long)]
    include_refused: bool,
    /// Requests per second (open model: request i leaves at i/N s whatever the answers).
    #[arg(long)]
    rate: Option<f64>,
    /// Most requests in flight at once (1 keeps the source order).
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Bound on one request, connection included.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    timeout: Duration,
    /// Print what would be sent, send nothing.
    #[arg(long)]
    dry_run: bool,
    /// Also write the summary as JSON to this file.
    #[arg(long)]
    report: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum WebhooksCommand {
    /// Register a webhook; prints its id.
    Add(WebhookArgs),
    /// List webhooks (secrets left out).
    List,
    /// Show one webhook (secrets left out).
    Show {
        /// The webhook id (`wh_…`).
        id: String,
    },
    /// Change a webhook; flags not given keep their value.
    Edit {
        /// The webhook id.
        id: String,
        #[command(flatten)]
        args: WebhookArgs,
    },
    /// Delete a webhook with its queue and history.
    Delete {
        /// The webhook id.
        id: String,
    },
    /// Switch Activation Status off: nothing is delivered until `activate`.
    Retire {
        /// The webhook id.
        id: String,
    },
    /// Switch Activation Status on (also re-enables a webhook disabled at retention end).
    Activate {
        /// The webhook id.
        id: String,
    },
    /// Write the signature file for the receiving team (mode 0600).
    Signature {
        /// The webhook id.
        id: String,
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Keep Ed25519 secret keys (whsk_) in the file, for `sender sign` and `replay`;
        /// without it a v1a file carries the public keys (whpk_) a receiver needs.
        #[arg(long)]
        signing: bool,
    },
    /// Add a new secret; both sign until the overlap ends.
    RotateSecret {
        /// The webhook id.
        id: String,
        /// How long the old secret stays in force.
        #[arg(long, default_value = "24h", value_parser = parse_duration)]
        overlap: Duration,
    },
    /// Send one realistic event now; exit 0 only on a 2xx.
    Test(TestArgs),
}

#[derive(Debug, Args)]
struct WebhookArgs {
    /// Display name.
    #[arg(long)]
    name: Option<String>,
    /// Free text.
    #[arg(long)]
    description: Option<String>,
    /// Target URL (http or https).
    #[arg(long)]
    url: Option<String>,
    /// Trigger events: catalogue names separated by commas, or `all` (`sender events` lists
    /// them).
    #[arg(long, value_parser = event_names(&["all"]), hide_possible_values = true)]
    events: Option<String>,
    /// Authentication method.
    #[arg(long, value_enum)]
    auth: Option<AuthMethod>,
    /// Basic username.
    #[arg(long)]
    username: Option<String>,
    /// Basic password (or SENDER_BASIC_PASSWORD, to keep it out of the shell history).
    #[arg(long, env = "SENDER_BASIC_PASSWORD")]
    password: Option<verify::RedactedString>,
    /// Signature scheme.
    #[arg(long, value_enum)]
    scheme: Option<SchemeName>,
    /// body-hmac-sha256: the header (default x-alm-signature).
    #[arg(long)]
    signature_header: Option<String>,
    /// body-hmac-sha256: hex or base64.
    #[arg(long)]
    signature_encoding: Option<String>,
    /// body-hmac-sha256: text before the signature, such as `sha256=`.
    #[arg(long)]
    signature_prefix: Option<String>,
    /// standard-webhooks: the receiver's tolerance written to the signature file, in seconds.
    #[arg(long)]
    tolerance: Option<i64>,
    /// Register with Activation Status off.
    #[arg(long)]
    inactive: bool,
}

impl WebhookArgs {
    fn changes(self) -> WebhookChanges {
        WebhookChanges {
            name: self.name,
            description: self.description,
            url: self.url,
            events: self.events,
            auth: self.auth,
            username: self.username,
            password: self.password,
            scheme: self.scheme,
            signature_header: self.signature_header,
            signature_encoding: self.signature_encoding,
            signature_prefix: self.signature_prefix,
            tolerance_secs: self.tolerance,
            active: self.inactive.then_some(false),
        }
    }
}

#[derive(Debug, Args)]
struct TestArgs {
    /// A registered webhook's id (or give --url).
    id: Option<String>,
    /// Send to this URL instead of a registered webhook.
    #[arg(long, conflicts_with = "id")]
    url: Option<String>,
    /// With --url: authentication method.
    #[arg(long, value_enum, requires = "url")]
    auth: Option<AuthMethod>,
    /// With --url --auth basic: username.
    #[arg(long, requires = "url")]
    username: Option<String>,
    /// With --url --auth basic: password (or SENDER_BASIC_PASSWORD).
    #[arg(long, env = "SENDER_BASIC_PASSWORD", requires = "url")]
    password: Option<verify::RedactedString>,
    /// With --url --auth signature: sign with this signature file.
    #[arg(long, requires = "url")]
    signature_file: Option<PathBuf>,
    /// The event to send (default: the webhook's first trigger event; `sender events` lists
    /// them).
    #[arg(long, value_parser = event_names(&[]), hide_possible_values = true)]
    event: Option<String>,
    /// TCP connect timeout.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    connect_timeout: Duration,
    /// Response timeout.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    response_timeout: Duration,
    /// Also trust the CA certificates of this PEM file for https (self-signed listeners).
    #[arg(long, env = "SENDER_CA_FILE")]
    ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum TimeStyleArg {
    /// `2024-11-08T03:49:52.000Z` (today's form).
    Iso,
    /// Epoch milliseconds (dates in `data` in epoch seconds).
    EpochMs,
    /// Epoch seconds.
    EpochS,
}

#[derive(Debug, Args)]
#[command(after_help = CATALOGUE_HINT)]
struct TriggerArgs {
    /// A catalogue event name, such as COURSE_ENROLLMENT or LEARNER_PROGRESS (`sender events`
    /// lists them all).
    #[arg(value_parser = event_names(&[]), hide_possible_values = true)]
    event_name: String,
    /// How many events.
    #[arg(long, default_value_t = 1,
          help = format!("How many events: 1 to {} per trigger", crate::manage::MAX_TRIGGER_COUNT))]
    count: usize,
    /// accountId of the envelope.
    #[arg(long, default_value_t = DEFAULT_ACCOUNT_ID)]
    account: i64,
    /// Set a data field: FIELD=VALUE (VALUE read as JSON when it is JSON). Repeatable.
    #[arg(long = "set")]
    set: Vec<String>,
    /// A JSON object merged into every event's data.
    #[arg(long)]
    data: Option<String>,
    /// Generator seed (random when absent); the same seed makes the same events.
    #[arg(long)]
    seed: Option<u64>,
    /// How times are written.
    #[arg(long, value_enum, default_value = "iso")]
    time_style: TimeStyleArg,
    /// Only enqueue: leave delivery to `sender run`.
    #[arg(long)]
    enqueue_only: bool,
    /// How long trigger keeps delivering (and retrying) before it leaves the rest to
    /// `sender run` and exits 1.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    wait: Duration,
    #[command(flatten)]
    delivery: DeliveryArgs,
}

#[derive(Debug, Args)]
struct AdminArgs {
    /// Where the pages listen. Default 127.0.0.1:8082, or another free port when that one is
    /// taken.
    #[arg(long, env = "SENDER_ADMIN_LISTEN")]
    listen: Option<String>,
    /// The pages' access token, at least 16 characters (a random one per start when not
    /// given); needed for any address that is not loopback.
    #[arg(long, env = "SENDER_ADMIN_TOKEN")]
    token: Option<String>,
    /// Let Target URLs (pages, API, deliveries) reach loopback, private, link-local and
    /// unspecified addresses although the pages listen beyond loopback (refused by default
    /// there: whoever reaches the pages could make this machine call its own network).
    #[arg(long, env = "SENDER_ALLOW_PRIVATE_TARGETS", value_parser = clap::builder::FalseyValueParser::new())]
    allow_private_targets: bool,
    #[command(flatten)]
    delivery: DeliveryArgs,
}

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    delivery: DeliveryArgs,
}

/// The engine's numbers; defaults are Learning Manager's.
#[derive(Debug, Clone, Args)]
struct DeliveryArgs {
    /// TCP connect timeout.
    #[arg(long, env = "SENDER_CONNECT_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    connect_timeout: Duration,
    /// Response timeout.
    #[arg(long, env = "SENDER_RESPONSE_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    response_timeout: Duration,
    /// First retry delay (then doubling).
    #[arg(long, env = "SENDER_RETRY_INITIAL", default_value = "5s", value_parser = parse_duration)]
    retry_initial: Duration,
    /// Largest retry delay (then retries at this interval).
    #[arg(long, env = "SENDER_RETRY_MAX", default_value = "5m", value_parser = parse_duration)]
    retry_max: Duration,
    /// How long a request is retried before its webhook is disabled.
    #[arg(long, env = "SENDER_RETENTION", default_value = "7d", value_parser = parse_duration)]
    retention: Duration,
    /// How long batch events are collected per webhook.
    #[arg(long, env = "SENDER_BATCH_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    batch_interval: Duration,
    /// Most events in one batch request.
    #[arg(long, env = "SENDER_BATCH_SIZE", default_value_t = crate::config::DEFAULT_BATCH_SIZE)]
    batch_size: usize,
    /// Requests in flight per webhook. 1 keeps strict order; more relaxes it (load tests).
    #[arg(long, env = "SENDER_PARALLEL", default_value_t = 1)]
    parallel: usize,
    /// How long a worker's claim on a webhook lasts unless renewed.
    #[arg(long, env = "SENDER_LEASE_TTL", default_value = "15s", value_parser = parse_duration)]
    lease_ttl: Duration,
    /// How often `run` looks for work queued by other processes.
    #[arg(long, env = "SENDER_POLL_INTERVAL", default_value = "250ms", value_parser = parse_duration)]
    poll_interval: Duration,
    /// Also trust the CA certificates of this PEM file for https (self-signed listeners).
    #[arg(long, env = "SENDER_CA_FILE")]
    ca_file: Option<PathBuf>,
}

impl DeliveryArgs {
    fn config(&self) -> Result<DeliveryConfig, UsageError> {
        if self.parallel == 0 || self.batch_size == 0 {
            return Err(UsageError(
                "--parallel and --batch-size must be at least 1".into(),
            ));
        }
        if self.poll_interval.is_zero() || self.lease_ttl.is_zero() {
            return Err(UsageError(
                "--poll-interval and --lease-ttl must be above zero".into(),
            ));
        }
        Ok(DeliveryConfig {
            connect_timeout: self.connect_timeout,
            response_timeout: self.response_timeout,
            retry: RetryPolicy {
                initial: self.retry_initial,
                cap: self.retry_max,
                retention: self.retention,
            },
            batch_interval: self.batch_interval,
            batch_size: self.batch_size,
            parallel: self.parallel,
            lease_ttl: self.lease_ttl,
            poll_interval: self.poll_interval,
            ca_file: self.ca_file.clone(),
        })
    }
}

#[derive(Debug, Subcommand)]
enum DeliveriesCommand {
    /// Requests, newest first.
    List {
        /// Only this webhook.
        #[arg(long)]
        webhook: Option<String>,
        /// Only requests in this state: pending, delivered or expired.
        #[arg(long)]
        status: Option<String>,
        /// Most rows.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// One request (`msg_…` id) with its body and every attempt.
    Show {
        /// The `msg_…` id (the `webhook-id` header).
        id: String,
    },
}

#[derive(Debug, Args)]
struct SignArgs {
    /// The signature file (`sender webhooks signature ID --out FILE`).
    #[arg(long)]
    signature_file: PathBuf,
    /// The `webhook-id` (default: a fresh msg_… id).
    #[arg(long)]
    id: Option<String>,
    /// Unix seconds or an ISO-8601 time (default: now).
    #[arg(long)]
    timestamp: Option<String>,
    /// The URL the curl line posts to.
    #[arg(long, default_value = "http://127.0.0.1:8080/webhook")]
    url: String,
    /// The file holding the body, sent byte for byte.
    body_file: PathBuf,
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

/// Kept under this name for the modules that say `crate::cli::tell`.
pub(crate) use common::logging::tell;

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let json = cli.json;
    // Commands that need no state run before `--state` is even read.
    match &cli.command {
        Command::Events => return print_catalogue(json),
        Command::SecretKey {
            command: secret_key::SecretKeyCommand::Generate { out },
        } => return secret_key::generate(out, json),
        Command::Completions(args) => return args.print(command()).map(|()| ExitCode::SUCCESS),
        Command::Man(args) => return args.write(command()).map(|()| ExitCode::SUCCESS),
        _ => {}
    }
    let location = StoreLocation::parse(&cli.state)
        .map_err(|error| UsageError(format!("--state: {error:#}")))?;
    if let (StoreLocation::Sqlite(database), Some(output)) = (&location, cli.command.output_file())
    {
        common::files::refuse_database_files(output.0, output.1, database)
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
            WebhooksCommand::Test(args) => runtime.block_on(webhook_test(open, args, json)),
            other => webhooks(&*open()?, other, json),
        },
        Command::Trigger(args) => runtime.block_on(trigger(open()?, args, json)),
        Command::Run(args) => runtime.block_on(run_worker(open()?, args)),
        Command::Admin(args) => runtime.block_on(run_admin(open()?, args)),
        Command::Deliveries { command } => deliveries(&*open()?, command, json),
        Command::Sign(args) => sign(args, json),
        Command::Replay(args) => runtime.block_on(replay(args, json)),
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
                command: WebhooksCommand::Signature { out: Some(out), .. },
            } => Some(("--out", out)),
            Self::Replay(ReplayArgs {
                report: Some(report),
                ..
            }) => Some(("--report", report)),
            _ => None,
        }
    }
}

/// `sender events`: the catalogue of the `verify` library, as a table or (`--json`) an array
/// of `{"eventName", "kind", "fields"}`.
fn print_catalogue(json: bool) -> anyhow::Result<ExitCode> {
    let kind_name = |kind: &verify::EventKind| match kind.class {
        verify::EventClass::RealTime => "real-time",
        verify::EventClass::Batch => "batch",
    };
    let fields = |kind: &verify::EventKind| -> Vec<&'static str> {
        kind.fields.iter().map(|field| field.json_name()).collect()
    };
    if json {
        let entries: Vec<Value> = verify::CATALOG
            .iter()
            .map(|kind| json!({"eventName": kind.name, "kind": kind_name(kind), "fields": fields(kind)}))
            .collect();
        print_json(&Value::Array(entries))?;
    } else {
        let width = verify::CATALOG.iter().map(|kind| kind.name.len()).max();
        let width = width.unwrap_or_default() + 2;
        outln!("{:<width$}{:<11}DATA FIELDS", "EVENT", "KIND")?;
        for kind in verify::CATALOG {
            outln!(
                "{:<width$}{:<11}{}",
                kind.name,
                kind_name(kind),
                fields(kind).join(", ")
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn find<R: Registry + ?Sized>(registry: &R, id: &str) -> anyhow::Result<Webhook> {
    crate::manage::find(registry, id)
}

fn print_json(value: &Value) -> anyhow::Result<()> {
    outln!("{value}")
}

fn webhooks(state: &dyn State, command: WebhooksCommand, json: bool) -> anyhow::Result<ExitCode> {
    match command {
        WebhooksCommand::Add(args) => {
            let webhook = crate::manage::add(state, args.changes())?;
            if json {
                print_json(&webhook.to_json())?;
            } else {
                outln!("{}", webhook.id)?;
            }
        }
        WebhooksCommand::List => {
            let all = state.webhooks()?;
            if json {
                print_json(&Value::Array(all.iter().map(Webhook::to_json).collect()))?;
            } else {
                outln!(
                    "{:<20} {:<9} {:<10} {:<24} {:<40} EVENTS",
                    "ID",
                    "STATUS",
                    "AUTH",
                    "NAME",
                    "URL"
                )?;
                for webhook in &all {
                    outln!(
                        "{:<20} {:<9} {:<10} {:<24} {:<40} {}",
                        webhook.id,
                        webhook.status.as_str(),
                        webhook.auth.method(),
                        webhook.name,
                        webhook.url,
                        webhook.events.to_text()
                    )?;
                }
            }
        }
        WebhooksCommand::Show { id } => {
            let webhook = find(state, &id)?;
            let record = webhook.to_json();
            if json {
                print_json(&record)?;
            } else if let Value::Object(map) = record {
                for (key, value) in map {
                    let text = match value {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    outln!("{key:<15} {text}")?;
                }
            }
        }
        WebhooksCommand::Edit { id, args } => {
            let webhook = crate::manage::edit(state, &id, args.changes(), None)?;
            if json {
                print_json(&webhook.to_json())?;
            } else {
                outln!("updated {}", webhook.id)?;
            }
        }
        WebhooksCommand::Delete { id } => {
            let dropped = crate::manage::delete(state, &id)?;
            if json {
                print_json(&json!({"id": id, "deleted": true, "undeliveredDropped": dropped}))?;
            } else {
                outln!("deleted {id} ({dropped} undelivered events dropped)")?;
            }
        }
        WebhooksCommand::Retire { id } => set_status(state, &id, Status::Retired, json)?,
        WebhooksCommand::Activate { id } => set_status(state, &id, Status::Active, json)?,
        WebhooksCommand::Signature { id, out, signing } => {
            let text = crate::manage::signature_file(state, &id, signing)?;
            match out {
                Some(path) => {
                    write_secret_file(&path, text.as_bytes())?;
                    if json {
                        print_json(&json!({"id": id, "out": path}))?;
                    } else {
                        outln!("wrote {} (mode 0600)", path.display())?;
                    }
                }
                None => out!("{text}")?,
            }
        }
        WebhooksCommand::RotateSecret { id, overlap } => {
            let (ends, _) = crate::manage::rotate_secret(state, &id, overlap, None)?;
            if json {
                print_json(&json!({"id": id, "overlapEnds": ends}))?;
            } else {
                outln!(
                    "rotated the secret of {id}: both secrets sign until {ends}; give the receiving team the new file: sender webhooks signature {id} --out FILE"
                )?;
            }
        }
        // `run` sends `test` to the async runtime before calling this.
        WebhooksCommand::Test(_) => anyhow::bail!("webhooks test runs in the async runtime"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `retire` and `activate`: activation also clears a retention-end disable.
fn set_status(state: &dyn State, id: &str, status: Status, json: bool) -> anyhow::Result<()> {
    let webhook = crate::manage::set_status(state, id, status, None)?;
    if json {
        print_json(&webhook.to_json())?;
    } else {
        outln!("{id} is now {}", webhook.status.as_str())?;
    }
    Ok(())
}

/// Writes a file holding secrets: mode 0600, whole or not at all (an existing file is
/// replaced, never left half-written).
fn write_secret_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    common::files::write_atomically(path, |out| Ok(out.write_all(bytes)?))
        .with_context(|| format!("writing signature file {}", path.display()))
}

/// Reads a signature file a sender signs with: one whose keys in force can sign.
fn read_signature_file(path: &Path) -> anyhow::Result<SignatureFile> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("reading signature file {}", path.display()))?;
    let file = SignatureFile::from_json(&bytes)
        .map_err(|error| UsageError(format!("signature file {}: {error}", path.display())))?;
    check_can_sign(&file.keyring()?, path)?;
    Ok(file)
}

/// Refuses a keyring that cannot sign now (only `whpk_` public keys in force).
fn check_can_sign(keyring: &verify::Keyring, path: &Path) -> Result<(), UsageError> {
    if keyring.can_sign_at(verify::unix_now()) {
        return Ok(());
    }
    Err(UsageError(format!(
        "signature file {}: no key in force can sign (a whpk_ public key only verifies); use the file from `sender webhooks signature ID --signing`",
        path.display()
    )))
}

async fn webhook_test(
    open: impl Fn() -> anyhow::Result<Arc<dyn State>>,
    args: TestArgs,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let (target, label) = match (&args.id, &args.url) {
        (Some(id), None) => {
            let webhook = find(&*open()?, id)?;
            (TestTarget::of(&webhook), webhook.id.to_string())
        }
        (None, Some(url)) => {
            check_url(url)?;
            let method = auth_method_from_flags(
                args.auth,
                args.signature_file.is_some(),
                args.username.is_some(),
            );
            let auth = match method {
                AuthMethod::None if args.signature_file.is_some() || args.username.is_some() => {
                    return Err(UsageError("--auth none takes no credentials".into()).into())
                }
                AuthMethod::None => Auth::None,
                AuthMethod::Basic => {
                    let (Some(username), Some(password)) = (
                        args.username.clone(),
                        args.password.as_ref().map(|p| p.expose().to_owned()),
                    ) else {
                        return Err(UsageError(
                            "--auth basic needs --username and --password".into(),
                        )
                        .into());
                    };
                    // The same rules as a registration (no ':' in the username).
                    verify::BasicCredentials::new(username.as_str(), password.as_str())
                        .map_err(|error| UsageError(error.to_string()))?;
                    Auth::Basic(BasicAuth { username, password })
                }
                AuthMethod::Signature => {
                    let path = args.signature_file.as_ref().ok_or_else(|| {
                        UsageError("--auth signature needs --signature-file FILE".into())
                    })?;
                    Auth::Signature(read_signature_file(path)?)
                }
            };
            let target = TestTarget {
                url: url.clone(),
                auth,
                default_event: None,
            };
            (target, url.clone())
        }
        _ => {
            return Err(UsageError(
                "give a webhook id (`sender webhooks test wh_…`) or --url URL".into(),
            )
            .into())
        }
    };
    let transport = HttpTransport::new(args.connect_timeout, args.response_timeout)
        .with_ca_file(args.ca_file.clone());
    let outcome = crate::manage::send_test(&target, args.event, &transport).await?;
    let TestOutcome {
        url,
        event: name,
        webhook_id: msg_id,
        status,
        error,
        latency_ms,
        response: head,
        ok,
        hint,
    } = outcome;
    if json {
        print_json(&json!({
            "target": label, "url": url, "event": name, "webhookId": msg_id,
            "status": status, "error": error, "latencyMs": latency_ms,
            "response": head, "ok": ok, "hint": hint,
        }))?;
    } else {
        match (status, &error) {
            (Some(status), _) => outln!("{url}: {status} in {latency_ms} ms ({name}, {msg_id})")?,
            (None, Some(error)) => outln!("{url}: no response after {latency_ms} ms: {error}")?,
            (None, None) => {}
        }
        if !head.is_empty() {
            outln!("response: {head}")?;
        }
        if let Some(hint) = hint {
            outln!("hint: {hint}")?;
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn trigger(state: Arc<dyn State>, args: TriggerArgs, json: bool) -> anyhow::Result<ExitCode> {
    let config = args.delivery.config()?;
    let request = TriggerRequest {
        event_name: args.event_name.clone(),
        count: args.count,
        account_id: args.account,
        set: args.set.clone(),
        data: args.data.clone(),
        seed: args.seed.unwrap_or_else(|| fastrand::u64(..)),
        time_style: match args.time_style {
            TimeStyleArg::Iso => TimeStyle::Iso,
            TimeStyleArg::EpochMs => TimeStyle::EpochMillis,
            TimeStyleArg::EpochS => TimeStyle::EpochSeconds,
        },
    };
    // Checked before the blocking task, so a bad request is a usage error at once.
    request.recipe()?;
    let Triggered {
        kind,
        event_ids,
        targets,
    } = {
        let state = state.clone();
        tokio::task::spawn_blocking(move || crate::manage::trigger(state.as_ref(), &request))
            .await
            .context("the enqueue task panicked")??
    };
    if targets.is_empty() {
        tell(
            "WARN",
            format_args!(
                "warning: no active webhook subscribes to {}; nothing was queued",
                kind.name
            ),
        );
    } else if !json {
        tell(
            "INFO",
            format_args!(
                "queued {} {} event(s) for {} webhook(s): {}",
                event_ids.len(),
                kind.name,
                targets.len(),
                targets
                    .iter()
                    .map(WebhookId::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }
    let mut report = crate::delivery::RunReport::default();
    if !args.enqueue_only && !targets.is_empty() {
        let engine = Engine::http(state.clone(), config).with_role("trigger");
        engine
            .check_tls()
            .map_err(|error| UsageError(format!("{error:#}")))?;
        let wait = args.wait;
        let shutdown = common::signal::shutdown_signal()?;
        report = engine
            .run(Mode::Drain(targets.clone()), async move {
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = shutdown => {}
                }
            })
            .await?;
    }
    let mut per_webhook = Vec::new();
    let mut left = 0u64;
    for id in &targets {
        let counts = state.counts(Some(id))?;
        let handed = report
            .handed_over
            .iter()
            .find(|(w, _)| w == id)
            .map(|(_, o)| o.clone());
        if handed.is_none() && !args.enqueue_only {
            left += counts.pending + counts.staged;
        }
        per_webhook.push(json!({
            "webhookId": id.as_str(), "pending": counts.pending, "staged": counts.staged,
            "delivered": counts.delivered, "expired": counts.expired,
            "handedOverTo": handed, "disabled": report.disabled.contains(id),
        }));
    }
    if json {
        print_json(&json!({
            "eventName": kind.name, "eventIds": event_ids, "webhooks": per_webhook,
            "enqueueOnly": args.enqueue_only,
        }))?;
    } else {
        for (id, owner) in &report.handed_over {
            if owner.starts_with("trigger/") {
                outln!(
                    "{id}: queued; another `sender trigger` ({owner}) is delivering to this webhook and takes it along; what that one cannot deliver stays queued for `sender run`"
                )?;
            } else {
                outln!("{id}: queued; `sender run` ({owner}) delivers it")?;
            }
        }
        for id in &report.disabled {
            outln!("{id}: disabled at the end of retention; its pending events expired")?;
        }
        if args.enqueue_only {
            outln!("queued; `sender run` delivers them")?;
        } else if left > 0 {
            outln!(
                "{left} request(s) still queued after --wait {}; `sender run` keeps delivering them",
                format_duration(args.wait)
            )?;
        } else if !targets.is_empty() {
            outln!("delivered")?;
        }
    }
    Ok(if left > 0 || !report.disabled.is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

async fn run_worker(state: Arc<dyn State>, args: RunArgs) -> anyhow::Result<ExitCode> {
    let config = args.delivery.config()?;
    let parallel = config.parallel;
    let engine = Engine::http(state, config).with_role("run");
    engine
        .check_tls()
        .map_err(|error| UsageError(format!("{error:#}")))?;
    let shutdown = common::signal::shutdown_signal()?;
    // One line on standard output once the signal handlers are in place, so whoever started
    // the worker knows that SIGTERM now stops it cleanly.
    // Written straight to stdout, errors ignored: a worker keeps working when nobody reads it.
    let mut stdout = std::io::stdout();
    let _ = writeln!(
        stdout,
        "sender run: working the queue (parallel {parallel}); stop with SIGINT or SIGTERM"
    );
    let _ = stdout.flush();
    let report = engine.run(Mode::Serve, shutdown).await?;
    for id in &report.disabled {
        tracing::warn!(webhook = %id, "disabled at the end of retention");
    }
    tracing::info!("sender run: stopped");
    Ok(ExitCode::SUCCESS)
}

async fn run_admin(state: Arc<dyn State>, args: AdminArgs) -> anyhow::Result<ExitCode> {
    let config = args.delivery.config()?;
    let address = args
        .listen
        .clone()
        .unwrap_or_else(|| crate::admin::DEFAULT_ADDRESS.to_owned());
    let token = common::web::choose_token(
        &address,
        args.token.as_deref(),
        common::web::TokenRule {
            what: "the admin pages",
            address_flag: "--listen",
            token_flags: "--token (or SENDER_ADMIN_TOKEN)",
        },
    )
    .map_err(|error| UsageError(format!("{error:#}")))?;
    Engine::http(state.clone(), config.clone())
        .check_tls()
        .map_err(|error| UsageError(format!("{error:#}")))?;
    let listener = common::web::bind("the admin pages", &address, args.listen.is_some())
        .await
        .map_err(|error| UsageError(format!("{error:#}")))?;
    let local = listener
        .local_addr()
        .context("reading the admin pages' address")?;
    let shutdown = common::signal::shutdown_signal()?;
    // The first line of standard output: whoever started the pages opens this address.
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "admin on http://{local}/?token={}", token.expose());
    let _ = stdout.flush();
    tracing::info!(address = %local, "admin pages and delivery worker started");
    let targets =
        common::target_guard::TargetGuard::for_listener(local, args.allow_private_targets);
    if targets.policy() == common::target_guard::TargetPolicy::PublicOnly {
        tracing::info!(
            "the pages listen beyond loopback: Target URLs on loopback, private, link-local or unspecified addresses are refused (--allow-private-targets allows them)"
        );
    }
    crate::admin::run(listener, token, state, config, targets, shutdown).await?;
    tracing::info!("sender admin: stopped");
    Ok(ExitCode::SUCCESS)
}

fn deliveries(
    state: &dyn State,
    command: DeliveriesCommand,
    json: bool,
) -> anyhow::Result<ExitCode> {
    match command {
        DeliveriesCommand::List {
            webhook,
            status: wanted,
            limit,
        } => {
            crate::manage::check_delivery_state(wanted.as_deref())?;
            let rows = state.deliveries(&DeliveryFilter {
                webhook_id: webhook.map(WebhookId),
                state: wanted,
                limit,
            })?;
            if json {
                print_json(&serde_json::to_value(&rows)?)?;
            } else {
                outln!(
                    "{:<28} {:<20} {:<9} {:>8} {:>6} {:<24} EVENTS",
                    "ID",
                    "WEBHOOK",
                    "STATE",
                    "ATTEMPTS",
                    "LAST",
                    "CREATED"
                )?;
                for row in rows {
                    let last = row
                        .last_status
                        .map(|s| s.to_string())
                        .or_else(|| row.last_error.as_ref().map(|_| "error".to_owned()))
                        .unwrap_or_else(|| "-".to_owned());
                    outln!(
                        "{:<28} {:<20} {:<9} {:>8} {:>6} {:<24} {} x{}",
                        row.id,
                        row.webhook_id,
                        row.state,
                        row.attempts,
                        last,
                        row.created_at,
                        row.event_names,
                        row.event_count
                    )?;
                }
            }
        }
        DeliveriesCommand::Show { id } => {
            let detail = state.delivery(&id)?.ok_or_else(|| {
                UsageError(format!(
                    "no delivery {id:?}; `sender deliveries list` shows the ids"
                ))
            })?;
            if json {
                print_json(&serde_json::to_value(&detail)?)?;
            } else {
                let s = &detail.summary;
                outln!("id          {}", s.id)?;
                outln!("webhook     {}", s.webhook_id)?;
                outln!("state       {}", s.state)?;
                outln!("account     {}", s.account_id)?;
                outln!("events      {} x{}", s.event_names, s.event_count)?;
                outln!("created     {}", s.created_at)?;
                if let Some(next) = &s.next_attempt_at {
                    outln!("next try    {next}")?;
                }
                outln!("event ids   {}", detail.event_ids.join(", "))?;
                outln!("attempts:")?;
                for attempt in &detail.attempt_log {
                    let outcome = attempt.outcome();
                    outln!(
                        "  #{:<3} {}  {:<40} {:>6} ms  {}",
                        attempt.attempt,
                        attempt.at,
                        outcome,
                        attempt.latency_ms,
                        attempt.response_head.as_deref().unwrap_or("")
                    )?;
                }
                outln!("body:")?;
                outln!("{}", detail.body)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn sign(args: SignArgs, json: bool) -> anyhow::Result<ExitCode> {
    let file = read_signature_file(&args.signature_file)?;
    let keyring = file
        .keyring()
        .map_err(|error| UsageError(format!("{}: {error}", args.signature_file.display())))?;
    let body = std::fs::read(&args.body_file).map_err(|error| {
        UsageError(format!(
            "reading body file {}: {error}",
            args.body_file.display()
        ))
    })?;
    let timestamp = match &args.timestamp {
        None => verify::unix_now(),
        Some(text) => text
            .parse::<i64>()
            .ok()
            .or_else(|| verify::timestamp::parse_iso_millis(text).map(|ms| ms.div_euclid(1000)))
            .ok_or_else(|| {
                UsageError(format!(
                    "--timestamp {text:?}: give Unix seconds or an ISO-8601 time"
                ))
            })?,
    };
    let msg_id = args.id.unwrap_or_else(crate::registry::new_msg_id);
    let headers = keyring.sign_headers(&msg_id, timestamp, &body);
    let mut curl = format!(
        "curl -sS -X POST {} -H 'content-type: application/json'",
        shell_quote(&args.url)
    );
    for (name, value) in &headers {
        curl.push_str(&format!(" -H {}", shell_quote(&format!("{name}: {value}"))));
    }
    curl.push_str(&format!(
        " --data-binary @{}",
        shell_quote(&args.body_file.display().to_string())
    ));
    if json {
        print_json(&json!({"headers": headers, "curl": curl}))?;
    } else {
        for (name, value) in &headers {
            outln!("{name}: {value}")?;
        }
        outln!()?;
        outln!("{curl}")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Quotes for a POSIX shell.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Slowest `--rate`: one request every 1000 s; slower schedules are not a replay.
const MIN_REPLAY_RATE: f64 = 0.001;
/// Fastest `--rate`; beyond it, drop `--rate` and let `--concurrency` set the pace.
const MAX_REPLAY_RATE: f64 = 1_000_000.0;

/// The auth method of a one-off request (`webhooks test --url`, `replay`): `--auth` when
/// given, else what the credentials given imply (a signature file means signature, a username
/// Basic), else none, so a flag given alone is never silently ignored.
fn auth_method_from_flags(
    explicit: Option<AuthMethod>,
    signature_file: bool,
    username: bool,
) -> AuthMethod {
    explicit.unwrap_or(if signature_file {
        AuthMethod::Signature
    } else if username {
        AuthMethod::Basic
    } else {
        AuthMethod::None
    })
}

fn replay_auth(args: &ReplayArgs) -> anyhow::Result<crate::replay::ReplayAuth> {
    use crate::replay::{ReplayAuth, ReplayMode};
    let method = auth_method_from_flags(
        args.auth,
        !args.signature_files.is_empty(),
        args.username.is_some(),
    );
    let gave_credentials = !args.signature_files.is_empty() || args.username.is_some();
    if args.mode == ReplayMode::Verbatim {
        // A signature file is read for its window only (`verbatim_schemes`).
        if args.username.is_some() || args.auth.is_some() {
            return Err(UsageError(
                "--mode verbatim sends the captured headers as they are; drop --auth and --username, or use --mode resign".into(),
            )
            .into());
        }
        return Ok(ReplayAuth::default());
    }
    let mut auth = ReplayAuth::default();
    match method {
        AuthMethod::None => {
            if gave_credentials {
                return Err(UsageError("--auth none takes no credentials".into()).into());
            }
        }
        AuthMethod::Basic => {
            let username = args.username.clone().ok_or_else(|| {
                UsageError("--auth basic needs --username (and --password)".into())
            })?;
            let password = args
                .password
                .as_ref()
                .map(|p| p.expose().to_owned())
                .ok_or_else(|| {
                    UsageError("--auth basic needs --password (or SENDER_BASIC_PASSWORD)".into())
                })?;
            auth.basic = Some(
                verify::BasicCredentials::new(username, password)
                    .map_err(|error| UsageError(error.to_string()))?,
            );
        }
        AuthMethod::Signature => {
            if args.signature_files.is_empty() {
                return Err(
                    UsageError("--auth signature needs --signature-file FILE".into()).into(),
                );
            }
            for path in &args.signature_files {
                let bytes = std::fs::read(path)
                    .with_context(|| format!("reading signature file {}", path.display()))
                    .map_err(|error| UsageError(format!("{error:#}")))?;
                let keyring = SignatureFile::from_json(&bytes)
                    .and_then(|file| file.keyring())
                    .map_err(|error| {
                        UsageError(format!("signature file {}: {error}", path.display()))
                    })?;
                check_can_sign(&keyring, path)?;
                // Files of one scheme sign together (one `webhook-signature` header with
                // every signature), as a rotation does; a second set of headers would be
                // ignored by receivers, which read the first.
                let mut pending = Some(keyring);
                for existing in &mut auth.keyrings {
                    if let Some(keyring) = pending.take() {
                        pending = existing.merge(keyring).err();
                    }
                }
                auth.keyrings.extend(pending);
            }
        }
    }
    Ok(auth)
}

/// The schemes a verbatim replay judges captured timestamps by: those of the signature files
/// given (with their `toleranceSeconds`), else every scheme that signs a timestamp, with the
/// default window.
fn verbatim_schemes(args: &ReplayArgs) -> Result<Vec<verify::Scheme>, UsageError> {
    if args.signature_files.is_empty() {
        return Ok(verify::resend::timestamped_schemes());
    }
    args.signature_files
        .iter()
        .map(|path| {
            let bytes = std::fs::read(path)
                .with_context(|| format!("reading signature file {}", path.display()))
                .map_err(|error| UsageError(format!("{error:#}")))?;
            SignatureFile::from_json(&bytes)
                .and_then(|file| file.scheme())
                .map_err(|error| UsageError(format!("signature file {}: {error}", path.display())))
        })
        .collect()
}

/// Says, before anything is sent, what the plan leaves out and what will not pass: refused
/// captures re-signing skips, and (verbatim) captures whose signature is too old.
fn warn_before_replay(args: &ReplayArgs, planned: &crate::replay::Plan) -> Result<(), UsageError> {
    if planned.skipped_refused > 0 {
        tell(
            "WARN",
            format_args!(
                "warning: replay: skipped {} capture(s) the receiver refused: re-signing would make a forged or broken request pass as signed; --include-refused re-signs them too",
                planned.skipped_refused
            ),
        );
    }
    if args.mode == crate::replay::ReplayMode::Verbatim {
        let schemes = verbatim_schemes(args)?;
        if let Some(stale) =
            crate::replay::stale_captures(&planned.requests, &schemes, verify::unix_now())
        {
            let window = match stale.tolerances_secs.iter().collect::<Vec<_>>().as_slice() {
                [single] => format!("{single} s"),
                _ => "their scheme's tolerance".to_owned(),
            };
            tell(
                "WARN",
                format_args!(
                    "warning: replay: {} of {} capture(s) were signed more than {window} ago (the oldest {} s): a receiver that checks the signature refuses them as timestamp_too_old; --mode resign signs them anew",
                    stale.count,
                    planned.requests.len(),
                    stale.oldest_secs
                ),
            );
        }
    }
    Ok(())
}

async fn replay(args: ReplayArgs, json: bool) -> anyhow::Result<ExitCode> {
    use crate::replay::{load_source, outgoing_headers, plan, send_all, ReplayFilter, SendOptions};
    if crate::registry::url_has_credentials(&args.to) {
        return Err(UsageError(
            "--to carries credentials (user:password@host); give them with --username and --password".into(),
        )
        .into());
    }
    let to: http::Uri = args
        .to
        .parse()
        .map_err(|error| UsageError(format!("--to {:?} is not a URL: {error}", args.to)))?;
    if to.scheme_str() != Some("http") || to.host().is_none() {
        return Err(UsageError(format!(
            "--to must be an http:// URL with a host (got {}); replay does not send to https targets",
            args.to
        ))
        .into());
    }
    if args
        .rate
        .is_some_and(|rate| !(MIN_REPLAY_RATE..=MAX_REPLAY_RATE).contains(&rate))
    {
        return Err(UsageError(format!(
            "--rate must be between {MIN_REPLAY_RATE} and {MAX_REPLAY_RATE} requests per second"
        ))
        .into());
    }
    let auth = replay_auth(&args)?;
    let filter = ReplayFilter {
        event_names: args.selection.event_names.clone(),
        since_ms: args.selection.since,
        until_ms: args.selection.until,
        event_id: args.event_id.clone(),
        include_refused: args.include_refused,
    };
    let items = load_source(&args.source).map_err(|error| UsageError(format!("{error:#}")))?;
    let planned = plan(items, args.mode, &filter)?;
    warn_before_replay(&args, &planned)?;
    let skipped_refused = planned.skipped_refused;
    let requests = planned.requests;
    if args.dry_run {
        let now = verify::unix_now();
        for request in &requests {
            let headers: Vec<(String, String)> = outgoing_headers(request, args.mode, &auth, now)
                .into_iter()
                .map(|(name, value)| {
                    // Basic credentials are a secret even in a dry run.
                    if name.eq_ignore_ascii_case("authorization") {
                        let scheme = value.split(' ').next().unwrap_or("").to_owned();
                        (name, format!("{scheme} [redacted]"))
                    } else {
                        (name, value)
                    }
                })
                .collect();
            if json {
                outln!(
                    "{}",
                    json!({"origin": request.origin, "to": args.to, "headers": headers, "bodyBytes": request.body.len()})
                )?;
            } else {
                outln!(
                    "POST {} ({} bytes) from {}",
                    args.to,
                    request.body.len(),
                    request.origin
                )?;
                for (name, value) in headers {
                    outln!("  {name}: {value}")?;
                }
            }
        }
        tell(
            "INFO",
            format_args!("dry run: {} requests would be sent", requests.len()),
        );
        return Ok(ExitCode::SUCCESS);
    }
    let options = SendOptions {
        to,
        mode: args.mode,
        auth,
        rate: args.rate,
        concurrency: args.concurrency.max(1),
        request_timeout: args.timeout,
        progress: !json,
    };
    let mut summary = send_all(requests, &options).await?;
    summary.skipped_refused = skipped_refused;
    if let Some(path) = &args.report {
        let text = serde_json::to_string_pretty(&summary).context("encoding the report")?;
        common::files::write_atomically(path, |out| Ok(out.write_all((text + "\n").as_bytes())?))
            .with_context(|| format!("writing report {}", path.display()))?;
    }
    if json {
        outln!(
            "{}",
            serde_json::to_string(&summary).context("encoding the summary")?
        )?;
    } else {
        out!("{}", summary.render())?;
    }
    Ok(if summary.all_acknowledged() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
