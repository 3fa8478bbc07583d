//! The one error type of Shelf.

use std::path::PathBuf;
use std::sync::Arc;

/// Shorthand for `std::result::Result<T, shelf::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in Shelf.
///
/// Cheap to clone: sources are shared, so [`Health`](crate::Health) can keep the
/// error of a failed background flush while the caller gets it too.
///
/// Every message names what it is about: the file, the collection and the id
/// involved, so that a log line alone is enough to find the problem.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file-system operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What Shelf was doing, e.g. `"write temp file"`.
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: Arc<std::io::Error>,
    },

    /// Another `Store` (in this process or another one) holds the directory.
    #[error("data directory {dir} is locked by another Store (in this or another process)")]
    Locked {
        /// The data directory.
        dir: PathBuf,
    },

    /// `collection::<T>()` or a write was asked for a type that was not registered.
    #[error(
        "entity type `{type_name}` is not registered with this Store; call `.register::<{type_name}>()` on the builder"
    )]
    NotRegistered {
        /// The Rust type name.
        type_name: &'static str,
    },

    /// Two registered entity types map to the same collection name.
    #[error("collection `{collection}` is registered twice (by `{first}` and `{second}`); rename one with #[entity(collection = \"...\")]")]
    DuplicateCollection {
        /// The collection name.
        collection: String,
        /// The first type registered under it.
        first: &'static str,
        /// The second type registered under it.
        second: &'static str,
    },

    /// `insert` found a record with the same id.
    #[error("collection `{collection}`: a record with id `{id}` already exists")]
    DuplicateId {
        /// The collection.
        collection: String,
        /// The id, in its key encoding.
        id: String,
    },

    /// A write would give two records the same key in a unique index. Nothing changed.
    #[error("collection `{collection}`: unique index `{index}` already has key {key} (record `{existing_id}`)")]
    UniqueViolation {
        /// The collection.
        collection: String,
        /// The index name (the field name, or fields joined by `_and_`).
        index: String,
        /// The clashing key, as JSON.
        key: String,
        /// The id of the record that holds the key.
        existing_id: String,
    },

    /// `update_by_<index>` found no record with this key in the unique index.
    /// Nothing changed.
    #[error("collection `{collection}`: unique index `{index}` has no key {key}")]
    KeyNotFound {
        /// The collection.
        collection: String,
        /// The index name (the field name, or fields joined by `_and_`).
        index: String,
        /// The key looked up (Rust debug form).
        key: String,
    },

    /// A removal refused because children still reference the record
    /// (`on_delete = restrict`, the default). Nothing changed.
    #[error("collection `{collection}`: cannot remove `{id}`: {children} record(s) of `{child_collection}` reference it through `{field}` (on_delete = restrict)")]
    ForeignKey {
        /// The parent's collection.
        collection: String,
        /// The parent's id.
        id: String,
        /// The collection of the children.
        child_collection: String,
        /// The children's foreign key field.
        field: String,
        /// How many children block the removal.
        children: usize,
    },

    /// A write whose foreign key names a record that does not exist. Nothing changed.
    #[error("collection `{collection}`, id `{id}`: `{field}` references `{parent_id}` in `{parent_collection}`, which does not exist")]
    MissingParent {
        /// The child's collection.
        collection: String,
        /// The child's id.
        id: String,
        /// The foreign key field.
        field: String,
        /// The referenced collection.
        parent_collection: String,
        /// The referenced id, as JSON.
        parent_id: String,
    },

    /// A `#[belongs_to]` names an entity that is not registered with the store.
    #[error("collection `{collection}`: `{field}` references collection `{parent}`, which is not registered; register its type on the builder")]
    UnregisteredParent {
        /// The child's collection.
        collection: String,
        /// The foreign key field.
        field: String,
        /// The referenced collection.
        parent: String,
    },

    /// A join row given to `link_*` that does not link the record it was called on.
    #[error("collection `{collection}`: {message}")]
    InvalidLink {
        /// The join collection.
        collection: String,
        /// What is wrong.
        message: String,
    },

    /// `update` or `remove` found no record with this id.
    #[error("collection `{collection}`: no record with id `{id}`")]
    NotFound {
        /// The collection.
        collection: String,
        /// The id, in its key encoding.
        id: String,
    },

    /// `update` changed the id of the record it was given.
    #[error("collection `{collection}`: update of id `{id}` changed the id to `{new_id}`; remove and insert instead")]
    IdChanged {
        /// The collection.
        collection: String,
        /// The id the update was called with.
        id: String,
        /// The id the closure left in the record.
        new_id: String,
    },

    /// The auto-id counter of a collection ran past the id type's range.
    #[error("collection `{collection}`: auto id counter exhausted the id type")]
    AutoIdExhausted {
        /// The collection.
        collection: String,
    },

    /// A record file could not be parsed. With
    /// [`StoreBuilder::quarantine_corrupt`](crate::StoreBuilder::quarantine_corrupt)
    /// it is moved aside instead.
    #[error("collection `{collection}`: record file {path} is corrupt: {message}")]
    CorruptRecord {
        /// The collection.
        collection: String,
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },

    /// A record could not be serialized or deserialized.
    #[error("collection `{collection}`, id `{id}`: serialization failed: {source}")]
    Serde {
        /// The collection.
        collection: String,
        /// The id.
        id: String,
        /// serde_json's error.
        #[source]
        source: Arc<serde_json::Error>,
    },

    /// `shelf.json` is unreadable or was written by an incompatible version.
    #[error("store metadata {path}: {message}")]
    Meta {
        /// Path of `shelf.json`.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },

    /// A write through a collection handle inside [`Store::transaction`](crate::Store::transaction).
    #[error("store {dir}: a collection handle cannot write inside a transaction of the same store; write through the `Transaction` instead")]
    InTransaction {
        /// The data directory.
        dir: PathBuf,
    },

    /// The WAL has a bad record followed by valid ones: not a torn tail but
    /// corruption. Open with [`StoreBuilder::repair_wal`](crate::StoreBuilder::repair_wal)
    /// to cut the log there, losing what follows.
    #[error("WAL segment {segment} is corrupt at byte {offset}, and valid records follow; open with `repair_wal(true)` to truncate it there (losing those records)")]
    WalCorrupt {
        /// The segment file.
        segment: PathBuf,
        /// Where the bad record starts.
        offset: u64,
    },

    /// The WAL directory holds a segment that does not fit the log: an entry ending
    /// in `.wal` that is not a segment file, a segment whose first record is numbered
    /// below its name, or records whose sequence numbers go back. Replaying around it
    /// could lose acknowledged commits, so `open` stops and names it.
    #[error("WAL segment {segment}: {message}")]
    WalSegment {
        /// The segment file (or the entry that is not one).
        segment: PathBuf,
        /// What is wrong, and what to do.
        message: String,
    },

    /// A WAL record could not be applied on open.
    #[error("WAL record {lsn}: {message}")]
    WalReplay {
        /// The record's sequence number.
        lsn: u64,
        /// What is wrong.
        message: String,
    },

    /// A write to the WAL, or its sync, failed: the store stopped. After a failed
    /// `fsync` the kernel may have dropped the data it was to write, so Shelf never
    /// retries it and never reports it durable. Every later write and flush returns
    /// this error; reads go on. Close the store and open it again: open recovers
    /// exactly what is durable.
    #[error("store {dir} is poisoned by an earlier failure and takes no more writes; close and reopen it to recover what is durable. The failure: {cause}")]
    Poisoned {
        /// The data directory.
        dir: PathBuf,
        /// The failure that poisoned the store.
        cause: Box<Error>,
    },

    /// An operation that needs the writer lock was called where this thread holds
    /// it already: inside a transaction body or an `update` closure of the same
    /// store. Waiting for the lock would deadlock.
    #[error("store {dir}: `{op}` cannot run inside {inside} of the same store (it holds the writer lock); do it after the closure returns")]
    Reentrant {
        /// The data directory.
        dir: PathBuf,
        /// What was refused, e.g. `"flush"`.
        op: &'static str,
        /// Where it was called.
        inside: &'static str,
    },

    /// A value was refused at the write because it would not load back exactly: it
    /// does not serialize to JSON (a map whose keys are not strings), its JSON does
    /// not deserialize (a NaN or infinite float is written as `null`,
    /// nesting deeper than 128 levels is not read back), or it deserializes to a
    /// different value. Nothing changed.
    #[error(
        "collection `{collection}`, id `{id}`{}: write refused, the value would not load back exactly: {message}",
        if field.is_empty() { String::new() } else { format!(", field `{field}`") }
    )]
    Unloadable {
        /// The collection.
        collection: String,
        /// The record's id.
        id: String,
        /// Where in the record, as a path (`price`, `tags[2]`, `meta.size`); empty
        /// when it is the record as a whole.
        field: String,
        /// What went wrong, with the JSON around the difference.
        message: String,
    },

    /// The store was closed by [`Store::close`](crate::Store::close).
    #[error("the store at {dir} is closed")]
    Closed {
        /// The data directory.
        dir: PathBuf,
    },

    /// `watch_from(cursor)` asked for events the change feed no longer retains:
    /// events after `cursor` were dropped by the retention set with
    /// [`StoreBuilder::feed_retention`](crate::StoreBuilder::feed_retention), or
    /// belong to an earlier open whose feed was not kept (a crash; see
    /// [`StoreBuilder::feed_retention`](crate::StoreBuilder::feed_retention)). Resuming
    /// would skip them, so nothing is delivered: reload the state and subscribe anew.
    #[error("collection `{collection}`: change feed cursor {cursor} is older than what the feed holds (the events after sequence number {retained_after}; older ones were dropped by the retention, or belong to an open whose feed was not kept); reload the collection and subscribe again")]
    FeedExpired {
        /// The collection.
        collection: String,
        /// The cursor asked for.
        cursor: u64,
        /// The feed holds every event with a larger sequence number than this.
        retained_after: u64,
    },

    /// `watch_from(cursor)` cannot resume from this cursor: the feed is off (no
    /// retention set on the builder), or the cursor is ahead of the store's last
    /// commit (it is no sequence number the store gave out).
    #[error("collection `{collection}`: cannot resume the change feed from cursor {cursor}: {reason}")]
    FeedCursor {
        /// The collection.
        collection: String,
        /// The cursor asked for.
        cursor: u64,
        /// Why.
        reason: String,
    },

    /// PostgreSQL refused or failed an operation of a store opened with
    /// [`StoreBuilder::postgres`](crate::StoreBuilder). If the connection broke
    /// during a commit, the commit's outcome is unknown: it may have committed, and
    /// then the change feed brings it.
    #[error("PostgreSQL: {op}: {message}")]
    Postgres {
        /// What was being done.
        op: &'static str,
        /// The server's message with its SQLSTATE, or the client's.
        message: String,
    },

    /// A write or transaction on PostgreSQL kept conflicting with other instances'
    /// commits: it was run again against their changes `attempts` times, and
    /// failed each time. Nothing was applied.
    #[error("commit conflicted with other instances {attempts} times in a row; nothing was applied: {last}")]
    Conflict {
        /// How many times it ran.
        attempts: u32,
        /// The last conflict, as PostgreSQL reported it.
        last: String,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { op, path: path.into(), source: Arc::new(source) }
    }
}

/// Shortens a long id for an error message.
pub(crate) fn show_id(id: &str) -> String {
    const MAX: usize = 80;
    if id.len() <= MAX {
        return id.to_owned();
    }
    let mut end = MAX;
    while !id.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &id[..end], id.len())
}

/// Why a logged entry is refused when its record holds another id than the
/// entry's (indices file a record under its own id): open's replay and
/// `shelf compact` refuse it in these words.
pub(crate) fn other_id(entry: &str, held: &str) -> String {
    format!("the entry for id `{entry}` holds a record with id `{held}`")
}
