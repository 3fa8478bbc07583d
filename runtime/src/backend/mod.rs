//! The persistence seam: how records become durable.
//!
//! The collection core and the commit and flush paths speak to a [`Backend`] only;
//! they never name a file. A backend does four things:
//!
//! 1. **load everything** at open ([`Backend::source`], [`Backend::read_index`]);
//! 2. **log a commit** ([`Backend::log`]) and wait until it is durable
//!    ([`Backend::wait_logged`]), for the collections that ask for it;
//! 3. **make a snapshot of changes durable** ([`Backend::persist`]), given what each
//!    collection staged into a [`Stage`];
//! 4. **checkpoint** ([`Backend::checkpoint`]): forget the log a persisted snapshot
//!    covers.
//!
//! [`files::Files`] (record files, collection files, index files and the WAL) keeps
//! records on this machine; `postgres::Postgres` (feature `postgres`) keeps them in
//! PostgreSQL, shared by several instances, and commits there before a commit is
//! applied in memory. A failed sync of the log poisons the backend: it never
//! retries it, and every later commit fails with the cause
//! ([`Backend::poisoned`]).

pub(crate) mod files;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;

use crate::error::Result;
use crate::meta::Meta;
use crate::stats::WalStats;
/// A loaded record, with where it came from; and what quarantine does with one
/// that cannot be parsed.
pub(crate) use crate::storage::{Quarantine, RawRecord};
/// The log entry of one write (the WAL payload codec): what a collection hands to
/// [`Backend::log`] for each write of a commit.
pub(crate) use crate::wal::record::encode_write as log_entry;
/// A writer's announcement to group commit; see [`Backend::announce`].
pub(crate) use crate::wal::Incoming as Announcement;

/// One changed record of a flush: its encoded id and its new serialized form, or
/// `None` for a removal.
pub(crate) use crate::storage::FileChange as RecordChange;

/// Where one collection's part of a flush goes: what the collection hands to its
/// backend. The collection decides *what* changed; the backend decides where it is
/// kept.
pub(crate) trait Stage {
    /// Changed records (layouts that keep records apart).
    fn records(&mut self, changes: Vec<RecordChange>) -> Result<()>;
    /// The whole collection as JSON lines sorted by id (layouts that keep one
    /// document per collection).
    fn whole(&mut self, jsonl: Vec<u8>) -> Result<()>;
    /// The persisted form of the index `name`.
    fn index(&mut self, name: &str, bytes: Vec<u8>) -> Result<()>;
}

/// What an open loads a collection from: the records, each with where it came from
/// for messages, and what to do with one that cannot be parsed.
pub(crate) trait Source {
    /// Reads every stored record, in order: a later record with the same id wins.
    fn load(&self, sink: &mut dyn FnMut(RawRecord<'_>) -> Result<()>) -> Result<()>;
    /// Whether the records come as the lines of one document, kept verbatim.
    fn whole(&self) -> bool;
    /// What quarantine does with a record that cannot be parsed.
    fn quarantine(&self) -> Quarantine;
}

/// The persisted form of an index, as found at open.
#[derive(Debug)]
pub(crate) enum StoredIndex {
    /// The backend keeps no persisted form of this index.
    NotKept,
    /// Its bytes, to check against the index rebuilt from the records.
    Found(Vec<u8>),
    /// Missing or unreadable: rewritten from the records, for this reason.
    Unusable(String),
}

/// How records become durable; see the module docs.
pub(crate) trait Backend: Send + Sync {
    // --- open
    /// Where collection `pos` is loaded from, as declared.
    fn source(&self, pos: usize) -> &dyn Source;
    /// The persisted form of index `name` of collection `pos`. An error for what
    /// open must not go past (something that is not a file in its place).
    fn read_index(&self, pos: usize, name: &str) -> Result<StoredIndex>;

    /// Where the backend keeps collection `pos` on this machine, if in a directory.
    fn path(&self, pos: usize) -> Option<std::path::PathBuf>;

    // --- commits
    /// Whether commits are logged at all (some collection asked for a log).
    fn logs(&self) -> bool;
    /// Whether a logged commit waits for its log record to be durable before it is
    /// acknowledged (`WalSync::Always`).
    fn waits(&self) -> bool;
    /// Announces a writer about to log, for group commit; keep it until the commit
    /// is logged. `None` when commits do not wait.
    fn announce(&self) -> Option<Announcement<'_>>;
    /// Logs a commit's payload, in memory; returns its sequence number.
    fn log(&self, payload: &[u8]) -> Result<u64>;
    /// Waits until the log record `lsn` is durable.
    fn wait_logged(&self, lsn: u64, incoming: Option<Announcement<'_>>) -> Result<()>;
    /// Registers `waker` to be woken once the log record `lsn` is durable or the
    /// log fails: the async form of [`Backend::wait_logged`], woken by the sync
    /// that covers it. `false` when there is nothing to wait for (already durable,
    /// or failed): check [`Backend::durable_lsn`] and [`Backend::poisoned`].
    fn register_waker(&self, lsn: u64, waker: &std::task::Waker) -> bool;
    /// The last durable log record.
    fn durable_lsn(&self) -> u64;
    /// The failure that stopped the backend, if one did.
    fn poisoned(&self) -> Option<crate::error::Error>;

    // --- flushes
    /// The last logged record: a flush snapshot's cut. `None` without a log.
    fn cut(&self) -> Option<u64>;
    /// Makes the log durable up to `cut`, so that persisted records never hold a
    /// commit the log could still lose.
    fn sync_log(&self, cut: u64) -> Result<()>;
    /// Makes the staged parts durable together with `meta` (the store's metadata,
    /// when it changed): each part stages into its collection's [`Stage`], then
    /// everything is written and synced as one batch. Returns, per part, the
    /// `(writes, bytes)` it staged.
    fn persist(&self, parts: &mut [(usize, &mut dyn Staged)], meta: Option<&Meta>) -> Result<Vec<(usize, u64)>>;
    /// Forgets the log up to `cut`, which a persisted snapshot covers.
    fn checkpoint(&self, cut: u64) -> Result<()>;
    /// Figures about the log, if there is one.
    fn log_stats(&self) -> Option<WalStats>;
    /// Keeps the change feed of a closing store for its next open: `(collection,
    /// feed file)` pairs, written durably. A backend whose feed outlives the store
    /// by itself (a shared one's change log) keeps nothing.
    fn keep_feeds(&self, files: Vec<(&'static str, Vec<u8>)>) -> Result<()> {
        let _ = files;
        Ok(())
    }

    /// The shared source of truth, when the backend is one: then commits go to it
    /// before they are applied (see `commit_shared`).
    #[cfg(feature = "postgres")]
    fn shared(&self) -> Option<&postgres::Postgres> {
        None
    }
}

/// A collection's part of a flush, as the backend sees it: something that stages
/// its changes.
pub(crate) trait Staged {
    /// Stages the part's changes into `out`.
    fn stage(&mut self, out: &mut dyn Stage) -> Result<()>;
}
