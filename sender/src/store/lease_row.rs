//! A webhook's lease row as both stores keep it: whether its holder keeps another worker
//! out (a live process within its expiry), and which fence number a taker gets.

use std::path::Path;

use crate::lease::HeldLease;

/// The space in which this process's pid names it: the boot and the pid namespace. Two
/// processes sharing the state from two containers (or two machines) see different spaces,
/// where the other's pid means nothing; `""` when it cannot be told (not Linux).
pub(crate) fn process_identity_space() -> &'static str {
    static SPACE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SPACE.get_or_init(|| {
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id");
        let namespace = std::fs::read_link("/proc/self/ns/pid");
        match (boot, namespace) {
            (Ok(boot), Ok(namespace)) => format!("{}/{}", boot.trim(), namespace.display()),
            _ => String::new(),
        }
    })
}

/// Whether the process that owns a lease still runs. Its pid is judged only when it was
/// written in this process's pid space (same boot, same pid namespace), where a reaped
/// process has no /proc entry; otherwise the lease's expiry alone decides.
pub(crate) fn process_alive(pid: i64, host: &str) -> bool {
    let here = process_identity_space();
    if here.is_empty() || host != here {
        return true;
    }
    Path::new(&format!("/proc/{pid}")).exists()
}

/// A webhook's lease row as both stores keep it.
pub(crate) struct LeaseRow {
    /// The holder's owner tag; `""` once released (the row and its fence stay).
    pub owner: String,
    /// The holder's pid, judged only in its own pid space `host`.
    pub pid: i64,
    pub host: String,
    pub fence: i64,
    pub expires_at_ms: i64,
}

impl LeaseRow {
    /// The lease as held by another live worker, if it keeps `owner` out at `now_ms`: an
    /// owner whose lease ran out, or whose process is seen to be gone, keeps nobody out.
    pub fn held_against(self, owner: &str, now_ms: i64) -> Option<HeldLease> {
        let live = self.owner != owner
            && !self.owner.is_empty()
            && self.expires_at_ms > now_ms
            && process_alive(self.pid, &self.host);
        live.then_some(HeldLease {
            owner: self.owner,
            expires_at_ms: self.expires_at_ms,
        })
    }

    /// The fence number `owner` holds the lease under once it takes it at this row: its own
    /// (a renewal) or the next one (a change of hands).
    pub fn fence_for(&self, owner: &str) -> i64 {
        if self.owner == owner {
            self.fence
        } else {
            self.fence + 1
        }
    }
}

/// This process's pid, as stored in a lease.
pub(crate) fn own_pid() -> i64 {
    i64::from(std::process::id())
}
