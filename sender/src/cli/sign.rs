//! `sender sign`: the signature headers of a body, and a ready curl command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use common::outln;
use serde_json::json;

use super::output::print_json;
use super::signature_file::read_signature_file;
use crate::UsageError;

#[derive(Debug, Args)]
pub(super) struct SignArgs {
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

/// `sign --signature-file FILE BODY_FILE`.
pub(super) fn sign(args: SignArgs, json: bool) -> anyhow::Result<ExitCode> {
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
