//! [`Store::stats`](crate::Store::stats): what the store holds and how it keeps up.

use std::time::{Duration, SystemTime};

use crate::entity::StorageSpec;
use crate::error::Error;

/// A snapshot of the store's counters. Cheap to take.
#[derive(Clone, Debug)]
pub struct Stats {
    /// One entry per registered collection, in registration order.
    pub collections: Vec<CollectionStats>,
    /// The last successful flush, if any.
    pub last_flush: Option<FlushReport>,
    /// The error of the last flush (or background WAL sync), if it failed;
    /// cleared by the next successful flush.
    pub last_error: Option<Error>,
    /// The WAL, when the store has one.
    pub wal: Option<WalStats>,
}

/// Counters of one collection.
#[derive(Clone, Debug)]
pub struct CollectionStats {
    /// The collection name.
    pub name: &'static str,
    /// Its declared storage.
    pub storage: StorageSpec,
    /// Records in memory.
    pub records: usize,
    /// Records changed but not yet durable in the record files.
    pub dirty: usize,
    /// Files the last successful flush wrote or removed for this collection
    /// (index files included).
    pub last_flush_files: usize,
    /// Bytes the last successful flush wrote for this collection.
    pub last_flush_bytes: u64,
}

/// The last successful flush.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlushReport {
    /// When it finished.
    pub at: SystemTime,
    /// How long it took.
    pub duration: Duration,
    /// Files written or removed.
    pub files: usize,
    /// Bytes written.
    pub bytes: u64,
}

/// Counters of the WAL.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalStats {
    /// Bytes in the segments not yet checkpointed.
    pub bytes: u64,
    /// How long the last `fdatasync` of a segment took.
    pub last_sync: Option<Duration>,
    /// `fdatasync` calls so far (each covers every commit waiting at that moment).
    pub syncs: u64,
    /// Time spent in those syncs so far, including the write of the records they
    /// cover (see [`WalSync::Always`](crate::WalSync::Always)).
    pub sync_time: Duration,
    /// Records appended so far.
    pub records: u64,
}

impl WalStats {
    /// Counts one sync that took `took`.
    pub(crate) fn record_sync(&mut self, took: Duration) {
        self.syncs += 1;
        self.sync_time += took;
        self.last_sync = Some(took);
    }
}
