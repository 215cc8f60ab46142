//! `sender secret-key generate|rotate`: the key that seals the state's secrets at rest (see
//! [`crate::sealing`]). Any command given `--secret-key-file` seals the plain secrets it
//! finds as it opens the state; these two make a key and move the secrets to a new one.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use common::outln;
use serde_json::json;

use crate::sealing::SecretKey;
use crate::store::Registry;

/// `sender secret-key …`
#[derive(Debug, Subcommand)]
pub(super) enum SecretKeyCommand {
    /// Write a new random key (32 bytes, base64) to FILE, mode 0600; never over an existing
    /// file. Give it to every command with --secret-key-file (or SENDER_SECRET_KEY_FILE),
    /// and keep a copy: without it the sealed secrets are lost.
    Generate {
        /// Where to write the key.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Seal every secret of the state under a new key, in one transaction. The current key
    /// (--secret-key-file) opens them; afterwards only the new one opens the state.
    Rotate {
        /// The new key (from `sender secret-key generate`).
        #[arg(long, value_name = "FILE")]
        new_key_file: PathBuf,
    },
}

/// `secret-key generate --out FILE`.
///
/// # Errors
/// The file exists, or cannot be written.
pub(super) fn generate(out: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let (_, text) = SecretKey::generate()?;
    common::files::write_new(out, text.as_bytes())
        .map_err(|error| crate::UsageError(format!("--out: {error:#}")))?;
    if json {
        outln!("{}", json!({"out": out}))?;
    } else {
        outln!(
            "wrote {} (mode 0600): give it to every sender command with --secret-key-file or \
             SENDER_SECRET_KEY_FILE, and keep a copy elsewhere; without it the sealed secrets \
             cannot be read",
            out.display()
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `secret-key rotate --new-key-file FILE`, on a state opened with the current key.
///
/// # Errors
/// The new key cannot be read; a secret does not open with the current key.
pub(super) fn rotate(
    state: &dyn Registry,
    new_key_file: &Path,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let new_key = SecretKey::read("--new-key-file", new_key_file)?;
    let webhooks = state.reseal_secrets(&new_key)?;
    if json {
        outln!(
            "{}",
            json!({"webhooks": webhooks, "newKeyFile": new_key_file})
        )?;
    } else {
        outln!(
            "sealed the secrets of {webhooks} webhook(s) under {}; from now on give \
             --secret-key-file {} (the old key no longer opens this state)",
            new_key_file.display(),
            new_key_file.display()
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
