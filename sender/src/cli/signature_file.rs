//! The signature files the commands read (to sign with: `sign`, `webhooks test`, `replay`)
//! and write (`webhooks signature --out`): written mode 0600 and whole, as they hold secrets.

use std::path::Path;

use anyhow::Context as _;
use verify::SignatureFile;

use crate::UsageError;

/// Writes a file holding secrets: mode 0600, whole or not at all (an existing file is
/// replaced, never left half-written).
pub(super) fn write_secret_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    common::files::write_atomically(path, |out| Ok(out.write_all(bytes)?))
        .with_context(|| format!("writing signature file {}", path.display()))
}

/// Reads a signature file a sender signs with: one whose keys in force can sign.
pub(super) fn read_signature_file(path: &Path) -> anyhow::Result<SignatureFile> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("reading signature file {}", path.display()))?;
    let file = SignatureFile::from_json(&bytes)
        .map_err(|error| UsageError(format!("signature file {}: {error}", path.display())))?;
    check_can_sign(&file.keyring()?, path)?;
    Ok(file)
}

/// Refuses a keyring that cannot sign now (only `whpk_` public keys in force).
pub(super) fn check_can_sign(keyring: &verify::Keyring, path: &Path) -> Result<(), UsageError> {
    if keyring.can_sign_at(verify::unix_now()) {
        return Ok(());
    }
    Err(UsageError(format!(
        "signature file {}: no key in force can sign (a whpk_ public key only verifies); use the file from `sender webhooks signature ID --signing`",
        path.display()
    )))
}
