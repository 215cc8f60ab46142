//! The passes over the secret columns (see [`crate::sealing`]): sealing the plain secrets
//! under a key given at opening, and moving them to a new key; the file scrubbed after.

use anyhow::Context as _;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::connection::SqliteState;
use crate::sealing::{self, SecretColumns, SecretKey};
use crate::store::rows::SealingPass;

/// Runs one pass over the secret columns in one transaction: `plan` reads the rows and
/// the key record and says what to write (a new key record, changed rows).
pub(super) fn sealing_pass(
    store: &SqliteState,
    plan: impl FnOnce(&[SecretColumns], Option<&str>) -> anyhow::Result<(Option<String>, SealingPass)>,
) -> anyhow::Result<u64> {
    let mut connection = store.lock();
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let recorded: Option<String> = transaction
        .query_row("SELECT key_check FROM secret_key WHERE id = 1", [], |row| {
            row.get(0)
        })
        .optional()
        .context("reading the secret key record")?;
    let rows = transaction
        .prepare("SELECT id, basic_password, signature_file FROM webhooks ORDER BY id")?
        .query_map([], |row| {
            Ok(SecretColumns {
                webhook_id: row.get(0)?,
                basic_password: row.get(1)?,
                signature_file: row.get(2)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()
        .context("reading the secrets")?;
    let (record, pass) = plan(&rows, recorded.as_deref())?;
    if record.is_none() && pass.changed.is_empty() {
        return Ok(pass.with_secrets);
    }
    if let Some(record) = record {
        transaction.execute(
            "INSERT INTO secret_key (id, key_check) VALUES (1, ?1)
             ON CONFLICT (id) DO UPDATE SET key_check = excluded.key_check",
            [record],
        )?;
    }
    // `updated_at_ms` stays: sealing changes how a secret is kept, not the webhook, and
    // an edit read before it must still apply.
    for row in &pass.changed {
        transaction.execute(
            "UPDATE webhooks SET basic_password = ?2, signature_file = ?3 WHERE id = ?1",
            params![row.webhook_id, row.basic_password, row.signature_file],
        )?;
    }
    transaction
        .commit()
        .context("committing the sealed secrets")?;
    if !pass.changed.is_empty() {
        scrub(&connection);
    }
    Ok(pass.with_secrets)
}

/// After secrets were sealed or moved to a new key: their old values (plain text, or sealed
/// under the retired key) stay in the file's free space and in the WAL until overwritten, so
/// the file is rewritten (VACUUM) and the WAL emptied, and a copy of the file holds only what
/// is sealed now. Best effort, with a warning: another process reading the state can keep the
/// WAL from emptying until it moves on.
pub(super) fn scrub(connection: &Connection) {
    let scrubbed = connection.execute_batch("VACUUM").and_then(|()| {
        connection.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
            row.get::<_, i64>(0)
        })
    });
    match scrubbed {
        Ok(0) => {}
        Ok(_) => tracing::warn!(
            "another process holds the state open: the write-ahead log still holds the \
             secrets' old values until it is checkpointed"
        ),
        Err(error) => tracing::warn!(
            %error,
            "could not rewrite the state file: its free space may still hold the secrets' \
             old values"
        ),
    }
}

/// [`Registry::reseal_secrets`](crate::store::Registry::reseal_secrets) in this store.
pub(super) fn reseal_secrets(store: &SqliteState, new: &SecretKey) -> anyhow::Result<u64> {
    let current = store.secret_key.as_ref();
    sealing_pass(store, |rows, recorded| {
        sealing::admit(recorded, current)?;
        let pass = SealingPass::reseal(rows, current, new)?;
        Ok((Some(new.key_check()?), pass))
    })
}
