//! What `receiver listen` does on SIGHUP (`systemctl reload receiver`): it reads its command
//! line again, with the config file as it is now, and puts the authentication it describes
//! (the signature files' contents and list, the Basic credentials) and the TLS certificate in
//! force (`crate::reload`). Everything else is read at start only.

use anyhow::Context as _;
use clap::FromArgMatches as _;
use tokio::signal::unix::{signal, SignalKind};

use super::{command, tls_files, Cli, Command, SECRET_KEYS};
use crate::reload::{describe, Reloader};

/// Reloads through `reloader` at every SIGHUP, from now on (SIGHUP no longer ends the
/// process). Logs what was reloaded, or why a reload failed and what was in force stays.
///
/// # Errors
/// The signal handler cannot be installed.
pub(super) fn on_hangup(reloader: Reloader) -> anyhow::Result<()> {
    let mut hangups = signal(SignalKind::hangup()).context("listening for SIGHUP")?;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            let reloader = reloader.clone();
            // Files are read on a blocking thread: a slow disk holds no request up.
            match tokio::task::spawn_blocking(move || reload(&reloader)).await {
                Ok(Ok(reloaded)) => tracing::info!("reloaded {reloaded}"),
                Ok(Err(error)) => tracing::warn!(
                    error = %format!("{error:#}"),
                    "reload failed; what was in force stays"
                ),
                Err(error) => tracing::warn!(%error, "reload failed; what was in force stays"),
            }
        }
    });
    Ok(())
}

/// Reads the command line and the config file again and puts their authentication and TLS
/// certificate in force; says what it reloaded, never a secret.
fn reload(reloader: &Reloader) -> anyhow::Result<String> {
    let (configured, config_file) = common::config_file::load(command(), SECRET_KEYS)?;
    let matches = configured
        .try_get_matches()
        .map_err(|error| anyhow::anyhow!("{}", error.to_string().trim()))?;
    let cli = Cli::from_arg_matches(&matches).map_err(|error| anyhow::anyhow!("{error}"))?;
    let args = match cli.command {
        Some(Command::Listen(args)) => *args,
        _ => cli.listen,
    };
    let authentication = args.auth.authentication()?;
    let tls = tls_files(args.tls_cert, args.tls_key)?;
    let mut reloaded = Vec::new();
    if let Some(file) = &config_file {
        reloaded.push(format!("the config file {}", file.path().display()));
    }
    if !args.auth.signature_files.is_empty() {
        let names: Vec<String> = args
            .auth
            .signature_files
            .iter()
            .map(|path| path.display().to_string())
            .collect();
        reloaded.push(format!("the signature files {}", names.join(", ")));
    }
    reloaded.push(describe(&authentication));
    if let Some(tls) = &tls {
        reloaded.push(format!(
            "the TLS certificate {} and key {}",
            tls.cert.display(),
            tls.key.display()
        ));
    }
    reloader.apply(authentication, tls.as_ref())?;
    Ok(reloaded.join("; "))
}
