//! Atomic, batched file replacement: the one way Shelf changes a file.
//!
//! A [`WriteBatch`] holds whole-file writes and removals. [`WriteBatch::commit`]
//! makes them durable in four phases, so that the cost of a sync is shared:
//!
//! 1. write every new content to a temp file with a unique name (`.shelf-tmp-...`) in
//!    the target's directory, and fsync it; these syncs run on several threads at
//!    once, so the disk sees them together instead of one round trip per file;
//! 2. rename each temp file over its target;
//! 3. remove the files to remove;
//! 4. fsync each touched directory once.
//!
//! A crash at any point leaves each target with its old or its new content, never a
//! torn one. Leftover temp files are deleted on the next open. When `commit` fails,
//! nothing is reported as durable and the caller keeps its data dirty.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};
use crate::fs::Vfs;
use crate::priority;

/// The prefix of every temp file Shelf writes. Encoded ids never start with `.`.
pub(crate) const TEMP_PREFIX: &str = ".shelf-tmp-";

/// How many files one sync thread handles at least; small batches stay on one thread.
const FILES_PER_THREAD: usize = 32;
/// At most this many threads sync at once.
const MAX_SYNC_THREADS: usize = 16;
/// The name of the threads that write and sync a large batch's temp files.
pub(crate) const SYNC_THREAD: &str = "shelf-sync";

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// How a batch syncs its files; `PerFile` exists to measure what batching saves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SyncMode {
    /// Temp files synced together, then renamed, then one sync per directory.
    #[default]
    Batched,
    /// The naive way: temp, fsync, rename and directory fsync, one file at a time.
    PerFile,
}

/// A set of file replacements and removals, made durable together.
#[derive(Debug, Default)]
pub(crate) struct WriteBatch {
    writes: Vec<(PathBuf, Vec<u8>)>,
    removes: Vec<PathBuf>,
}

impl WriteBatch {
    pub fn write(&mut self, path: PathBuf, bytes: Vec<u8>) {
        self.writes.push((path, bytes));
    }

    pub fn remove(&mut self, path: PathBuf) {
        self.removes.push(path);
    }

    pub fn is_empty(&self) -> bool {
        self.writes.is_empty() && self.removes.is_empty()
    }

    /// Files written or removed.
    pub fn len(&self) -> usize {
        self.writes.len() + self.removes.len()
    }

    /// Bytes of new content in the batch.
    pub fn bytes(&self) -> u64 {
        self.writes.iter().map(|(_, b)| b.len() as u64).sum()
    }

    /// Makes the whole batch durable, as the module documentation describes.
    pub fn commit(&self, fs: &dyn Vfs, mode: SyncMode) -> Result<()> {
        if mode == SyncMode::PerFile {
            return self.commit_per_file(fs);
        }
        let temps = self.write_temps(fs)?;
        let mut dirs = BTreeSet::new();
        for (i, ((target, _), temp)) in self.writes.iter().zip(&temps).enumerate() {
            if let Err(e) = fs.rename(temp, target) {
                remove_temps(fs, &temps[i..]);
                return Err(Error::io("rename temp file over", target, e));
            }
            dirs.insert(parent(target));
        }
        for path in &self.removes {
            match fs.remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("remove", path, e)),
            }
            dirs.insert(parent(path));
        }
        for dir in dirs {
            fs.sync_dir(&dir).map_err(|e| Error::io("sync directory", dir, e))?;
        }
        Ok(())
    }

    /// Phase 1: writes and syncs every temp file, on several threads for large batches.
    fn write_temps(&self, fs: &dyn Vfs) -> Result<Vec<PathBuf>> {
        let temps: Vec<PathBuf> = self.writes.iter().map(|(target, _)| temp_path(target)).collect();
        let jobs: Vec<(&PathBuf, &[u8])> = temps.iter().zip(self.writes.iter().map(|(_, b)| b.as_slice())).collect();
        let threads = (jobs.len() / FILES_PER_THREAD).clamp(1, MAX_SYNC_THREADS);
        let chunk = jobs.len().div_ceil(threads).max(1);
        let result = if threads == 1 {
            // A batch one thread writes (a collection file, a few records) is written
            // here; a panicking `Vfs` still becomes an error, as on a thread.
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                jobs.iter().try_for_each(|(temp, bytes)| write_synced(fs, temp, bytes))
            }))
            .unwrap_or_else(|_| {
                Err(Error::io("write temp file", PathBuf::new(), std::io::Error::other("sync thread panicked")))
            })
        } else {
            let nice = priority::worker_nice();
            std::thread::scope(|scope| {
                let mut result = Ok(());
                let mut handles = Vec::with_capacity(threads);
                for part in jobs.chunks(chunk) {
                    let spawned =
                        std::thread::Builder::new().name(SYNC_THREAD.to_owned()).spawn_scoped(scope, move || {
                            priority::lower(nice);
                            part.iter().try_for_each(|(temp, bytes)| write_synced(fs, temp, bytes))
                        });
                    match spawned {
                        Ok(handle) => handles.push(handle),
                        Err(e) => {
                            result = Err(Error::io("start a sync thread", PathBuf::new(), e));
                            break;
                        }
                    }
                }
                for handle in handles {
                    let outcome = handle.join().unwrap_or_else(|_| {
                        Err(Error::io("write temp file", PathBuf::new(), std::io::Error::other("sync thread panicked")))
                    });
                    if result.is_ok() {
                        result = outcome;
                    }
                }
                result
            })
        };
        if let Err(e) = result {
            remove_temps(fs, &temps);
            return Err(e);
        }
        Ok(temps)
    }

    fn commit_per_file(&self, fs: &dyn Vfs) -> Result<()> {
        for (target, bytes) in &self.writes {
            let temp = temp_path(target);
            if let Err(e) = write_synced(fs, &temp, bytes) {
                remove_temps(fs, std::slice::from_ref(&temp));
                return Err(e);
            }
            fs.rename(&temp, target).map_err(|e| Error::io("rename temp file over", target, e))?;
            let dir = parent(target);
            fs.sync_dir(&dir).map_err(|e| Error::io("sync directory", dir, e))?;
        }
        for path in &self.removes {
            match fs.remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("remove", path, e)),
            }
            let dir = parent(path);
            fs.sync_dir(&dir).map_err(|e| Error::io("sync directory", dir, e))?;
        }
        Ok(())
    }
}

fn write_synced(fs: &dyn Vfs, temp: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = fs.create_new(temp).map_err(|e| Error::io("create temp file", temp, e))?;
    file.write_all(bytes).map_err(|e| Error::io("write temp file", temp, e))?;
    file.sync_data().map_err(|e| Error::io("sync temp file", temp, e))
}

/// Best effort: a temp file left behind is removed on the next open anyway.
fn remove_temps(fs: &dyn Vfs, temps: &[PathBuf]) {
    for temp in temps {
        let _ = fs.remove_file(temp);
    }
}

fn parent(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

fn temp_path(target: &Path) -> PathBuf {
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    parent(target).join(format!("{TEMP_PREFIX}{}-{n}", std::process::id()))
}

/// Whether a file name is one of Shelf's temp files.
pub(crate) fn is_temp(name: &str) -> bool {
    name.starts_with(TEMP_PREFIX)
}

/// Writes one file atomically: a batch of one.
pub(crate) fn write_atomic(fs: &dyn Vfs, path: PathBuf, bytes: Vec<u8>) -> Result<()> {
    let mut batch = WriteBatch::default();
    batch.write(path, bytes);
    batch.commit(fs, SyncMode::Batched)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::{FaultFs, FaultKind, RealFs};

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = RealFs.read_dir(dir).unwrap().into_iter().map(|e| e.name).collect();
        names.sort();
        names
    }

    #[test]
    fn batch_replaces_and_removes_atomically() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("old"), b"old").unwrap();
        std::fs::write(dir.path().join("gone"), b"x").unwrap();
        let mut batch = WriteBatch::default();
        for i in 0..100 {
            batch.write(dir.path().join(format!("f{i:03}")), vec![b'a'; i]);
        }
        batch.write(dir.path().join("old"), b"new".to_vec());
        batch.remove(dir.path().join("gone"));
        batch.remove(dir.path().join("never-existed"));
        batch.commit(&RealFs, SyncMode::Batched).unwrap();
        assert_eq!(std::fs::read(dir.path().join("old")).unwrap(), b"new");
        assert_eq!(std::fs::read(dir.path().join("f042")).unwrap(), vec![b'a'; 42]);
        let names = names(dir.path());
        assert_eq!(names.len(), 101, "no temp files, no removed file: {names:?}");
        assert!(!names.contains(&"gone".to_owned()));
    }

    #[test]
    fn every_failure_point_leaves_old_or_new_content_and_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("t");
        std::fs::write(&target, b"old").unwrap();
        let fs = FaultFs::new();
        let mut n = 0;
        loop {
            fs.fail_at(n, FaultKind::ShortWrite);
            let outcome = write_atomic(&fs, target.clone(), b"new content".to_vec());
            let content = std::fs::read(&target).unwrap();
            assert!(content == b"old" || content == b"new content", "torn: {content:?}");
            let temps = names(dir.path()).into_iter().filter(|n| is_temp(n)).count();
            if outcome.is_ok() {
                assert!(fs.pending(), "a fault fired at op {n} but the commit reported success");
                fs.heal();
                assert_eq!(content, b"new content");
                break;
            }
            assert_eq!(temps, 0, "failure at op {n} left a temp file");
            std::fs::write(&target, b"old").unwrap();
            n += 1;
        }
        assert!(n >= 4, "expected create, write, sync, rename, dir sync to be counted; got {n}");
    }
}
