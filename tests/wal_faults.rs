//! Fault injection (issue 5): each I/O operation of a flush, and of a WAL append,
//! fails in turn (`FaultFs`: EIO, ENOSPC, short write). The call returns an error
//! and never panics; a failed WAL write is not visible (rolled back); nothing
//! acknowledged is lost, neither in a copy of the directory taken right after the
//! failure (a crash at that moment) nor after a retry, close and reopen; the retry
//! succeeds once the fault is gone.
//!
//! Each loop raises the failing operation's index until the call succeeds with the
//! fault still pending: then every operation of the call has been failed once.
//!
//! Further cases park a WAL sync (`SyncGate`) to fail it while other writers act:
//! a failed group sync fails every commit waiting for it; a rollback must not undo
//! a later write to the same record; two faults in a row (append and its cleanup);
//! a torn tail before an empty segment; a failed background sync (`WalSync::Every`);
//! a torn group write that a flush reaches first, whose group is rolled back once.

mod common_wal;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use common_wal::*;
use shelf::fs::{FaultFs, FaultKind};
use shelf::{Store, WalSync};
use tempfile::TempDir;

const KINDS: [FaultKind; 3] = [FaultKind::Eio, FaultKind::ShortWrite, FaultKind::NoSpace];

/// A store on a `FaultFs`, and a model of what it acknowledged.
struct Fixture {
    dir: TempDir,
    fs: Arc<FaultFs>,
    store: Store,
    /// The logged collections, as acknowledged.
    logged: Logged,
    /// The notes (no `wal`): in memory, and as of the last successful flush.
    notes: BTreeMap<String, Note>,
    durable_notes: BTreeMap<String, Note>,
}

impl Fixture {
    /// A bank, three entries and three notes, flushed.
    fn new() -> Fixture {
        Fixture::with(WalSync::Always)
    }

    /// The same, with this WAL sync policy.
    fn with(sync: WalSync) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultFs::new();
        let store = builder(dir.path()).vfs(Arc::clone(&fs)).wal_sync(sync).flush_interval(NEVER).open().unwrap();
        create_bank(&store);
        let mut f = Fixture {
            dir,
            fs,
            store,
            logged: Logged::default(),
            notes: BTreeMap::new(),
            durable_notes: BTreeMap::new(),
        };
        f.logged = Logged::of(&f.store);
        for i in 0..3 {
            f.run(Op::Insert { id: format!("k{i}") });
            f.run(Op::Note { id: format!("n{i}"), version: 1 });
        }
        f.store.flush().unwrap();
        f.durable_notes = f.notes.clone();
        f
    }

    /// Runs an operation that must succeed, and records it in the model.
    fn run(&mut self, op: Op) {
        op.run(&self.store).unwrap_or_else(|e| panic!("{op:?}: {e:?}"));
        self.model(&op);
    }

    fn model(&mut self, op: &Op) {
        self.logged.apply(op);
        if let Op::Note { id, version } = op {
            self.notes.insert(id.clone(), note(id, *version));
        }
    }

    fn remove_note(&mut self, id: &str) {
        self.store.collection::<Note>().unwrap().remove(&id.to_owned()).unwrap();
        self.notes.remove(id);
    }

    /// The store's memory holds exactly what the model says.
    fn check_memory(&self, context: &str) {
        let actual = Logged::of(&self.store);
        assert!(actual == self.logged, "{context}: memory differs from the model: {}", self.logged.diff(&actual));
        assert_eq!(all::<Note>(&self.store), self.notes, "{context}: notes in memory");
    }

    /// A crash right now: a copy of the directory opens, with every acknowledged
    /// logged write, no torn WAL tail, and each note in its durable or its new version.
    fn check_crash_copy(&self, context: &str) {
        let copy = tempfile::tempdir().unwrap();
        copy_dir(self.dir.path(), copy.path());
        let store = builder(copy.path())
            .flush_interval(NEVER)
            .open()
            .unwrap_or_else(|e| panic!("{context}: a copy of the directory does not open: {e:?}"));
        let actual = Logged::of(&store);
        assert!(actual == self.logged, "{context}: after a crash: {}", self.logged.diff(&actual));
        assert_eq!(store.recovery_report().wal_bytes_truncated, 0, "{context}: the failure left a torn WAL tail");
        let notes: BTreeMap<String, Note> = all(&store);
        for id in notes.keys().chain(self.notes.keys()).chain(self.durable_notes.keys()) {
            let found = notes.get(id);
            assert!(
                found == self.notes.get(id) || found == self.durable_notes.get(id),
                "{context}: after a crash note {id} is {found:?}, neither the durable {:?} nor the new {:?}",
                self.durable_notes.get(id),
                self.notes.get(id)
            );
        }
        store.close().unwrap();
    }

    /// The store takes writes, closes cleanly, and a plain reopen holds the model.
    fn finish(mut self, context: &str) {
        self.run(Op::Insert { id: "late".into() });
        self.run(Op::Update { id: "late".into() });
        self.run(Op::Note { id: "n2".into(), version: 9 });
        self.store.close().unwrap_or_else(|e| panic!("{context}: close: {e:?}"));
        let (dir, logged, notes) = (self.dir, self.logged, self.notes);
        drop(self.store);
        reopen_and_compare(dir.path(), &logged, &notes, context);
    }
}

fn reopen_and_compare(dir: &Path, logged: &Logged, notes: &BTreeMap<String, Note>, context: &str) {
    let store = open_plain(dir);
    let actual = Logged::of(&store);
    assert!(actual == *logged, "{context}: after reopen: {}", logged.diff(&actual));
    assert_eq!(&all::<Note>(&store), notes, "{context}: notes after reopen");
    assert_eq!(store.recovery_report().wal_records_replayed, 0, "{context}: close left WAL records");
    store.close().unwrap();
}

/// Fails operation `n`, `n` = 0, 1, ... of a flush that has dirty records in `wal`
/// collections (a transfer, an insert, an update, a remove) and in a collection
/// without `wal` (an update, an insert, a remove).
fn flush_faults(kind: FaultKind) {
    for n in 0.. {
        let context = format!("flush, {kind:?} at operation {n}");
        let mut f = Fixture::new();
        f.run(Op::Transfer { tx: 1, from: account_id(0), to: account_id(1), amount: 5 });
        f.run(Op::Insert { id: "k3".into() });
        f.run(Op::Update { id: "k0".into() });
        f.run(Op::Remove { id: "k1".into() });
        f.run(Op::Note { id: "n0".into(), version: 2 });
        f.run(Op::Note { id: "n3".into(), version: 1 });
        f.remove_note("n1");

        f.fs.fail_at(n, kind);
        let outcome = f.store.flush();
        let fired = !f.fs.pending();
        f.fs.heal();
        match outcome {
            Ok(_) => {
                assert!(!fired, "{context}: the fault fired, yet the flush returned Ok");
                assert!(n >= 8, "{context}: a flush of 11 records took only {n} operations");
                println!("flush, {kind:?}: each of its {n} operations failed in turn");
                f.check_memory(&context);
                f.finish(&context);
                return;
            }
            Err(e) => {
                assert!(fired, "{context}: the flush failed without the fault: {e:?}");
                let health = f.store.health();
                assert!(!health.is_ok(), "{context}: health does not show the failure");
                f.check_memory(&context);
                f.check_crash_copy(&context);
                f.store.flush().unwrap_or_else(|e| panic!("{context}: the retry failed: {e:?}"));
                let health = f.store.health();
                assert!(health.is_ok() && health.dirty == 0, "{context}: after the retry: {health:?}");
                f.durable_notes = f.notes.clone();
                f.check_crash_copy(&format!("{context}, after the retry"));
                f.finish(&context);
            }
        }
    }
}

#[test]
fn every_failing_operation_of_a_flush_eio() {
    flush_faults(KINDS[0]);
}

#[test]
fn every_failing_operation_of_a_flush_short_write() {
    flush_faults(KINDS[1]);
}

#[test]
fn every_failing_operation_of_a_flush_enospc() {
    flush_faults(KINDS[2]);
}

/// Fails operation `n`, `n` = 0, 1, ... of one logged write (`WalSync::Always`).
fn append_faults(kind: FaultKind, write: &Op) {
    append_faults_under(WalSync::Always, kind, write);
}

/// Fails operation `n`, `n` = 0, 1, ... of a logged write under `sync`. Under
/// `WalSync::Always` the write's record is written by its sync, under `Every` by the
/// write itself (and not synced).
fn append_faults_under(sync: WalSync, kind: FaultKind, write: &Op) {
    // The write's operations: the append and its sync, or the append alone.
    let min_ops = if sync == WalSync::Always { 2 } else { 1 };
    for n in 0.. {
        let context = format!("{write:?}, {sync:?}, {kind:?} at operation {n}");
        let mut f = Fixture::with(sync);
        // Acknowledged, not flushed: only in the WAL.
        f.run(Op::Transfer { tx: 1, from: account_id(4), to: account_id(5), amount: 3 });
        f.run(Op::Update { id: "k1".into() });

        f.fs.fail_at(n, kind);
        let outcome = write.run(&f.store);
        let fired = !f.fs.pending();
        f.fs.heal();
        match outcome {
            Ok(()) => {
                assert!(!fired, "{context}: the fault fired, yet the write returned Ok");
                assert!(n >= min_ops, "{context}: a logged write took only {n} operations");
                println!("{write:?}, {kind:?}: each of its {n} operations failed in turn");
                f.model(write);
                f.check_memory(&context);
                f.check_crash_copy(&context);
                f.finish(&context);
                return;
            }
            Err(e) => {
                assert!(fired, "{context}: the write failed without the fault: {e:?}");
                // Rolled back: nothing of the failed write is visible.
                f.check_memory(&format!("{context}, after the failure"));
                f.check_crash_copy(&format!("{context}, after the failure"));
                // The same write succeeds once the fault is gone.
                write.run(&f.store).unwrap_or_else(|e| panic!("{context}: the retry failed: {e:?}"));
                f.model(write);
                f.check_memory(&format!("{context}, after the retry"));
                f.check_crash_copy(&format!("{context}, after the retry"));
                f.finish(&context);
            }
        }
    }
}

#[test]
fn every_failing_operation_of_a_wal_insert() {
    for kind in KINDS {
        append_faults(kind, &Op::Insert { id: "fresh".into() });
    }
}

#[test]
fn every_failing_operation_of_a_wal_update() {
    for kind in KINDS {
        append_faults(kind, &Op::Update { id: "k0".into() });
    }
}

#[test]
fn every_failing_operation_of_a_wal_remove() {
    for kind in KINDS {
        append_faults(kind, &Op::Remove { id: "k2".into() });
    }
}

#[test]
fn every_failing_operation_of_a_background_synced_write() {
    for kind in KINDS {
        append_faults_under(WalSync::Every(NEVER), kind, &Op::Insert { id: "fresh".into() });
        append_faults_under(
            WalSync::Every(NEVER),
            kind,
            &Op::Transfer { tx: 2, from: account_id(2), to: account_id(3), amount: 11 },
        );
    }
}

#[test]
fn every_failing_operation_of_a_transaction() {
    for kind in KINDS {
        append_faults(kind, &Op::Transfer { tx: 2, from: account_id(2), to: account_id(3), amount: 11 });
    }
}

/// A `FaultFs` whose WAL segment syncs can be parked: once armed, the next
/// `sync_data` of an append file waits until released, then goes on (and fails if
/// a fault was set meanwhile). It holds a committing thread after its WAL append,
/// outside the writer lock, while it waits for durability. It can also fail the
/// next truncate of a segment, on top of a `FaultFs` fault: two faults in a row.
#[derive(Clone, Debug)]
struct SyncGate {
    faults: Arc<FaultFs>,
    gate: Arc<Gate>,
}

#[derive(Debug, Default)]
struct Gate {
    armed: std::sync::atomic::AtomicBool,
    /// (a sync is parked, released)
    state: std::sync::Mutex<(bool, bool)>,
    changed: std::sync::Condvar,
    /// Fail the next truncate of an append file with EIO.
    fail_truncate: std::sync::atomic::AtomicBool,
    /// Park before the next append of an append file instead of before its sync.
    at_append: std::sync::atomic::AtomicBool,
    /// Fail the next file creation with EIO.
    fail_create: std::sync::atomic::AtomicBool,
}

impl Gate {
    fn arm(&self) {
        *self.state.lock().unwrap() = (false, false);
        self.armed.store(true, std::sync::atomic::Ordering::SeqCst);
    }
    fn wait_parked(&self) {
        let state = self.state.lock().unwrap();
        let (state, _) = self.changed.wait_timeout_while(state, std::time::Duration::from_secs(10), |s| !s.0).unwrap();
        assert!(state.0, "no WAL sync was parked");
    }
    fn release(&self) {
        self.armed.store(false, std::sync::atomic::Ordering::SeqCst);
        self.state.lock().unwrap().1 = true;
        self.changed.notify_all();
    }
    fn pass(&self) {
        if self.armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
            let mut state = self.state.lock().unwrap();
            state.0 = true;
            self.changed.notify_all();
            let _state = self.changed.wait_while(state, |s| !s.1).unwrap();
        }
    }
}

struct GatedAppend {
    inner: Box<dyn shelf::fs::VfsAppend>,
    gate: Arc<Gate>,
}

impl shelf::fs::VfsAppend for GatedAppend {
    fn append(&self, buf: &[u8]) -> std::io::Result<()> {
        if self.gate.at_append.load(std::sync::atomic::Ordering::SeqCst) {
            self.gate.pass();
        }
        self.inner.append(buf)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        if !self.gate.at_append.load(std::sync::atomic::Ordering::SeqCst) {
            self.gate.pass();
        }
        self.inner.sync_data()
    }
    fn truncate(&self, len: u64) -> std::io::Result<()> {
        if self.gate.fail_truncate.swap(false, std::sync::atomic::Ordering::SeqCst) {
            return Err(std::io::Error::other("injected EIO in truncate"));
        }
        self.inner.truncate(len)
    }
}

impl shelf::fs::Vfs for SyncGate {
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        self.faults.read(path)
    }
    fn create_new(&self, path: &Path) -> std::io::Result<Box<dyn shelf::fs::VfsFile>> {
        if self.gate.fail_create.swap(false, std::sync::atomic::Ordering::SeqCst) {
            return Err(std::io::Error::other("injected EIO in create"));
        }
        self.faults.create_new(path)
    }
    fn open_append(&self, path: &Path) -> std::io::Result<Box<dyn shelf::fs::VfsAppend>> {
        Ok(Box::new(GatedAppend { inner: self.faults.open_append(path)?, gate: Arc::clone(&self.gate) }))
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        self.faults.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        self.faults.remove_file(path)
    }
    fn sync_dir(&self, path: &Path) -> std::io::Result<()> {
        self.faults.sync_dir(path)
    }
    fn create_dir_all(&self, path: &Path) -> std::io::Result<()> {
        self.faults.create_dir_all(path)
    }
    fn read_dir(&self, path: &Path) -> std::io::Result<Vec<shelf::fs::DirEntry>> {
        self.faults.read_dir(path)
    }
    fn try_lock(&self, path: &Path) -> std::io::Result<Box<dyn shelf::fs::VfsLock>> {
        self.faults.try_lock(path)
    }
}

/// A transaction writes an account and a note (logged together) and waits for its
/// WAL sync. Meanwhile another thread upserts the same note with a single write,
/// which is not logged and returns `Ok` at once. Then the transaction's sync fails
/// and it is rolled back: that must not take the other thread's acknowledged note
/// with it.
#[test]
fn rolling_back_a_failed_sync_keeps_a_later_unlogged_write() {
    let dir = tempfile::tempdir().unwrap();
    let fs = SyncGate { faults: FaultFs::new(), gate: Arc::new(Gate::default()) };
    let store = builder(dir.path()).vfs(fs.clone()).flush_interval(NEVER).open().unwrap();
    create_bank(&store);
    Op::Note { id: "n0".into(), version: 1 }.run(&store).unwrap();
    store.flush().unwrap();

    fs.gate.arm();
    let committing = {
        let store = store.clone();
        std::thread::spawn(move || {
            store.transaction(|tx| {
                tx.update::<Account>(&account_id(0), |a| a.version += 1)?;
                tx.upsert(note("n0", 2))?;
                Ok::<_, shelf::Error>(())
            })
        })
    };
    fs.gate.wait_parked();
    // The transaction is applied in memory and appended; its sync is parked.
    let notes = store.collection::<Note>().unwrap();
    notes.upsert(note("n0", 3)).unwrap();
    fs.faults.fail_at(0, FaultKind::Eio);
    fs.gate.release();
    let outcome = committing.join().unwrap();
    assert!(outcome.is_err(), "the transaction's sync failed, yet it returned {outcome:?}");
    assert_eq!(store.collection::<Account>().unwrap().get(&account_id(0)).unwrap().version, 0, "rolled back");
    assert_eq!(
        notes.get(&"n0".to_owned()).as_deref(),
        Some(&note("n0", 3)),
        "the acknowledged single write of n0 was undone by the rollback of an earlier transaction"
    );
    store.close().unwrap();
    let store = open_plain(dir.path());
    assert_eq!(store.collection::<Note>().unwrap().get(&"n0".to_owned()).as_deref(), Some(&note("n0", 3)));
}

/// The same with `WalSync::Every`, in one thread: a logged transaction writes a
/// note, a single write then replaces the note (not logged), and the flush's WAL
/// sync fails, rolling the transaction back. The later write must stay.
#[test]
fn rolling_back_a_failed_background_sync_keeps_a_later_unlogged_write() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultFs::new();
    let store = builder(dir.path())
        .vfs(Arc::clone(&fs))
        .flush_interval(NEVER)
        .wal_sync(shelf::WalSync::Every(NEVER))
        .open()
        .unwrap();
    create_bank(&store);
    store.flush().unwrap();
    store
        .transaction(|tx| {
            tx.update::<Account>(&account_id(0), |a| a.version += 1)?;
            tx.upsert(note("n0", 1))?;
            Ok::<_, shelf::Error>(())
        })
        .unwrap();
    let notes = store.collection::<Note>().unwrap();
    notes.upsert(note("n0", 2)).unwrap();
    fs.fail_at(0, FaultKind::Eio); // the sync of the WAL segment, when the flush rotates it
    assert!(store.flush().is_err());
    assert!(!fs.pending());
    assert_eq!(
        notes.get(&"n0".to_owned()).as_deref(),
        Some(&note("n0", 2)),
        "the acknowledged single write of n0 was undone by the rollback of an earlier transaction"
    );
}

/// A flush whose new WAL segment cannot be made durable (the directory sync fails)
/// leaves that empty segment file behind, while writes go on into the old segment.
/// A crash in the middle of the next append then leaves a torn tail in the old
/// segment, followed (by name) by the empty one. An empty segment holds no valid
/// record, so this is a torn tail to truncate, not corruption.
#[test]
fn a_torn_tail_before_an_empty_segment_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultFs::new();
    let store = builder(dir.path()).vfs(Arc::clone(&fs)).flush_interval(NEVER).open().unwrap();
    create_bank(&store);
    let mut logged = Logged::of(&store);
    // The flush rotates: it creates the new segment (operation 0) and syncs the
    // directory (operation 1), which fails.
    fs.fail_at(1, FaultKind::Eio);
    assert!(store.flush().is_err());
    assert!(!fs.pending());
    for op in [Op::Insert { id: "k0".into() }, Op::Insert { id: "k1".into() }] {
        op.run(&store).unwrap();
        logged.apply(&op);
    }
    // A crash now, with half of one more record appended to the segment being written.
    let copy = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), copy.path());
    store.close().unwrap();
    let segments = files_with_ext(&copy.path().join("wal"), ".wal");
    let len = |p: &std::path::PathBuf| std::fs::metadata(p).unwrap().len();
    let written = segments.iter().rev().find(|p| len(p) > 0).expect("a segment with records").clone();
    assert!(
        segments.iter().any(|p| *p > written && len(p) == 0),
        "expected an empty segment after the one written to: {segments:?}"
    );
    let mut bytes = std::fs::read(&written).unwrap();
    let header = bytes[..10].to_vec(); // the start of a record header
    bytes.extend_from_slice(&header);
    std::fs::write(&written, &bytes).unwrap();

    let reopened = builder(copy.path()).flush_interval(NEVER).open();
    let reopened = reopened.unwrap_or_else(|e| panic!("a torn tail was taken for corruption: {e:?}"));
    assert_eq!(reopened.recovery_report().wal_bytes_truncated, 10);
    assert_eq!(Logged::of(&reopened), logged);
}

/// Group commit: two commits wait for the same WAL sync, which fails. Both return
/// an error, neither is visible, the store is consistent and a retry of both
/// succeeds.
#[test]
fn a_failed_group_sync_fails_every_commit_waiting_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let fs = SyncGate { faults: FaultFs::new(), gate: Arc::new(Gate::default()) };
    let store = builder(dir.path()).vfs(fs.clone()).flush_interval(NEVER).open().unwrap();
    create_bank(&store);
    let mut logged = Logged::of(&store);
    let entries = store.collection::<Entry>().unwrap();

    fs.gate.arm();
    let spawn = |op: Op| {
        let store = store.clone();
        std::thread::spawn(move || op.run(&store))
    };
    let first = spawn(Op::Insert { id: "k0".into() });
    fs.gate.wait_parked();
    let second = spawn(Op::Transfer { tx: 1, from: account_id(0), to: account_id(1), amount: 10 });
    // Once the transfer is visible it holds the writer lock until it has appended;
    // a write that needs the lock then comes after the append.
    while store.collection::<Account>().unwrap().get(&account_id(0)).unwrap().version == 0 {
        std::thread::yield_now();
    }
    Op::Note { id: "n0".into(), version: 1 }.run(&store).unwrap();
    let notes = all::<Note>(&store);
    fs.faults.fail_at(0, FaultKind::Eio);
    fs.gate.release();
    let (first, second) = (first.join().unwrap(), second.join().unwrap());
    assert!(first.is_err() && second.is_err(), "the shared sync failed, yet: {first:?}, {second:?}");
    assert!(!fs.faults.pending());
    let actual = Logged::of(&store);
    assert!(actual == logged, "after the failed sync: {}", logged.diff(&actual));
    assert_eq!(all::<Note>(&store), notes);

    for op in
        [Op::Insert { id: "k0".into() }, Op::Transfer { tx: 1, from: account_id(0), to: account_id(1), amount: 10 }]
    {
        op.run(&store).unwrap();
        logged.apply(&op);
    }
    assert!(entries.contains(&"k0".to_owned()));
    let copy = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), copy.path());
    store.close().unwrap();
    for dir in [copy.path(), dir.path()] {
        let store = open_plain(dir);
        let actual = Logged::of(&store);
        assert!(actual == logged, "after reopen: {}", logged.diff(&actual));
        assert_eq!(store.recovery_report().wal_bytes_truncated, 0);
        store.close().unwrap();
    }
}

/// Two faults in a row: a WAL append is cut short, and the truncate that should cut
/// the partial record off fails too. The write returns an error; once the faults
/// are gone, the store must take writes and flush again (the partial record can be
/// cut off on the retry), not refuse them until it is reopened.
#[test]
fn a_failed_cleanup_of_a_failed_append_heals_once_the_fault_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let fs = SyncGate { faults: FaultFs::new(), gate: Arc::new(Gate::default()) };
    let store = builder(dir.path()).vfs(fs.clone()).flush_interval(NEVER).open().unwrap();
    create_bank(&store);
    let mut logged = Logged::of(&store);
    Op::Note { id: "n0".into(), version: 1 }.run(&store).unwrap();

    fs.faults.fail_at(0, FaultKind::ShortWrite);
    fs.gate.fail_truncate.store(true, std::sync::atomic::Ordering::SeqCst);
    let op = Op::Insert { id: "k0".into() };
    assert!(op.run(&store).is_err());
    assert!(!fs.faults.pending() && !fs.gate.fail_truncate.load(std::sync::atomic::Ordering::SeqCst));
    let actual = Logged::of(&store);
    assert!(actual == logged, "after the failed write: {}", logged.diff(&actual));

    // The faults are gone.
    let flushed = store.flush();
    assert!(flushed.is_ok(), "a flush after the faults are gone: {flushed:?}");
    let retried = op.run(&store);
    assert!(retried.is_ok(), "the retry after the faults are gone: {retried:?}");
    logged.apply(&op);
    store.close().unwrap();
    let store = open_plain(dir.path());
    let actual = Logged::of(&store);
    assert!(actual == logged, "after reopen: {}", logged.diff(&actual));
    assert_eq!(all::<Note>(&store)["n0"], note("n0", 1));
}

/// `WalSync::Every`: a write returns `Ok` before its WAL record is durable, and the
/// background syncer makes it durable later. If that sync fails, the store must not
/// lose the acknowledged write silently: it keeps it (and retries), or it reports
/// the failure in `health()` (DESIGN §3: nothing fails silently).
#[test]
fn a_failed_background_wal_sync_does_not_lose_writes_silently() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultFs::new();
    let store = builder(dir.path())
        .vfs(Arc::clone(&fs))
        .flush_interval(NEVER)
        .wal_sync(shelf::WalSync::Every(std::time::Duration::from_millis(10)))
        .open()
        .unwrap();
    create_bank(&store);
    // Durable now, so the syncer has no I/O to do until the next write.
    store.flush().unwrap();
    let entries = store.collection::<Entry>().unwrap();
    // The append (operation 0) succeeds, the background sync (operation 1) fails.
    fs.fail_at(1, FaultKind::Eio);
    Op::Insert { id: "k0".into() }.run(&store).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while fs.pending() {
        assert!(std::time::Instant::now() < deadline, "the background sync never ran");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // Give the syncer's rollback (if any) time to finish.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    while entries.contains(&"k0".to_owned()) && store.health().is_ok() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let kept = entries.contains(&"k0".to_owned());
    let health = store.health();
    assert!(kept || !health.is_ok(), "the acknowledged k0 was dropped and health() says nothing: {health:?}");
    if kept {
        store.close().unwrap();
        let store = open_plain(dir.path());
        assert!(store.collection::<Entry>().unwrap().contains(&"k0".to_owned()), "k0 lost after close and reopen");
    }
}

/// A flushed bank on a `SyncGate` whose next WAL append parks (not its sync).
fn bank_parking_appends() -> (TempDir, SyncGate, Store) {
    let dir = tempfile::tempdir().unwrap();
    let fs = SyncGate { faults: FaultFs::new(), gate: Arc::new(Gate::default()) };
    let store = builder(dir.path()).vfs(fs.clone()).flush_interval(NEVER).open().unwrap();
    create_bank(&store);
    store.flush().unwrap();
    fs.gate.at_append.store(true, std::sync::atomic::Ordering::SeqCst);
    fs.gate.arm();
    (dir, fs, store)
}

/// Runs `work` on a thread of its own with a clone of the store.
fn on_thread<R: Send + 'static>(
    store: &Store,
    work: impl FnOnce(&Store) -> R + Send + 'static,
) -> std::thread::JoinHandle<R> {
    let store = store.clone();
    std::thread::spawn(move || work(&store))
}

/// A transaction that holds the writer lock until `release`, so that other
/// threads queue up for it in a chosen order.
struct WriterLockHolder {
    go: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<shelf::Result<()>>,
}

impl WriterLockHolder {
    /// Returns once the writer lock is held.
    fn start(store: &Store) -> Self {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (go, go_rx) = std::sync::mpsc::channel::<()>();
        let thread = on_thread(store, move |store| {
            store.transaction(|_tx| {
                ready_tx.send(()).unwrap();
                go_rx.recv().unwrap();
                Ok::<_, shelf::Error>(())
            })
        });
        ready_rx.recv().unwrap();
        WriterLockHolder { go, thread }
    }

    fn release(self) {
        self.go.send(()).unwrap();
        self.thread.join().unwrap().unwrap();
    }
}

/// A crash now: a copy of `dir` opens and holds exactly `logged`.
fn assert_crash_copy(dir: &Path, logged: &Logged) {
    let copy = tempfile::tempdir().unwrap();
    copy_dir(dir, copy.path());
    let reopened = builder(copy.path()).flush_interval(NEVER).open().unwrap();
    let actual = Logged::of(&reopened);
    assert!(actual == *logged, "after a crash: {}", logged.diff(&actual));
}

/// Lets the threads started so far reach the lock or the gate they wait at.
fn pause() {
    std::thread::sleep(std::time::Duration::from_millis(100));
}

/// Under `WalSync::Always` a group's records are written by the sync that covers
/// them. Here that write is torn (half of it reaches the segment) and, before the
/// failed writer can roll back, a flush takes the writer lock. The flush must not
/// write the next commit's record after the torn bytes and call it durable: it
/// fails and rolls both commits back. A crash right then, with the flush's own files
/// failing too, leaves a store that opens and holds neither commit.
#[test]
fn a_flush_after_a_torn_group_write_rolls_the_group_back() {
    use std::sync::atomic::Ordering::SeqCst;
    let (dir, fs, store) = bank_parking_appends();
    let logged = Logged::of(&store);
    // The first commit's sync parks before writing its group.
    let first = on_thread(&store, |s| Op::Insert { id: "k0".into() }.run(s));
    fs.gate.wait_parked();
    // The second commit is applied and buffered, and waits for the next sync.
    let second = on_thread(&store, |s| Op::Insert { id: "k1".into() }.run(s));
    let entries = store.collection::<Entry>().unwrap();
    while entries.get(&"k1".to_owned()).is_none() {
        std::thread::yield_now();
    }
    // A transaction holds the writer lock while a flush queues up behind it.
    let holder = WriterLockHolder::start(&store);
    let flush = on_thread(&store, Store::flush);
    pause();
    // The group write is torn; the failed writer then queues for the writer lock
    // behind the flush. Should the flush get past the WAL, its first file fails.
    fs.faults.fail_at(0, FaultKind::ShortWrite);
    fs.gate.fail_create.store(true, SeqCst);
    fs.gate.release();
    pause();
    holder.release();
    assert!(flush.join().unwrap().is_err(), "the flush went on over a torn WAL group");
    assert!(fs.gate.fail_create.load(SeqCst), "the flush got past the WAL to its files");
    let (first, second) = (first.join().unwrap(), second.join().unwrap());
    assert!(first.is_err() && second.is_err(), "the torn group was acknowledged: {first:?}, {second:?}");
    assert!(!fs.faults.pending());
    fs.gate.fail_create.store(false, SeqCst);
    fs.gate.at_append.store(false, SeqCst);
    let actual = Logged::of(&store);
    assert!(actual == logged, "after the torn group: {}", logged.diff(&actual));
    // The copy opens (no torn bytes before a valid record) and holds neither commit.
    assert_crash_copy(dir.path(), &logged);

    // The store goes on.
    for id in ["k0", "k1"] {
        Op::Insert { id: id.into() }.run(&store).unwrap();
    }
    store.close().unwrap();
    let store = open_plain(dir.path());
    assert_eq!(store.collection::<Entry>().unwrap().len(), entries.len());
}

/// The rollback of a failed group runs once. A group write is torn; before its
/// writer can roll back, a flush does it (it fails the group), and a new commit
/// starts its own sync. When the first writer then gets the writer lock, it must not
/// roll back the new commit, whose record is being written: that commit returns
/// `Ok` and is there, in memory and after a crash.
#[test]
fn a_group_rolled_back_by_a_flush_is_not_rolled_back_again() {
    let (dir, fs, store) = bank_parking_appends();
    let mut logged = Logged::of(&store);
    // The first commit's sync parks before writing its group.
    let first = on_thread(&store, |s| Op::Insert { id: "k0".into() }.run(s));
    fs.gate.wait_parked();
    // A transaction holds the writer lock; a flush, then a new commit, queue up.
    let holder = WriterLockHolder::start(&store);
    let flush = on_thread(&store, Store::flush);
    pause();
    let later = Op::Insert { id: "k2".into() };
    let new_commit = on_thread(&store, {
        let later = later.clone();
        move |s| later.run(s)
    });
    pause();
    // The group write is torn; its writer queues for the writer lock last.
    fs.faults.fail_at(0, FaultKind::ShortWrite);
    fs.gate.release();
    pause();
    // The new commit's sync will park before its write.
    fs.gate.arm();
    holder.release();
    assert!(flush.join().unwrap().is_err(), "the flush went on over a torn WAL group");
    fs.gate.wait_parked();
    // The first writer runs (or skips) its rollback while the new sync is parked.
    assert!(first.join().unwrap().is_err(), "the torn commit was acknowledged");
    fs.gate.release();
    let outcome = new_commit.join().unwrap();
    assert!(outcome.is_ok(), "a commit after the rolled-back group failed: {outcome:?}");
    logged.apply(&later);
    assert!(!fs.faults.pending());
    let actual = Logged::of(&store);
    assert!(actual == logged, "in memory: {}", logged.diff(&actual));
    // The acknowledged commit is there after a crash, the failed one is not.
    assert_crash_copy(dir.path(), &logged);
}
