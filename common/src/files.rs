//! Files the programs write: readable by their owner only (mode 0600, SPEC section 6), and
//! replaced whole or not at all.
//!
//! Exports, signature files, reports, keys and manual pages go through [`write_atomically`]
//! (or [`write_new`] for a file that must not replace another): the bytes go to a temporary
//! file of mode 0600 beside the target, are synced, and only then renamed over it, so a
//! write that fails half-way (a store that cannot be read to the end, a full disk, a killed
//! process) leaves the previous file as it was. What is not a regular file is written as it
//! is, never replaced: a FIFO, a terminal, `/dev/null`, the process's own descriptors
//! (`/dev/stdout`, `/dev/fd/N`, the `>(gzip)` of a shell); a symbolic link to a regular file
//! stays a link, the file it leads to being replaced. SQLite databases are created by
//! [`create_private`] before SQLite opens them, since SQLite gives its `-wal` and `-shm`
//! files the mode of the main file. [`refuse_database_files`] keeps an output from landing on
//! a database the same command reads, or on any other SQLite database (a file that starts
//! with SQLite's header: another receiver's store, a sender's state).

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;

/// The mode of every file the programs write: read and write for the owner, nothing for
/// anyone else. Stores hold whole request bodies and credential headers, states hold secrets.
pub const PRIVATE_MODE: u32 = 0o600;

/// The files SQLite keeps beside a database, and the receiver's lock file (replacing it would
/// let a second listener in), as suffixes of its path, with what they are.
const DATABASE_COMPANIONS: [(&str, &str); 4] = [
    ("-wal", "write-ahead log"),
    ("-shm", "shared-memory index"),
    ("-journal", "rollback journal"),
    ("-lock", "listener's lock file"),
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

/// The first bytes of every SQLite database file.
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// Writes `path` through `write`, whole or not at all: into a temporary file of mode
/// [`PRIVATE_MODE`] in the same directory, flushed and synced, then renamed over `path` (the
/// directory synced too). When `write` or any step fails, the temporary file is removed and
/// `path` is left as it was; the result is what `write` returned.
///
/// What is there decides where the bytes go (see [`Destination`]): a regular file, or
/// nothing yet, is replaced as said; through a symbolic link, the file the link leads to
/// is (the link stays); a FIFO, a device or one of the process's descriptors is written as
/// it is (it cannot be replaced, and the reader on its other side is the point). A SQLite
/// database is never written over.
///
/// # Errors
/// `write`'s error; `path` is a directory or a SQLite database; or the file cannot be
/// created, written, synced or renamed (each said with the path).
pub fn write_atomically<T>(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let target = match Destination::of(path)? {
        Destination::Stream(append) => return write_stream(path, append, write),
        Destination::File(target) => target,
    };
    refuse_sqlite_database("the output", &target)?;
    let temporary = Temporary::create(&target)?;
    let value = temporary.fill(write)?;
    std::fs::rename(&temporary.path, &target)
        .with_context(|| format!("replacing {}", target.display()))?;
    temporary.keep();
    sync_directory_of(&target)?;
    Ok(value)
}

/// Where [`write_atomically`] puts the bytes for a path.
#[derive(Debug, PartialEq, Eq)]
enum Destination {
    /// A regular file to replace through a temporary file, at this path: the path given,
    /// or the file its symbolic links lead to (which need not exist yet).
    File(PathBuf),
    /// Something that is not a regular file (a FIFO, a terminal, `/dev/null`, a pipe), or a
    /// descriptor of this process (`/dev/stdout`, `/dev/fd/N`): written as it is, appending
    /// when `true` (a descriptor: the shell's `>` or `>>` already placed it).
    Stream(bool),
}

impl Destination {
    fn of(path: &Path) -> anyhow::Result<Destination> {
        let followed = match std::fs::metadata(path) {
            Ok(metadata) => metadata,
            // Nothing there (or a link to nothing): a new file where the links lead.
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Ok(Destination::File(links_followed(path)?));
            }
            Err(error) => {
                return Err(error).with_context(|| format!("looking at {}", path.display()))
            }
        };
        if followed.is_dir() {
            anyhow::bail!("{} is a directory: name a file", path.display());
        }
        if !followed.is_file() {
            return Ok(Destination::Stream(false));
        }
        if is_descriptor_alias(path) {
            return Ok(Destination::Stream(true));
        }
        let linked = std::fs::symlink_metadata(path)
            .with_context(|| format!("looking at {}", path.display()))?
            .file_type()
            .is_symlink();
        Ok(Destination::File(if linked {
            path.canonicalize()
                .with_context(|| format!("following the link {}", path.display()))?
        } else {
            path.to_owned()
        }))
    }
}

/// Whether `path` names one of this process's file descriptors (`/dev/stdout`, `/dev/stderr`,
/// `/dev/fd/N`, `/proc/self/fd/N`, `/proc/PID/fd/N`): the file behind it was opened by whoever
/// started us, and is written through the descriptor, never replaced.
fn is_descriptor_alias(path: &Path) -> bool {
    let text = path.to_string_lossy();
    matches!(text.as_ref(), "/dev/stdout" | "/dev/stderr")
        || text.starts_with("/dev/fd/")
        || (text.starts_with("/proc/") && text.contains("/fd/"))
}

/// `path` with its symbolic links followed as far as they lead, the last one possibly to
/// nothing yet (so a link to a file not created yet is replaced by nothing: the file is
/// created where it leads).
fn links_followed(path: &Path) -> anyhow::Result<PathBuf> {
    let mut current = path.to_owned();
    // As many links as the kernel follows before it gives up (ELOOP).
    for _ in 0..40 {
        match std::fs::symlink_metadata(&current) {
            Ok(metadata) if metadata.file_type().is_symlink() => {
                let next = std::fs::read_link(&current)
                    .with_context(|| format!("following the link {}", current.display()))?;
                current = match current.parent() {
                    Some(parent) if next.is_relative() => parent.join(next),
                    _ => next,
                };
            }
            _ => return Ok(current),
        }
    }
    anyhow::bail!("{}: too many levels of symbolic links", path.display())
}

/// Writes to what is at `path` as it is (see [`Destination::Stream`]).
fn write_stream<T>(
    path: &Path,
    append: bool,
    write: impl FnOnce(&mut dyn Write) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let file = OpenOptions::new()
        .write(true)
        .append(append)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let mut out = BufWriter::new(file);
    let value = write(&mut out)?;
    out.flush()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(value)
}

/// Refuses `output` (named by `flag`) when it is a SQLite database: another receiver's store,
/// a sender's state. Writing an export or a report there would destroy it.
///
/// # Errors
/// Names the flag and the file.
pub fn refuse_sqlite_database(flag: &str, output: &Path) -> anyhow::Result<()> {
    // A regular file only: opening a FIFO to read its first bytes would wait for a writer.
    let mut header = [0u8; SQLITE_HEADER.len()];
    let starts_like_a_database = std::fs::metadata(output).is_ok_and(|metadata| metadata.is_file())
        && File::open(output)
            .and_then(|mut file| io::Read::read_exact(&mut file, &mut header))
            .is_ok()
        && header == *SQLITE_HEADER;
    if starts_like_a_database {
        anyhow::bail!(
            "{flag} {} is a SQLite database (a store or a state); writing there would destroy \
             it: choose another file",
            output.display()
        );
    }
    Ok(())
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
    // A link is followed (the file it leads to is replaced, as by write_atomically); a FIFO or
    // a descriptor cannot take a file written by name.
    let target = match Destination::of(path)? {
        Destination::File(target) => target,
        Destination::Stream(_) => anyhow::bail!(
            "{} is not a regular file: name a file (this output is written whole, by name)",
            path.display()
        ),
    };
    let temporary = Temporary::create(&target)?;
    let value = write(&temporary.path)?;
    File::open(&temporary.path)
        .and_then(|file| file.sync_all())
        .with_context(|| format!("writing {}", temporary.path.display()))?;
    std::fs::rename(&temporary.path, &target)
        .with_context(|| format!("replacing {}", target.display()))?;
    temporary.keep();
    sync_directory_of(&target)?;
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

/// Refuses `output` (named by `flag`) when it is a SQLite database ([`refuse_sqlite_database`]),
/// or when it is the database at `database` (the one the command reads, if a SQLite one) or
/// one of the files SQLite keeps beside it, existing or not yet: writing there would destroy
/// what the command reads.
///
/// # Errors
/// Names the flag, the file and what it is.
pub fn refuse_database_files(
    flag: &str,
    output: &Path,
    database: Option<&Path>,
) -> anyhow::Result<()> {
    let companion = |database: &Path, suffix: &str| {
        let mut path = database.as_os_str().to_owned();
        path.push(suffix);
        PathBuf::from(path)
    };
    let what = database.and_then(|database| {
        if same_file(output, database) {
            return Some((database, "the database itself"));
        }
        DATABASE_COMPANIONS
            .iter()
            .find(|(suffix, _)| same_file(output, &companion(database, suffix)))
            .map(|(_, what)| (database, *what))
    });
    match what {
        Some((database, what)) => anyhow::bail!(
            "{flag} {} is {what} of {}; writing there would destroy it: choose another file",
            output.display(),
            database.display()
        ),
        None => refuse_sqlite_database(flag, output),
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
        let refused = |output: &Path| refuse_database_files("--out", output, Some(&database));
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

    #[test]
    fn no_sqlite_database_is_written_over() {
        let dir = tempfile::tempdir().unwrap();
        // Another program's database: refused by its header, whatever its name.
        let other = dir.path().join("other-receiver.jsonl");
        let mut bytes = SQLITE_HEADER.to_vec();
        bytes.extend_from_slice(&[0; 84]);
        std::fs::write(&other, &bytes).unwrap();
        let error = refuse_database_files("--out", &other, None)
            .unwrap_err()
            .to_string();
        assert!(error.contains("is a SQLite database"), "{error}");
        let error = write_atomically(&other, |out| Ok(out.write_all(b"{}\n")?))
            .unwrap_err()
            .to_string();
        assert!(error.contains("is a SQLite database"), "{error}");
        assert_eq!(std::fs::read(&other).unwrap(), bytes, "untouched");
        // A file that only mentions SQLite is no database.
        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "SQLite format 3 is a file format").unwrap();
        refuse_database_files("--out", &text, None).unwrap();
    }

    #[test]
    fn a_link_stays_a_link_and_the_file_it_leads_to_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("real")).unwrap();
        let real = dir.path().join("real/export.jsonl");
        std::fs::write(&real, "old").unwrap();
        let link = dir.path().join("latest.jsonl");
        std::os::unix::fs::symlink("real/export.jsonl", &link).unwrap();
        write_atomically(&link, |out| Ok(out.write_all(b"new")?)).unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read_to_string(&real).unwrap(), "new");
        assert_eq!(mode(&real), 0o600);
        assert_eq!(names_in(dir.path()), vec!["latest.jsonl", "real"]);
        assert_eq!(names_in(&dir.path().join("real")), vec!["export.jsonl"]);
        // A link to a file not made yet: the file is made where the link leads.
        let dangling = dir.path().join("next.jsonl");
        std::os::unix::fs::symlink("real/next.jsonl", &dangling).unwrap();
        write_atomically(&dangling, |out| Ok(out.write_all(b"first")?)).unwrap();
        assert!(std::fs::symlink_metadata(&dangling)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("real/next.jsonl")).unwrap(),
            "first"
        );
        // A directory is no output.
        let error = write_atomically(&dir.path().join("real"), |out| Ok(out.write_all(b"x")?))
            .unwrap_err()
            .to_string();
        assert!(error.contains("is a directory"), "{error}");
    }

    #[test]
    fn a_fifo_is_written_as_it_is_and_stays_a_fifo() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("export.fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success(), "mkfifo");
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read(fifo).unwrap())
        };
        write_atomically(&fifo, |out| Ok(out.write_all(b"through the pipe\n")?)).unwrap();
        // Looked at before the reader is joined: a FIFO replaced by a file would leave the
        // reader waiting for a writer for ever.
        assert!(std::os::unix::fs::FileTypeExt::is_fifo(
            &std::fs::symlink_metadata(&fifo).unwrap().file_type()
        ));
        assert_eq!(names_in(dir.path()), vec!["export.fifo"]);
        assert_eq!(reader.join().unwrap(), b"through the pipe\n");
    }
}
