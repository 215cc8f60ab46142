//! The dedupe keys of the SQLite store, in memory: which stored rows may hold an
//! `(account_id, event_id)`, so the writer decides duplicates without a unique index.
//!
//! Why: event ids are random UUIDs, so a unique index on them puts every new event on a leaf
//! page of its own, at a random place of the B-tree: one 4 KiB page written to the WAL per event,
//! and again by the checkpoint, the largest part of what a commit wrote (issue 26). The tables
//! now take only appends, and this set does what the index did.
//!
//! What it holds: a fingerprint (64 bits of a keyed hash of the key) for every key of the
//! `events` table, with its row id, and for every tombstone of `dedupe_keys` (the key of an
//! event pruned or erased within `--dedupe-window`, [`TOMBSTONE_ROW`]). It is a superset index,
//! not the truth: a fingerprint found is a *candidate*, which the writer confirms by reading
//! that row, or the tombstones by their unique index, in the same transaction; a fingerprint not
//! found means no row and no tombstone holds the key. So it stays exact when another process
//! removes rows (`receiver prune`, `receiver erase`: a candidate whose row is gone is confirmed
//! by its tombstone, or not at all), and two keys sharing a fingerprint cost one more read,
//! never a wrong answer. The listener's own pruning tells the set what it removed
//! ([`KeyChanges`]), so its entries follow the store's; entries that another process's removals
//! left behind cost 12 bytes each until the next start.
//!
//! Why only the writer adds: new keys enter the store only through the listener's writer
//! thread (the store's lock file keeps a second `listen` out; see `super::lock`), so every key
//! stored has its entry from the moment its transaction commits. Entries of a transaction are
//! added only once it committed, so a rolled-back batch leaves no entry behind.
//!
//! Layout: 4096 shards chosen by the fingerprint's top bits, each a vector sorted by the next
//! 32 bits with the row id beside them (12 bytes a key, 13 MB at a million keys with the room
//! each shard keeps; the listener's peak memory grows by about 15 MiB), so a lookup is a
//! binary search in a few hundred entries and an insert moves a few kilobytes.

use std::hash::BuildHasher as _;

use rusqlite::Connection;

/// How many shards: the top bits of a fingerprint choose one.
const SHARD_BITS: u32 = 12;

/// The row of a tombstone's entry (row ids start at 1): confirmed in `dedupe_keys`.
pub(super) const TOMBSTONE_ROW: i64 = 0;

/// What a committed prune or erasure did to the stored keys.
#[derive(Debug, Default)]
pub(super) struct KeyChanges {
    /// Events removed.
    pub(super) removed: Vec<RemovedKey>,
    /// Tombstones whose window ended: `(account_id, event_id)`.
    pub(super) expired: Vec<(i64, String)>,
}

/// One removed event.
#[derive(Debug)]
pub(super) struct RemovedKey {
    pub(super) account_id: i64,
    pub(super) event_id: String,
    /// The event's row.
    pub(super) row: i64,
    /// Whether its key was kept as a tombstone.
    pub(super) tombstone: bool,
}

/// One key's entry: the fingerprint's low 32 bits (the top ones chose the shard) and the row
/// id, split so an entry takes 12 bytes, not 16.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    fingerprint: u32,
    row_low: u32,
    row_high: u32,
}

impl Entry {
    fn new(fingerprint: u64, row: i64) -> Entry {
        let row = row as u64;
        Entry {
            // The low 32 bits: the shard took the top ones.
            fingerprint: fingerprint as u32,
            row_low: row as u32,
            row_high: (row >> 32) as u32,
        }
    }

    fn row(self) -> i64 {
        ((u64::from(self.row_high) << 32) | u64::from(self.row_low)) as i64
    }
}

/// A key's fingerprint: what the set is looked up by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Fingerprint(u64);

/// The set: see the module's documentation.
pub(super) struct KeySet {
    shards: Vec<Vec<Entry>>,
    /// Keyed per process (a new set each start): a sender cannot choose ids whose fingerprints
    /// collide, which would only cost reads anyway.
    hasher: std::hash::RandomState,
    len: usize,
}

impl KeySet {
    /// An empty set.
    pub(super) fn new() -> KeySet {
        KeySet {
            shards: vec![Vec::new(); 1 << SHARD_BITS],
            hasher: std::hash::RandomState::new(),
            len: 0,
        }
    }

    /// The set of every key of the `events` and `dedupe_keys` tables on `connection`, each read
    /// in row order (the order they were appended).
    ///
    /// # Errors
    /// The table cannot be read.
    pub(super) fn load(connection: &Connection) -> rusqlite::Result<KeySet> {
        let mut set = KeySet::new();
        // Each shard sized once for its share and a margin (shares vary by a few times their
        // square root), so loading a million keys never holds two copies of a shard.
        let count: i64 = connection.query_row(
            "SELECT (SELECT COUNT(*) FROM events) + (SELECT COUNT(*) FROM dedupe_keys)",
            [],
            |row| row.get(0),
        )?;
        let share = usize::try_from(count).unwrap_or(0) >> SHARD_BITS;
        for shard in &mut set.shards {
            shard.reserve_exact(share + share.isqrt() * 4 + 4);
        }
        let mut statement = connection.prepare(&format!(
            "SELECT id, account_id, event_id FROM events
             UNION ALL SELECT {TOMBSTONE_ROW}, account_id, event_id FROM dedupe_keys"
        ))?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            let id: i64 = row.get(0)?;
            let account_id: i64 = row.get(1)?;
            let event_id = row.get_ref(2)?.as_str()?;
            let fingerprint = set.fingerprint(account_id, event_id);
            // Sorted once at the end: pushing keeps the load linear.
            set.shard_mut(fingerprint)
                .push(Entry::new(fingerprint.0, id));
            set.len += 1;
        }
        for shard in &mut set.shards {
            shard.sort_unstable_by_key(|entry| entry.fingerprint);
        }
        Ok(set)
    }

    /// The fingerprint of a key.
    pub(super) fn fingerprint(&self, account_id: i64, event_id: &str) -> Fingerprint {
        Fingerprint(self.hasher.hash_one((account_id, event_id)))
    }

    /// How many entries it holds.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// The rows that may hold the key of `fingerprint` (none: no stored row does).
    pub(super) fn candidates(&self, fingerprint: Fingerprint) -> impl Iterator<Item = i64> + '_ {
        let shard = self.shard(fingerprint);
        let low = fingerprint.0 as u32;
        let start = shard.partition_point(|entry| entry.fingerprint < low);
        shard[start..]
            .iter()
            .take_while(move |entry| entry.fingerprint == low)
            .map(|entry| entry.row())
    }

    /// Adds the key of `fingerprint`, stored in `row`.
    pub(super) fn insert(&mut self, fingerprint: Fingerprint, row: i64) {
        let low = fingerprint.0 as u32;
        let shard = self.shard_mut(fingerprint);
        let at = shard.partition_point(|entry| entry.fingerprint <= low);
        shard.insert(at, Entry::new(fingerprint.0, row));
        self.len += 1;
    }

    /// Removes the entry of `fingerprint` and `row`, if there is one.
    pub(super) fn remove(&mut self, fingerprint: Fingerprint, row: i64) {
        let entry = Entry::new(fingerprint.0, row);
        let shard = self.shard_mut(fingerprint);
        let start = shard.partition_point(|other| other.fingerprint < entry.fingerprint);
        if let Some(offset) = shard[start..]
            .iter()
            .take_while(|other| other.fingerprint == entry.fingerprint)
            .position(|other| *other == entry)
        {
            shard.remove(start + offset);
            self.len -= 1;
        }
    }

    /// Follows a committed prune or erasure: a removed event's entry goes, or stays as its
    /// tombstone's; an expired tombstone's entry goes.
    pub(super) fn apply(&mut self, changes: KeyChanges) {
        for removed in changes.removed {
            let fingerprint = self.fingerprint(removed.account_id, &removed.event_id);
            self.remove(fingerprint, removed.row);
            if removed.tombstone {
                self.insert(fingerprint, TOMBSTONE_ROW);
            }
        }
        for (account_id, event_id) in changes.expired {
            let fingerprint = self.fingerprint(account_id, &event_id);
            self.remove(fingerprint, TOMBSTONE_ROW);
        }
    }

    fn shard(&self, fingerprint: Fingerprint) -> &Vec<Entry> {
        &self.shards[(fingerprint.0 >> (64 - SHARD_BITS)) as usize]
    }

    fn shard_mut(&mut self, fingerprint: Fingerprint) -> &mut Vec<Entry> {
        &mut self.shards[(fingerprint.0 >> (64 - SHARD_BITS)) as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_found_at_its_rows_and_only_there() {
        let mut set = KeySet::new();
        let first = set.fingerprint(1010, "a");
        assert_eq!(set.candidates(first).count(), 0);
        set.insert(first, 7);
        set.insert(set.fingerprint(1010, "b"), 8);
        set.insert(set.fingerprint(1011, "a"), 9);
        assert_eq!(set.candidates(first).collect::<Vec<_>>(), [7]);
        // A second row under one fingerprint (the key stored again after its row went, or
        // another key with the same fingerprint): both are candidates.
        set.insert(first, 1 << 40);
        let mut rows: Vec<i64> = set.candidates(first).collect();
        rows.sort_unstable();
        assert_eq!(rows, [7, 1 << 40]);
        set.remove(first, 7);
        assert_eq!(set.candidates(first).collect::<Vec<_>>(), [1 << 40]);
        assert_eq!(set.len(), 3);
        // Removing what is not there changes nothing.
        set.remove(first, 7);
        assert_eq!(set.len(), 3);
    }

    #[test]
    fn entries_that_share_a_shard_stay_sorted_and_found() {
        let mut set = KeySet::new();
        let keys: Vec<String> = (0..20_000).map(|n| format!("event-{n}")).collect();
        for (row, key) in (1..).zip(&keys) {
            set.insert(set.fingerprint(1010, key), row);
        }
        for (row, key) in (1..).zip(&keys) {
            assert!(set
                .candidates(set.fingerprint(1010, key))
                .any(|found| found == row));
        }
        assert_eq!(set.candidates(set.fingerprint(1010, "absent")).count(), 0);
    }

    #[test]
    fn a_store_is_loaded_with_every_key_at_its_row() {
        let connection = Connection::open_in_memory().unwrap();
        connection
            .execute_batch(
                "CREATE TABLE events (id INTEGER PRIMARY KEY, account_id INTEGER, event_id TEXT);
                 INSERT INTO events VALUES (3, 1010, 'a'), (9, 1010, 'b'), (12, 1011, 'a');
                 CREATE TABLE dedupe_keys (id INTEGER PRIMARY KEY, account_id INTEGER,
                                           event_id TEXT);
                 INSERT INTO dedupe_keys VALUES (1, 1010, 'pruned');",
            )
            .unwrap();
        let set = KeySet::load(&connection).unwrap();
        assert_eq!(set.len(), 4);
        for (account, key, row) in [
            (1010, "a", 3),
            (1010, "b", 9),
            (1011, "a", 12),
            (1010, "pruned", TOMBSTONE_ROW),
        ] {
            assert_eq!(
                set.candidates(set.fingerprint(account, key))
                    .collect::<Vec<_>>(),
                [row]
            );
        }
    }

    #[test]
    fn a_prune_moves_keys_to_tombstones_and_their_expiry_removes_them() {
        let mut set = KeySet::new();
        let (kept, gone) = (set.fingerprint(1010, "kept"), set.fingerprint(1010, "gone"));
        set.insert(kept, 5);
        set.insert(gone, 6);
        set.apply(KeyChanges {
            removed: vec![
                RemovedKey {
                    account_id: 1010,
                    event_id: "kept".to_owned(),
                    row: 5,
                    tombstone: true,
                },
                RemovedKey {
                    account_id: 1010,
                    event_id: "gone".to_owned(),
                    row: 6,
                    tombstone: false,
                },
            ],
            expired: Vec::new(),
        });
        assert_eq!(set.candidates(kept).collect::<Vec<_>>(), [TOMBSTONE_ROW]);
        assert_eq!(set.candidates(gone).count(), 0);
        set.apply(KeyChanges {
            removed: Vec::new(),
            expired: vec![(1010, "kept".to_owned())],
        });
        assert_eq!(set.candidates(kept).count(), 0);
        assert_eq!(set.len(), 0);
    }
}
