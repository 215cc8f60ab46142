//! The webhooks' signers, built once per version of their registration.
//!
//! A worker reads its webhook's registration again every poll interval (250 ms by default), so
//! that edits, rotations and retirement take effect while it runs. Building the signer means
//! decoding every secret of the signature file and preparing its keys (HMAC state, Ed25519
//! keys); doing that at every read would be work for nothing while the registration is
//! unchanged. So the engine keeps each webhook's signer with the version it was built from
//! (`updated_at_ms`, which every change of a registration moves forward: see
//! `manage::next_version`, and which the stores' optimistic updates compare), and builds it
//! again only when the version read differs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;

use crate::registry::{Signer, Webhook, WebhookId};

/// Most signers kept: more than the webhooks there can be ([`crate::registry::MAX_WEBHOOKS`]),
/// so a long run in which webhooks come and go cannot grow the cache without bound.
const MAX_KEPT: usize = 4 * crate::registry::MAX_WEBHOOKS;

/// Each webhook's signer with the registration version it was built from. Shared by an
/// engine's workers; cheap to clone.
#[derive(Debug, Clone, Default)]
pub(super) struct SignerCache {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// A std `Mutex`: held only to look up or insert, never across an `.await`.
    signers: Mutex<HashMap<WebhookId, (i64, Arc<Signer>)>>,
    /// Signers built so far (tests count them).
    builds: AtomicU64,
}

impl SignerCache {
    /// The signer of `webhook` as it is registered now: the one built before when the
    /// registration has the same version, else a new one.
    ///
    /// # Errors
    /// The stored signature file no longer makes a keyring (the database was edited by hand).
    pub(super) fn signer(&self, webhook: &Webhook) -> anyhow::Result<Arc<Signer>> {
        let version = webhook.updated_at_ms;
        if let Some((built_from, signer)) = self.lock().get(&webhook.id) {
            if *built_from == version {
                return Ok(signer.clone());
            }
        }
        let signer = Arc::new(
            webhook
                .auth
                .signer()
                .with_context(|| format!("webhook {}", webhook.id))?,
        );
        self.inner.builds.fetch_add(1, Ordering::Relaxed);
        let mut signers = self.lock();
        if signers.len() >= MAX_KEPT && !signers.contains_key(&webhook.id) {
            signers.clear();
        }
        signers.insert(webhook.id.clone(), (version, signer.clone()));
        Ok(signer)
    }

    /// How many signers were built so far.
    #[cfg(test)]
    pub(super) fn builds(&self) -> u64 {
        self.inner.builds.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<WebhookId, (i64, Arc<Signer>)>> {
        // A panic while holding the lock leaves the map whole (one insert), so a poisoned
        // lock is safe to keep using.
        self.inner
            .signers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::manage::WebhookChanges;
    use crate::registry::AuthMethod;
    use crate::store::sqlite::SqliteState;
    use crate::store::State;

    fn signature_webhook(state: &dyn State) -> Webhook {
        crate::manage::add(
            state,
            WebhookChanges {
                name: Some("CRM".into()),
                url: Some("http://127.0.0.1:9/hook".parse().expect("a Target URL")),
                events: Some("all".into()),
                auth: Some(AuthMethod::Signature),
                ..WebhookChanges::default()
            },
        )
        .expect("added")
    }

    fn read(state: &dyn State, webhook: &Webhook) -> Webhook {
        state.webhook(&webhook.id).expect("read").expect("there")
    }

    /// The `webhook-signature` header a signer gives for a fixed message.
    fn signatures(signer: &Signer) -> String {
        signer
            .headers("msg_1", 1_795_000_000, b"{}")
            .into_iter()
            .find(|(name, _)| name == "webhook-signature")
            .map(|(_, value)| value)
            .expect("signed")
    }

    #[test]
    fn a_signer_is_built_once_per_version_of_the_registration() {
        let dir = tempfile::tempdir().expect("temp dir");
        let state = SqliteState::open(&dir.path().join("sender.db")).expect("open");
        let webhook = signature_webhook(&state);
        let cache = SignerCache::default();

        // Read again and again, as a worker does every poll interval: one build.
        let first = cache.signer(&read(&state, &webhook)).expect("signer");
        for _ in 0..100 {
            let again = cache.signer(&read(&state, &webhook)).expect("signer");
            assert!(Arc::ptr_eq(&first, &again), "the same signer");
        }
        assert_eq!(cache.builds(), 1);

        // A rotation is a new version: built again, and it signs with both secrets.
        crate::manage::rotate_secret(&state, webhook.id.as_str(), Duration::from_secs(3600), None)
            .expect("rotated");
        let rotated = cache.signer(&read(&state, &webhook)).expect("signer");
        assert_eq!(cache.builds(), 2);
        assert_eq!(signatures(&first).split(' ').count(), 1);
        assert_eq!(
            signatures(&rotated).split(' ').count(),
            2,
            "old and new secret"
        );
        assert!(Arc::ptr_eq(
            &rotated,
            &cache.signer(&read(&state, &webhook)).expect("signer")
        ));
        assert_eq!(cache.builds(), 2);

        // So is an edit: a new scheme issues a new key, which the next signer signs with.
        let edited = crate::manage::edit(
            &state,
            webhook.id.as_str(),
            WebhookChanges {
                scheme: Some(crate::registry::SchemeName::Svix),
                ..WebhookChanges::default()
            },
            None,
        )
        .expect("edited");
        let svix = cache.signer(&read(&state, &edited)).expect("signer");
        assert_eq!(cache.builds(), 3);
        assert!(svix
            .headers("msg_1", 1_795_000_000, b"{}")
            .iter()
            .any(|(name, _)| name == "svix-signature"));
    }

    #[test]
    fn the_cache_stays_bounded_while_webhooks_come_and_go() {
        let dir = tempfile::tempdir().expect("temp dir");
        let state = SqliteState::open(&dir.path().join("sender.db")).expect("open");
        let cache = SignerCache::default();
        for _ in 0..(3 * MAX_KEPT) {
            let webhook = signature_webhook(&state);
            cache.signer(&webhook).expect("signer");
            crate::manage::delete(&state, webhook.id.as_str()).expect("deleted");
            assert!(cache.lock().len() <= MAX_KEPT);
        }
    }
}
