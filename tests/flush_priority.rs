//! The threads a background flush starts to write and sync files run below the
//! writers' CPU priority (`StoreBuilder::flush_nice`, Linux): 10 nice steps lower by
//! default, the steps asked for otherwise (at most nice 19), and 0 keeps the
//! opener's priority. The flusher thread itself, the WAL sync thread of
//! `WalSync::Every`, the threads that write, and the sync threads of a flush the
//! application calls keep the opener's priority: the flusher takes the locks
//! writers take.
//!
//! One test, in a binary of its own: it tells the store's threads apart by name, so
//! no other store may run in this process meanwhile.

#![cfg(target_os = "linux")]

use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use shelf::fs::{DirEntry, RealFs, Vfs, VfsAppend, VfsBarrier, VfsFile, VfsLock};
use shelf::{Entity, Store, WalSync};

#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
#[storage(per_record, wal)]
struct Note {
    #[id]
    id: u32,
    text: String,
}

/// The name and nice value of the thread a `/proc/.../stat` line describes.
fn name_and_nice(stat: &str) -> (String, i32) {
    let name = stat[stat.find('(').unwrap() + 1..stat.rfind(')').unwrap()].to_owned();
    // The fields after the parenthesized command name; nice is field 19 of the
    // whole line, so the 17th after the name.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    (name, rest.split(' ').nth(16).unwrap().parse().unwrap())
}

/// The nice value of every thread of this process named `name`.
fn nice_of(name: &str) -> Vec<i32> {
    let mut found = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let Ok(stat) = std::fs::read_to_string(task.unwrap().path().join("stat")) else { continue };
        let (comm, nice) = name_and_nice(&stat);
        if comm == name {
            found.push(nice);
        }
    }
    found
}

/// The real file system, noting the name and nice value of each thread that
/// creates a temp file. With `barrier`, it passes on the real file system's
/// `Vfs::barrier` (where there is one, batches sync the file system once and are
/// written on one thread); without, batches sync each file on several threads.
#[derive(Clone, Debug, Default)]
struct NiceFs {
    creators: Arc<Mutex<Vec<(String, i32)>>>,
    barrier: bool,
}

impl Vfs for NiceFs {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        RealFs.read(path)
    }
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn VfsFile>> {
        if path.file_name().is_some_and(|n| n.to_string_lossy().starts_with(".shelf-tmp-")) {
            let stat = std::fs::read_to_string("/proc/thread-self/stat")?;
            self.creators.lock().unwrap().push(name_and_nice(&stat));
        }
        RealFs.create_new(path)
    }
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn VfsAppend>> {
        RealFs.open_append(path)
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
    fn barrier(&self, dir: &Path) -> Option<io::Result<Box<dyn VfsBarrier>>> {
        self.barrier.then(|| RealFs.barrier(dir)).flatten()
    }
}

/// The nice values of the sync threads that created temp files so far.
fn sync_nices(fs: &NiceFs) -> Vec<i32> {
    fs.creators.lock().unwrap().iter().filter(|(name, _)| name == "shelf-sync").map(|&(_, n)| n).collect()
}

/// Writes notes until a background flush has written temp files on sync threads
/// (deadline: 30 s); returns the nice values those threads had.
fn sync_thread_nices(store: &Store, fs: &NiceFs) -> Vec<i32> {
    let notes = store.collection::<Note>().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen = sync_nices(fs);
        if !seen.is_empty() {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "no background flush wrote on sync threads within 30 s: {:?}",
            store.health()
        );
        // Enough dirty records for a batch on several threads (32 files each).
        for id in 0..200 {
            notes.upsert(Note { id, text: format!("note {id}") }).unwrap();
        }
        // The pause between polls; the condition above, not the sleep, orders this.
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Aborts the test binary if the test runs longer than `limit`: a hang fails.
fn watchdog(limit: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        eprintln!("flush_priority: still running after {limit:?}; aborting");
        std::process::abort();
    });
}

#[test]
fn the_sync_threads_run_at_the_nice_value_asked_for_and_nothing_else_changes() {
    watchdog(Duration::from_secs(120));
    let me = std::fs::read_to_string("/proc/thread-self/comm").unwrap();
    let own = nice_of(me.trim_end());
    let (_, base) = name_and_nice(&std::fs::read_to_string("/proc/thread-self/stat").unwrap());
    let cases = [(None, shelf::DEFAULT_FLUSH_NICE), (Some(0), 0), (Some(3), 3), (Some(40), 19)];
    for (barrier, (asked, steps)) in [false, true].into_iter().flat_map(|b| cases.map(|c| (b, c))) {
        let expected = (base + steps).min(19);
        let dir = tempfile::tempdir().unwrap();
        let fs = NiceFs { barrier, ..NiceFs::default() };
        let mut b = Store::builder(dir.path())
            .register::<Note>()
            .vfs(fs.clone())
            .flush_interval(Duration::from_millis(10))
            .wal_sync(WalSync::Every(Duration::from_millis(10)));
        if let Some(nice) = asked {
            b = b.flush_nice(nice);
        }
        let store = b.open().unwrap();
        let seen = sync_thread_nices(&store, &fs);
        assert!(
            seen.iter().all(|&n| n == expected),
            "barrier {barrier}, flush_nice({asked:?}): sync threads at {seen:?}"
        );
        // The flusher, which takes the writers' locks, keeps the opener's priority;
        // so do the WAL sync thread under `WalSync::Every` and the opener.
        assert_eq!(nice_of("shelf-flusher"), [base], "flush_nice({asked:?})");
        assert_eq!(nice_of("shelf-wal-sync"), [base], "flush_nice({asked:?})");
        store.close().unwrap();
        drop(store);
    }
    a_flush_the_application_calls_syncs_at_the_callers_priority(base, false);
    a_flush_the_application_calls_syncs_at_the_callers_priority(base, true);
    let now = nice_of(me.trim_end());
    assert_eq!(own, now, "the test threads' priorities changed");
}

/// A flush the application calls runs its sync threads at the caller's priority.
fn a_flush_the_application_calls_syncs_at_the_callers_priority(base: i32, barrier: bool) {
    let dir = tempfile::tempdir().unwrap();
    let fs = NiceFs { barrier, ..NiceFs::default() };
    // No background flush during the test: the interval is an hour.
    let store = Store::builder(dir.path())
        .register::<Note>()
        .vfs(fs.clone())
        .flush_interval(Duration::from_secs(3600))
        .open()
        .unwrap();
    let notes = store.collection::<Note>().unwrap();
    for id in 0..200 {
        notes.upsert(Note { id, text: format!("note {id}") }).unwrap();
    }
    store.flush().unwrap();
    let seen = sync_nices(&fs);
    assert!(!seen.is_empty(), "a flush of 200 record files ran on no sync thread");
    assert!(seen.iter().all(|&n| n == base), "sync threads at {seen:?}, the caller at {base}");
    store.close().unwrap();
}
