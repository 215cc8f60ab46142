//! One `receiver listen` per SQLite store: the listener holds an exclusive `flock(2)` on the
//! store's lock file (`PATH-lock`) while its writer runs.
//!
//! Why: the listener decides duplicates from the keys it holds in memory (`super::keys`), so a
//! second listener writing the same file would store an event the first one already stored.
//! SQLite's own locks do not prevent that: in WAL mode any number of processes may write, one
//! transaction at a time. The other programs that open the store (`events`, `export`,
//! `forward`, `prune`, `erase`, the inspector) never add keys and take no lock.
//!
//! Why a file of its own: SQLite holds POSIX (`fcntl`) locks on the database file, and closing
//! any other descriptor of that file in the process would drop them; `flock` on another file
//! meets none of them. The kernel releases the lock when the process ends, however it ends
//! (SIGKILL included), so it is never stale. The file is kept (removing it while a listener
//! runs would let a second one in).

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// The lock, held while this value lives.
pub(super) struct ListenLock {
    _file: File,
}

/// The lock file of the store at `store`.
pub(crate) fn lock_path(store: &Path) -> PathBuf {
    let mut name = store.as_os_str().to_owned();
    name.push("-lock");
    PathBuf::from(name)
}

impl ListenLock {
    /// Takes the lock of the store at `store`, without waiting.
    ///
    /// # Errors
    /// Another listener holds it, or the lock file cannot be created.
    pub(super) fn take(store: &Path) -> anyhow::Result<ListenLock> {
        let path = lock_path(store);
        common::files::create_private(&path)
            .with_context(|| format!("creating the lock file {}", path.display()))?;
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening the lock file {}", path.display()))?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                let holder = holder.trim();
                anyhow::bail!(
                    "another `receiver listen`{} is using the store {}: one listener per SQLite \
                     store (it holds the store's dedupe keys); stop it first, or use a PostgreSQL \
                     store for several receivers",
                    if holder.is_empty() {
                        String::new()
                    } else {
                        format!(" (process {holder})")
                    },
                    store.display()
                );
            }
            Err(error) => {
                return Err(error)
                    .with_context(|| format!("locking the lock file {}", path.display()))
            }
        }
        // Who holds it, for the message above; the lock is what counts, not this text.
        file.set_len(0)
            .and_then(|()| file.write_all(std::process::id().to_string().as_bytes()))
            .with_context(|| format!("writing the lock file {}", path.display()))?;
        Ok(ListenLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_listener_is_refused_until_the_first_lets_go() {
        let directory = tempfile::tempdir().unwrap();
        let store = directory.path().join("receiver.db");
        let first = ListenLock::take(&store).unwrap();
        let refused = ListenLock::take(&store).err().unwrap();
        let message = format!("{refused:#}");
        assert!(
            message.contains("another `receiver listen`")
                && message.contains(&format!("process {}", std::process::id())),
            "{message}"
        );
        drop(first);
        let _again = ListenLock::take(&store).unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(lock_path(&store)).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }
}
