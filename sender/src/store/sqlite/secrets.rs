//! The passes over the secret columns in this store (see [`crate::sealing`] and
//! `store/secrets.rs`, which decides what they write): the key record, one transaction per
//! pass, and the file scrubbed after it.

use anyhow::Context as _;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::connection::SqliteState;
use crate::sealing::{SecretColumns, SecretKey};
use crate::store::secrets::{Plan, SecretStorage};

/// The key record, as the statements of this store read it.
pub(super) fn key_record(connection: &Connection) -> anyhow::Result<Option<String>> {
    connection
        .query_row("SELECT key_check FROM secret_key WHERE id = 1", [], |row| {
            row.get(0)
        })
        .optional()
        .context("reading the secret key record")
}

impl SecretStorage for SqliteState {
    fn secret_key(&self) -> Option<&SecretKey> {
        self.secret_key.as_ref()
    }

    fn recorded_key(&self) -> anyhow::Result<Option<String>> {
        key_record(&self.lock())
    }

    /// One IMMEDIATE transaction: SQLite's write lock keeps every other writer (a webhook's
    /// write, another pass) out until it commits.
    fn sealing_pass(&self, plan: Plan) -> anyhow::Result<u64> {
        let mut connection = self.lock();
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let recorded = key_record(&transaction)?;
        let rows = transaction
            .prepare(
                "SELECT id, url, basic_username, basic_password, signature_file FROM webhooks
                 ORDER BY id",
            )?
            .query_map([], |row| {
                Ok(SecretColumns {
                    webhook_id: row.get(0)?,
                    url: row.get(1)?,
                    basic_username: row.get(2)?,
                    basic_password: row.get(3)?,
                    signature_file: row.get(4)?,
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
        let now_ms = verify::unix_now_ms();
        for row in &pass.changed {
            transaction.execute(
                "UPDATE webhooks SET basic_password = ?2, signature_file = ?3,
                     updated_at_ms = CASE WHEN ?4 THEN MAX(updated_at_ms + 1, ?5)
                                          ELSE updated_at_ms END
                 WHERE id = ?1",
                params![
                    row.webhook_id,
                    row.basic_password,
                    row.signature_file,
                    pass.new_version,
                    now_ms
                ],
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
