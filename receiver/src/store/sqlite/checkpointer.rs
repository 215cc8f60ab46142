//! The background checkpointer of the SQLite store.

use std::path::Path;
use std::time::Instant;

use rusqlite::Connection;

/// Least time between two background checkpoints under steady load.
const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(200);

/// A thread with its own connection that copies the WAL into the database file (PASSIVE
/// checkpoints), so the page copying and the database file's sync stay off the commit path
/// and out of the answers' latency. Readers and the writer are never blocked by it.
pub(super) struct Checkpointer {
    signals: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Checkpointer {
    /// `None` when the thread or its connection cannot start: the writer's backstop
    /// autocheckpoint then does the work.
    pub(super) fn start(path: &Path) -> Option<Checkpointer> {
        let connection = Connection::open(path)
            .and_then(|connection| {
                connection.busy_timeout(std::time::Duration::from_secs(1))?;
                connection.execute_batch(
                    "PRAGMA synchronous=FULL; PRAGMA fullfsync=ON; PRAGMA checkpoint_fullfsync=ON;",
                )?;
                Ok(connection)
            })
            .map_err(|error| tracing::warn!(%error, "no background checkpointer"))
            .ok()?;
        let (signals, receiver) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("store-checkpointer".to_owned())
            .spawn(move || Self::run(&connection, &receiver))
            .map_err(|error| tracing::warn!(%error, "no background checkpointer"))
            .ok()?;
        Some(Checkpointer { signals, thread })
    }

    fn run(connection: &Connection, signals: &std::sync::mpsc::Receiver<()>) {
        use std::sync::mpsc::RecvTimeoutError;
        let mut dirty = false;
        let mut last = Instant::now();
        loop {
            match signals.recv_timeout(CHECKPOINT_INTERVAL) {
                Ok(()) => dirty = true,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            if dirty && last.elapsed() >= CHECKPOINT_INTERVAL {
                if let Err(error) = connection.execute_batch("PRAGMA wal_checkpoint(PASSIVE);") {
                    tracing::debug!(%error, "background checkpoint");
                }
                dirty = false;
                last = Instant::now();
            }
        }
    }

    /// A commit added frames to the WAL.
    pub(super) fn wal_grew(&self) {
        let _ = self.signals.send(());
    }

    /// Ends the thread and waits for it.
    pub(super) fn stop(self) {
        drop(self.signals);
        let _ = self.thread.join();
    }
}
