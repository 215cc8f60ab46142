//! The passes over the secret columns (see [`crate::sealing`]): sealing the plain secrets
//! under a key given at opening, and moving them to a new key; one process at a time.

use anyhow::Context as _;

use super::connection::{Db, PostgresState};
use crate::sealing::{self, SecretColumns, SecretKey};
use crate::store::rows::SealingPass;

/// The advisory lock that serialises passes over the secrets ("snky"): two processes given a
/// key at once must not record two keys.
pub(super) const SEALING_LOCK: i64 = 0x736e_6b79;

/// Runs one pass over the secret columns in one transaction, one process at a time:
/// `plan` reads the rows and the key record and says what to write (a new key record,
/// changed rows).
pub(super) fn sealing_pass(
    store: &PostgresState,
    plan: impl FnOnce(&[SecretColumns], Option<&str>) -> anyhow::Result<(Option<String>, SealingPass)>
        + Send
        + 'static,
) -> anyhow::Result<u64> {
    store.call(|pool, trips| async move {
        let mut client = pool.get().await?;
        let transaction = client.transaction().await?;
        let db = Db::new(&transaction, &trips);
        db.execute("SELECT pg_advisory_xact_lock($1)", &[&SEALING_LOCK])
            .await?;
        let recorded: Option<String> = db
            .query_opt("SELECT key_check FROM sender_secret_key WHERE id = 1", &[])
            .await
            .context("reading the secret key record")?
            .map(|row| row.get(0));
        let rows: Vec<SecretColumns> = db
            .query(
                "SELECT id, basic_password, signature_file FROM sender_webhooks
                 ORDER BY id FOR UPDATE",
                &[],
            )
            .await
            .context("reading the secrets")?
            .iter()
            .map(|row| SecretColumns {
                webhook_id: row.get(0),
                basic_password: row.get(1),
                signature_file: row.get(2),
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
        // `updated_at_ms` stays: sealing changes how a secret is kept, not the webhook,
        // and an edit read before it must still apply.
        for row in &pass.changed {
            db.execute(
                "UPDATE sender_webhooks SET basic_password = $2, signature_file = $3
                 WHERE id = $1",
                &[&row.webhook_id, &row.basic_password, &row.signature_file],
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

/// [`Registry::reseal_secrets`](crate::store::Registry::reseal_secrets) in this store.
pub(super) fn reseal_secrets(store: &PostgresState, new: &SecretKey) -> anyhow::Result<u64> {
    let (current, new) = (store.secret_key.clone(), new.clone());
    sealing_pass(store, move |rows, recorded| {
        sealing::admit(recorded, current.as_ref())?;
        let pass = SealingPass::reseal(rows, current.as_ref(), &new)?;
        Ok((Some(new.key_check()?), pass))
    })
}

/// The key record (`None` when no key seals the state), read without a lock: enough to refuse
/// a sealed state to a process that has no key.
///
/// # Errors
/// Storage errors.
pub(super) fn recorded_key(store: &PostgresState) -> anyhow::Result<Option<String>> {
    store.call(|pool, trips| async move {
        let client = pool.get().await?;
        let db = Db::new(&client, &trips);
        let row = db
            .query_opt("SELECT key_check FROM sender_secret_key WHERE id = 1", &[])
            .await
            .context("reading the secret key record")?;
        Ok(row.map(|row| row.get::<_, String>(0)))
    })
}
