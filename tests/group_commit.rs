//! Group commit: concurrent durable commits share WAL syncs, and every one of them is
//! durable when it returns.
//!
//! The WAL's `fdatasync` is made slow (a few milliseconds, through the file-system
//! seam) so that the grouping does not depend on how fast this machine's disk is:
//! while one sync runs, the other writers append and wait for the next one.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shelf::fs::{DirEntry, RealFs, Vfs, VfsAppend, VfsFile, VfsLock};
use shelf::{Entity, Store};

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[storage(per_record, wal)]
struct Event {
    #[id]
    id: u64,
    #[index]
    writer: u64,
}

/// The real file system, with WAL syncs that take `SYNC_DELAY` and are counted.
#[derive(Debug, Default, Clone)]
struct SlowSync {
    wal_syncs: Arc<AtomicU64>,
}

const SYNC_DELAY: Duration = Duration::from_millis(3);

struct SlowAppend {
    inner: Box<dyn VfsAppend>,
    wal_syncs: Arc<AtomicU64>,
}

impl VfsAppend for SlowAppend {
    fn append(&self, buf: &[u8]) -> io::Result<()> {
        self.inner.append(buf)
    }
    fn sync_data(&self) -> io::Result<()> {
        std::thread::sleep(SYNC_DELAY);
        self.wal_syncs.fetch_add(1, Ordering::SeqCst);
        self.inner.sync_data()
    }
    fn truncate(&self, len: u64) -> io::Result<()> {
        self.inner.truncate(len)
    }
}

impl Vfs for SlowSync {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        RealFs.read(path)
    }
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn VfsFile>> {
        RealFs.create_new(path)
    }
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn VfsAppend>> {
        Ok(Box::new(SlowAppend { inner: RealFs.open_append(path)?, wal_syncs: Arc::clone(&self.wal_syncs) }))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        RealFs.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        RealFs.remove_file(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        RealFs.sync_dir(path)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        RealFs.create_dir_all(path)
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        RealFs.read_dir(path)
    }
    fn try_lock(&self, path: &Path) -> io::Result<Box<dyn VfsLock>> {
        RealFs.try_lock(path)
    }
}

fn open(dir: &Path, fs: &SlowSync) -> Store {
    Store::builder(dir).register::<Event>().vfs(fs.clone()).flush_interval(Duration::from_secs(3600)).open().unwrap()
}

/// Runs `threads` writers of `per_thread` durable inserts each; returns the WAL
/// syncs they made and the store's directory.
fn run(threads: u64, per_thread: u64) -> (u64, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let fs = SlowSync::default();
    let store = open(dir.path(), &fs);
    let events = store.collection::<Event>().unwrap();
    let before = fs.wal_syncs.load(Ordering::SeqCst);
    std::thread::scope(|s| {
        for writer in 0..threads {
            let events = events.clone();
            s.spawn(move || {
                for i in 0..per_thread {
                    events.insert(Event { id: writer * 1_000 + i, writer }).unwrap();
                }
            });
        }
    });
    let syncs = fs.wal_syncs.load(Ordering::SeqCst) - before;
    // Every acknowledged commit is in the log: a reopen without a flush replays them.
    drop(events);
    std::mem::forget(store); // no final flush: the WAL alone must hold the commits
    (syncs, dir)
}

/// The number of events per writer in a store opened on `dir` (replaying its WAL).
fn counts(dir: &Path) -> Vec<usize> {
    let store = Store::builder(dir).register::<Event>().open().unwrap();
    let events = store.collection::<Event>().unwrap();
    (0..8).map(|w| events.count_by_writer(w)).collect()
}

#[test]
fn concurrent_commits_share_syncs() {
    let (syncs, _dir) = run(8, 25);
    assert!(syncs > 0);
    // 200 commits; while one 3 ms sync runs the other seven writers append, so a
    // sync covers several commits. Without group commit this would be 200.
    assert!(syncs <= 100, "{syncs} WAL syncs for 200 concurrent commits: no group commit");
}

#[test]
fn a_lone_writer_syncs_each_commit() {
    let (syncs, _dir) = run(1, 20);
    assert_eq!(syncs, 20, "each durable commit of a lone writer is its own sync");
}

#[test]
fn grouped_commits_are_all_durable() {
    let (_, dir) = run(8, 25);
    // The forgotten store still holds its directory lock: open a copy, as a
    // process restarted after a crash would find it (the LOCK file is harmless).
    let copy = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), copy.path());
    assert_eq!(counts(copy.path()), vec![25; 8]);
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
