//! `WalSync::Every(d)`: "a crash loses at most the commits of the last `d`" (plus
//! the sync that covers them). With a short `d` and a background flusher that never
//! runs, a committed record must reach a crash image of the directory within a
//! deadline of `d` plus a generous bound.
//!
//! The crash image is what a power cut would leave, not what the page cache shows:
//! the directory is copied with `std::fs`, and every file the store appends to (the
//! WAL segments) is cut to the length its last `sync_data` covered. A record written
//! to a segment but never synced is therefore not in the image (the control test
//! shows it: with `d` = one hour the record never gets there).
//!
//! The deadline is a bound, never a timing assertion on speed: the test polls and
//! passes as soon as the image holds the records.

mod common_wal;

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use shelf::fs::{DirEntry, RealFs, Vfs, VfsAppend, VfsFile, VfsLock};
use shelf::{Entity, Store, WalSync};

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[storage(per_record, wal)]
struct Event {
    #[id]
    id: u64,
    body: String,
}

fn event(id: u64) -> Event {
    Event { id, body: format!("event {id}") }
}

/// Per appended file: (bytes written so far, bytes the last sync covered).
type Lengths = Arc<Mutex<HashMap<PathBuf, (u64, u64)>>>;

/// The real file system, keeping track of how much of each appended file is synced.
#[derive(Debug, Default, Clone)]
struct SyncTracking {
    lengths: Lengths,
}

struct TrackedAppend {
    inner: Box<dyn VfsAppend>,
    path: PathBuf,
    lengths: Lengths,
}

impl VfsAppend for TrackedAppend {
    fn append(&self, buf: &[u8]) -> io::Result<()> {
        let result = self.inner.append(buf);
        if result.is_ok() {
            self.lengths.lock().unwrap().get_mut(&self.path).unwrap().0 += buf.len() as u64;
        }
        result
    }
    fn sync_data(&self) -> io::Result<()> {
        // The length is read before the sync: what is appended during it may not be
        // covered.
        let written = self.lengths.lock().unwrap()[&self.path].0;
        self.inner.sync_data()?;
        let mut lengths = self.lengths.lock().unwrap();
        let entry = lengths.get_mut(&self.path).unwrap();
        entry.1 = entry.1.max(written.min(entry.0));
        Ok(())
    }
    fn truncate(&self, len: u64) -> io::Result<()> {
        self.inner.truncate(len)?;
        let mut lengths = self.lengths.lock().unwrap();
        let entry = lengths.get_mut(&self.path).unwrap();
        entry.0 = len;
        entry.1 = entry.1.min(len);
        Ok(())
    }
}

impl Vfs for SyncTracking {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        RealFs.read(path)
    }
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn VfsFile>> {
        RealFs.create_new(path)
    }
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn VfsAppend>> {
        let inner = RealFs.open_append(path)?;
        // What the file held before this handle is taken as durable.
        let existing = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        self.lengths.lock().unwrap().insert(path.to_path_buf(), (existing, existing));
        Ok(Box::new(TrackedAppend { inner, path: path.to_path_buf(), lengths: Arc::clone(&self.lengths) }))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        RealFs.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.lengths.lock().unwrap().remove(path);
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

impl SyncTracking {
    /// A crash image of `dir` in `to`: a copy with every appended file cut to its
    /// synced length.
    fn crash_image(&self, dir: &Path, to: &Path) {
        let lengths = self.lengths.lock().unwrap().clone();
        common_wal::copy_dir(dir, to);
        for (path, (_, synced)) in lengths {
            let copy = to.join(path.strip_prefix(dir).unwrap());
            if let Ok(file) = std::fs::OpenOptions::new().write(true).open(&copy) {
                if file.metadata().unwrap().len() > synced {
                    file.set_len(synced).unwrap();
                }
            }
        }
    }
}

/// The ids of the events in a crash image of `dir`.
fn ids_after_crash(fs: &SyncTracking, dir: &Path) -> Vec<u64> {
    let image = tempfile::tempdir().unwrap();
    fs.crash_image(dir, image.path());
    // The copied LOCK file is not held by anyone: the image opens.
    let store = Store::builder(image.path()).register::<Event>().open().unwrap();
    let mut ids: Vec<u64> = store.collection::<Event>().unwrap().iter().map(|e| e.id).collect();
    ids.sort();
    store.close().unwrap();
    ids
}

/// Opens a store on `dir` with `WalSync::Every(d)` and a background flusher that
/// never runs during the test (only the WAL carries the writes), and commits five
/// events.
fn write_events(dir: &Path, fs: &SyncTracking, d: Duration) -> Store {
    let store = Store::builder(dir)
        .register::<Event>()
        .vfs(fs.clone())
        .wal_sync(WalSync::Every(d))
        .flush_interval(Duration::from_secs(3600))
        .open()
        .unwrap();
    let events = store.collection::<Event>().unwrap();
    for id in 1..=5 {
        events.insert(event(id)).unwrap();
    }
    store
}

/// A bound on the time the background sync may take to get to the writes: far
/// above `d` plus one sync on any machine, so only a missing sync reaches it.
const DEADLINE: Duration = Duration::from_secs(10);

#[test]
fn with_wal_sync_every_d_a_crash_loses_at_most_d() {
    let dir = tempfile::tempdir().unwrap();
    let fs = SyncTracking::default();
    let d = Duration::from_millis(50);
    let store = write_events(dir.path(), &fs, d);
    let written = Instant::now();
    loop {
        let ids = ids_after_crash(&fs, dir.path());
        if ids == [1, 2, 3, 4, 5] {
            break;
        }
        assert!(
            written.elapsed() < d + DEADLINE,
            "{:?} after the commits (d = {d:?}) a crash image holds only {ids:?}",
            written.elapsed()
        );
        std::thread::sleep(d / 5); // the pause between polls; it orders nothing
    }
    // Nothing was flushed: the records came back from the WAL.
    assert!(
        !dir.path().join("event").join("1.json").exists(),
        "a flush wrote the records; the test did not exercise the WAL"
    );
    drop(store);
}

/// The control: with `d` = one hour no background sync runs during the test, and
/// the crash image holds none of the committed events (the image does not see the
/// page cache). Without it, the test above could pass with no sync at all.
#[test]
fn without_a_sync_the_crash_image_loses_the_commits() {
    let dir = tempfile::tempdir().unwrap();
    let fs = SyncTracking::default();
    let store = write_events(dir.path(), &fs, Duration::from_secs(3600));
    assert_eq!(ids_after_crash(&fs, dir.path()), Vec::<u64>::new());
    // The records are in the segment's live content all the same.
    let live = tempfile::tempdir().unwrap();
    common_wal::copy_dir(dir.path(), live.path());
    let reopened = Store::builder(live.path()).register::<Event>().open().unwrap();
    assert_eq!(reopened.collection::<Event>().unwrap().len(), 5, "the live copy holds the commits");
    drop(reopened);
    std::mem::forget(store); // no flush at drop: nothing may reach the disk by a sync
}

/// Under `Every(d)` a commit is acknowledged before its sync, and so is its event
/// (only `Always` publishes after durability, see `shelf::watch`): a subscriber
/// gets it with the commit, not after the next background sync.
#[test]
fn under_every_d_a_commits_event_is_published_before_its_sync() {
    let dir = tempfile::tempdir().unwrap();
    let fs = SyncTracking::default();
    let store = Store::builder(dir.path())
        .register::<Event>()
        .vfs(fs.clone())
        .wal_sync(WalSync::Every(Duration::from_secs(3600)))
        .flush_interval(Duration::from_secs(3600))
        .open()
        .unwrap();
    let events = store.collection::<Event>().unwrap();
    let watch = events.watch();
    events.insert(event(1)).unwrap();
    let published = watch.try_recv().expect("the event is published with the commit");
    assert_eq!(published.record().id, 1);
    assert_eq!(ids_after_crash(&fs, dir.path()), Vec::<u64>::new(), "no sync ran before the event");
    std::mem::forget(store); // no flush at drop
}
