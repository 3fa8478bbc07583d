//! Group commit: concurrent durable commits share WAL syncs, and every one of them is
//! durable when it returns.
//!
//! The WAL's `fdatasync` is made slow (a few milliseconds, through the file-system
//! seam) so that the grouping does not depend on how fast this machine's disk is:
//! while one sync runs, the other writers append and wait for the next one.
//!
//! The scheduling-free check of grouping holds the first commit's sync at a gate
//! while seven more commits append behind it: the protocol then covers all seven
//! with the next sync, whatever the scheduler does.
//!
//! Under `WalSync::Always` a group's records are written with one call, by the
//! sync that covers them; under `WalSync::Every` each record is written when it is
//! committed, so a crash of the process alone loses no acknowledged write.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shelf::fs::{DirEntry, RealFs, Vfs, VfsAppend, VfsFile, VfsLock};
use shelf::{Entity, Store, WalSync};

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[storage(per_record, wal)]
struct Event {
    #[id]
    id: u64,
    #[index]
    writer: u64,
}

/// A collection without `wal`, beside the logged one.
#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Tally {
    #[id]
    id: u64,
}

/// The real file system, with WAL syncs that take `SYNC_DELAY`; WAL syncs and
/// appends are counted. Once the gate is armed, the next WAL sync waits at it.
#[derive(Debug, Default, Clone)]
struct SlowSync {
    wal_syncs: Arc<AtomicU64>,
    wal_appends: Arc<AtomicU64>,
    gate: Arc<SyncGate>,
}

/// Holds one WAL sync until released.
#[derive(Debug, Default)]
struct SyncGate {
    armed: AtomicBool,
    /// (a sync is parked, released)
    state: Mutex<(bool, bool)>,
    changed: Condvar,
}

/// How long a gated test waits for something that should happen at once.
const DEADLINE: Duration = Duration::from_secs(20);

impl SyncGate {
    fn arm(&self) {
        *self.state.lock().unwrap() = (false, false);
        self.armed.store(true, Ordering::SeqCst);
    }
    fn pass(&self) {
        if !self.armed.swap(false, Ordering::SeqCst) {
            return;
        }
        let mut state = self.state.lock().unwrap();
        state.0 = true;
        self.changed.notify_all();
        while !state.1 {
            state = self.changed.wait(state).unwrap();
        }
    }
    fn wait_parked(&self) -> bool {
        let state = self.state.lock().unwrap();
        let (state, _) = self.changed.wait_timeout_while(state, DEADLINE, |s| !s.0).unwrap();
        state.0
    }
    fn release(&self) {
        self.armed.store(false, Ordering::SeqCst);
        self.state.lock().unwrap().1 = true;
        self.changed.notify_all();
    }
}

/// Releases the gate when dropped, so that a failed assertion does not leave a
/// writer parked forever (the test would hang instead of failing).
struct ReleaseOnDrop<'a>(&'a SyncGate);

impl Drop for ReleaseOnDrop<'_> {
    fn drop(&mut self) {
        self.0.release();
    }
}

const SYNC_DELAY: Duration = Duration::from_millis(3);

struct SlowAppend {
    inner: Box<dyn VfsAppend>,
    wal_syncs: Arc<AtomicU64>,
    wal_appends: Arc<AtomicU64>,
    gate: Arc<SyncGate>,
}

impl VfsAppend for SlowAppend {
    fn append(&self, buf: &[u8]) -> io::Result<()> {
        self.wal_appends.fetch_add(1, Ordering::SeqCst);
        self.inner.append(buf)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.gate.pass();
        // Simulates a slow disk; orders nothing (the gated test does not rely on it).
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
        Ok(Box::new(SlowAppend {
            inner: RealFs.open_append(path)?,
            wal_syncs: Arc::clone(&self.wal_syncs),
            wal_appends: Arc::clone(&self.wal_appends),
            gate: Arc::clone(&self.gate),
        }))
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

fn open(dir: &Path, fs: &SlowSync, sync: WalSync) -> Store {
    Store::builder(dir)
        .register::<Event>()
        .vfs(fs.clone())
        .wal_sync(sync)
        .flush_interval(Duration::from_secs(3600))
        .open()
        .unwrap()
}

/// What a run of concurrent writers did to the WAL.
struct Run {
    syncs: u64,
    appends: u64,
    dir: tempfile::TempDir,
}

/// Runs `threads` writers of `per_thread` inserts each, under `sync`; returns the
/// WAL syncs and appends they made and the store's directory. The store is not
/// closed: the directory holds what a crash of the process would leave.
fn run(threads: u64, per_thread: u64, sync: WalSync) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let fs = SlowSync::default();
    let store = open(dir.path(), &fs, sync);
    let events = store.collection::<Event>().unwrap();
    let syncs_before = fs.wal_syncs.load(Ordering::SeqCst);
    let appends_before = fs.wal_appends.load(Ordering::SeqCst);
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
    let syncs = fs.wal_syncs.load(Ordering::SeqCst) - syncs_before;
    let appends = fs.wal_appends.load(Ordering::SeqCst) - appends_before;
    // Every acknowledged commit is in the log: a reopen without a flush replays them.
    drop(events);
    std::mem::forget(store); // no final flush: the WAL alone must hold the commits
    Run { syncs, appends, dir }
}

/// The number of events per writer in a store opened on `dir` (replaying its WAL).
fn counts(dir: &tempfile::TempDir) -> Vec<usize> {
    let store = Store::builder(dir.path()).register::<Event>().open().unwrap();
    let events = store.collection::<Event>().unwrap();
    (0..8).map(|w| events.count_by_writer(w)).collect()
}

#[test]
fn concurrent_commits_share_syncs() {
    let run = run(8, 25, WalSync::Always);
    assert!(run.syncs > 0);
    // 200 commits: how many share a sync depends on the scheduler, but no commit
    // needs more than one sync (the scheduling-free check of grouping is
    // `commits_queued_behind_a_sync_share_the_next_one`).
    assert!(run.syncs <= 200, "{} WAL syncs for 200 commits", run.syncs);
    // Each sync wrote its group's records with one call.
    assert!(run.appends <= run.syncs, "{} WAL appends for {} syncs", run.appends, run.syncs);
}

/// The first commit's sync is held at a gate until seven more commits have
/// appended their records behind it (the WAL's record count says so). The next
/// sync takes every record appended so far, so eight commits take exactly two
/// syncs, each one write. Without group commit they would take eight.
#[test]
fn commits_queued_behind_a_sync_share_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let fs = SlowSync::default();
    let store = open(dir.path(), &fs, WalSync::Always);
    let events = store.collection::<Event>().unwrap();
    let wal_records = || store.stats().wal.expect("a WAL").records;
    let records_before = wal_records();
    let syncs_before = fs.wal_syncs.load(Ordering::SeqCst);
    let appends_before = fs.wal_appends.load(Ordering::SeqCst);
    fs.gate.arm();
    std::thread::scope(|s| {
        let _release = ReleaseOnDrop(&fs.gate);
        let events = &events;
        let first = s.spawn(move || events.insert(Event { id: 0, writer: 0 }).unwrap());
        assert!(fs.gate.wait_parked(), "the first commit's sync never started");
        for writer in 1..8 {
            s.spawn(move || events.insert(Event { id: writer * 1_000, writer }).unwrap());
        }
        let deadline = std::time::Instant::now() + DEADLINE;
        while wal_records() < records_before + 8 {
            assert!(std::time::Instant::now() < deadline, "the seven commits never appended behind the held sync");
            std::thread::yield_now();
        }
        assert!(!first.is_finished(), "the first commit returned before its sync");
        fs.gate.release();
    });
    assert_eq!(events.len(), 8);
    let syncs = fs.wal_syncs.load(Ordering::SeqCst) - syncs_before;
    let appends = fs.wal_appends.load(Ordering::SeqCst) - appends_before;
    assert_eq!(syncs, 2, "8 commits, 7 of them queued behind one sync: the next sync covers all 7");
    assert_eq!(appends, 2, "each sync writes its group with one call");
    drop(events);
    std::mem::forget(store); // the WAL alone must hold the commits
    let copy = crash_copy(&Run { syncs, appends, dir });
    assert_eq!(counts(&copy), vec![1; 8]);
}

#[test]
fn a_lone_writer_syncs_each_commit() {
    let run = run(1, 20, WalSync::Always);
    assert_eq!(run.syncs, 20, "each durable commit of a lone writer is its own sync");
    assert_eq!(run.appends, 20);
}

#[test]
fn grouped_commits_are_all_durable() {
    let run = run(8, 25, WalSync::Always);
    assert_eq!(counts(&crash_copy(&run)), vec![25; 8]);
}

#[test]
fn background_syncs_write_each_commit_at_once() {
    // A sync interval of an hour: no sync runs during the test, yet every
    // acknowledged commit is in the segment file, where a crash of the process alone
    // cannot lose it.
    let run = run(8, 25, WalSync::Every(Duration::from_secs(3600)));
    assert_eq!(run.syncs, 0);
    assert_eq!(run.appends, 200);
    assert_eq!(counts(&crash_copy(&run)), vec![25; 8]);
}

/// A copy of a run's directory, as a process restarted after a crash would find it.
/// (The forgotten store still holds its directory lock; the copied LOCK file is
/// harmless.)
fn crash_copy(run: &Run) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    copy_dir(run.dir.path(), copy.path());
    copy
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

/// Only a commit to a `wal` collection waits for a WAL sync (README, "When a method
/// blocks"): a write to a collection without `wal` in the same store returns while
/// a sync is held at the gate.
#[test]
fn a_write_without_wal_does_not_wait_for_a_wal_sync() {
    let dir = tempfile::tempdir().unwrap();
    let fs = SlowSync::default();
    let store = Store::builder(dir.path())
        .register::<Event>()
        .register::<Tally>()
        .vfs(fs.clone())
        .flush_interval(Duration::from_secs(3600))
        .open()
        .unwrap();
    let events = store.collection::<Event>().unwrap();
    let tallies = store.collection::<Tally>().unwrap();
    fs.gate.arm();
    std::thread::scope(|s| {
        let _release = ReleaseOnDrop(&fs.gate);
        let events = &events;
        let first = s.spawn(move || events.insert(Event { id: 0, writer: 0 }).unwrap());
        assert!(fs.gate.wait_parked(), "the logged commit's sync never started");
        let (tx, rx) = std::sync::mpsc::channel();
        let tallies = &tallies;
        s.spawn(move || tx.send(tallies.insert(Tally { id: 1 }).map(|_| ())));
        let outcome = rx.recv_timeout(DEADLINE).expect("a write without wal waited for the held WAL sync");
        outcome.unwrap();
        assert!(!first.is_finished(), "the logged commit returned before its sync");
        fs.gate.release();
    });
    assert!(tallies.contains(&1));
}
