//! Storage strategies: how a collection's records map to files.
//!
//! Each strategy is one module behind [`Strategy`]. The collection core speaks in
//! encoded ids and serialized bytes; a strategy decides which files hold them. It
//! never performs a write itself: it stages writes into the flush's
//! [`WriteBatch`], which makes the whole flush durable together.

pub(crate) mod memory;
pub(crate) mod per_record;

use std::fmt::Debug;
use std::path::{Path, PathBuf};

use crate::batch::WriteBatch;
use crate::entity::{StorageKind, StorageSpec};
use crate::error::Result;
use crate::fs::Vfs;

/// One record as found on disk, before parsing.
#[derive(Debug)]
pub(crate) struct RawRecord {
    /// The file it came from.
    pub path: PathBuf,
    /// The encoded id the location promises (e.g. the file name), when it has one.
    pub stem: Option<String>,
    /// The serialized entity.
    pub bytes: Vec<u8>,
}

/// A change to persist: the encoded id, and the new bytes or `None` for a removal.
#[derive(Debug)]
pub(crate) struct Change {
    pub stem: String,
    pub bytes: Option<Vec<u8>>,
}

/// How one storage strategy reads and writes a collection.
pub(crate) trait Strategy: Send + Sync + Debug {
    /// The directories this strategy writes into; created on open, and swept for
    /// leftover temp files.
    fn dirs(&self) -> Vec<PathBuf>;
    /// Reads every stored record. Unreadable files are errors naming the file.
    fn load(&self, fs: &dyn Vfs, sink: &mut dyn FnMut(RawRecord) -> Result<()>) -> Result<()>;
    /// Stages the changes into the batch.
    fn stage(&self, changes: Vec<Change>, batch: &mut WriteBatch);
    /// Whether a loaded file can be moved aside on its own (true for one file per record).
    fn quarantines_files(&self) -> bool;
}

/// The strategy for a collection in `dir` (the store's directory).
pub(crate) fn strategy_for(spec: StorageSpec, dir: &Path, collection: &str) -> Box<dyn Strategy> {
    match spec.kind {
        StorageKind::PerRecord => Box::new(per_record::PerRecord::new(dir.join(collection))),
        StorageKind::Memory => Box::new(memory::Memory),
    }
}
