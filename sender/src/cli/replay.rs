//! `sender replay SOURCE --to URL`: the flags, the checks made before anything is sent, and
//! the summary; [`crate::replay`] plans and sends.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use common::cli::Selection;
use common::logging::tell;
use common::parse::duration as parse_duration;
use common::target_url::{TargetUrl, TargetUrlError};
use common::text::printable;
use common::{out, outln};
use serde_json::json;
use verify::SignatureFile;

use super::args::auth_method_from_flags;
use super::output::print_json;
use super::signature_file::check_can_sign;
use crate::registry::AuthMethod;
use crate::UsageError;

/// `sender replay SOURCE --to URL …`
#[derive(Debug, Args)]
pub(super) struct ReplayArgs {
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
    pub(super) report: Option<PathBuf>,
}

/// Slowest `--rate`: one request every 1000 s; slower schedules are not a replay.
const MIN_REPLAY_RATE: f64 = 0.001;
/// Fastest `--rate`; beyond it, drop `--rate` and let `--concurrency` set the pace.
const MAX_REPLAY_RATE: f64 = 1_000_000.0;

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

/// `replay`: exit 1 unless every request was acknowledged with a 2xx.
pub(super) async fn replay(args: ReplayArgs, json: bool) -> anyhow::Result<ExitCode> {
    use crate::replay::{load_source, outgoing_headers, plan, send_all, ReplayFilter, SendOptions};
    let not_http = || {
        UsageError(format!(
            "--to must be an http:// URL with a host (got {}); replay does not send to https targets",
            args.to
        ))
    };
    let to = TargetUrl::parse(&args.to).map_err(|error| match error {
        TargetUrlError::Credentials => UsageError(
            "--to carries credentials (user:password@host); give them with --username and --password".into(),
        ),
        TargetUrlError::Invalid(why) => {
            UsageError(format!("--to {:?} is not a URL: {why}", args.to))
        }
        TargetUrlError::NoScheme | TargetUrlError::Scheme(_) | TargetUrlError::NoHost => {
            not_http()
        }
    })?;
    if to.is_https() {
        return Err(not_http().into());
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
                print_json(
                    &json!({"origin": request.origin, "to": args.to, "headers": headers, "bodyBytes": request.body.len()}),
                )?;
            } else {
                // Captured headers are whatever the capture's sender wrote: shown escaped.
                outln!(
                    "POST {} ({} bytes) from {}",
                    args.to,
                    request.body.len(),
                    printable(&request.origin)
                )?;
                for (name, value) in headers {
                    outln!("  {}: {}", printable(&name), printable(&value))?;
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
        print_json(&serde_json::to_value(&summary).context("encoding the summary")?)?;
    } else {
        out!("{}", summary.render())?;
    }
    Ok(if summary.all_acknowledged() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
