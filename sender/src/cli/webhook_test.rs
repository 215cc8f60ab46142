//! `sender webhooks test`: one realistic event, now, outside the queue, to a registered
//! webhook or to `--url`; exit 0 only on a 2xx.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use common::cli::event_names;
use common::outln;
use common::parse::duration as parse_duration;
use serde_json::json;

use super::args::auth_method_from_flags;
use super::output::print_json;
use super::signature_file::read_signature_file;
use crate::delivery::HttpTransport;
use crate::manage::target_url;
use crate::manage::{TestOutcome, TestTarget};
use crate::registry::{Auth, AuthMethod, BasicAuth};
use crate::store::State;
use crate::UsageError;

#[derive(Debug, Args)]
pub(super) struct TestArgs {
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

/// `webhooks test [ID] [--url URL …]`.
pub(super) async fn webhook_test(
    open: impl Fn() -> anyhow::Result<Arc<dyn State>>,
    args: TestArgs,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let (target, label) = match (&args.id, &args.url) {
        (Some(id), None) => {
            let webhook = crate::manage::find(&*open()?, id)?;
            (TestTarget::of(&webhook), webhook.id.to_string())
        }
        (None, Some(url)) => {
            let url = target_url(url)?;
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
                // The operator's own URL: any address.
                target_policy: common::target_guard::TargetPolicy::AnyAddress,
            };
            (target, url.to_string())
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
