//! `sender run` (the delivery worker) and `sender admin` (the worker behind the Integration
//! Admin pages and their API).

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;
use common::target_guard::TargetGuard;

use super::args::DeliveryArgs;
use super::operations::OperationsArgs;
use crate::delivery::{Engine, Mode};
use crate::store::State;
use crate::UsageError;

#[derive(Debug, Args)]
pub(super) struct AdminArgs {
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
    #[command(flatten)]
    operations: OperationsArgs,
}

#[derive(Debug, Args)]
pub(super) struct RunArgs {
    #[command(flatten)]
    delivery: DeliveryArgs,
    #[command(flatten)]
    operations: OperationsArgs,
}

/// `run`: works the queue until SIGINT or SIGTERM.
pub(super) async fn run_worker(state: Arc<dyn State>, args: RunArgs) -> anyhow::Result<ExitCode> {
    let config = args.delivery.config()?;
    let parallel = config.parallel;
    let engine = Engine::http(state.clone(), config.clone()).with_role("run");
    engine
        .check_tls()
        .map_err(|error| UsageError(format!("{error:#}")))?;
    let prepared = args.operations.prepare().await?;
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
    // `metrics on …` comes second, when asked for.
    let operations = prepared.start(state, &config)?;
    let engine = engine.with_reporting(operations.reporting.clone());
    let report = engine.run(Mode::Serve, shutdown).await;
    operations.stop().await;
    let report = report?;
    for id in &report.disabled {
        tracing::warn!(webhook = %id, "disabled at the end of retention");
    }
    tracing::info!("sender run: stopped");
    Ok(ExitCode::SUCCESS)
}

/// Where the Target URLs of pages bound to `local` may lead: anywhere on loopback, only to
/// public addresses beyond it unless `--allow-private-targets` (see
/// `common::target_guard`); the log says which and why.
fn targets_for(args: &AdminArgs, local: SocketAddr) -> TargetGuard {
    TargetGuard::for_pages("the admin pages", local, args.allow_private_targets)
}

/// `admin`: the pages and their API, with the delivery worker in the same process.
pub(super) async fn run_admin(state: Arc<dyn State>, args: AdminArgs) -> anyhow::Result<ExitCode> {
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
    let prepared = args.operations.prepare().await?;
    let local = listener
        .local_addr()
        .context("reading the admin pages' address")?;
    let shutdown = common::signal::shutdown_signal()?;
    // The first line of standard output: whoever started the pages opens this address
    // (`metrics on …` comes second, when asked for).
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "admin on http://{local}/?token={}", token.expose());
    let _ = stdout.flush();
    let operations = prepared.start(state.clone(), &config)?;
    tracing::info!(address = %local, "admin pages and delivery worker started");
    let targets = targets_for(&args, local);
    let observed = crate::admin::Observed {
        reporting: operations.reporting.clone(),
        monitoring: operations.monitoring.clone(),
    };
    let ran = crate::admin::run(listener, token, state, config, targets, observed, shutdown).await;
    operations.stop().await;
    ran?;
    tracing::info!("sender admin: stopped");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn admin_args(argv: &[&str]) -> AdminArgs {
        match super::super::Cli::try_parse_from(argv)
            .expect("parses")
            .command
        {
            super::super::Command::Admin(args) => args,
            other => panic!("not admin: {other:?}"),
        }
    }

    #[test]
    fn the_pages_rule_comes_from_their_address_and_the_flag() {
        use common::target_guard::TargetPolicy::{AnyAddress, PublicOnly};
        let everywhere: SocketAddr = "0.0.0.0:8082".parse().expect("address");
        let loopback: SocketAddr = "[::1]:8082".parse().expect("address");
        for (argv, at, expected) in [
            (&["sender", "admin"][..], everywhere, PublicOnly),
            (
                &["sender", "admin", "--allow-private-targets"][..],
                everywhere,
                AnyAddress,
            ),
            (&["sender", "admin"][..], loopback, AnyAddress),
        ] {
            assert_eq!(
                targets_for(&admin_args(argv), at).policy(),
                expected,
                "{argv:?} on {at}"
            );
        }
    }
}
