//! Files the programs write: readable by their owner only (mode 0600, SPEC section 6), and
//! replaced whole or not at all.
//!
//! Exports, signature files, reports, keys and manual pages go through [`write_atomically`]
//! (or [`write_new`] for a file that must not replace another): the bytes go to a temporary
//! file of mode 0600 beside the target, are synced, and only then renamed over it, so a
//! write that fails half-way (a store that cannot be read to the end, a full disk, a killed
//! process) leaves the previous file as it was. SQLite databases are created by
//! [`create_private`] before SQLite opens them, since SQLite gives its `-wal` and `-shm`
//! files the mode of the main file. [`refuse_database_files`] keeps an output from landing on
//! a database the same command reads.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;

/// The mode of every file the programs write: read and write for the owner, nothing for
/// anyone else. Stores hold whole request bodies and credential headers, states hold secrets.
pub const PRIVATE_MODE: u32 = 0o600;

/// The files SQLite keeps beside a database, as suffixes of its path, with what they are.
const DATABASE_COMPANIONS: [(&str, &str); 3] = [
    ("-wal", "write-ahead log"),
    ("-shm", "shared-memory index"),
    ("-journal", "rollback journal"),
];

/// Creates `path` empty with mode [`PRIVATE_MODE`] when it does not exist, for a file another
/// library then opens (a SQLite database). An existing file is left as it is, mode included.
///
/// # Errors
/// The file cannot be created (a missing directory, no permission).
pub fn create_private(path: &Path) -> io::Result<()> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(PRIVATE_MODE)
        .open(path)
        .map(drop)
}

/// Whether anyone but the owner may read or write the file at `path` (`false` when it does
/// not exist).
pub fn readable_by_others(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|metadata| metadata.permissions().mode() & 0o077 != 0)
}

/// Writes `path` through `write`, whole or not at all: into a temporary file of mode
/// [`PRIVATE_MODE`] in the same directory, flushed and synced, then renamed over `path` (the
/// directory synced too). When `write` or any step fails, the temporary file is removed and
/// `path` is left as it was; the result is what `write` returned.
///
/// # Errors
/// `write`'s error, or the file cannot be created, written, synced or renamed (each said with
/// the path).
pub fn write_atomically<T>(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let temporary = Temporary::create(path)?;
    let value = temporary.fill(write)?;
    std::fs::rename(&temporary.path, path)
        .with_context(|| format!("replacing {}", path.display()))?;
    temporary.keep();
    sync_directory_of(path)?;
    Ok(value)
}

/// Writes `path` whole or not at all, as [`write_atomically`] does, for a writer that takes a
/// file name rather than a stream (SQLite's `VACUUM INTO`): `write` fills the temporary file
/// named by its argument, which exists, empty, with mode [`PRIVATE_MODE`]; the file is then
/// synced and renamed over `path`, the directory synced too. When `write` or any step fails,
/// the temporary file is removed and `path` is left as it was.
///
/// # Errors
/// `write`'s error, or the file cannot be created, synced or renamed (each said with the path).
pub fn write_atomically_at<T>(
    path: &Path,
    write: impl FnOnce(&Path) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let temporary = Temporary::create(path)?;
    let value = write(&temporary.path)?;
    File::open(&temporary.path)
        .and_then(|file| file.sync_all())
        .with_context(|| format!("writing {}", temporary.path.display()))?;
    std::fs::rename(&temporary.path, path)
        .with_context(|| format!("replacing {}", path.display()))?;
    temporary.keep();
    sync_directory_of(path)?;
    Ok(value)
}

/// Writes `bytes` to `path`, which must not exist yet, whole or not at all (as
/// [`write_atomically`]); never replaces a file, even one created meanwhile.
///
/// # Errors
/// `path` exists, or it cannot be written.
pub fn write_new(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let temporary = Temporary::create(path)?;
    temporary.fill(|out| Ok(out.write_all(bytes)?))?;
    // link(2) refuses an existing target, where rename(2) would replace it.
    std::fs::hard_link(&temporary.path, path).map_err(|error| {
        if error.kind() == io::ErrorKind::AlreadyExists {
            anyhow::anyhow!("{} exists already; it was left as it is", path.display())
        } else {
            anyhow::Error::new(error).context(format!("creating {}", path.display()))
        }
    })?;
    sync_directory_of(path)?;
    Ok(())
}

/// Whether `a` and `b` name one file: the same device and inode when both exist (so a hard
/// link or a symbolic link is seen through), else the same name in the same directory once
/// that directory is resolved (for a file not created yet). A path whose directory cannot be
/// resolved names no file that can be written, and is the same as nothing.
pub fn same_file(a: &Path, b: &Path) -> bool {
    if let (Ok(first), Ok(second)) = (std::fs::metadata(a), std::fs::metadata(b)) {
        return first.dev() == second.dev() && first.ino() == second.ino();
    }
    match (resolved_name(a), resolved_name(b)) {
        (Ok(first), Ok(second)) => first == second,
        _ => false,
    }
}

/// Refuses `output` (named by `flag`) when it is the SQLite database at `database` or one of
/// the files SQLite keeps beside it: writing there would destroy what the command reads.
///
/// # Errors
/// Names the flag, the file and what it is.
pub fn refuse_database_files(flag: &str, output: &Path, database: &Path) -> anyhow::Result<()> {
    let companion = |suffix: &str| {
        let mut path = database.as_os_str().to_owned();
        path.push(suffix);
        PathBuf::from(path)
    };
    let what = if same_file(output, database) {
        Some("the database itself")
    } else {
        DATABASE_COMPANIONS
            .iter()
            .find(|(suffix, _)| same_file(output, &companion(suffix)))
            .map(|(_, what)| *what)
    };
    match what {
        Some(what) => anyhow::bail!(
            "{flag} {} is {what} of {}; writing there would destroy it: choose another file",
            output.display(),
            database.display()
        ),
        None => Ok(()),
    }
}

/// `path`'s directory resolved (symbolic links, `..`) with its file name.
fn resolved_name(path: &Path) -> io::Result<PathBuf> {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let name = path.file_name().unwrap_or(path.as_os_str());
    Ok(directory.canonicalize()?.join(name))
}

/// Syncs the directory holding `path`, so a rename or link into it survives a power cut.
fn sync_directory_of(path: &Path) -> anyhow::Result<()> {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    File::open(directory)
        .and_then(|directory| directory.sync_all())
        .with_context(|| format!("syncing the directory {}", directory.display()))
}

/// A temporary file beside a target, removed when dropped unless kept.
struct Temporary {
    path: PathBuf,
    file: Option<File>,
    kept: bool,
}

impl Temporary {
    /// Creates `.NAME.PID.N.tmp` beside `target`, exclusively (never an existing file).
    fn create(target: &Path) -> anyhow::Result<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = target
            .file_name()
            .with_context(|| format!("{} names no file", target.display()))?;
        loop {
            let mut temporary_name = std::ffi::OsString::from(".");
            temporary_name.push(name);
            temporary_name.push(format!(
                ".{}.{}.tmp",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            let path = target.with_file_name(temporary_name);
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(PRIVATE_MODE)
                .open(&path)
            {
                Ok(file) => {
                    return Ok(Self {
                        path,
                        file: Some(file),
                        kept: false,
                    })
                }
                // Left by a process that was killed: take the next number.
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
                Err(error) => {
                    return Err(error).with_context(|| format!("creating {}", target.display()))
                }
            }
        }
    }

    /// Writes the content through `write`, flushes and syncs it.
    fn fill<T>(
        &self,
        write: impl FnOnce(&mut dyn Write) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let file = self.file.as_ref().context("the temporary file is closed")?;
        let mut out = BufWriter::new(file);
        let value = write(&mut out)?;
        out.flush()
            .and_then(|()| file.sync_all())
            .with_context(|| format!("writing {}", self.path.display()))?;
        Ok(value)
    }

    /// Leaves the file where it is (it was renamed to the target).
    fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Temporary {
    fn drop(&mut self) {
        drop(self.file.take());
        if !self.kept {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn names_in(directory: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(directory)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_write_replaces_the_file_whole_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let value = write_atomically(&path, |out| {
            out.write_all(b"new")?;
            Ok(7)
        })
        .unwrap();
        assert_eq!(value, 7);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(names_in(dir.path()), vec!["out.jsonl"]);
    }

    #[test]
    fn a_failed_write_leaves_the_previous_file_and_no_temporary_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        std::fs::write(&path, "good").unwrap();
        let failed = write_atomically(&path, |out| -> anyhow::Result<()> {
            out.write_all(b"half")?;
            anyhow::bail!("the store went away")
        });
        assert_eq!(failed.unwrap_err().to_string(), "the store went away");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "good");
        assert_eq!(names_in(dir.path()), vec!["out.jsonl"]);
    }

    #[test]
    fn a_write_by_file_name_is_whole_0600_or_leaves_the_previous_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("backup.db");
        std::fs::write(&path, "old").unwrap();
        let failed = write_atomically_at(&path, |temporary| -> anyhow::Result<()> {
            std::fs::write(temporary, "half")?;
            anyhow::bail!("the copy failed")
        });
        assert_eq!(failed.unwrap_err().to_string(), "the copy failed");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
        assert_eq!(names_in(dir.path()), vec!["backup.db"]);
        write_atomically_at(&path, |temporary| {
            // The writer gets an empty file that is already private.
            assert_eq!(std::fs::read(temporary)?, b"");
            assert_eq!(mode(temporary), 0o600);
            Ok(std::fs::write(temporary, "new")?)
        })
        .unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(names_in(dir.path()), vec!["backup.db"]);
    }

    #[test]
    fn write_new_never_replaces_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        write_new(&path, b"first").unwrap();
        assert_eq!(mode(&path), 0o600);
        let error = write_new(&path, b"second").unwrap_err();
        assert!(error.to_string().contains("exists already"), "{error}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "first");
        assert_eq!(names_in(dir.path()), vec!["key"]);
    }

    #[test]
    fn a_new_private_file_is_0600_and_an_existing_one_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        create_private(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert!(!readable_by_others(&path));
        std::fs::write(&path, "data").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        create_private(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "data");
        assert!(readable_by_others(&path));
    }

    #[test]
    fn the_database_and_its_companions_are_refused_under_any_name() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("store.db");
        std::fs::write(&database, "db").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let refused = |output: &Path| refuse_database_files("--out", output, &database);
        // The same file by another spelling, a hard link and a symbolic link.
        let spelled = dir.path().join("sub/../store.db");
        let link = dir.path().join("link.db");
        std::fs::hard_link(&database, &link).unwrap();
        let symlink = dir.path().join("symlink.db");
        std::os::unix::fs::symlink(&database, &symlink).unwrap();
        for output in [&database, &spelled, &link, &symlink] {
            let error = refused(output).unwrap_err().to_string();
            assert!(error.contains("the database itself"), "{error}");
        }
        // Its write-ahead log, whether it exists yet or not.
        let wal = dir.path().join("sub/../store.db-wal");
        let error = refused(&wal).unwrap_err().to_string();
        assert!(error.contains("write-ahead log"), "{error}");
        std::fs::write(dir.path().join("store.db-shm"), "").unwrap();
        let error = refused(&dir.path().join("store.db-shm"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("shared-memory index"), "{error}");
        // Anything else is fine.
        refused(&dir.path().join("export.jsonl")).unwrap();
        refused(&dir.path().join("store.db.jsonl")).unwrap();
    }
}
