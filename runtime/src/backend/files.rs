//! The file backend: record files or collection files (`storage`), index files
//! (`index_file`), `shelf.json` (`meta`) and the write-ahead log (`wal`), written
//! through one [`Vfs`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Announcement, Backend, RecordChange, Source, Stage, Staged, StoredIndex};
use crate::batch::{SyncMode, WriteBatch};
use crate::entity::StorageSpec;
use crate::error::{Error, Result};
use crate::feed_file::{self, FEED_DIR};
use crate::fs::{create_dir_durable, Vfs};
use crate::index_file::INDEX_DIR;
use crate::meta::Meta;
use crate::stats::WalStats;
use crate::storage::{strategy_for, Quarantine, RawRecord, Strategy};
use crate::wal::{Wal, WalSync};

/// Where one collection's files are: its storage strategy and its index directory.
#[derive(Debug)]
pub(crate) struct CollectionFiles {
    fs: Arc<dyn Vfs>,
    strategy: Box<dyn Strategy>,
    /// `<dir>/<collection>/indices`, for persisted collections with indices.
    index_dir: Option<PathBuf>,
}

impl CollectionFiles {
    /// The files of collection `name`, stored as `spec` in the data directory `dir`.
    pub fn new(fs: Arc<dyn Vfs>, dir: &Path, name: &str, spec: StorageSpec, indexed: bool, level: i32) -> Self {
        let index_dir = (spec.is_persisted() && indexed).then(|| dir.join(name).join(INDEX_DIR));
        CollectionFiles { fs, strategy: strategy_for(spec, dir, name, level), index_dir }
    }

    /// The directories to create on open and sweep for temp files: the strategy's
    /// and the index directory.
    pub fn dirs(&self) -> Vec<PathBuf> {
        let mut dirs = self.strategy.dirs();
        dirs.extend(self.index_dir.clone());
        dirs
    }

    /// Entries of the collection's directories that Shelf did not write; see
    /// `Strategy::strays`.
    pub fn strays(&self) -> Result<Vec<PathBuf>> {
        self.strategy.strays(self.fs.as_ref())
    }

    fn index_path(&self, name: &str) -> Option<PathBuf> {
        self.index_dir.as_ref().map(|dir| dir.join(format!("{name}.jsonl")))
    }

    /// The index file of index `name`; see [`Backend::read_index`]. A directory in
    /// its place fails open, naming it: a rewrite could never replace it, so every
    /// close would fail.
    pub fn read_index(&self, name: &str) -> Result<StoredIndex> {
        let (Some(dir), Some(path)) = (&self.index_dir, self.index_path(name)) else { return Ok(StoredIndex::NotKept) };
        let error = match self.fs.read(&path) {
            Ok(bytes) => return Ok(StoredIndex::Found(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(StoredIndex::Unusable(format!("{} is missing", path.display())))
            }
            Err(e) => e,
        };
        // Only a failed read lists the directory: a directory in the file's place.
        let file_name = format!("{name}.jsonl");
        let listed = self.fs.read_dir(dir).map_err(|e| Error::io("list", dir, e))?;
        if listed.iter().any(|entry| entry.is_dir && entry.name == file_name) {
            return Err(Error::io(
                "read index file",
                &path,
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "a directory is in the place of the index file; move it away",
                ),
            ));
        }
        Ok(StoredIndex::Unusable(format!("{} is unreadable: {error}", path.display())))
    }
}

impl Source for CollectionFiles {
    fn load(&self, sink: &mut dyn FnMut(RawRecord<'_>) -> Result<()>) -> Result<()> {
        self.strategy.load(self.fs.as_ref(), sink)
    }
    fn whole(&self) -> bool {
        self.strategy.whole_file()
    }
    fn quarantine(&self) -> Quarantine {
        self.strategy.quarantine()
    }
}

/// A collection's staging area in a flush's [`WriteBatch`].
struct FileStage<'a> {
    files: &'a CollectionFiles,
    batch: &'a mut WriteBatch,
}

impl Stage for FileStage<'_> {
    fn records(&mut self, changes: Vec<RecordChange>) -> Result<()> {
        self.files.strategy.stage(changes, self.batch)
    }
    fn whole(&mut self, jsonl: Vec<u8>) -> Result<()> {
        self.files.strategy.stage_all(jsonl, self.batch)
    }
    fn index(&mut self, name: &str, bytes: Vec<u8>) -> Result<()> {
        if let Some(path) = self.files.index_path(name) {
            self.batch.write(path, bytes);
        }
        Ok(())
    }
}

/// Stages `part` into `batch` as the files of `files` (a migration's first step).
pub(crate) fn stage_into(files: &CollectionFiles, batch: &mut WriteBatch, part: &mut dyn Staged) -> Result<()> {
    part.stage(&mut FileStage { files, batch })
}

/// The file backend of one data directory.
pub(crate) struct Files {
    dir: PathBuf,
    fs: Arc<dyn Vfs>,
    sync_mode: SyncMode,
    /// The WAL, when a registered collection has `wal` or the log holds records.
    wal: Option<Wal>,
    /// Per collection position.
    collections: Vec<CollectionFiles>,
}

impl Files {
    /// The backend of the data directory `dir`, with the files of each registered
    /// collection, by position. It has no WAL until [`Files::with_wal`]: an open
    /// loads the record files first, then replays the log into memory.
    pub fn new(dir: PathBuf, fs: Arc<dyn Vfs>, sync_mode: SyncMode, collections: Vec<CollectionFiles>) -> Self {
        Files { dir, fs, sync_mode, wal: None, collections }
    }

    /// The backend, logging commits to `wal`.
    pub fn with_wal(mut self, wal: Option<Wal>) -> Self {
        self.wal = wal;
        self
    }

    /// The files of collection `pos`.
    pub fn collection(&self, pos: usize) -> &CollectionFiles {
        &self.collections[pos]
    }

    fn waiting_wal(&self) -> Option<&Wal> {
        self.wal.as_ref().filter(|wal| wal.policy == WalSync::Always)
    }
}

impl Backend for Files {
    fn source(&self, pos: usize) -> &dyn Source {
        &self.collections[pos]
    }

    fn read_index(&self, pos: usize, name: &str) -> Result<StoredIndex> {
        self.collections[pos].read_index(name)
    }

    fn path(&self, pos: usize) -> Option<PathBuf> {
        self.collections[pos].strategy.dirs().into_iter().next()
    }

    fn logs(&self) -> bool {
        self.wal.is_some()
    }

    fn waits(&self) -> bool {
        self.waiting_wal().is_some()
    }

    fn announce(&self) -> Option<Announcement<'_>> {
        self.waiting_wal().map(Wal::incoming)
    }

    fn log(&self, payload: &[u8]) -> Result<u64> {
        match &self.wal {
            Some(wal) => wal.append(payload),
            None => Err(Error::io(
                "log a commit",
                self.dir.join(crate::wal::WAL_DIR),
                std::io::Error::other("this store has no WAL"),
            )),
        }
    }

    fn wait_logged(&self, lsn: u64, incoming: Option<Announcement<'_>>) -> Result<()> {
        match self.waiting_wal() {
            Some(wal) => wal.sync_to(lsn, incoming),
            None => Ok(()),
        }
    }

    fn register_waker(&self, lsn: u64, waker: &std::task::Waker) -> bool {
        self.wal.as_ref().is_some_and(|wal| wal.register_waker(lsn, waker))
    }

    fn durable_lsn(&self) -> u64 {
        self.wal.as_ref().map_or(0, Wal::durable_lsn)
    }

    fn poisoned(&self) -> Option<Error> {
        self.wal.as_ref().and_then(Wal::poisoned)
    }

    fn cut(&self) -> Option<u64> {
        self.wal.as_ref().map(Wal::last_lsn)
    }

    fn sync_log(&self, cut: u64) -> Result<()> {
        match &self.wal {
            Some(wal) => wal.sync_to(cut, None),
            None => Ok(()),
        }
    }

    fn persist(&self, parts: &mut [(usize, &mut dyn Staged)], meta: Option<&Meta>) -> Result<Vec<(usize, u64)>> {
        let mut batch = WriteBatch::default();
        let mut counts = Vec::with_capacity(parts.len());
        for (pos, part) in parts.iter_mut() {
            let (files, bytes) = (batch.len(), batch.bytes());
            stage_into(&self.collections[*pos], &mut batch, &mut **part)?;
            counts.push((batch.len() - files, batch.bytes() - bytes));
        }
        if let Some(meta) = meta {
            batch.write(Meta::path(&self.dir), meta.to_bytes(&self.dir)?);
        }
        if !batch.is_empty() {
            batch.commit(self.fs.as_ref(), self.sync_mode)?;
        }
        Ok(counts)
    }

    fn checkpoint(&self, cut: u64) -> Result<()> {
        if let Some(wal) = &self.wal {
            wal.prepare_rotation()?;
            wal.checkpoint(cut)?;
        }
        Ok(())
    }

    fn log_stats(&self) -> Option<WalStats> {
        self.wal.as_ref().map(Wal::stats)
    }

    fn keep_feeds(&self, files: Vec<(&'static str, Vec<u8>)>) -> Result<()> {
        if files.is_empty() {
            return Ok(());
        }
        let feed_dir = self.dir.join(FEED_DIR);
        create_dir_durable(self.fs.as_ref(), &feed_dir).map_err(|e| Error::io("create directory", &feed_dir, e))?;
        let mut batch = WriteBatch::default();
        for (name, bytes) in files {
            batch.write(feed_file::path(&self.dir, name), bytes);
        }
        batch.commit(self.fs.as_ref(), self.sync_mode)
    }
}
