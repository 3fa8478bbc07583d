//! Atomic, batched file replacement: the one way Shelf changes a file.
//!
//! A [`WriteBatch`] holds whole-file writes and removals. [`WriteBatch::commit`]
//! makes them durable in four phases, so that the cost of a sync is shared:
//!
//! 1. write every new content to a temp file with a unique name (`.shelf-tmp-...`) in
//!    the target's directory, and make it durable: in a batch of 64 files or more,
//!    with one `syncfs` of each file system written to, where the [`Vfs`] offers it
//!    ([`Vfs::barrier`]: Linux 5.17 and later on ext4, XFS, btrfs or tmpfs, whose
//!    `syncfs` reports every error), opened before the writes so that it reports
//!    any failed write-back of them; otherwise with an fsync of each file, on
//!    several threads at once, so the disk sees them together instead of one round
//!    trip per file;
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
use crate::fs::{Vfs, VfsBarrier};
use crate::priority;

/// The prefix of every temp file Shelf writes. Encoded ids never start with `.`.
pub(crate) const TEMP_PREFIX: &str = ".shelf-tmp-";

/// How many files one sync thread handles at least; small batches stay on one thread.
const FILES_PER_THREAD: usize = 32;
/// Batches of at least this many files are made durable by one sync of each file
/// system (where the [`Vfs`] has a [`VfsBarrier`]); smaller ones sync each file.
/// A `syncfs` also writes whatever else is dirty on the file system (another
/// process's writes, a build), so a small batch, for which a few fsyncs cost
/// little, never waits for that.
const BARRIER_FROM: usize = 2 * FILES_PER_THREAD;
/// At most this many threads sync at once.
const MAX_SYNC_THREADS: usize = 16;
/// The name of the threads that write and sync a large batch's temp files.
pub(crate) const SYNC_THREAD: &str = "shelf-sync";

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// How a batch syncs its files; `PerFile` exists to measure what batching saves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SyncMode {
    /// Temp files synced together (one `syncfs` per file system where the [`Vfs`]
    /// has a [`VfsBarrier`], else one fsync per file, in parallel), then renamed,
    /// then one sync per directory.
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

    /// Phase 1: writes every temp file and makes it durable: with one sync of each
    /// file system written to, where the [`Vfs`] has a [`VfsBarrier`]; otherwise with
    /// one sync per file, on several threads for large batches.
    fn write_temps(&self, fs: &dyn Vfs) -> Result<Vec<PathBuf>> {
        let temps: Vec<PathBuf> = self.writes.iter().map(|(target, _)| temp_path(target)).collect();
        let jobs: Vec<(&PathBuf, &[u8])> = temps.iter().zip(self.writes.iter().map(|(_, b)| b.as_slice())).collect();
        let barriers = if jobs.len() >= BARRIER_FROM { self.barriers(fs) } else { None };
        let result = match barriers {
            // One sync thread, at the flush's priority, writes them all: the files
            // share directories, whose locks several writers would only spin on
            // (W9 traced 16 sync threads spinning there, taking a writer's CPU).
            Some(barriers) => on_threads(fs, &jobs, 1, true, write_unsynced).and_then(|()| {
                barriers.iter().try_for_each(|(dir, barrier)| {
                    barrier.sync().map_err(|e| Error::io("sync the file system of", dir, e))
                })
            }),
            None => {
                let threads = (jobs.len() / FILES_PER_THREAD).clamp(1, MAX_SYNC_THREADS);
                on_threads(fs, &jobs, threads, threads > 1, write_synced)
            }
        };
        if let Err(e) = result {
            remove_temps(fs, &temps);
            return Err(e);
        }
        Ok(temps)
    }

    /// One barrier per file system the batch writes to, opened before any write
    /// (with a directory it covers, for messages); `None` when the [`Vfs`] has none
    /// for one of them, or one cannot be opened (a directory without read
    /// permission, no descriptor left): then each file is synced, which needs no
    /// descriptor on the directory.
    fn barriers(&self, fs: &dyn Vfs) -> Option<Vec<(PathBuf, Box<dyn VfsBarrier>)>> {
        let dirs: BTreeSet<PathBuf> = self.writes.iter().map(|(target, _)| parent(target)).collect();
        let mut barriers: Vec<(PathBuf, Box<dyn VfsBarrier>)> = Vec::new();
        for dir in dirs {
            match fs.barrier(&dir)? {
                Ok(barrier) => {
                    if !barriers.iter().any(|(_, b)| b.fs_id() == barrier.fs_id()) {
                        barriers.push((dir, barrier));
                    }
                }
                Err(e) => {
                    tracing::debug!(dir = %dir.display(), error = %e, "no file-system sync; syncing each file");
                    return None;
                }
            }
        }
        Some(barriers)
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

/// Runs `each` on every job: here when `spawn` is false, else on `threads` sync
/// threads at the flush's priority. A panicking `Vfs` becomes an error either way.
fn on_threads(
    fs: &dyn Vfs,
    jobs: &[(&PathBuf, &[u8])],
    threads: usize,
    spawn: bool,
    each: fn(&dyn Vfs, &Path, &[u8]) -> Result<()>,
) -> Result<()> {
    // For messages: the directory of the first file.
    let dir = jobs.first().map(|(temp, _)| parent(temp)).unwrap_or_default();
    let panicked = || Error::io("write temp file in", &dir, std::io::Error::other("sync thread panicked"));
    if !spawn {
        return std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            jobs.iter().try_for_each(|(temp, bytes)| each(fs, temp, bytes))
        }))
        .unwrap_or_else(|_| Err(panicked()));
    }
    let chunk = jobs.len().div_ceil(threads.max(1)).max(1);
    let nice = priority::worker_nice();
    std::thread::scope(|scope| {
        let mut result = Ok(());
        let mut handles = Vec::with_capacity(threads);
        for part in jobs.chunks(chunk) {
            let spawned = std::thread::Builder::new().name(SYNC_THREAD.to_owned()).spawn_scoped(scope, move || {
                priority::lower(nice);
                part.iter().try_for_each(|(temp, bytes)| each(fs, temp, bytes))
            });
            match spawned {
                Ok(handle) => handles.push(handle),
                Err(e) => {
                    result = Err(Error::io("start a sync thread to write in", &dir, e));
                    break;
                }
            }
        }
        for handle in handles {
            let outcome = handle.join().unwrap_or_else(|_| Err(panicked()));
            if result.is_ok() {
                result = outcome;
            }
        }
        result
    })
}

/// Creates and writes a temp file, and returns it open.
fn write_temp(fs: &dyn Vfs, temp: &Path, bytes: &[u8]) -> Result<Box<dyn crate::fs::VfsFile>> {
    let mut file = fs.create_new(temp).map_err(|e| Error::io("create temp file", temp, e))?;
    file.write_all(bytes).map_err(|e| Error::io("write temp file", temp, e))?;
    Ok(file)
}

/// Creates and writes a temp file; a [`VfsBarrier`] makes it durable.
fn write_unsynced(fs: &dyn Vfs, temp: &Path, bytes: &[u8]) -> Result<()> {
    write_temp(fs, temp, bytes).map(drop)
}

fn write_synced(fs: &dyn Vfs, temp: &Path, bytes: &[u8]) -> Result<()> {
    write_temp(fs, temp, bytes)?.sync_data().map_err(|e| Error::io("sync temp file", temp, e))
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

    /// A power cut at every operation of a batch large enough for the barrier:
    /// each file keeps its old or its new content, and all are new once `commit`
    /// returned `Ok`.
    #[test]
    fn a_power_cut_at_any_operation_of_a_barrier_batch_leaves_old_or_new_files() {
        use crate::fs::CrashFs;
        let dir = Path::new("/d");
        let files = BARRIER_FROM + 6;
        let path = |i: usize| dir.join(format!("f{i}"));
        let mut k = 0;
        loop {
            let fs = CrashFs::new();
            fs.create_dir_all(dir).unwrap();
            fs.sync_dir(Path::new("/")).unwrap();
            let mut old = WriteBatch::default();
            for i in 0..files {
                old.write(path(i), format!("old {i}").into_bytes());
            }
            old.commit(&fs, SyncMode::Batched).unwrap();
            let before = fs.sync_points();
            let mut new = WriteBatch::default();
            for i in 0..files {
                new.write(path(i), format!("new {i}").into_bytes());
            }
            fs.crash_after(k);
            let outcome = new.commit(&fs, SyncMode::Batched);
            let synced = fs.sync_points() - before;
            fs.crash();
            for i in 0..files {
                let content = String::from_utf8(fs.read(&path(i)).unwrap()).unwrap();
                let want = [format!("old {i}"), format!("new {i}")];
                assert!(want.contains(&content), "crash at op {k}: file {i} holds {content:?}");
                if outcome.is_ok() {
                    assert_eq!(content, want[1], "crash at op {k} after Ok: file {i}");
                }
            }
            if outcome.is_ok() {
                // One barrier sync and one directory sync, not one sync per file.
                assert_eq!(synced, 2, "syncs of a batch of {files} files");
                break;
            }
            k += 1;
            assert!(k < 10 * files as u64, "the batch never completed");
        }
    }

    #[test]
    fn a_batch_on_a_file_system_without_a_barrier_syncs_each_file_on_threads() {
        use crate::fs::CrashFs;
        let fs = CrashFs::new();
        fs.set_barrier(false);
        let dir = Path::new("/d");
        fs.create_dir_all(dir).unwrap();
        fs.sync_dir(Path::new("/")).unwrap();
        let mut batch = WriteBatch::default();
        for i in 0..200 {
            batch.write(dir.join(format!("f{i:03}")), vec![b'b'; i]);
        }
        let before = fs.sync_points();
        batch.commit(&fs, SyncMode::Batched).unwrap();
        assert_eq!(fs.sync_points() - before, 201, "a sync per file and one of the directory");
        fs.crash();
        for i in [0, 77, 199] {
            assert_eq!(fs.read(&dir.join(format!("f{i:03}"))).unwrap(), vec![b'b'; i], "file {i} after a crash");
        }
        assert_eq!(fs.read_dir(dir).unwrap().len(), 200, "no temp files left");
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
