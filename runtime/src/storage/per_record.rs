//! `#[storage(per_record)]`: `<dir>/<collection>/<encoded-id>.json`, one entity per
//! file; `.json.zst` with `compress`; with `shard = N`, in a subdirectory named by
//! the first `N` hex digits of a hash of the encoded id.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::codec::Codec;
use super::collection_file::UTF8_BOM;
use super::{FileChange, Quarantine, RawRecord, Strategy};
use crate::batch::{is_temp, WriteBatch};
use crate::error::{Error, Result};
use crate::fs::Vfs;
use crate::index::fnv1a;
use crate::index_file::INDEX_DIR;

/// The extension of a record file (before a codec's extension).
pub(crate) const EXT: &str = ".json";

/// One JSON file per record in the collection's directory.
#[derive(Debug)]
pub(crate) struct PerRecord {
    dir: PathBuf,
    codec: Codec,
    shard: u8,
}

impl PerRecord {
    pub fn new(dir: PathBuf, codec: Codec, shard: u8) -> Self {
        PerRecord { dir, codec, shard: shard.min(3) }
    }

    fn ext(&self) -> String {
        format!("{EXT}{}", self.codec.ext())
    }

    /// The shard directory name of a stem: the first hex digits of a well-mixed hash
    /// (FNV-1a alone barely changes its high bits for short ids).
    pub(crate) fn shard_of(&self, stem: &str) -> String {
        let mut h = fnv1a(stem.as_bytes());
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        let hash = format!("{h:016x}");
        hash[..usize::from(self.shard)].to_owned()
    }

    fn shard_dirs(&self) -> Vec<PathBuf> {
        if self.shard == 0 {
            return Vec::new();
        }
        let count = 16u32.pow(u32::from(self.shard));
        (0..count).map(|n| self.dir.join(format!("{n:0width$x}", width = usize::from(self.shard)))).collect()
    }

    fn path(&self, stem: &str) -> PathBuf {
        let name = format!("{stem}{}", self.ext());
        if self.shard == 0 {
            self.dir.join(name)
        } else {
            self.dir.join(self.shard_of(stem)).join(name)
        }
    }

    /// Reads and decodes one record file.
    fn read_one(&self, fs: &dyn Vfs, path: &Path) -> Result<Vec<u8>> {
        let bytes = fs.read(path).map_err(|e| Error::io("read", path, e))?;
        Ok(match self.codec.decode(bytes) {
            Ok(bytes) => bytes,
            // An undecodable file is a corrupt record: the sink decides.
            Err(e) => format!("not valid zstd: {e}").into_bytes(),
        })
    }

    /// Hands one record file's bytes to the sink.
    fn deliver(
        &self,
        path: &Path,
        stem: &str,
        bytes: Result<Vec<u8>>,
        sink: &mut dyn FnMut(RawRecord<'_>) -> Result<()>,
    ) -> Result<()> {
        let bytes = bytes?;
        // A byte order mark holds no data, and JSON does not allow it: skipped, as
        // in a collection file.
        let bytes = bytes.strip_prefix(UTF8_BOM).unwrap_or(&bytes);
        sink(RawRecord { file: path, line: None, stem: Some(stem.to_owned()), bytes })
    }

    /// The record files of this layout: `(path, stem)`. A directory with a record
    /// file's name is an error naming it, with or without quarantine: Shelf did not
    /// create it, so it is left for a person to look at.
    fn record_files(&self, fs: &dyn Vfs) -> Result<Vec<(PathBuf, String)>> {
        self.listing(fs).map(|(records, _)| records)
    }

    /// The record files, and the strays: entries of the record directories that
    /// are no record file, no temp file and (unsharded) not the index directory.
    #[allow(clippy::type_complexity)]
    fn listing(&self, fs: &dyn Vfs) -> Result<(Vec<(PathBuf, String)>, Vec<PathBuf>)> {
        let dirs = if self.shard == 0 { vec![self.dir.clone()] } else { self.shard_dirs() };
        let ext = self.ext();
        let mut out = Vec::new();
        let mut strays = Vec::new();
        for dir in dirs {
            let entries = match fs.read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("list", &dir, e)),
            };
            for entry in entries {
                if is_temp(&entry.name) {
                    continue;
                }
                // `x.json` must not be taken for a record when `.json.zst` is expected,
                // nor the other way round: the other variant is another layout's file.
                match entry.name.strip_suffix(&ext) {
                    // A directory named like a record would make every flush of that
                    // id fail: it is reported, never skipped.
                    Some(stem) if !stem.contains('.') && entry.is_dir => {
                        let path = dir.join(&entry.name);
                        let e = std::io::Error::new(
                            std::io::ErrorKind::InvalidInput,
                            "not a regular file (directory) where a record file is expected; move it away",
                        );
                        return Err(Error::io("read", path, e));
                    }
                    Some(stem) if !stem.contains('.') => out.push((dir.join(&entry.name), stem.to_owned())),
                    _ if self.shard == 0 && entry.is_dir && entry.name == INDEX_DIR => {}
                    _ => strays.push(dir.join(&entry.name)),
                }
            }
        }
        Ok((out, strays))
    }
}

/// Record files per chunk handed to a reader thread.
const READ_CHUNK: usize = 256;
/// The most reader threads a load starts.
const MAX_READERS: usize = 4;

impl Strategy for PerRecord {
    fn strays(&self, fs: &dyn Vfs) -> Result<Vec<PathBuf>> {
        self.listing(fs).map(|(_, strays)| strays)
    }

    fn dirs(&self) -> Vec<PathBuf> {
        let mut dirs = vec![self.dir.clone()];
        dirs.extend(self.shard_dirs());
        dirs
    }

    /// Reads the files on reader threads, in chunks, while this thread hands them
    /// to `sink` (which parses): a record file costs more in system calls than in
    /// parsing, so the reads overlap with each other and with the parsing. A small
    /// collection, or one whose readers cannot be started, is read on this thread.
    fn load(&self, fs: &dyn Vfs, sink: &mut dyn FnMut(RawRecord<'_>) -> Result<()>) -> Result<()> {
        let files = self.record_files(fs)?;
        let readers = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, MAX_READERS);
        if files.len() < 2 * READ_CHUNK || readers < 2 {
            for (path, stem) in &files {
                self.deliver(path, stem, self.read_one(fs, path), sink)?;
            }
            return Ok(());
        }
        let chunks: Vec<&[(PathBuf, String)]> = files.chunks(READ_CHUNK).collect();
        let next = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<(usize, Vec<Result<Vec<u8>>>)>(2 * readers);
            let mut started = 0;
            for _ in 0..readers {
                let (tx, next, chunks) = (tx.clone(), &next, &chunks);
                let reader = move || loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(chunk) = chunks.get(i) else { return };
                    let read = chunk.iter().map(|(path, _)| self.read_one(fs, path)).collect();
                    // The receiver is gone once loading failed: stop.
                    if tx.send((i, read)).is_err() {
                        return;
                    }
                };
                if std::thread::Builder::new().name("shelf-read".into()).spawn_scoped(scope, reader).is_ok() {
                    started += 1;
                }
            }
            drop(tx);
            // Chunks arrive in any order; each is delivered whole, and the chunks
            // no reader took (none started) are read here.
            for (i, read) in rx {
                for ((path, stem), bytes) in chunks[i].iter().zip(read) {
                    self.deliver(path, stem, bytes, sink)?;
                }
            }
            if started == 0 {
                for (path, stem) in &files {
                    self.deliver(path, stem, self.read_one(fs, path), sink)?;
                }
            }
            Ok(())
        })
    }

    fn stage(&self, changes: Vec<FileChange>, batch: &mut WriteBatch) -> Result<()> {
        let mut encoder = self.codec.encoder();
        for change in changes {
            let path = self.path(&change.stem);
            match change.bytes {
                Some(bytes) => {
                    batch.write(path.clone(), encoder.encode(bytes).map_err(|e| Error::io("compress", &path, e))?)
                }
                None => batch.remove(path),
            }
        }
        Ok(())
    }

    fn files(&self, fs: &dyn Vfs) -> Result<Vec<PathBuf>> {
        Ok(self.record_files(fs)?.into_iter().map(|(path, _)| path).collect())
    }

    fn quarantine(&self) -> Quarantine {
        Quarantine::MoveFile
    }
}
