//! The passes over the secret columns (see [`crate::sealing`]), written once for both
//! stores: what opening a state with or without a key does, and a rotation. Each store gives
//! the two things that are its own ([`SecretStorage`]): reading the key record, and running
//! a pass in one transaction, one process at a time.

use crate::sealing::{self, SecretColumns, SecretKey};
use crate::store::rows::SealingPass;

/// What a pass decides from the rows and the key record: the record to write (if any) and
/// the rows to write back.
pub(crate) type Plan = Box<
    dyn FnOnce(&[SecretColumns], Option<&str>) -> anyhow::Result<(Option<String>, SealingPass)>
        + Send,
>;

/// The part of a store the passes need.
pub(crate) trait SecretStorage {
    /// The key the store was opened with.
    fn secret_key(&self) -> Option<&SecretKey>;

    /// The key record (`None` when no key seals the state), read without a write lock: enough
    /// to refuse a sealed state to a process that has no key.
    ///
    /// # Errors
    /// Storage errors.
    fn recorded_key(&self) -> anyhow::Result<Option<String>>;

    /// Runs one pass in one transaction, one process at a time (and none while a webhook is
    /// being written): `plan` reads the rows and the key record and says what to write.
    /// Gives the number of webhooks holding secrets.
    ///
    /// # Errors
    /// `plan`'s error (nothing is written then); storage errors.
    fn sealing_pass(&self, plan: Plan) -> anyhow::Result<u64>;
}

/// What opening a state does about its secrets: without a key, refuses a sealed state (a
/// read, no write lock); with one, admits the key against the state's record and seals what
/// is plain (or of the first layout), in one transaction.
///
/// # Errors
/// A [`UsageError`](crate::UsageError) for a sealed state without the key or with another;
/// storage errors.
pub(crate) fn admit_at_opening(store: &impl SecretStorage) -> anyhow::Result<()> {
    let Some(key) = store.secret_key().cloned() else {
        let recorded = store.recorded_key()?;
        sealing::admit(recorded.as_deref(), None)?;
        return Ok(());
    };
    store.sealing_pass(Box::new(move |rows, recorded| {
        let written = sealing::admit(recorded, Some(&key))?;
        let pass = SealingPass::bring_up(rows, &key, recorded)?;
        pass.log_sealed(&key);
        Ok((written, pass))
    }))?;
    Ok(())
}

/// [`Registry::reseal_secrets`](crate::store::Registry::reseal_secrets) in any store.
///
/// # Errors
/// As [`Registry::reseal_secrets`](crate::store::Registry::reseal_secrets).
pub(crate) fn reseal_secrets(store: &impl SecretStorage, new: &SecretKey) -> anyhow::Result<u64> {
    let (current, new) = (store.secret_key().cloned(), new.clone());
    store.sealing_pass(Box::new(move |rows, recorded| {
        sealing::admit(recorded, current.as_ref())?;
        let pass = SealingPass::reseal(rows, current.as_ref(), recorded.is_some(), &new)?;
        Ok((Some(new.key_check()?), pass))
    }))
}
