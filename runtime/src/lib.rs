//! The runtime of Shelf: store, collections, storage strategies and the flusher.
//!
//! Use it through the `shelf` crate, which re-exports everything here together with
//! `#[derive(Entity)]`.
//!
//! # Layers
//!
//! The runtime reads bottom-up; no module imports one above it (`tests/layers.rs`
//! checks the rule for everything below the collection core, and that the core,
//! commit and flush never name a file):
//!
//! 1. `fs`: every byte read or written ([`fs::Vfs`], `RealFs`, `FaultFs`, `CrashFs`).
//! 2. `batch`, `encode`: atomic multi-file writes; ids as file names.
//! 3. `storage`, `wal`, `index`, `index_file`, `meta`, `recover`, `feed_file`,
//!    `import_file`, `jsonl_file`: the on-disk forms of records, the write-ahead
//!    log, indices, `shelf.json`, the change feed a closed store keeps and imports
//!    staged for the next open.
//! 4. `backend`: the persistence seam. One internal trait says how records become
//!    durable (load everything, log a commit, make a snapshot durable, checkpoint);
//!    `backend::files` implements it with the modules of layer 3.
//! 5. `collection`: one collection's records, indices and dirty marks in memory
//!    (`Core`), its commit-time lock (`Locked`) and its part of a flush. It never
//!    names a file: it stages changes into its backend.
//! 6. `commit`, `flush`: the writer lock, group commit and poisoning; the snapshot
//!    under the writer lock and the I/O after it.
//! 7. `store`, `tx`, `handle`, `query`, `watch`: what users call; `nonblocking`,
//!    `handle_async`, `stream`, `feed`: their async forms and the change feed.

#![warn(missing_docs)]

mod backend;
mod batch;
mod collection;
mod commit;
#[cfg(feature = "postgres")]
mod commit_shared;
mod derived;
pub mod encode;
mod entity;
mod error;
mod expiry;
mod feed;
mod feed_file;
mod flush;
pub mod fs;
mod handle;
mod handle_async;
mod import_file;
mod index;
mod index_file;
pub mod inspect;
mod jsonl_file;
mod key;
mod link;
mod meta;
mod migrate;
pub mod nonblocking;
mod priority;
mod query;
mod recover;
mod relation;
mod stats;
mod storage;
mod store;
pub mod stream;
mod traverse;
mod tx;
mod wal;
pub mod watch;

pub use batch::SyncMode;
pub use handle::Collection;

/// Records by id: a HashMap with foldhash, seeded per process.
pub(crate) type Records<I, T> = std::collections::HashMap<I, std::sync::Arc<T>, foldhash::fast::RandomState>;
pub use entity::{Entity, StorageKind, StorageSpec};
pub use error::{Error, Result};
pub use feed::FeedRetention;
pub use flush::{FlushStats, Health};
pub use index::{IndexKey, IndexKind};
pub use key::{AutoKey, Key};
pub use link::Writer;
pub use meta::FORMAT_VERSION;
pub use nonblocking::{FlushFuture, WriteFuture};
pub use query::{
    Column, Field, GroupBy, Groupable, Nullable, Numeric, OptField, OrderBy, Orderable, Plan, Predicate, Query, Text,
    Value,
};
pub use recover::{AppliedImport, Quarantined, RecoveryReport, RejectedLine, UniqueConflict, QUARANTINE_DIR};
pub use relation::{Dangling, ForeignKey, OnDelete, Reader, References};
pub use stats::{CollectionStats, FlushReport, Stats, WalStats};
#[cfg(feature = "postgres")]
pub use store::CopyReport;
pub use store::{
    Store, StoreBuilder, DEFAULT_COMPRESSION_LEVEL, DEFAULT_FLUSH_INTERVAL, DEFAULT_FLUSH_NICE, LOCK_FILE,
};
pub use stream::Subscription;
pub use traverse::closure;
pub use tx::Transaction;
pub use wal::{WalSync, WAL_DIR};
pub use watch::{Change, Event};

/// Items the generated code uses. Not a public API: it may change in any release.
#[doc(hidden)]
pub mod __private {
    pub use crate::derived::{
        belongs_to_of, foreign_key, has_foreign_key, has_many, has_many_query, has_one, IndexKeyProbe, IsThroughPair,
        KeyProbe, NotAnIndexKey, NotThroughPair, PairProbe, ThroughPair,
    };
    pub use crate::entity::{Entity, EntityInternals, RecordField, StorageKind, StorageSpec};
    pub use crate::error::{Error, Result};
    pub use crate::handle::{index_all, index_count, index_one, index_range, Collection};
    pub use crate::index::{
        CompositeIndexProbe, CompositeKey, Index, IndexKey, IndexKind, IndexMaint, NotACompositeKey,
    };
    pub use crate::key::{AutoKey, Key};
    pub use crate::link::{link, unlink, Writer};
    pub use crate::query::{children_query, through_query, Field, IndexHint, OptField, Query};
    pub use crate::relation::{
        assert_entity, assert_through, through, ForeignKey, ForeignKeySpec, OnDelete, Reader, References, SameType,
    };
    pub use crate::store::Store;
    pub use serde;
}
