//! Registrations: a webhook's row written and read (secrets sealed and opened on the way), at
//! most five, every update only if nobody changed the webhook since it was read, and every
//! write only while the state's key record is this process's key.

use anyhow::Context as _;
use rusqlite::{OptionalExtension, TransactionBehavior};

use super::connection::SqliteState;
use super::secrets::key_record;
use crate::registry::{Webhook, WebhookId};
use crate::sealing::{self, SecretKey};
use crate::store::rows::{changed_meanwhile, room_for_another, too_many_webhooks, WebhookRow};

/// A webhook's columns, and whether the state has a key record (`keyed`: see
/// [`crate::sealing`], the record decides what is sealed), as one query reads them.
const SELECT_WEBHOOKS: &str = "SELECT *, EXISTS (SELECT 1 FROM secret_key) AS keyed FROM webhooks";

pub(super) fn read_webhook(row: &rusqlite::Row<'_>) -> rusqlite::Result<(WebhookRow, bool)> {
    Ok((
        WebhookRow {
            id: row.get("id")?,
            name: row.get("name")?,
            description: row.get("description")?,
            url: row.get("url")?,
            events: row.get("events")?,
            auth: row.get("auth")?,
            basic_username: row.get("basic_username")?,
            basic_password: row.get("basic_password")?,
            signature_file: row.get("signature_file")?,
            status: row.get("status")?,
            disabled_reason: row.get("disabled_reason")?,
            created_at_ms: row.get("created_at_ms")?,
            updated_at_ms: row.get("updated_at_ms")?,
            public_targets_only: row.get("public_targets_only")?,
        },
        row.get("keyed")?,
    ))
}

/// A webhook's stored fields, secrets included, bound as `?1` … `?12` in this order (id,
/// name, description, url, events, auth, basic_username, basic_password, signature_file,
/// status, disabled_reason, public_targets_only); INSERT and UPDATE add their own parameters
/// after them.
pub(super) fn column_values(
    webhook: &Webhook,
    key: Option<&SecretKey>,
) -> anyhow::Result<Vec<rusqlite::types::Value>> {
    use rusqlite::types::Value;
    let row = WebhookRow::of(webhook, key)?;
    Ok(vec![
        Value::Text(row.id),
        Value::Text(row.name),
        Value::Text(row.description),
        Value::Text(row.url),
        Value::Text(row.events),
        Value::Text(row.auth),
        Value::from(row.basic_username),
        Value::from(row.basic_password),
        Value::from(row.signature_file),
        Value::Text(row.status),
        Value::from(row.disabled_reason),
        Value::from(row.public_targets_only),
    ])
}

/// Refuses a write when the state's key record, as it is now, is not this process's key
/// (see [`sealing::confirm`]); called inside the write's transaction.
fn confirm_key(store: &SqliteState, connection: &rusqlite::Connection) -> anyhow::Result<()> {
    let recorded = key_record(connection)?;
    sealing::confirm(recorded.as_deref(), store.secret_key.as_ref())?;
    Ok(())
}

/// [`Registry::insert_webhook`](crate::store::Registry::insert_webhook) in this store.
pub(super) fn insert_webhook(store: &SqliteState, webhook: &Webhook) -> anyhow::Result<()> {
    let mut connection = store.lock();
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let count: i64 = transaction.query_row("SELECT COUNT(*) FROM webhooks", [], |r| r.get(0))?;
    if !room_for_another(count) {
        return Err(too_many_webhooks(count));
    }
    confirm_key(store, &transaction)?;
    let mut values = column_values(webhook, store.secret_key.as_ref())?;
    values.extend([webhook.created_at_ms.into(), webhook.updated_at_ms.into()]);
    transaction
        .execute(
            "INSERT INTO webhooks (id, name, description, url, events, auth, basic_username,
             basic_password, signature_file, status, disabled_reason, public_targets_only,
             created_at_ms, updated_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            rusqlite::params_from_iter(values),
        )
        .context("storing the webhook")?;
    transaction.commit().context("committing the webhook")?;
    Ok(())
}

/// [`Registry::update_webhook`](crate::store::Registry::update_webhook) in this store.
pub(super) fn update_webhook(
    store: &SqliteState,
    webhook: &Webhook,
    read_at_ms: i64,
) -> anyhow::Result<()> {
    let mut values = column_values(webhook, store.secret_key.as_ref())?;
    values.extend([webhook.updated_at_ms.into(), read_at_ms.into()]);
    let mut connection = store.lock();
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    confirm_key(store, &transaction)?;
    let changed = transaction
        .execute(
            "UPDATE webhooks SET name = ?2, description = ?3, url = ?4, events = ?5, auth = ?6,
             basic_username = ?7, basic_password = ?8, signature_file = ?9, status = ?10,
             disabled_reason = ?11, public_targets_only = ?12, updated_at_ms = ?13
             WHERE id = ?1 AND updated_at_ms = ?14",
            rusqlite::params_from_iter(values),
        )
        .context("updating the webhook")?;
    if changed == 0 {
        let exists = transaction
            .query_row(
                "SELECT 1 FROM webhooks WHERE id = ?1",
                [webhook.id.as_str()],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        return Err(changed_meanwhile(&webhook.id, exists));
    }
    transaction.commit().context("committing the webhook")?;
    Ok(())
}

/// [`Registry::webhook`](crate::store::Registry::webhook) in this store.
pub(super) fn webhook(store: &SqliteState, id: &WebhookId) -> anyhow::Result<Option<Webhook>> {
    let connection = store.lock();
    let found = connection
        .query_row(
            &format!("{SELECT_WEBHOOKS} WHERE id = ?1"),
            [id.as_str()],
            read_webhook,
        )
        .optional()
        .context("reading the webhook")?;
    found
        .map(|(row, keyed)| row.into_webhook(store.secret_key.as_ref(), keyed))
        .transpose()
}

/// [`Registry::webhooks`](crate::store::Registry::webhooks) in this store.
pub(super) fn webhooks(store: &SqliteState) -> anyhow::Result<Vec<Webhook>> {
    let connection = store.lock();
    let mut statement =
        connection.prepare(&format!("{SELECT_WEBHOOKS} ORDER BY created_at_ms, id"))?;
    let rows = statement
        .query_map([], read_webhook)?
        .collect::<Result<Vec<_>, _>>()
        .context("reading the webhooks")?;
    rows.into_iter()
        .map(|(row, keyed)| row.into_webhook(store.secret_key.as_ref(), keyed))
        .collect()
}

/// [`Registry::delete_webhook`](crate::store::Registry::delete_webhook) in this store.
pub(super) fn delete_webhook(store: &SqliteState, id: &WebhookId) -> anyhow::Result<Option<u64>> {
    let mut connection = store.lock();
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let pending: i64 = transaction.query_row(
        "SELECT COUNT(*) FROM requests WHERE webhook_id = ?1 AND state = 'pending'",
        [id.as_str()],
        |r| r.get(0),
    )?;
    let staged: i64 = transaction.query_row(
        "SELECT COUNT(*) FROM staged_events WHERE webhook_id = ?1",
        [id.as_str()],
        |r| r.get(0),
    )?;
    let deleted = transaction.execute("DELETE FROM webhooks WHERE id = ?1", [id.as_str()])?;
    if deleted == 0 {
        return Ok(None);
    }
    // Attempts and requests go with the webhook: its history means nothing without it.
    transaction.execute(
        "DELETE FROM attempts WHERE request_id IN (SELECT id FROM requests WHERE webhook_id = ?1)",
        [id.as_str()],
    )?;
    transaction.execute(
        "DELETE FROM request_bodies WHERE request_id IN (SELECT id FROM requests WHERE webhook_id = ?1)",
        [id.as_str()],
    )?;
    transaction.execute("DELETE FROM requests WHERE webhook_id = ?1", [id.as_str()])?;
    transaction.execute(
        "DELETE FROM staged_events WHERE webhook_id = ?1",
        [id.as_str()],
    )?;
    transaction.execute("DELETE FROM leases WHERE webhook_id = ?1", [id.as_str()])?;
    transaction.execute(
        "DELETE FROM webhook_health WHERE webhook_id = ?1",
        [id.as_str()],
    )?;
    transaction.commit().context("committing the deletion")?;
    Ok(Some(u64::try_from(pending + staged).unwrap_or(0)))
}
