//! How many disk syncs per second this machine does: writes 4 KiB into a file in DIRECTORY and
//! syncs it (`fsync` for half of SECONDS, what SQLite's WAL commit with `synchronous=FULL`
//! calls once; then `fdatasync`), in a loop. Prints one JSON line.
//!
//! ```sh
//! disk_syncs DIRECTORY SECONDS
//! ```
//!
//! The writes cycle through a preallocated 1 MiB region rather than append: SQLite reuses its
//! WAL file from the start after each checkpoint, so a commit's sync is mostly data, not the
//! file-size metadata that every append would add (on this machine's ext4 that doubles or
//! triples the cost of each sync and would overstate the group commit's gain).

use std::io::{Seek as _, SeekFrom, Write as _};
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// The rewritten region: 256 blocks of 4 KiB.
const BLOCKS: u64 = 256;
const BLOCK: usize = 4096;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let directory = args.next().context("DIRECTORY")?;
    let seconds: f64 = args.next().map_or(Ok(2.0), |s| s.parse())?;
    let path = std::path::Path::new(&directory).join("disk-syncs.tmp");
    let mut file =
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let block = [0x5au8; BLOCK];
    // Preallocate with real blocks and sync once, so the loop below changes no metadata.
    for _ in 0..BLOCKS {
        file.write_all(&block)?;
    }
    file.sync_all()?;
    // Half the time each way: `fsync` is what the bundled SQLite calls at a WAL commit (it
    // also writes the inode, whose mtime every write changed); `fdatasync` skips that.
    let half = Duration::from_secs_f64(seconds / 2.0);
    let mut measure = |data_only: bool| -> anyhow::Result<f64> {
        let started = Instant::now();
        let mut syncs = 0u64;
        while started.elapsed() < half {
            file.seek(SeekFrom::Start((syncs % BLOCKS) * BLOCK as u64))?;
            file.write_all(&block)?;
            if data_only {
                file.sync_data()?;
            } else {
                file.sync_all()?;
            }
            syncs += 1;
        }
        Ok(syncs as f64 / started.elapsed().as_secs_f64())
    };
    let fsync = measure(false)?;
    let fdatasync = measure(true)?;
    drop(file);
    std::fs::remove_file(&path)?;
    println!(
        "{}",
        serde_json::json!({ "syncs_per_s": fsync, "fsync_per_s": fsync, "fdatasync_per_s": fdatasync })
    );
    Ok(())
}
