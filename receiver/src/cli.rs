//! The command line: `receiver [listen]`, `receiver events list|show|count` (in `events`, its
//! CSV in `csv`), `receiver export`, `receiver check`, `receiver prune`, `receiver erase`,
//! `receiver backup` (those three in `maintenance`), `receiver completions SHELL`,
//! `receiver man`; `reload` is what `listen` does on SIGHUP.
//!
//! Errors are printed once, as `error: ` and the cause chain; the exit status says whose
//! fault it was (SPEC section 6): 2 for usage and configuration (bad flags, unreadable files,
//! an address in use, a store that cannot be opened), 1 when the work itself failed.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, CommandFactory as _, FromArgMatches as _, Parser, Subcommand, ValueEnum};
use common::cli::{CompletionsArgs, ManArgs, Selection};
use common::logging::{tell, LogFormat};
use common::outln;
use common::store_location::StoreLocation;
use common::target_guard::TargetGuard;

use crate::config::{self, Config, Limits, OutputMode, TlsFiles};
use crate::forward::{parse_targets, signature_files_by_target, ForwardConfig, RetryPolicy};
use crate::store::CaptureFilter;

mod csv;
mod events;

mod maintenance;
mod reload;

/// The store when `--store` and `RECEIVER_STORE` are both absent.
const DEFAULT_STORE: &str = "sqlite:./receiver.db";

#[derive(Parser, Debug)]
#[command(
    name = "receiver",
    version,
    about = "Receive Learning Manager webhooks: verify, store durably, deduplicate"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// `receiver` alone means `receiver listen` (these flags are refused before another
    /// subcommand: see `listen_flags_before`).
    #[command(flatten)]
    listen: ListenArgs,
    /// Where events are stored (`listen` writes it, `events` and `export` read it):
    /// sqlite:PATH (sqlite://PATH is the same: sqlite:///PATH is absolute), or
    /// postgres://USER[:PASSWORD]@HOST[:PORT]/DB shared by many receivers.
    #[arg(long, global = true, env = "RECEIVER_STORE", default_value = DEFAULT_STORE)]
    store: String,
    /// Log format on standard error (`RUST_LOG` filters).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "RECEIVER_LOG_FORMAT"
    )]
    log_format: LogFormat,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Listen for webhooks (the default).
    Listen(Box<ListenArgs>),
    /// Read the stored events.
    Events {
        #[command(subcommand)]
        command: events::EventsCommand,
    },
    /// Write the kept requests as capture records (JSON Lines): accepted ones by default.
    ///
    /// --since and --until compare with the time each request was received.
    Export(ExportArgs),
    /// Re-check captured requests or envelope files offline and explain every refusal.
    ///
    /// A capture is checked at its receive time, a bare envelope at the current time. Uses
    /// the same authentication flags as `listen`; exits 1 when any is not accepted.
    Check(CheckArgs),
    /// The forwarding queues of `listen --forward-to`: list jobs, show one with every
    /// attempt, put parked ones back, move a held one out of the way.
    Forward {
        #[command(subcommand)]
        command: crate::forward_commands::ForwardCommand,
    },
    /// Remove requests received before a time, once, as `listen --retain` does while serving.
    ///
    /// Accepted requests go with their events and forward jobs, refused ones too; a request
    /// with a forward job pending or parked on any target stays. The (accountId, eventId) keys
    /// of removed events received within --dedupe-window stay, so a late retry is still a
    /// duplicate.
    Prune(maintenance::PruneArgs),
    /// Remove every stored request that carries a learner's (or an account's, or an event's)
    /// data, with all of its events, capture and forward jobs.
    ///
    /// A request goes whole (its bytes are the record): the output says how many events of
    /// others went with it. The dedupe keys of erased events stay for --dedupe-window, so a
    /// retry of one is a duplicate and does not store it again.
    Erase(maintenance::EraseArgs),
    /// Copy a SQLite store, consistently, while a listener writes it (a PostgreSQL store is
    /// copied with pg_dump).
    Backup(maintenance::BackupArgs),
    /// Print the shell completion script (e.g. `source <(receiver completions bash)`).
    Completions(CompletionsArgs),
    /// Print the manual page, or write one per subcommand with --out DIR.
    Man(ManArgs),
}

/// The flags that choose the auth method: none, Basic, or Signature (`listen` and `check`).
#[derive(Args, Debug)]
struct AuthArgs {
    /// Basic authentication username.
    #[arg(long, env = "RECEIVER_BASIC_USER")]
    basic_user: Option<String>,
    /// Basic authentication password (prefer the environment variable).
    #[arg(long, env = "RECEIVER_BASIC_PASSWORD")]
    basic_password: Option<verify::RedactedString>,
    /// Signature file(s) downloaded from Learning Manager; repeat, or separate with commas.
    #[arg(
        long = "signature-file",
        env = "RECEIVER_SIGNATURE_FILE",
        value_delimiter = ','
    )]
    signature_files: Vec<PathBuf>,
}

impl AuthArgs {
    /// The authentication these flags describe.
    ///
    /// # Errors
    /// Basic without both parts, or a signature file that cannot be read.
    fn authentication(&self) -> anyhow::Result<verify::Authentication> {
        config::authentication_from_flags(
            self.basic_user.as_deref(),
            self.basic_password
                .as_ref()
                .map(verify::RedactedString::expose),
            &self.signature_files,
        )
    }
}

#[derive(Args, Debug)]
struct ListenArgs {
    /// Address to listen on.
    #[arg(long, env = "RECEIVER_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// The webhook path.
    #[arg(long, env = "RECEIVER_PATH", default_value = "/webhook")]
    path: String,
    #[command(flatten)]
    auth: AuthArgs,
    /// Largest accepted body (e.g. 1MiB, 512KiB, 64kb, 1000).
    #[arg(long, env = "RECEIVER_MAX_BODY", default_value = "1MiB", value_parser = common::parse::byte_size)]
    max_body: u64,
    /// What to print per event on standard output.
    #[arg(long, env = "RECEIVER_OUTPUT", value_enum, default_value = "pretty")]
    output: OutputMode,
    /// TLS certificate chain (PEM); serves HTTPS with --tls-key, the inspector's pages too.
    #[arg(long, env = "RECEIVER_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "RECEIVER_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Most connections served at once.
    #[arg(long, env = "RECEIVER_MAX_CONNECTIONS", default_value_t = config::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// Deadline for a request head, and idle limit of a keep-alive connection (e.g. 10s).
    #[arg(long, env = "RECEIVER_HEADER_TIMEOUT", default_value = "10s", value_parser = common::parse::duration)]
    header_timeout: Duration,
    /// Deadline for reading a body (e.g. 30s).
    #[arg(long, env = "RECEIVER_BODY_TIMEOUT", default_value = "30s", value_parser = common::parse::duration)]
    body_timeout: Duration,
    /// How long shutdown waits for requests in flight (e.g. 10s).
    #[arg(long, env = "RECEIVER_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = common::parse::duration)]
    shutdown_timeout: Duration,
    /// How many refused requests to keep (the newest).
    #[arg(long, env = "RECEIVER_KEEP_REFUSED", default_value_t = config::DEFAULT_KEEP_REFUSED)]
    keep_refused: u32,
    /// Where the inspector (the pages that show what arrived) listens, or `off`. Default
    /// 127.0.0.1:8081, or another free port when that one is taken.
    #[arg(long, env = "RECEIVER_UI")]
    ui: Option<String>,
    /// The inspector's token, at least 16 characters (a random one per start when not given);
    /// needed for any address that is not loopback.
    #[arg(long, env = "RECEIVER_UI_TOKEN")]
    ui_token: Option<String>,
    /// Let Send again reach loopback, private, link-local and unspecified addresses although
    /// the inspector listens beyond loopback (refused by default there: whoever reaches it
    /// could make this machine call its own network).
    #[arg(long, env = "RECEIVER_ALLOW_PRIVATE_TARGETS", value_parser = clap::builder::FalseyValueParser::new())]
    allow_private_targets: bool,
    /// Forward stored requests, in order and durably, to this http:// URL (your app): every
    /// request, or with EVENTS= those with a new event of these names or globs
    /// (COURSE_ENROLLMENT,COURSE_*=http://crm/hooks). Repeat for several apps; in the
    /// environment variable, separate them with spaces.
    #[arg(
        long,
        env = "RECEIVER_FORWARD_TO",
        value_name = "[EVENTS=]URL",
        value_delimiter = ' '
    )]
    forward_to: Vec<String>,
    /// Re-sign what is forwarded with this signature file instead of passing the original
    /// headers on: FILE for every target, URL=FILE for the target of that URL (repeat).
    #[arg(
        long,
        env = "RECEIVER_FORWARD_SIGNATURE_FILE",
        value_name = "[URL=]FILE",
        requires = "forward_to"
    )]
    forward_signature_file: Vec<String>,
    /// First retry delay when an app is down, times out or answers 5xx, 408, 425 or 429;
    /// doubles each time (other 4xx park the request at once).
    #[arg(long, env = "RECEIVER_FORWARD_RETRY_MIN", default_value = "1s", value_parser = common::parse::duration)]
    forward_retry_min: Duration,
    /// Longest retry delay.
    #[arg(long, env = "RECEIVER_FORWARD_RETRY_MAX", default_value = "5m", value_parser = common::parse::duration)]
    forward_retry_max: Duration,
    /// Deadline for connecting to the app.
    #[arg(long, env = "RECEIVER_FORWARD_CONNECT_TIMEOUT", default_value = "10s", value_parser = common::parse::duration)]
    forward_connect_timeout: Duration,
    /// Deadline for the app's answer.
    #[arg(long, env = "RECEIVER_FORWARD_TIMEOUT", default_value = "30s", value_parser = common::parse::duration)]
    forward_timeout: Duration,
    /// Prune accepted and refused requests received longer ago than this (e.g. 90d), while
    /// serving; a request whose forward job is not yet forwarded stays. Default: keep all.
    #[arg(long, env = "RECEIVER_RETAIN", value_parser = common::parse::duration)]
    retain: Option<Duration>,
    /// How long after its receipt the (accountId, eventId) of a pruned or erased event still
    /// makes a retry a duplicate (Learning Manager retries for 7 days).
    #[arg(long, env = "RECEIVER_DEDUPE_WINDOW", default_value = "7d", value_parser = common::parse::duration)]
    dedupe_window: Duration,
}

#[derive(Args, Debug)]
struct ExportArgs {
    /// Write here instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Refused requests too (the same as --verdict all).
    #[arg(long, conflicts_with = "verdict")]
    include_refused: bool,
    /// Which requests: accepted (the default), refused, or all.
    #[arg(long, value_enum)]
    verdict: Option<VerdictChoice>,
    #[command(flatten)]
    selection: Selection,
    /// Only this account.
    #[arg(long)]
    account: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum VerdictChoice {
    Accepted,
    Refused,
    All,
}

#[derive(Args, Debug)]
struct CheckArgs {
    /// Capture records (JSON Lines), an envelope file, JSON Lines of envelopes, a directory
    /// of such files, or `-` for standard input.
    source: PathBuf,
    #[command(flatten)]
    auth: AuthArgs,
    /// A JSON array of verdicts instead of lines.
    #[arg(long)]
    json: bool,
}

/// The command line as parsed, completed and documented: no help text shows the value of an
/// environment variable (see `common::cli::hide_env_values`); `--config FILE` is one more
/// global flag.
fn command() -> clap::Command {
    common::cli::hide_env_values(common::config_file::add_flag(
        Cli::command(),
        "RECEIVER_CONFIG",
    ))
}

/// The config file's keys whose values are secrets, whatever they look like (a store URL with
/// a password is found by its form).
const SECRET_KEYS: &[&str] = &["basic-password", "ui-token"];

/// Whose fault a failure is.
enum Failure {
    /// Usage or configuration: exit 2.
    Config(anyhow::Error),
    /// The work failed: exit 1.
    Work(anyhow::Error),
}

pub(crate) fn main() -> ExitCode {
    // `--config FILE`: the file's values become the flags' defaults, so a flag and then the
    // environment still win (common::config_file).
    let (configured, config_file) = match common::config_file::load(command(), SECRET_KEYS) {
        Ok(loaded) => loaded,
        Err(error) => return common::cli::failure(&error, 2),
    };
    let parsed = configured.try_get_matches().and_then(|matches| {
        refuse_listen_flags_before_a_subcommand(&matches)?;
        Cli::from_arg_matches(&matches)
    });
    let cli = match parsed {
        Ok(cli) => cli,
        Err(error) => return common::cli::clap_exit(&error),
    };
    common::logging::init("receiver", cli.log_format);
    if let Some(config_file) = &config_file {
        config_file.warn_if_readable_by_others();
    }
    let store = cli.store;
    let result = match cli.command {
        None => listen(cli.listen, &store),
        Some(Command::Listen(args)) => listen(*args, &store),
        Some(Command::Events { command }) => events::run(command, &store),
        Some(Command::Export(args)) => export(args, &store),
        Some(Command::Check(args)) => check(args),
        Some(Command::Forward { command }) => forward(command, &store),
        Some(Command::Prune(args)) => maintenance::prune(&args, &store),
        Some(Command::Erase(args)) => maintenance::erase(&args, &store),
        Some(Command::Backup(args)) => maintenance::backup(&args, &store),
        Some(Command::Completions(args)) => args.print(command()).map_err(Failure::Work),
        Some(Command::Man(args)) => args.write(command()).map_err(Failure::Work),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Config(error)) => common::cli::failure(&error, 2),
        Err(Failure::Work(error)) => common::cli::failure(&error, 1),
    }
}

/// `receiver --listen X export` would ignore `--listen`: the flags of the implicit `listen`
/// go before no other subcommand (global flags such as `--store` and `--log-format` go
/// anywhere). clap's `args_conflicts_with_subcommands` would say so too, but it also refuses
/// global flags before a subcommand.
///
/// # Errors
/// Names the flags and where they belong.
fn refuse_listen_flags_before_a_subcommand(matches: &clap::ArgMatches) -> Result<(), clap::Error> {
    let Some((subcommand, _)) = matches.subcommand() else {
        return Ok(());
    };
    let listen_flags = ListenArgs::augment_args(clap::Command::new("listen"));
    let given: Vec<String> = listen_flags
        .get_arguments()
        .filter(|arg| {
            matches.value_source(arg.get_id().as_str())
                == Some(clap::parser::ValueSource::CommandLine)
        })
        .map(|arg| format!("--{}", arg.get_long().unwrap_or_default()))
        .collect();
    if given.is_empty() {
        return Ok(());
    }
    let verb = if given.len() == 1 {
        "belongs"
    } else {
        "belong"
    };
    Err(command().error(
        clap::error::ErrorKind::ArgumentConflict,
        format!(
            "{} {verb} to `receiver listen` and cannot come before `{subcommand}`; \
             `receiver {subcommand} --help` lists its flags",
            given.join(", ")
        ),
    ))
}

/// Where and how the inspector is served, as the flags asked.
struct UiChoice {
    address: String,
    /// Given with --ui / RECEIVER_UI: it must be bound as given.
    explicit: bool,
    token: common::web::Token,
}

/// Reads `--ui` and `--ui-token`: `None` when the inspector is off.
fn ui_choice(ui: Option<&str>, token: Option<&str>) -> anyhow::Result<Option<UiChoice>> {
    if ui == Some("off") {
        return Ok(None);
    }
    let address = ui.unwrap_or(crate::inspector::DEFAULT_ADDRESS).to_owned();
    let token = common::web::choose_token(
        &address,
        token,
        common::web::TokenRule {
            what: "the inspector",
            address_flag: "--ui",
            token_flags: "--ui-token (or RECEIVER_UI_TOKEN)",
        },
    )?;
    Ok(Some(UiChoice {
        address,
        explicit: ui.is_some(),
        token,
    }))
}

/// The TLS files of `--tls-cert` and `--tls-key`, both or neither.
///
/// # Errors
/// Only one of the two is given.
fn tls_files(cert: Option<PathBuf>, key: Option<PathBuf>) -> anyhow::Result<Option<TlsFiles>> {
    // clap's `requires` sees flags and environment variables, not a config file's values
    // (common::config_file): a half-given pair is refused here, not served as plain HTTP.
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(TlsFiles { cert, key })),
        (None, None) => Ok(None),
        _ => anyhow::bail!("--tls-cert and --tls-key go together: give both or neither"),
    }
}

fn listen_config(args: ListenArgs, store: &str) -> anyhow::Result<(String, Config)> {
    if !args.path.starts_with('/') {
        anyhow::bail!("--path {:?} must start with '/'", args.path);
    }
    let authentication = args.auth.authentication()?;
    let limits = Limits {
        max_body_bytes: usize::try_from(args.max_body).context("--max-body is too large")?,
        max_connections: args.max_connections,
        header_read_timeout: args.header_timeout,
        body_read_timeout: args.body_timeout,
        write_stall_timeout: config::DEFAULT_WRITE_STALL_TIMEOUT,
        shutdown_grace: args.shutdown_timeout,
    };
    let forward = forward_config(&args)?;
    let tls = tls_files(args.tls_cert, args.tls_key)?;
    if args.retain.is_some_and(|retain| retain.is_zero()) {
        anyhow::bail!("--retain must be above 0 (leave it out to keep everything)");
    }
    let config = Config {
        path: args.path,
        authentication,
        store: StoreLocation::parse(store).context("--store")?,
        output: args.output,
        tls,
        limits,
        keep_refused: args.keep_refused,
        forward,
        retention: crate::retention::Retention {
            retain: args.retain,
            dedupe_window: args.dedupe_window,
        },
    };
    Ok((args.listen, config))
}

/// Where Send again may send for an inspector bound to `ui_local`: anywhere on loopback, only
/// to public addresses beyond it unless `--allow-private-targets` (`common::target_guard`);
/// the log says which and why.
fn targets_for(allow_private_targets: bool, ui_local: std::net::SocketAddr) -> TargetGuard {
    TargetGuard::for_pages("the inspector", ui_local, allow_private_targets)
}

/// The forwarding settings the `--forward-*` flags ask for; `None` without `--forward-to`.
///
/// # Errors
/// A target or a signature file that cannot be used, or bad backoff bounds.
fn forward_config(args: &ListenArgs) -> anyhow::Result<Option<ForwardConfig>> {
    if args.forward_to.is_empty() {
        if !args.forward_signature_file.is_empty() {
            anyhow::bail!("--forward-signature-file needs --forward-to");
        }
        return Ok(None);
    }
    let mut targets = parse_targets(&args.forward_to).context("--forward-to")?;
    let files = signature_files_by_target(&args.forward_signature_file, &targets)?;
    let now = verify::unix_now();
    for (target, file) in targets.iter_mut().zip(files) {
        let Some(file) = file else { continue };
        let keyring = config::read_signature_file(&file).context("--forward-signature-file")?;
        // Every secret expired: each forwarded request would carry no signature, the app
        // would refuse them all and park every job.
        if !keyring.entries().iter().any(|entry| entry.in_force_at(now)) {
            anyhow::bail!(
                "--forward-signature-file {}: every secret in it has expired; download the \
                 app's current signature file",
                file.display()
            );
        }
        // A file of whpk_ public keys verifies but cannot sign: the same.
        if !keyring.can_sign_at(now) {
            anyhow::bail!(
                "--forward-signature-file {}: it holds only whpk_ public keys, which cannot \
                 sign; give the file with the whsk_ secret key",
                file.display()
            );
        }
        target.signing = Some(keyring);
    }
    for target in &targets {
        let unknown = target.events.outside_catalogue();
        if !unknown.is_empty() {
            tracing::warn!(
                target = %target.name(),
                events = %unknown.join(","),
                "no event of the catalogue has these names: check the spelling (a name \
                 Learning Manager added later is still forwarded)"
            );
        }
    }
    let mut forward = ForwardConfig::to_targets(targets);
    forward.retry = RetryPolicy {
        min: args.forward_retry_min,
        max: args.forward_retry_max,
    };
    if forward.retry.min.is_zero() || forward.retry.max < forward.retry.min {
        anyhow::bail!("--forward-retry-min must be above 0 and at most --forward-retry-max");
    }
    forward.connect_timeout = args.forward_connect_timeout;
    forward.response_timeout = args.forward_timeout;
    Ok(Some(forward))
}

fn listen(args: ListenArgs, store: &str) -> Result<(), Failure> {
    let ui = ui_choice(args.ui.as_deref(), args.ui_token.as_deref()).map_err(Failure::Config)?;
    let allow_private_targets = args.allow_private_targets;
    let (address, config) = listen_config(args, store).map_err(Failure::Config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
        .map_err(Failure::Work)?;
    runtime.block_on(async move {
        let path = config.path.clone();
        let listener = tokio::net::TcpListener::bind(&address)
            .await
            .with_context(|| format!("listening on {address}"))
            .map_err(Failure::Config)?;
        let local = listener
            .local_addr()
            .context("reading the bound address")
            .map_err(Failure::Work)?;
        let receiver = crate::Receiver::start(config).map_err(Failure::Config)?;
        let ui_listener = match &ui {
            Some(ui) => Some(
                crate::inspector::bind(&ui.address, ui.explicit)
                    .await
                    .map_err(Failure::Config)?,
            ),
            None => None,
        };
        let shutdown = common::signal::shutdown_signal().map_err(Failure::Work)?;
        // From here SIGHUP reloads instead of ending the process.
        reload::on_hangup(receiver.reloader()).map_err(Failure::Work)?;
        let scheme = if receiver.is_tls() { "https" } else { "http" };
        let webhook_url = format!("{scheme}://{local}{path}");
        // The first line of stdout in every output mode: tests and scripts wait for it; the
        // inspector's address is the second.
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "listening on {webhook_url}");
        let inspector = match (ui, ui_listener) {
            (Some(ui), Some(ui_listener)) => {
                let ui_local = ui_listener
                    .local_addr()
                    .context("reading the inspector's address")
                    .map_err(Failure::Work)?;
                let _ = writeln!(
                    stdout,
                    "inspector on {scheme}://{ui_local}/?token={}",
                    ui.token.expose()
                );
                let targets = targets_for(allow_private_targets, ui_local);
                Some((
                    ui_listener,
                    receiver.inspector_settings(ui.token, webhook_url, targets),
                ))
            }
            _ => None,
        };
        let _ = stdout.flush();
        drop(stdout);
        tracing::info!(address = %local, %path, "listening");
        // One signal stops both servers: the listener drains, the inspector's streams end.
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let pages = inspector.map(|(ui_listener, settings)| {
            let mut stopped = stopped.clone();
            tokio::spawn(crate::inspector::serve(ui_listener, settings, async move {
                let _ = stopped.changed().await;
            }))
        });
        let served = receiver
            .serve(listener, async move {
                shutdown.await;
                let _ = stop.send(true);
            })
            .await;
        if let Some(pages) = pages {
            if let Ok(Err(error)) = pages.await {
                tracing::warn!(error = %format!("{error:#}"), "inspector");
            }
        }
        served.map_err(Failure::Work)
    })
}

/// Prints `text` and a line break on standard output.
fn print(text: &str) -> Result<(), Failure> {
    outln!("{text}").map_err(Failure::Work)
}

fn export(args: ExportArgs, store: &str) -> Result<(), Failure> {
    let verdict = match (args.verdict, args.include_refused) {
        (Some(verdict), _) => verdict,
        (None, true) => VerdictChoice::All,
        (None, false) => VerdictChoice::Accepted,
    };
    let filter = CaptureFilter {
        accepted: verdict != VerdictChoice::Refused,
        refused: verdict != VerdictChoice::Accepted,
        received_since_ms: args.selection.since,
        received_until_ms: args.selection.until,
        account_id: args.account,
        event_names: args.selection.event_names.clone(),
    };
    let location = StoreLocation::parse(store)
        .context("--store")
        .map_err(Failure::Config)?;
    if let Some(out) = &args.out {
        let database = match &location {
            StoreLocation::Sqlite(database) => Some(database.as_path()),
            StoreLocation::Postgres(_) => None,
        };
        common::files::refuse_database_files("--out", out, database).map_err(Failure::Config)?;
    }
    let reader = crate::store::open_reader(&location).map_err(Failure::Config)?;
    let write_records = |out: &mut dyn Write| {
        reader.captures(&filter, &mut |record| {
            out.write_all(record.to_json_line().as_bytes())?;
            out.write_all(b"\n")?;
            Ok(())
        })
    };
    let Some(path) = &args.out else {
        let mut out = std::io::BufWriter::new(common::cli::stdout());
        return write_records(&mut out)
            .and_then(|_| Ok(out.flush()?))
            .context("writing to standard output")
            .map_err(Failure::Work);
    };
    // Whole or not at all, mode 0600: a failure half-way leaves the previous file as it was.
    let written = common::files::write_atomically(path, write_records)
        .with_context(|| format!("writing to {}", path.display()))
        .map_err(Failure::Work)?;
    tell(
        "INFO",
        format_args!("exported {written} requests to {}", path.display()),
    );
    Ok(())
}

/// `receiver forward …`: a store that cannot be opened is exit 2, a job that cannot be
/// changed exit 1.
fn forward(command: crate::forward_commands::ForwardCommand, store: &str) -> Result<(), Failure> {
    let location = StoreLocation::parse(store)
        .context("--store")
        .map_err(Failure::Config)?;
    let control = crate::store::open_forward_control(&location).map_err(Failure::Config)?;
    crate::forward_commands::run(command, &control).map_err(Failure::Work)
}

fn check(args: CheckArgs) -> Result<(), Failure> {
    let authentication = args.auth.authentication().map_err(Failure::Config)?;
    let items = crate::check::read_source(&args.source).map_err(Failure::Config)?;
    let now_secs = verify::unix_now();
    let reports: Vec<crate::check::Report> = items
        .iter()
        .map(|item| crate::check::check(&authentication, item, now_secs))
        .collect();
    let count = |verdict: crate::check::Verdict| {
        reports
            .iter()
            .filter(|report| report.verdict == verdict)
            .count()
    };
    let refused = count(crate::check::Verdict::Refused);
    let unchecked = count(crate::check::Verdict::Unchecked);
    if args.json {
        let array: Vec<_> = reports.iter().map(crate::check::Report::to_json).collect();
        print(&common::text::printable_json(
            &serde_json::Value::Array(array).to_string(),
        ))?;
    } else {
        let mut lines: Vec<String> = reports.iter().map(crate::check::Report::to_text).collect();
        let mut summary = format!(
            "{} checked, {} accepted, {refused} refused",
            reports.len(),
            reports.len() - refused - unchecked
        );
        if unchecked > 0 {
            summary.push_str(&format!(", {unchecked} unchecked"));
        }
        lines.push(summary);
        print(&lines.join("\n"))?;
    }
    if refused > 0 {
        return Err(Failure::Work(anyhow::anyhow!(
            "{refused} of {} requests would be refused",
            reports.len()
        )));
    }
    if unchecked > 0 {
        return Err(Failure::Work(anyhow::anyhow!(
            "{unchecked} of {} requests could not be re-checked",
            reports.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `listen` arguments of a command line (from `argv` alone: no configuration file).
    fn listen_args(argv: &[&str]) -> ListenArgs {
        let cli = Cli::try_parse_from(argv).expect("parses");
        match cli.command {
            Some(Command::Listen(args)) => *args,
            None => cli.listen,
            Some(other) => panic!("not listen: {other:?}"),
        }
    }

    #[test]
    fn the_inspector_s_rule_comes_from_its_address_and_the_flag() {
        use common::target_guard::TargetPolicy::{AnyAddress, PublicOnly};
        let everywhere: std::net::SocketAddr = "0.0.0.0:8081".parse().expect("address");
        let loopback: std::net::SocketAddr = "127.0.0.1:8081".parse().expect("address");
        for (argv, at, expected) in [
            (&["receiver", "listen"][..], everywhere, PublicOnly),
            (
                &["receiver", "listen", "--allow-private-targets"][..],
                everywhere,
                AnyAddress,
            ),
            (
                &["receiver", "--allow-private-targets"][..],
                everywhere,
                AnyAddress,
            ),
            (&["receiver", "listen"][..], loopback, AnyAddress),
        ] {
            let args = listen_args(argv);
            assert_eq!(
                targets_for(args.allow_private_targets, at).policy(),
                expected,
                "{argv:?} on {at}"
            );
        }
    }
}
