//! Unsaved forms, held by the admin process (SPEC section 8: **Test webhook** and **Download
//! signature** work before the first Save). An Add webhook form with Signature needs its
//! secret before Save, and so does an Edit form that chooses a scheme of another kind; a form
//! that comes back (after **Test webhook**, **Download signature** or an error) must keep a
//! typed password without writing it into the page. Both live here, under a random id that
//! the form carries in a hidden field (`pending`); the API's pending signatures
//! (`/api/pending-signatures`) are the same entries.
//!
//! Bounded in number and in lifetime: at most [`MAX_PENDING`] entries (the least recently used
//! goes first when a new one comes), each forgotten [`PENDING_LIFETIME`] after its last use,
//! and at the Save that uses it. Memory only: a restart forgets them, as it forgets the
//! session cookie, and the form then says to download the signature again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use verify::{RedactedString, SignatureFile};

use crate::registry::WebhookId;

/// Most unsaved forms held at once.
pub const MAX_PENDING: usize = 100;
/// How long an unsaved form is held after its last use.
pub const PENDING_LIFETIME: Duration = Duration::from_secs(60 * 60);
/// The start of every id, as `wh_` starts a webhook's.
const ID_PREFIX: &str = "ps_";

/// One unsaved form: the webhook it is for (a new one's id is chosen here, so the signature
/// file handed out before Save names it), its pending signature file, and the password typed
/// into it. `Debug` hides the secrets.
#[derive(Debug, Clone)]
pub struct Pending {
    /// `ps_` and 48 hex digits.
    pub id: String,
    /// The webhook it becomes (Add) or changes (Edit).
    pub webhook_id: WebhookId,
    /// Whether that webhook is a new one (its id chosen here) rather than a stored one.
    pub new_webhook: bool,
    /// The signature file made before Save, with the secret Save keeps.
    pub file: Option<SignatureFile>,
    /// A Basic password typed into the form, kept off the page.
    pub password: Option<RedactedString>,
}

/// An entry and when it was last used.
struct Entry {
    pending: Pending,
    last_used: Instant,
}

/// The unsaved forms of one admin process.
#[derive(Default)]
pub struct PendingForms {
    // A std mutex: every use is a short map operation, never held across an `.await`.
    entries: Mutex<HashMap<String, Entry>>,
}

impl PendingForms {
    /// A new, empty holder.
    pub fn new() -> PendingForms {
        PendingForms::default()
    }

    /// A new entry for `webhook_id` (`new_webhook`: an id chosen for a webhook not saved
    /// yet), with nothing in it yet.
    ///
    /// # Errors
    /// The system's random source failed.
    pub fn create(&self, webhook_id: WebhookId, new_webhook: bool) -> anyhow::Result<Pending> {
        self.create_at(webhook_id, new_webhook, Instant::now())
    }

    /// The entry `id` names, if it is still held and is for the stored webhook `webhook_id`;
    /// using it keeps it.
    pub fn get(&self, id: &str, webhook_id: &WebhookId) -> Option<Pending> {
        self.get_at(id, Instant::now())
            .filter(|pending| !pending.new_webhook && &pending.webhook_id == webhook_id)
    }

    /// The entry `id` names, if it is still held and is for a webhook not saved yet.
    pub fn get_new(&self, id: &str) -> Option<Pending> {
        self.get_at(id, Instant::now())
            .filter(|pending| pending.new_webhook)
    }

    /// The entry `id` names, whichever webhook it is for.
    pub fn get_any(&self, id: &str) -> Option<Pending> {
        self.get_at(id, Instant::now())
    }

    /// Stores `pending` as its entry's new content (or again, when it was forgotten meanwhile).
    pub fn put(&self, pending: Pending) {
        self.put_at(pending, Instant::now());
    }

    /// Forgets the entry `id` names (its form was saved).
    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    /// How many entries are held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is held.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // A panic while holding the map leaves it consistent (every change is one insert or
        // remove), so a poisoned lock is still usable.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn create_at(
        &self,
        webhook_id: WebhookId,
        new_webhook: bool,
        now: Instant,
    ) -> anyhow::Result<Pending> {
        let token = common::web::Token::random()?;
        let pending = Pending {
            id: format!("{ID_PREFIX}{}", token.expose()),
            webhook_id,
            new_webhook,
            file: None,
            password: None,
        };
        self.put_at(pending.clone(), now);
        Ok(pending)
    }

    fn get_at(&self, id: &str, now: Instant) -> Option<Pending> {
        let mut entries = self.lock();
        forget_expired(&mut entries, now);
        let entry = entries.get_mut(id)?;
        entry.last_used = now;
        Some(entry.pending.clone())
    }

    fn put_at(&self, pending: Pending, now: Instant) {
        let mut entries = self.lock();
        forget_expired(&mut entries, now);
        if !entries.contains_key(&pending.id) && entries.len() >= MAX_PENDING {
            let oldest = entries
                .iter()
                .min_by_key(|(_, entry)| entry.last_used)
                .map(|(id, _)| id.clone());
            if let Some(oldest) = oldest {
                entries.remove(&oldest);
            }
        }
        entries.insert(
            pending.id.clone(),
            Entry {
                pending,
                last_used: now,
            },
        );
    }
}

/// Drops the entries unused for [`PENDING_LIFETIME`].
fn forget_expired(entries: &mut HashMap<String, Entry>, now: Instant) {
    entries.retain(|_, entry| now.saturating_duration_since(entry.last_used) < PENDING_LIFETIME);
}

/// When an entry used now is forgotten, as epoch milliseconds (for the API's answer).
pub fn expires_at_ms() -> i64 {
    let lifetime = i64::try_from(PENDING_LIFETIME.as_millis()).unwrap_or(i64::MAX);
    verify::unix_now_ms().saturating_add(lifetime)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn webhook(n: usize) -> WebhookId {
        WebhookId(format!("wh_{n}"))
    }

    #[test]
    fn entries_are_bounded_in_number_the_least_recently_used_going_first() {
        let forms = PendingForms::new();
        let start = Instant::now();
        let mut ids = Vec::new();
        for n in 0..MAX_PENDING {
            let at = start + Duration::from_millis(n as u64);
            ids.push(forms.create_at(webhook(n), true, at).expect("random").id);
        }
        // The first is used again, so the second is now the least recently used.
        let later = start + Duration::from_secs(1);
        assert!(forms.get_at(&ids[0], later).is_some());
        let extra = forms
            .create_at(webhook(999), true, later + Duration::from_millis(1))
            .expect("random");
        assert_eq!(forms.len(), MAX_PENDING);
        let now = later + Duration::from_millis(2);
        assert!(forms.get_at(&ids[1], now).is_none(), "evicted");
        assert!(forms.get_at(&ids[0], now).is_some());
        assert!(forms.get_at(&extra.id, now).is_some());
        assert!(extra.id.starts_with("ps_") && extra.id.len() == 3 + 48);
    }

    #[test]
    fn entries_expire_after_their_last_use_and_belong_to_one_webhook() {
        let forms = PendingForms::new();
        let start = Instant::now();
        let mut pending = forms.create_at(webhook(1), false, start).expect("random");
        pending.password = Some("typed".into());
        forms.put_at(pending.clone(), start);
        assert!(forms.get(&pending.id, &webhook(1)).is_some());
        assert!(
            forms.get(&pending.id, &webhook(2)).is_none(),
            "another webhook's form"
        );
        assert!(
            forms.get_new(&pending.id).is_none(),
            "a stored webhook's form"
        );
        let start = Instant::now();
        let almost = start + PENDING_LIFETIME - Duration::from_secs(1);
        let kept = forms.get_at(&pending.id, almost).expect("kept");
        assert_eq!(kept.password.as_ref().map(|p| p.expose()), Some("typed"));
        // Used just before its end, it lives on from there.
        let after_start = start + PENDING_LIFETIME + Duration::from_secs(1);
        assert!(forms.get_at(&pending.id, after_start).is_some());
        let gone = after_start + PENDING_LIFETIME;
        assert!(forms.get_at(&pending.id, gone).is_none());
        assert!(forms.is_empty());
        // Debug never shows the password.
        assert!(!format!("{kept:?}").contains("typed"));
    }
}
