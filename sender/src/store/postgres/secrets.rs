//! The passes over the secret columns in this store (see [`crate::sealing`] and
//! `store/secrets.rs`, which decides what they write): the key record, one transaction per
//! pass, one process at a time, and none while a webhook is being written.

use anyhow::Context as _;
use deadpool_postgres::GenericClient;

use super::connection::{Db, PostgresState};
use crate::sealing::{SecretColumns, SecretKey};
use crate::store::secrets::{Plan, SecretStorage};

/// The advisory lock that serialises passes over the secrets ("snky"), taken exclusively by a
/// pass and shared by every write of a webhook: two processes given a key at once must not
/// record two keys, and a webhook written while a rotation runs would be sealed under the
/// key that is being retired.
pub(super) const SEALING_LOCK: i64 = 0x736e_6b79;

/// The key record, as the statements of this store read it.
pub(super) async fn key_record<C: GenericClient>(db: &Db<'_, C>) -> anyhow::Result<Option<String>> {
    Ok(db
        .query_opt("SELECT key_check FROM sender_secret_key WHERE id = 1", &[])
        .await
        .context("reading the secret key record")?
        .map(|row| row.get(0)))
}

impl SecretStorage for PostgresState {
    fn secret_key(&self) -> Option<&SecretKey> {
        self.secret_key.as_ref()
    }

    fn recorded_key(&self) -> anyhow::Result<Option<String>> {
        self.call(|pool, trips| async move {
            let client = pool.get().await?;
            key_record(&Db::new(&client, &trips)).await
        })
    }

    fn sealing_pass(&self, plan: Plan) -> anyhow::Result<u64> {
        self.call(|pool, trips| async move {
            let mut client = pool.get().await?;
            let transaction = client.transaction().await?;
            let db = Db::new(&transaction, &trips);
            db.execute("SELECT pg_advisory_xact_lock($1)", &[&SEALING_LOCK])
                .await?;
            let recorded = key_record(&db).await?;
            let rows: Vec<SecretColumns> = db
                .query(
                    "SELECT id, url, basic_username, basic_password, signature_file
                     FROM sender_webhooks ORDER BY id FOR UPDATE",
                    &[],
                )
                .await
                .context("reading the secrets")?
                .iter()
                .map(|row| SecretColumns {
                    webhook_id: row.get(0),
                    url: row.get(1),
                    basic_username: row.get(2),
                    basic_password: row.get(3),
                    signature_file: row.get(4),
                })
                .collect();
            let (record, pass) = plan(&rows, recorded.as_deref())?;
            if record.is_none() && pass.changed.is_empty() {
                return Ok(pass.with_secrets);
            }
            if let Some(record) = record {
                db.execute(
                    "INSERT INTO sender_secret_key (id, key_check) VALUES (1, $1)
                     ON CONFLICT (id) DO UPDATE SET key_check = EXCLUDED.key_check",
                    &[&record],
                )
                .await?;
            }
            let now_ms = verify::unix_now_ms();
            for row in &pass.changed {
                db.execute(
                    "UPDATE sender_webhooks SET basic_password = $2, signature_file = $3,
                         updated_at_ms = CASE WHEN $4 THEN GREATEST(updated_at_ms + 1, $5)
                                              ELSE updated_at_ms END
                     WHERE id = $1",
                    &[
                        &row.webhook_id,
                        &row.basic_password,
                        &row.signature_file,
                        &pass.new_version,
                        &now_ms,
                    ],
                )
                .await?;
            }
            transaction
                .commit()
                .await
                .context("committing the sealed secrets")?;
            Ok(pass.with_secrets)
        })
    }
}
