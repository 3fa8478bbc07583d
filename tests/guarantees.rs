//! One test per bullet of the README's Guarantees section, named after the bullet,
//! each through the public API only. Every test was checked to fail when the code
//! behind its bullet is broken (the report of issue 21 says how). The deeper suites
//! behind each bullet are named in the test's doc comment.

mod common;
mod common_wal;

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use common::{builder, open, read_record, record_path, user, wait_until, GateFs, User, DEADLINE, NEVER};
use serde::{Deserialize, Serialize};
use shelf::fs::{CrashFs, DirEntry, FaultFs, FaultKind, Vfs, VfsAppend, VfsFile, VfsLock};
use shelf::{Entity, Error, Store};

/// Runs `body` on its own thread; fails (instead of hanging) if it does not return
/// within [`DEADLINE`].
fn watchdog<R: Send + 'static>(what: &str, body: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(body());
    });
    rx.recv_timeout(DEADLINE).unwrap_or_else(|_| panic!("{what}: no answer within {DEADLINE:?} (a deadlock?)"))
}

// ---------------------------------------------------------------------------------
// Bullet 1: without `wal`

/// A record of a collection without `wal`.
#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[storage(per_record)]
struct Plain {
    #[id]
    id: String,
    version: u64,
    /// Long enough that a torn file would not parse.
    text: String,
}

fn plain(id: &str, version: u64) -> Plain {
    Plain { id: id.to_owned(), version, text: format!("{id} at version {version} ").repeat(40) }
}

fn open_crash(fs: &Arc<CrashFs>) -> shelf::Result<Store> {
    Store::builder("/data")
        .register::<Plain>()
        .register::<Logged>()
        .register::<Receipt>()
        .vfs(Arc::clone(fs))
        .flush_interval(NEVER)
        .open()
}

fn plain_records(store: &Store) -> BTreeMap<String, Plain> {
    store.collection::<Plain>().unwrap().iter().map(|r| (r.id.clone(), Plain::clone(&r))).collect()
}

/// "Without `wal`, a crash loses at most the writes since the last completed flush,
/// and never leaves a torn file." A flush of two updated records is cut by power
/// loss after each of its file operations in turn: the reopened store always opens
/// (no torn file), holds every record at its flushed or its new version (nothing
/// older, nothing invented), and after a flush that returned `Ok`, the new versions.
/// Deeper: `tests/power_loss_flush.rs`, `tests/storage_power_loss.rs`, `tests/kill.rs`.
#[test]
fn without_wal_a_crash_loses_at_most_the_writes_since_the_last_completed_flush_and_never_tears_a_file() {
    let (mut interrupted, mut completed) = (0, 0);
    for k in 0.. {
        assert!(k < 1000, "the flush never completed");
        let fs = CrashFs::new();
        let store = open_crash(&fs).unwrap();
        let plains = store.collection::<Plain>().unwrap();
        plains.insert(plain("a", 1)).unwrap();
        plains.insert(plain("b", 1)).unwrap();
        store.flush().unwrap();
        plains.update(&"a".to_string(), |p| *p = plain("a", 2)).unwrap();
        plains.update(&"b".to_string(), |p| *p = plain("b", 2)).unwrap();
        plains.insert(plain("c", 2)).unwrap();

        fs.crash_after(k);
        let flushed = store.flush();
        let died = fs.is_dead();
        drop(plains);
        std::mem::forget(store); // power loss: no close, no last flush
        fs.crash();

        let store = open_crash(&fs).unwrap_or_else(|e| panic!("crash point {k}: open failed (a torn file?): {e}"));
        let found = plain_records(&store);
        for id in ["a", "b"] {
            let v = found.get(id).unwrap_or_else(|| panic!("crash point {k}: flushed record {id} is missing"));
            assert!(
                *v == plain(id, 1) || *v == plain(id, 2),
                "crash point {k}: {id} is neither its flushed nor its new version: {v:?}"
            );
        }
        if let Some(c) = found.get("c") {
            assert_eq!(*c, plain("c", 2), "crash point {k}");
        }
        if flushed.is_ok() && !died {
            let new: BTreeMap<String, Plain> = ["a", "b", "c"].map(|id| (id.to_owned(), plain(id, 2))).into();
            assert_eq!(found, new, "crash point {k}: a flush returned Ok");
            completed += 1;
            break;
        }
        interrupted += 1;
    }
    assert!(interrupted > 3 && completed == 1, "the flush was cut {interrupted} times");

    // A write after the last flush is all a crash loses.
    let fs = CrashFs::new();
    let store = open_crash(&fs).unwrap();
    store.collection::<Plain>().unwrap().insert(plain("a", 1)).unwrap();
    store.flush().unwrap();
    store.collection::<Plain>().unwrap().insert(plain("late", 1)).unwrap();
    std::mem::forget(store);
    fs.crash();
    let store = open_crash(&fs).unwrap();
    assert_eq!(plain_records(&store).get("a"), Some(&plain("a", 1)));
}

// ---------------------------------------------------------------------------------
// Bullet 2: with `wal`

/// A `wal` collection.
#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[storage(per_record, wal)]
struct Logged {
    #[id]
    id: String,
    n: u64,
}

/// A collection without `wal`, written in transactions with [`Logged`].
#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[storage(per_record)]
struct Receipt {
    #[id]
    id: String,
    n: u64,
}

/// "With `wal`, a write or transaction that returned `Ok` survives a crash or power
/// loss. A transaction touching a `wal` collection is one WAL record, holding its
/// writes to every persisted collection: after a crash, all or nothing." Power is
/// cut after each file operation of a transaction writing a `wal` and a plain
/// collection, in turn, with no flush. Group commit and `WalSync::Every(d)` are
/// pinned by `tests/group_commit.rs` and `tests/wal_every.rs`; deeper:
/// `tests/power_loss_wal.rs`, `tests/transfers.rs`, `tests/kill.rs`.
#[test]
fn with_wal_an_acknowledged_write_survives_a_crash_and_a_transaction_is_all_or_nothing() {
    let (mut none, mut all) = (0, 0);
    for k in 0.. {
        assert!(k < 1000, "the transaction never committed");
        let fs = CrashFs::new();
        let store = open_crash(&fs).unwrap();
        store.collection::<Logged>().unwrap().insert(Logged { id: "first".into(), n: 1 }).unwrap();
        fs.crash_after(k);
        let committed = store.transaction(|tx| {
            tx.insert(Logged { id: "x".into(), n: 2 })?;
            tx.insert(Receipt { id: "x".into(), n: 2 })?;
            Ok::<_, Error>(())
        });
        let died = fs.is_dead();
        std::mem::forget(store);
        fs.crash();

        let store = open_crash(&fs).unwrap_or_else(|e| panic!("crash point {k}: open failed: {e}"));
        let logged = store.collection::<Logged>().unwrap();
        let receipts = store.collection::<Receipt>().unwrap();
        assert_eq!(logged.get("first").map(|r| r.n), Some(1), "crash point {k}: an acknowledged write is lost");
        let (l, r) = (logged.get("x"), receipts.get("x"));
        assert_eq!(l.is_some(), r.is_some(), "crash point {k}: half a transaction survived: {l:?} / {r:?}");
        if committed.is_ok() {
            assert!(l.is_some(), "crash point {k}: a transaction that returned Ok is lost");
        }
        if l.is_some() {
            all += 1;
        } else {
            none += 1;
        }
        if committed.is_ok() && !died {
            break;
        }
    }
    assert!(none > 0 && all > 0, "every crash point gave the same outcome: {none} none, {all} all");
}

// ---------------------------------------------------------------------------------
// Bullet 3: acknowledged means loadable

/// Floats, a nested JSON value and a map whose keys are not strings.
#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
#[storage(per_record)]
struct Measure {
    #[id]
    id: String,
    x: f64,
    v: serde_json::Value,
    m: BTreeMap<(u8, u8), u8>,
    /// Loads back lowercased: a value that deserializes to a different value.
    #[serde(deserialize_with = "lowercase")]
    s: String,
}

fn lowercase<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    String::deserialize(d).map(|s| s.to_lowercase())
}

fn measure(id: &str, x: f64) -> Measure {
    Measure { id: id.into(), x, v: serde_json::Value::Null, m: BTreeMap::new(), s: "low".into() }
}

fn nested(depth: usize) -> serde_json::Value {
    (0..depth).fold(serde_json::Value::Null, |v, _| serde_json::Value::Array(vec![v]))
}

/// "Acknowledged means loadable, exactly": floats come back bit for bit after a
/// flush and reopen; NaN, infinity, JSON nested deeper than 128 levels and a map
/// whose keys are not strings are refused with `Error::Unloadable` or
/// `Error::Serde` naming the collection and id, and so is a value that would load
/// back as another value; nothing else changes and the next
/// flush succeeds. Deeper: `tests/roundtrip.rs` (every layout, property test).
#[test]
fn acknowledged_means_loadable_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let build = || Store::builder(dir.path()).register::<Measure>().flush_interval(NEVER);
    let floats = [0.1 + 0.2, 1e-310, 5e-324, -0.0, f64::MAX, f64::MIN_POSITIVE, 1.0 / 3.0, 123_456_789.125];
    let store = build().open().unwrap();
    let measures = store.collection::<Measure>().unwrap();
    for (i, x) in floats.iter().enumerate() {
        measures.insert(measure(&format!("f{i}"), *x)).unwrap();
    }
    measures.insert(measure("kept", 1.5)).unwrap();
    let refused = [
        measure("kept", f64::NAN),
        measure("kept", f64::INFINITY),
        Measure { v: nested(200), ..measure("kept", 2.0) },
        Measure { m: BTreeMap::from([((1, 2), 3)]), ..measure("kept", 2.0) },
        Measure { s: "Upper".into(), ..measure("kept", 2.0) },
    ];
    for bad in refused {
        let what = format!("{bad:?}").chars().take(80).collect::<String>();
        match measures.upsert(bad) {
            Err(Error::Unloadable { collection, id, .. }) | Err(Error::Serde { collection, id, .. }) => {
                assert_eq!((collection.as_str(), id.as_str()), ("measure", "kept"), "{what}");
            }
            other => panic!("{what}: expected Unloadable or Serde, got {other:?}"),
        }
        assert_eq!(measures.get("kept").map(|m| m.x.to_bits()), Some(1.5f64.to_bits()), "{what}");
    }
    store.flush().unwrap();
    store.close().unwrap();
    drop((measures, store));

    let store = build().open().unwrap();
    let measures = store.collection::<Measure>().unwrap();
    for (i, x) in floats.iter().enumerate() {
        let got = measures.get(&format!("f{i}")).unwrap().x;
        assert_eq!(got.to_bits(), x.to_bits(), "f{i}: {x:e} came back as {got:e}");
    }
    assert_eq!(measures.get("kept").unwrap().x.to_bits(), 1.5f64.to_bits());
}

// ---------------------------------------------------------------------------------
// Bullet 4: writers never wait for the disk

/// A file system that parks the first operation of the armed kind until released:
/// a flush held in its I/O phase. `Create` parks a flush's first temp file (its
/// values are read by then); `Sync` parks the WAL sync a flush makes before it reads
/// its snapshot's values (with `WalSync::Every`, the log is not synced yet).
#[derive(Clone, Debug, Default)]
struct ParkFs {
    faults: Arc<FaultFs>,
    park: Arc<Park>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
enum Point {
    #[default]
    Off,
    Create,
    Sync,
}

#[derive(Debug, Default)]
struct Park {
    armed: Mutex<Point>,
    /// (parked, released)
    state: Mutex<(bool, bool)>,
    changed: Condvar,
}

impl Park {
    fn arm(&self, point: Point) {
        *self.armed.lock().unwrap() = point;
    }
    /// Parks the calling thread if the gate is armed at `point` (once).
    fn pass(&self, point: Point) {
        {
            let mut armed = self.armed.lock().unwrap();
            if *armed != point {
                return;
            }
            *armed = Point::Off;
        }
        let mut state = self.state.lock().unwrap();
        state.0 = true;
        self.changed.notify_all();
        let _state = self.changed.wait_while(state, |s| !s.1).unwrap();
    }
    fn wait_parked(&self) -> bool {
        let state = self.state.lock().unwrap();
        self.changed.wait_timeout_while(state, DEADLINE, |s| !s.0).unwrap().0 .0
    }
    fn release(&self) {
        self.arm(Point::Off);
        self.state.lock().unwrap().1 = true;
        self.changed.notify_all();
    }
}

/// A WAL segment whose syncs pass the park first.
struct ParkAppend {
    inner: Box<dyn VfsAppend>,
    park: Arc<Park>,
}

impl VfsAppend for ParkAppend {
    fn append(&self, buf: &[u8]) -> io::Result<()> {
        self.inner.append(buf)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.park.pass(Point::Sync);
        self.inner.sync_data()
    }
    fn truncate(&self, len: u64) -> io::Result<()> {
        self.inner.truncate(len)
    }
}

impl Vfs for ParkFs {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.faults.read(path)
    }
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn VfsFile>> {
        self.park.pass(Point::Create);
        self.faults.create_new(path)
    }
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn VfsAppend>> {
        let inner = self.faults.open_append(path)?;
        Ok(Box::new(ParkAppend { inner, park: Arc::clone(&self.park) }))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.faults.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.faults.remove_file(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.faults.sync_dir(path)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.faults.create_dir_all(path)
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        self.faults.read_dir(path)
    }
    fn try_lock(&self, path: &Path) -> io::Result<Box<dyn VfsLock>> {
        self.faults.try_lock(path)
    }
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Owner {
    #[id]
    id: String,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[storage(per_record, wal)]
struct Bookmark {
    #[id]
    id: String,
    #[belongs_to(Owner, on_delete = cascade)]
    owner_id: String,
}

/// The owner is acknowledged without touching the disk; its bookmark's commit is
/// durable. A crash right after must not leave the bookmark without its owner, and a
/// removed owner must not come back. Deeper: `tests/orphans.rs` (a SIGKILL loop).
#[test]
fn no_child_outlives_its_parent_after_a_crash() {
    let live = tempfile::tempdir().unwrap();
    let open = |dir: &Path| {
        Store::builder(dir)
            .register::<Owner>()
            .register::<Bookmark>()
            .flush_interval(Duration::from_secs(3600))
            .open()
            .unwrap()
    };
    let store = open(live.path());
    let (owners, bookmarks) = (store.collection::<Owner>().unwrap(), store.collection::<Bookmark>().unwrap());
    owners.insert(Owner { id: "ada".into() }).unwrap();
    bookmarks.insert(Bookmark { id: "b1".into(), owner_id: "ada".into() }).unwrap();
    owners.insert(Owner { id: "bob".into() }).unwrap();
    bookmarks.insert(Bookmark { id: "b2".into(), owner_id: "bob".into() }).unwrap();
    owners.remove("bob").unwrap();
    bookmarks.insert(Bookmark { id: "b3".into(), owner_id: "ada".into() }).unwrap();
    let image = tempfile::tempdir().unwrap();
    common_wal::copy_dir(live.path(), image.path());
    let crashed = open(image.path());
    let (owners, bookmarks) = (crashed.collection::<Owner>().unwrap(), crashed.collection::<Bookmark>().unwrap());
    assert!(owners.contains("ada"), "a bookmark outlived its owner");
    assert!(bookmarks.contains("b1") && bookmarks.contains("b3"), "an acknowledged bookmark is lost");
    assert!(!owners.contains("bob") && !bookmarks.contains("b2"), "a removed owner or its bookmark came back");
}

/// "Writers never wait for the disk": with a flush held at its first file
/// creation (after its snapshot), updates, inserts and removes of the records it is
/// writing return (under a watchdog), and the flush writes the snapshot's values,
/// not the newer ones. Deeper: `tests/write_during_flush.rs`, `tests/engine_v2.rs`.
#[test]
fn writers_never_wait_for_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let fs = ParkFs::default();
    let park = Arc::clone(&fs.park);
    let store = builder(dir.path()).vfs(fs).open().unwrap();
    let users = store.collection::<User>().unwrap();
    let names = ["ada", "bob", "cy", "dee"];
    for name in names {
        users.insert(user(name, name, 1)).unwrap();
    }

    park.arm(Point::Create);
    let flush = {
        let store = store.clone();
        std::thread::spawn(move || store.flush())
    };
    assert!(park.wait_parked(), "the flush never created a file");
    let writes = {
        let store = store.clone();
        watchdog("writes during a parked flush", move || {
            let users = store.collection::<User>().unwrap();
            for name in ["ada", "bob", "cy"] {
                users.update(&name.to_string(), |u| u.age = 2)?;
            }
            users.remove(&"dee".to_string())?;
            users.insert(user("eve", "eve", 2))?;
            Ok::<_, Error>(())
        })
    };
    park.release();
    writes.unwrap();
    let flushed = flush.join().unwrap().unwrap();
    assert_eq!(flushed.records, names.len(), "the flush wrote its snapshot: {flushed:?}");
    for name in names {
        assert_eq!(
            read_record::<User>(&record_path(dir.path(), "user", name)),
            Some(user(name, name, 1)),
            "{name}: the flush did not write its snapshot's value"
        );
    }
    assert!(!record_path(dir.path(), "user", "eve").exists());
    assert_eq!(users.dirty_count(), 5, "the writes during the flush stay dirty");
    store.flush().unwrap();
    assert_eq!(read_record::<User>(&record_path(dir.path(), "user", "ada")), Some(user("ada", "ada", 2)));
    assert!(!record_path(dir.path(), "user", "dee").exists());
}

/// The second half of "Writers never wait for the disk": "A write during the flush
/// saves the value it replaces, so the flush writes the snapshot's values exactly."
/// The flush is held after its snapshot and before it reads the values (at the WAL
/// sync it makes first); writes then change every record of the snapshot.
#[test]
fn a_write_during_a_flush_saves_the_value_it_replaces() {
    let dir = tempfile::tempdir().unwrap();
    let fs = ParkFs::default();
    let park = Arc::clone(&fs.park);
    let store = Store::builder(dir.path())
        .register::<Logged>()
        .vfs(fs)
        .flush_interval(NEVER)
        .wal_sync(shelf::WalSync::Every(NEVER))
        .open()
        .unwrap();
    let items = store.collection::<Logged>().unwrap();
    for id in ["a", "b", "c"] {
        items.insert(logged(id, 1)).unwrap();
    }
    park.arm(Point::Sync);
    let flush = {
        let store = store.clone();
        std::thread::spawn(move || store.flush())
    };
    assert!(park.wait_parked(), "the flush never synced the WAL");
    let writes = {
        let store = store.clone();
        watchdog("writes during a parked flush", move || {
            let items = store.collection::<Logged>().unwrap();
            items.update(&"a".to_string(), |r| r.n = 2)?;
            items.remove(&"b".to_string())?;
            items.insert(logged("d", 2))?;
            Ok::<_, Error>(())
        })
    };
    park.release();
    writes.unwrap();
    assert_eq!(flush.join().unwrap().unwrap().records, 3, "the flush wrote its snapshot");
    for id in ["a", "b", "c"] {
        assert_eq!(
            read_record::<Logged>(&record_path(dir.path(), "logged", id)),
            Some(logged(id, 1)),
            "{id}: the flush did not write its snapshot's value"
        );
    }
    assert!(!record_path(dir.path(), "logged", "d").exists(), "the flush wrote a record newer than its snapshot");
}

// ---------------------------------------------------------------------------------
// Bullet 5: dirty marks and failed flushes

/// "A dirty mark is cleared only after its write is durable. A failed flush puts
/// its marks back, returns the error, shows it in `store.health()`, and is retried
/// by the next tick with new temp files." Each file operation of a flush fails in
/// turn; then the background flusher, with the fault gone, writes the records.
/// Deeper: `tests/flush_failure.rs`, `tests/background_flush.rs`.
#[test]
fn a_dirty_mark_is_cleared_only_after_its_write_is_durable() {
    for k in 0.. {
        assert!(k < 100, "the flush never completed");
        let dir = tempfile::tempdir().unwrap();
        let fs = GateFs::new();
        let faults = fs.faults();
        let store = builder(dir.path()).vfs(fs).open().unwrap();
        let users = store.collection::<User>().unwrap();
        users.insert(user("ada", "ada", 1)).unwrap();
        users.insert(user("bob", "bob", 1)).unwrap();
        faults.fail_at(k, FaultKind::Eio);
        let flushed = store.flush();
        if faults.pending() {
            faults.heal();
            flushed.unwrap();
            assert_eq!(users.dirty_count(), 0);
            assert!(k > 3, "only {k} flush operations were failed");
            return;
        }
        let Err(error) = flushed else {
            panic!("operation {k}: a failed file operation, but flush() returned Ok");
        };
        assert_eq!(users.dirty_count(), 2, "operation {k}: marks were cleared by a failed flush ({error})");
        let health = store.health();
        assert_eq!(health.consecutive_failures, 1, "operation {k}");
        assert!(health.last_error.is_some(), "operation {k}: health does not show the failure");
        assert_eq!(health.dirty, 2, "operation {k}");

        // The next explicit flush writes both.
        store.flush().unwrap_or_else(|e| panic!("operation {k}: the retry failed: {e}"));
        assert_eq!(users.dirty_count(), 0);
        assert!(store.health().last_error.is_none());
        for name in ["ada", "bob"] {
            let found = read_record::<User>(&record_path(dir.path(), "user", name));
            assert_eq!(found, Some(user(name, name, 1)), "operation {k}");
        }
        assert!(common::temp_files(dir.path()).is_empty(), "operation {k}: temp files left");
    }
}

/// The tick half of bullet 5: a failed background flush is retried by the next
/// tick without anyone calling `flush()`.
#[test]
fn a_failed_flush_is_retried_by_the_next_tick() {
    let dir = tempfile::tempdir().unwrap();
    let fs = GateFs::new();
    let faults = fs.faults();
    let store = builder(dir.path()).vfs(fs).flush_interval(Duration::from_millis(20)).open().unwrap();
    faults.fail_at(0, FaultKind::Eio);
    store.collection::<User>().unwrap().insert(user("ada", "Ada", 1)).unwrap();
    wait_until("the first flush failed", || !faults.pending());
    wait_until("a later tick wrote ada", || {
        read_record::<User>(&record_path(dir.path(), "user", "ada")) == Some(user("ada", "Ada", 1))
    });
    wait_until("health recovered", || store.health().last_error.is_none() && store.health().dirty == 0);
}

// ---------------------------------------------------------------------------------
// Bullet 6: a failed WAL write or sync stops the store

fn logged(id: &str, n: u64) -> Logged {
    Logged { id: id.into(), n }
}

/// "A failed WAL write or sync stops the store": each file operation of a `wal`
/// commit fails in turn. The commit fails for its caller and is never published to
/// watchers; every later write and flush returns `Error::Poisoned`; reads go on;
/// `close()` lets go of the directory, and the next open has every acknowledged
/// write and takes writes again. Deeper: `tests/wal_faults.rs`.
#[test]
fn a_failed_wal_write_or_sync_stops_the_store() {
    for k in 0.. {
        assert!(k < 100, "the commit never completed");
        let dir = tempfile::tempdir().unwrap();
        let fs = GateFs::new();
        let faults = fs.faults();
        let build = || Store::builder(dir.path()).register::<Logged>().flush_interval(NEVER);
        let store = build().vfs(fs).open().unwrap();
        let items = store.collection::<Logged>().unwrap();
        let events = items.watch();
        items.insert(logged("acked", 1)).unwrap();
        faults.fail_at(k, FaultKind::Eio);
        let result = items.insert(logged("failed", 2));
        if faults.pending() {
            faults.heal();
            result.unwrap();
            assert!(k >= 2, "only {k} commit operations were failed");
            return;
        }
        assert!(result.is_err(), "operation {k}: the commit's I/O failed, but it returned Ok");

        let later = items.insert(logged("later", 3));
        assert!(matches!(later, Err(Error::Poisoned { .. })), "operation {k}: a later write: {later:?}");
        let flush = store.flush();
        assert!(matches!(flush, Err(Error::Poisoned { .. })), "operation {k}: a flush: {flush:?}");
        assert_eq!(items.get("acked").map(|r| r.n), Some(1), "operation {k}: reads go on");
        let _ = store.close();
        drop((items, store));
        let published: Vec<String> = events.iter().map(|e| e.record().id.clone()).collect();
        assert_eq!(published, ["acked"], "operation {k}: a failed commit was published");

        let store = build().open().unwrap_or_else(|e| panic!("operation {k}: reopen: {e}"));
        let items = store.collection::<Logged>().unwrap();
        assert_eq!(items.get("acked").map(|r| r.n), Some(1), "operation {k}: an acknowledged write is lost");
        assert!(items.get("later").is_none(), "operation {k}");
        items.upsert(logged("after", 4)).unwrap();
    }
}

// ---------------------------------------------------------------------------------
// Bullet 7: re-entrant calls

/// "A write, `flush()` or `close()` called inside an `update` closure or a
/// transaction body of the same store returns `Error::Reentrant` (or
/// `Error::InTransaction` for a handle write in a transaction) instead of
/// deadlocking." Each call runs under a watchdog. Deeper: `tests/engine_v2.rs`.
#[test]
fn a_write_flush_or_close_inside_a_closure_of_the_same_store_is_an_error_not_a_deadlock() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.collection::<User>().unwrap().insert(user("ada", "Ada", 1)).unwrap();
    let results = {
        let store = store.clone();
        watchdog("re-entrant calls", move || {
            let users = store.collection::<User>().unwrap();
            let mut inner = Vec::new();
            users
                .update(&"ada".to_string(), |u| {
                    u.age = 2;
                    inner.push(("insert in update", users.insert(user("bob", "Bob", 1)).map(drop)));
                    inner.push(("flush in update", store.flush().map(drop)));
                    inner.push(("close in update", store.close()));
                })
                .unwrap();
            let _ = store.transaction(|tx| {
                tx.update::<User>(&"ada".to_string(), |u| u.age = 3)?;
                inner.push(("handle insert in transaction", users.insert(user("cy", "Cy", 1)).map(drop)));
                inner.push(("flush in transaction", store.flush().map(drop)));
                inner.push(("close in transaction", store.close()));
                Ok::<_, Error>(())
            });
            inner
        })
    };
    for (what, result) in &results {
        let expected = if what.starts_with("handle") {
            matches!(result, Err(Error::InTransaction { .. }) | Err(Error::Reentrant { .. }))
        } else {
            matches!(result, Err(Error::Reentrant { .. }))
        };
        assert!(expected, "{what}: {result:?}");
    }
    assert_eq!(results.len(), 6);
    let users = store.collection::<User>().unwrap();
    assert_eq!(users.get("ada").map(|u| u.age), Some(3), "the outer writes went through");
    assert!(users.get("bob").is_none() && users.get("cy").is_none());
    store.flush().unwrap();
}

// ---------------------------------------------------------------------------------
// Bullet 8: unparseable files

/// "A file that cannot be parsed makes `open` fail with an error naming the file;
/// with `quarantine_corrupt(true)` it is moved to `<dir>/_quarantine/` and reported
/// in `store.recovery_report()`. It is never overwritten with empty content."
/// Deeper: `tests/corrupt.rs`, `tests/hostile_disk.rs`.
#[test]
fn a_file_that_cannot_be_parsed_fails_open_naming_it_or_is_quarantined_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.collection::<User>().unwrap().insert(user("ada", "Ada", 1)).unwrap();
    store.collection::<User>().unwrap().insert(user("bob", "Bob", 1)).unwrap();
    store.close().unwrap();
    drop(store);
    let path = record_path(dir.path(), "user", "ada");
    let garbage = b"{\"id\": \"ada\", \"name\": ".to_vec();
    std::fs::write(&path, &garbage).unwrap();

    match builder(dir.path()).open() {
        Err(e @ Error::CorruptRecord { .. }) => {
            assert!(e.to_string().contains(&path.display().to_string()), "the error does not name the file: {e}")
        }
        other => panic!("expected CorruptRecord for {}, got {other:?}", path.display()),
    }
    assert_eq!(std::fs::read(&path).unwrap(), garbage, "a failed open changed the file");

    let store = builder(dir.path()).quarantine_corrupt(true).open().unwrap();
    let report = store.recovery_report();
    assert_eq!(report.quarantined.len(), 1, "{report:?}");
    let q = &report.quarantined[0];
    assert_eq!((q.collection.as_str(), q.from.as_path()), ("user", path.as_path()));
    assert!(q.to.starts_with(dir.path().join("_quarantine")), "{}", q.to.display());
    assert_eq!(std::fs::read(&q.to).unwrap(), garbage, "the quarantined file lost its content");
    assert!(!path.exists());
    let users = store.collection::<User>().unwrap();
    assert!(users.get("ada").is_none());
    assert_eq!(users.get("bob").map(|u| u.age), Some(1));
    store.flush().unwrap();
    assert_eq!(std::fs::read(&q.to).unwrap(), garbage);
}

// ---------------------------------------------------------------------------------
// Bullet 9: WAL records

const WAL_HEADER_LEN: usize = 16;

/// The crash image of a store that committed `n` `Logged` records (one WAL record
/// each) without a flush, and those WAL records' bytes; the image's WAL directory is
/// emptied.
fn wal_image(n: u64) -> (tempfile::TempDir, Vec<Vec<u8>>) {
    let live = tempfile::tempdir().unwrap();
    let store = Store::builder(live.path()).register::<Logged>().flush_interval(NEVER).open().unwrap();
    for i in 1..=n {
        store.collection::<Logged>().unwrap().insert(logged(&format!("r{i}"), i)).unwrap();
    }
    let image = tempfile::tempdir().unwrap();
    common_wal::copy_dir(live.path(), image.path());
    drop(store);
    let mut records = Vec::new();
    for segment in common_wal::files_with_ext(&image.path().join("wal"), ".wal") {
        let bytes = std::fs::read(&segment).unwrap();
        let mut offset = 0;
        while offset < bytes.len() {
            let len = u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap()) as usize;
            records.push(bytes[offset..offset + WAL_HEADER_LEN + len].to_vec());
            offset += WAL_HEADER_LEN + len;
        }
        std::fs::remove_file(segment).unwrap();
    }
    assert_eq!(records.len(), n as usize);
    (image, records)
}

fn open_image(dir: &Path, repair: bool) -> shelf::Result<Store> {
    Store::builder(dir).register::<Logged>().flush_interval(NEVER).repair_wal(repair).open()
}

fn logged_ids(store: &Store) -> Vec<String> {
    let mut ids: Vec<String> = store.collection::<Logged>().unwrap().iter().map(|r| r.id.clone()).collect();
    ids.sort();
    ids
}

/// "WAL records carry a length, a sequence number and a CRC32C. On open an invalid
/// tail (a torn last append) is cut and reported; a bad record followed by valid
/// ones is corruption: `open` fails with `Error::WalCorrupt` unless
/// `repair_wal(true)`." The valid record after the bad one is in the same segment
/// or in the next. Deeper: `tests/wal_basics.rs`, `tests/wal_segments.rs`.
#[test]
fn wal_records_are_checked_a_torn_tail_is_cut_and_a_bad_record_before_valid_ones_is_corruption() {
    let segment = |lsn: usize| format!("{lsn:020}.wal");

    // A torn tail: cut and reported.
    let (image, records) = wal_image(3);
    let wal = image.path().join("wal");
    let torn = [records[0].as_slice(), &records[1], &records[2][..records[2].len() - 3]].concat();
    std::fs::write(wal.join(segment(1)), &torn).unwrap();
    let store = open_image(image.path(), false).unwrap();
    assert_eq!(logged_ids(&store), ["r1", "r2"]);
    assert_eq!(store.recovery_report().wal_records_replayed, 2);
    assert_eq!(store.recovery_report().wal_bytes_truncated, records[2].len() as u64 - 3);
    drop(store);

    // A flipped bit in each part of a record (length, sequence number, CRC, payload)
    // with a valid record after it, in the same segment and in the next one.
    let (_, fresh) = wal_image(3);
    for byte in [0, 5, 12, WAL_HEADER_LEN + 2, fresh[1].len() - 1] {
        for split in [false, true] {
            let (image, records) = wal_image(3);
            let wal = image.path().join("wal");
            let mut bad = records[1].clone();
            bad[byte] ^= 0x10;
            let first = wal.join(segment(1));
            if split {
                std::fs::write(&first, [records[0].as_slice(), &bad].concat()).unwrap();
                std::fs::write(wal.join(segment(3)), &records[2]).unwrap();
            } else {
                std::fs::write(&first, [records[0].as_slice(), &bad, &records[2]].concat()).unwrap();
            }
            let before = std::fs::read(&first).unwrap();
            let what =
                format!("byte {byte} of record 2, next record in the {} segment", ["same", "next"][split as usize]);
            match open_image(image.path(), false) {
                Err(Error::WalCorrupt { segment, offset }) => {
                    assert_eq!((segment, offset), (first.clone(), records[0].len() as u64), "{what}")
                }
                Err(other) => panic!("{what}: expected WalCorrupt, got {other}"),
                Ok(store) => panic!("{what}: expected WalCorrupt, opened with {:?}", logged_ids(&store)),
            }
            assert_eq!(std::fs::read(&first).unwrap(), before, "{what}: a refused open changed the WAL");
            let store = open_image(image.path(), true).unwrap();
            assert_eq!(logged_ids(&store), ["r1"], "{what}: repair keeps what precedes the bad record");
        }
    }
}

// ---------------------------------------------------------------------------------
// Bullet 10: the lock

/// "A second `Store` on the same directory, in this process or another, gets
/// `Error::Locked`." In this process here; another process: `tests/lock.rs`.
#[test]
fn a_second_store_on_the_same_directory_gets_locked() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    match builder(dir.path()).open() {
        Err(Error::Locked { dir: locked }) => assert_eq!(locked, dir.path()),
        other => panic!("expected Locked, got {other:?}"),
    }
    store.close().unwrap();
    drop(store);
    open(dir.path());
}
