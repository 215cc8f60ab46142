//! `sender webhooks add|list|show|edit|delete|retire|activate|signature|rotate-secret`:
//! registrations, through [`crate::manage`] as the admin pages go.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use common::cli::event_names;
use common::parse::duration as parse_duration;
use common::text::printable;
use common::{out, outln};
use serde_json::{json, Value};

use super::output::print_json;
use super::signature_file::write_secret_file;
use crate::manage::{target_url, WebhookChanges};
use crate::registry::{AuthMethod, SchemeName, Status, Webhook};
use crate::store::State;

#[derive(Debug, Subcommand)]
pub(super) enum WebhooksCommand {
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
    Test(super::webhook_test::TestArgs),
}

#[derive(Debug, Args)]
pub(super) struct WebhookArgs {
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
    /// The changes these flags ask for, the Target URL parsed.
    ///
    /// # Errors
    /// A [`crate::UsageError`] for a `--url` that is no Target URL.
    fn changes(self) -> Result<WebhookChanges, crate::UsageError> {
        Ok(WebhookChanges {
            name: self.name,
            description: self.description,
            url: self.url.as_deref().map(target_url).transpose()?,
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
            // The operator's own: a URL given here may lead anywhere.
            target_policy: common::target_guard::TargetPolicy::AnyAddress,
            pending_signature: None,
        })
    }
}

/// Every `webhooks` subcommand but `test`, which [`super::webhook_test`] runs.
pub(super) fn webhooks(
    state: &dyn State,
    command: WebhooksCommand,
    json: bool,
) -> anyhow::Result<ExitCode> {
    match command {
        WebhooksCommand::Add(args) => {
            let webhook = crate::manage::add(state, args.changes()?)?;
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
                    // A name or URL may have been typed on the pages by someone else.
                    outln!(
                        "{:<20} {:<9} {:<10} {:<24} {:<40} {}",
                        webhook.id,
                        webhook.status.as_str(),
                        webhook.auth.method(),
                        printable(&webhook.name),
                        printable(webhook.url.as_str()),
                        webhook.events.to_text()
                    )?;
                }
            }
        }
        WebhooksCommand::Show { id } => {
            let webhook = crate::manage::find(state, &id)?;
            let record = webhook.to_json();
            if json {
                print_json(&record)?;
            } else if let Value::Object(map) = record {
                for (key, value) in map {
                    let text = match value {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    outln!("{key:<15} {}", printable(&text))?;
                }
            }
        }
        WebhooksCommand::Edit { id, args } => {
            let webhook = crate::manage::edit(state, &id, args.changes()?, None)?;
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

/// `retire` and `activate`: activation also clears a retention-end disable, and says what the
/// disable left expired and how to recover it.
fn set_status(state: &dyn State, id: &str, status: Status, json: bool) -> anyhow::Result<()> {
    let webhook = crate::manage::set_status(state, id, status, None)?;
    let expired = match webhook.status {
        Status::Active => Some(crate::manage::expired(state, &webhook)?),
        _ => None,
    };
    if json {
        let mut record = webhook.to_json();
        if let (Some(expired), serde_json::Value::Object(map)) = (&expired, &mut record) {
            map.insert("expiredRequests".into(), json!(expired.requests));
            map.insert("expiredEvents".into(), json!(expired.events));
        }
        print_json(&record)?;
    } else {
        outln!("{id} is now {}", webhook.status.as_str())?;
        if let Some(note) = expired
            .as_ref()
            .and_then(|expired| crate::manage::activation_note(&webhook, expired))
        {
            outln!("{note}")?;
        }
    }
    Ok(())
}
