//! Storage strategies: how a collection's records map to files.
//!
//! Each strategy is one module behind [`Strategy`]: `per_record` (one file per
//! record, optionally sharded), `collection_file` (one JSON-lines file) and
//! `memory` (nothing). The collection core speaks in encoded ids and serialized
//! bytes; a strategy decides which files hold them. It never writes itself: it
//! stages writes into the flush's [`WriteBatch`], which makes the whole flush
//! durable together. Compression is a property of the file, handled by [`codec`].

pub(crate) mod codec;
pub(crate) mod collection_file;
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
pub(crate) struct RawRecord<'a> {
    /// The file it came from.
    pub file: &'a Path,
    /// Its line, for a line of a collection file.
    pub line: Option<usize>,
    /// The encoded id the location promises (a file name), when it has one.
    pub stem: Option<String>,
    /// The serialized entity.
    pub bytes: &'a [u8],
}

impl RawRecord<'_> {
    /// Where the record is, for messages: the file, with `:line` for a line of a
    /// collection file. Built only when asked for, not for every record loaded.
    pub fn location(&self) -> PathBuf {
        match self.line {
            Some(line) => PathBuf::from(format!("{}:{line}", self.file.display())),
            None => self.file.to_path_buf(),
        }
    }
}

/// A change to persist: the encoded id, and the new bytes or `None` for a removal.
#[derive(Debug)]
pub(crate) struct FileChange {
    pub stem: String,
    pub bytes: Option<Vec<u8>>,
}

/// What to do with a record that cannot be parsed, when quarantine is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Quarantine {
    /// Move its file aside (one file per record).
    MoveFile,
    /// Copy the whole file aside and skip the record; the next flush rewrites the
    /// file without it.
    CopyFileAndSkip,
}

/// How one storage strategy reads and writes a collection.
pub(crate) trait Strategy: Send + Sync + Debug {
    /// The directories this strategy writes into; created on open, and swept for
    /// leftover temp files.
    fn dirs(&self) -> Vec<PathBuf>;
    /// Reads every stored record. Unreadable files are errors naming the file.
    fn load(&self, fs: &dyn Vfs, sink: &mut dyn FnMut(RawRecord<'_>) -> Result<()>) -> Result<()>;
    /// Whether a flush rewrites the whole collection ([`Strategy::stage_all`]) rather
    /// than the changed records ([`Strategy::stage`]).
    fn whole_file(&self) -> bool {
        false
    }
    /// Stages changed records.
    fn stage(&self, _changes: Vec<FileChange>, _batch: &mut WriteBatch) -> Result<()> {
        Ok(())
    }
    /// Stages the whole collection, given as JSON lines.
    fn stage_all(&self, _jsonl: Vec<u8>, _batch: &mut WriteBatch) -> Result<()> {
        Ok(())
    }
    /// Entries of this layout's directories that Shelf did not write: no record
    /// file, no temp file, no index directory. Reported at open and by `shelf
    /// verify`, never touched. Only layouts with directories of their own have any.
    fn strays(&self, _fs: &dyn Vfs) -> Result<Vec<PathBuf>> {
        Ok(Vec::new())
    }
    /// Every file this strategy's layout holds, for removal after a migration.
    fn files(&self, fs: &dyn Vfs) -> Result<Vec<PathBuf>>;
    /// What quarantine does with an unparsable record.
    fn quarantine(&self) -> Quarantine;
}

/// The strategy for a collection stored with `spec` in the data directory `dir`.
pub(crate) fn strategy_for(spec: StorageSpec, dir: &Path, collection: &str, level: i32) -> Box<dyn Strategy> {
    let codec = codec::Codec::new(spec.compress, level);
    match spec.kind {
        StorageKind::PerRecord => Box::new(per_record::PerRecord::new(dir.join(collection), codec, spec.shard)),
        StorageKind::CollectionFile => Box::new(collection_file::CollectionFile::new(dir, collection, codec)),
        StorageKind::Memory => Box::new(memory::Memory),
    }
}
