//! Registrations: a webhook's row written and read (secrets sealed and opened on the way), at
//! most five, every update only if nobody changed the webhook since it was read, and every
//! write only while the state's key record is this process's key.

use anyhow::Context as _;
use deadpool_postgres::GenericClient;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::connection::{Db, PostgresState};
use super::secrets::{key_record, SEALING_LOCK};
use crate::registry::{Webhook, WebhookId};
use crate::sealing::{self, SecretKey};
use crate::store::rows::{changed_meanwhile, room_for_another, too_many_webhooks, WebhookRow};

pub(super) const WEBHOOK_COLUMNS: &str = "id, name, description, url, events, auth, basic_username,
    basic_password, signature_file, status, disabled_reason, public_targets_only, created_at_ms,
    updated_at_ms";

/// [`WEBHOOK_COLUMNS`] and whether the state has a key record (`keyed`: see
/// [`crate::sealing`], the record decides what is sealed), as one query reads them.
const SELECT_WEBHOOKS: &str = "SELECT id, name, description, url, events, auth, basic_username,
    basic_password, signature_file, status, disabled_reason, public_targets_only, created_at_ms,
    updated_at_ms, EXISTS (SELECT 1 FROM sender_secret_key) AS keyed FROM sender_webhooks";

/// A webhook's stored fields, secrets included, bound as `$1` … `$12` in this order (id,
/// name, description, url, events, auth, basic_username, basic_password, signature_file,
/// status, disabled_reason, public_targets_only); INSERT and UPDATE add their own parameters
/// after them.
pub(super) fn column_params(row: &WebhookRow) -> [&(dyn ToSql + Sync); 12] {
    [
        &row.id,
        &row.name,
        &row.description,
        &row.url,
        &row.events,
        &row.auth,
        &row.basic_username,
        &row.basic_password,
        &row.signature_file,
        &row.status,
        &row.disabled_reason,
        &row.public_targets_only,
    ]
}

/// Refuses a write when the state's key record, as it is now, is not the key `key` of the
/// writing process (see [`sealing::confirm`]). Called first in the write's transaction: it
/// takes the passes' lock shared, so no rotation runs until the write commits, and a write
/// that comes after one sees its record.
async fn confirm_key<C: GenericClient>(
    db: &Db<'_, C>,
    key: Option<&SecretKey>,
) -> anyhow::Result<()> {
    db.execute("SELECT pg_advisory_xact_lock_shared($1)", &[&SEALING_LOCK])
        .await?;
    let recorded = key_record(db).await?;
    sealing::confirm(recorded.as_deref(), key)?;
    Ok(())
}

pub(super) fn read_webhook(row: &Row) -> (WebhookRow, bool) {
    (
        WebhookRow {
            id: row.get("id"),
            name: row.get("name"),
            description: row.get("description"),
            url: row.get("url"),
            events: row.get("events"),
            auth: row.get("auth"),
            basic_username: row.get("basic_username"),
            basic_password: row.get("basic_password"),
            signature_file: row.get("signature_file"),
            status: row.get("status"),
            disabled_reason: row.get("disabled_reason"),
            created_at_ms: row.get("created_at_ms"),
            updated_at_ms: row.get("updated_at_ms"),
            public_targets_only: row.get("public_targets_only"),
        },
        row.get("keyed"),
    )
}

/// [`Registry::insert_webhook`](crate::store::Registry::insert_webhook) in this store.
pub(super) fn insert_webhook(store: &PostgresState, webhook: &Webhook) -> anyhow::Result<()> {
    let key = store.secret_key.clone();
    let row = WebhookRow::of(webhook, key.as_ref())?;
    store.call(|pool, trips| async move {
        let mut client = pool.get().await?;
        let transaction = client.transaction().await?;
        let db = Db::new(&transaction, &trips);
        confirm_key(&db, key.as_ref()).await?;
        // Two processes registering at once must not both see room for a fifth.
        db.execute(
            "LOCK TABLE sender_webhooks IN SHARE ROW EXCLUSIVE MODE",
            &[],
        )
        .await?;
        let count: i64 = db
            .query_one("SELECT count(*) FROM sender_webhooks", &[])
            .await?
            .get(0);
        if !room_for_another(count) {
            return Err(too_many_webhooks(count));
        }
        db.execute(
            &format!(
                "INSERT INTO sender_webhooks ({WEBHOOK_COLUMNS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
            ),
            &[
                &column_params(&row)[..],
                &[&row.created_at_ms, &row.updated_at_ms],
            ]
            .concat(),
        )
        .await
        .context("storing the webhook")?;
        transaction
            .commit()
            .await
            .context("committing the webhook")?;
        Ok(())
    })
}

/// [`Registry::update_webhook`](crate::store::Registry::update_webhook) in this store.
pub(super) fn update_webhook(
    store: &PostgresState,
    webhook: &Webhook,
    read_at_ms: i64,
) -> anyhow::Result<()> {
    let key = store.secret_key.clone();
    let row = WebhookRow::of(webhook, key.as_ref())?;
    let id = webhook.id.clone();
    store.call(|pool, trips| async move {
        let mut client = pool.get().await?;
        let transaction = client.transaction().await?;
        let db = Db::new(&transaction, &trips);
        confirm_key(&db, key.as_ref()).await?;
        // One statement: it applies only if nobody changed the webhook since it was read,
        // whichever process that was (a rotation moves `updated_at_ms` on too).
        let changed = db
            .execute(
                "UPDATE sender_webhooks SET name = $2, description = $3, url = $4,
                     events = $5, auth = $6, basic_username = $7, basic_password = $8,
                     signature_file = $9, status = $10, disabled_reason = $11,
                     public_targets_only = $12, updated_at_ms = $13
                 WHERE id = $1 AND updated_at_ms = $14",
                &[&column_params(&row)[..], &[&row.updated_at_ms, &read_at_ms]].concat(),
            )
            .await
            .context("updating the webhook")?;
        if changed == 0 {
            let exists = db
                .query_opt("SELECT 1 FROM sender_webhooks WHERE id = $1", &[&row.id])
                .await?
                .is_some();
            return Err(changed_meanwhile(&id, exists));
        }
        transaction
            .commit()
            .await
            .context("committing the webhook")?;
        Ok(())
    })
}

/// [`Registry::webhook`](crate::store::Registry::webhook) in this store.
pub(super) fn webhook(store: &PostgresState, id: &WebhookId) -> anyhow::Result<Option<Webhook>> {
    let id = id.as_str().to_owned();
    let found = store.call(|pool, trips| async move {
        let client = pool.get().await?;
        let db = Db::new(&client, &trips);
        let row = db
            .query_opt(&format!("{SELECT_WEBHOOKS} WHERE id = $1"), &[&id])
            .await
            .context("reading the webhook")?;
        Ok(row.as_ref().map(read_webhook))
    })?;
    found
        .map(|(row, keyed)| row.into_webhook(store.secret_key.as_ref(), keyed))
        .transpose()
}

/// [`Registry::webhooks`](crate::store::Registry::webhooks) in this store.
pub(super) fn webhooks(store: &PostgresState) -> anyhow::Result<Vec<Webhook>> {
    let rows = store.call(|pool, trips| async move {
        let client = pool.get().await?;
        let db = Db::new(&client, &trips);
        let rows = db
            .query(
                &format!("{SELECT_WEBHOOKS} ORDER BY created_at_ms, id"),
                &[],
            )
            .await
            .context("reading the webhooks")?;
        Ok(rows.iter().map(read_webhook).collect::<Vec<_>>())
    })?;
    rows.into_iter()
        .map(|(row, keyed)| row.into_webhook(store.secret_key.as_ref(), keyed))
        .collect()
}

/// [`Registry::delete_webhook`](crate::store::Registry::delete_webhook) in this store.
pub(super) fn delete_webhook(store: &PostgresState, id: &WebhookId) -> anyhow::Result<Option<u64>> {
    let id = id.as_str().to_owned();
    store.call(|pool, trips| async move {
        let mut client = pool.get().await?;
        let transaction = client.transaction().await?;
        let db = Db::new(&transaction, &trips);
        let waiting: i64 = db
            .query_one(
                "SELECT (SELECT count(*) FROM sender_requests
                         WHERE webhook_id = $1 AND state = 'pending')
                      + (SELECT count(*) FROM sender_staged_events WHERE webhook_id = $1)",
                &[&id],
            )
            .await?
            .get(0);
        if db
            .execute("DELETE FROM sender_webhooks WHERE id = $1", &[&id])
            .await?
            == 0
        {
            return Ok(None);
        }
        // Attempts and requests go with the webhook: its history means nothing without it.
        for statement in [
            "DELETE FROM sender_attempts WHERE request_id IN
                 (SELECT id FROM sender_requests WHERE webhook_id = $1)",
            "DELETE FROM sender_request_bodies WHERE request_id IN
                 (SELECT id FROM sender_requests WHERE webhook_id = $1)",
            "DELETE FROM sender_requests WHERE webhook_id = $1",
            "DELETE FROM sender_staged_events WHERE webhook_id = $1",
            "DELETE FROM sender_leases WHERE webhook_id = $1",
            "DELETE FROM sender_webhook_health WHERE webhook_id = $1",
        ] {
            db.execute(statement, &[&id]).await?;
        }
        transaction
            .commit()
            .await
            .context("committing the deletion")?;
        Ok(Some(u64::try_from(waiting).unwrap_or(0)))
    })
}
