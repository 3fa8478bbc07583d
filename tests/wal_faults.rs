//! Fault injection on the WAL and the flush (`FaultFs`: EIO, ENOSPC, short write),
//! at every operation in turn, against the poisoning contract (issue 14):
//!
//! - a failed WAL write or sync fails exactly the commits it did not make durable,
//!   and poisons the store: every later write and flush returns `Poisoned`, reads
//!   go on, and `close` lets go of the directory;
//! - nothing is undone and nothing is retried: a crash image taken right after the
//!   failure, and the directory reopened after close, hold every acknowledged
//!   commit (the failed one may or may not be there, as with any crash);
//! - watchers never see a commit that was not acknowledged;
//! - a failed flush (record files, not the WAL) loses nothing, keeps the store
//!   writable, and the next flush succeeds once the fault is gone.
//!
//! Each loop raises the failing operation's index until the call succeeds with the
//! fault still pending: then every operation of the call has been failed once.

mod common_wal;

use std::collections::BTreeMap;
use std::sync::Arc;

use common_wal::*;
use shelf::fs::{FaultFs, FaultKind};
use shelf::{Error, Store, WalSync};
use tempfile::TempDir;

const KINDS: [FaultKind; 3] = [FaultKind::Eio, FaultKind::ShortWrite, FaultKind::NoSpace];

/// A store on a `FaultFs` with a bank, three entries and three notes, flushed.
struct Fixture {
    dir: TempDir,
    fs: Arc<FaultFs>,
    store: Store,
    /// The logged collections, as acknowledged.
    logged: Logged,
    /// The notes (no `wal`), as of the last successful flush.
    durable_notes: BTreeMap<String, Note>,
}

impl Fixture {
    fn with(sync: WalSync) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultFs::new();
        let store = builder(dir.path()).vfs(Arc::clone(&fs)).wal_sync(sync).flush_interval(NEVER).open().unwrap();
        create_bank(&store);
        for i in 0..3 {
            store.collection::<Entry>().unwrap().insert(Entry { id: format!("e{i}"), version: 0 }).unwrap();
            store.collection::<Note>().unwrap().upsert(note(&format!("n{i}"), 0)).unwrap();
        }
        store.flush().unwrap();
        let logged = Logged::of(&store);
        let durable_notes = all::<Note>(&store);
        Fixture { dir, fs, store, logged, durable_notes }
    }

    /// A copy of the directory as a crash right now would leave it, opened.
    fn crash_image(&self) -> (TempDir, Store) {
        let copy = tempfile::tempdir().unwrap();
        copy_dir(self.dir.path(), copy.path());
        let _ = std::fs::remove_file(copy.path().join(shelf::LOCK_FILE));
        let store = open_plain(copy.path());
        (copy, store)
    }

    /// Every acknowledged logged commit is in `store`; the one that failed (`maybe`)
    /// may be there or not, and nothing else differs.
    fn check_holds(&self, store: &Store, maybe: Option<&Logged>, label: &str) {
        let found = Logged::of(store);
        let ok = found == self.logged || maybe.is_some_and(|m| found == *m);
        assert!(ok, "{label}: not the acknowledged state: {}", self.logged.diff(&found));
        for (id, durable) in &self.durable_notes {
            assert_eq!(all::<Note>(store).get(id), Some(durable), "{label}: flushed note {id}");
        }
    }
}

fn is_poisoned(e: &Error) -> bool {
    matches!(e, Error::Poisoned { .. })
}

/// Runs `op` with the `n`-th operation failing; checks the contract; returns
/// whether the fault fired.
fn fail_one(op: &Op, n: u64, kind: FaultKind, sync: WalSync) -> bool {
    let f = Fixture::with(sync);
    let watch = f.store.collection::<Entry>().unwrap().watch();
    let accounts = f.store.collection::<Account>().unwrap().watch();
    let label = format!("{op:?}, fault {kind:?} at operation {n}");
    let mut after = f.logged.clone();
    after.apply(op);
    f.fs.fail_at(n, kind);
    let outcome = op.run(&f.store);
    let fired = !f.fs.pending();
    f.fs.heal();
    match outcome {
        Ok(()) => {
            // Acknowledged: durable and published, whatever else failed.
            assert!(watch.try_recv().is_ok() || accounts.try_recv().is_ok(), "{label}: no event for an ack");
            let mut f = f;
            f.logged = after;
            let (_copy, image) = f.crash_image();
            f.check_holds(&image, None, &format!("{label}, crash image"));
            // A fault that fired without failing the write hit nothing it waits
            // for: the next operation is worth failing too.
            fired
        }
        Err(e) => {
            assert!(fired, "{label}: failed without a fault: {e}");
            assert!(is_poisoned(&e), "{label}: a failed WAL write must poison the store, got {e:?}");
            assert!(watch.try_recv().is_err() && accounts.try_recv().is_err(), "{label}: event of a failed commit");
            // Every later write and flush is refused; reads go on.
            let later = f.store.collection::<Entry>().unwrap().insert(Entry { id: "later".into(), version: 0 });
            assert!(later.as_ref().is_err_and(is_poisoned), "{label}: a write after poisoning: {later:?}");
            assert!(f.store.flush().is_err_and(|e| is_poisoned(&e)), "{label}: a flush after poisoning");
            assert_eq!(f.store.collection::<Account>().unwrap().len(), ACCOUNTS, "{label}: reads go on");
            let (_copy, image) = f.crash_image();
            f.check_holds(&image, Some(&after), &format!("{label}, crash image"));
            drop(image);
            // Close lets go of the directory; open recovers what is durable.
            assert!(f.store.close().is_err_and(|e| is_poisoned(&e)), "{label}: close of a poisoned store");
            let reopened = open_plain(f.dir.path());
            f.check_holds(&reopened, Some(&after), &format!("{label}, reopened"));
            reopened.collection::<Entry>().unwrap().insert(Entry { id: "fresh".into(), version: 0 }).unwrap();
            true
        }
    }
}

/// Fails every operation of `op` in turn, with every kind of fault.
fn every_failing_operation(op: Op, sync: WalSync) {
    for kind in KINDS {
        let mut n = 0;
        while fail_one(&op, n, kind, sync) {
            n += 1;
            assert!(n < 50, "{op:?}: the operation never completes without its fault");
        }
        assert!(n > 0, "{op:?} {kind:?}: no operation of the write was ever failed");
    }
}

#[test]
fn every_failing_operation_of_a_wal_insert() {
    every_failing_operation(Op::Insert { id: "new".into() }, WalSync::Always);
}

#[test]
fn every_failing_operation_of_a_wal_update() {
    every_failing_operation(Op::Update { id: "e1".into() }, WalSync::Always);
}

#[test]
fn every_failing_operation_of_a_wal_remove() {
    every_failing_operation(Op::Remove { id: "e2".into() }, WalSync::Always);
}

#[test]
fn every_failing_operation_of_a_transaction() {
    every_failing_operation(Op::Transfer { tx: 1, from: account_id(0), to: account_id(1), amount: 7 }, WalSync::Always);
}

#[test]
fn a_failed_background_sync_poisons_the_store() {
    let f = Fixture::with(WalSync::Every(std::time::Duration::from_millis(5)));
    let entries = f.store.collection::<Entry>().unwrap();
    // The write is acknowledged before any sync; the sync after it fails.
    f.fs.fail_at(1, FaultKind::Eio);
    entries.insert(Entry { id: "x".into(), version: 0 }).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        match entries.insert(Entry { id: format!("y{}", f.fs.ops()), version: 0 }) {
            Err(e) if is_poisoned(&e) => break,
            Err(e) => panic!("unexpected error {e:?}"),
            Ok(_) => {}
        }
        assert!(std::time::Instant::now() < deadline, "the failed background sync never poisoned the store");
        std::thread::yield_now();
    }
    assert!(!f.fs.pending(), "the fault fired");
    // The sync thread records the failure in `health` just after it poisons the
    // store, so a writer may see the poisoning first: wait for the record.
    while f.store.health().consecutive_failures == 0 {
        assert!(std::time::Instant::now() < deadline, "the failed background sync never reached health");
        std::thread::yield_now();
    }
    let health = f.store.health();
    assert!(health.last_error.is_some_and(|e| is_poisoned(&e)), "health reports the poisoning");
    assert!(f.store.close().is_err());
    // Reopen: everything durable before the fault is there. (Writes acknowledged
    // after the last successful background sync are the window `Every` allows.)
    let reopened = open_plain(f.dir.path());
    let found = Logged::of(&reopened);
    assert_eq!(found.accounts, f.logged.accounts);
    for id in f.logged.entries.keys() {
        assert!(found.entries.contains_key(id), "durable entry {id} lost");
    }
}

#[test]
fn a_failed_group_sync_fails_exactly_the_commits_it_covered() {
    let f = Fixture::with(WalSync::Always);
    // Eight writers; the first WAL operation from now fails (the group's write or
    // its sync). Every writer either gets Ok (durable before the failure) or an
    // error; none hangs, and exactly the acknowledged ones survive reopen.
    f.fs.fail_at(1, FaultKind::Eio);
    let results: Vec<(String, Result<String, Error>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let store = f.store.clone();
                s.spawn(move || {
                    let id = format!("g{t}");
                    let r = store.collection::<Entry>().unwrap().insert(Entry { id: id.clone(), version: 0 });
                    (id, r)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(!f.fs.pending(), "the fault fired");
    let failed = results.iter().filter(|(_, r)| r.is_err()).count();
    assert!(failed > 0, "the failed sync failed no commit: {results:?}");
    for (_, r) in &results {
        if let Err(e) = r {
            assert!(is_poisoned(e), "{e:?}");
        }
    }
    assert!(f.store.close().is_err());
    let reopened = open_plain(f.dir.path());
    let entries = all::<Entry>(&reopened);
    for (id, r) in &results {
        if r.is_ok() {
            assert!(entries.contains_key(id), "acknowledged {id} lost");
        }
    }
}

#[test]
fn every_failing_operation_of_a_flush_loses_nothing() {
    for kind in KINDS {
        let mut n = 0;
        loop {
            let mut f = Fixture::with(WalSync::Always);
            let notes = f.store.collection::<Note>().unwrap();
            notes.upsert(note("n1", 1)).unwrap();
            notes.upsert(note("n9", 0)).unwrap();
            Op::Update { id: "e0".into() }.run(&f.store).unwrap();
            f.logged.apply(&Op::Update { id: "e0".into() });
            let label = format!("flush, fault {kind:?} at operation {n}");
            f.fs.fail_at(n, kind);
            let outcome = f.store.flush();
            let fired = !f.fs.pending();
            f.fs.heal();
            if outcome.is_ok() {
                assert!(!fired || n > 0, "{label}");
                break;
            }
            assert!(fired, "{label}: failed without a fault");
            // The failed flush may have made the note durable (a failure after its
            // batch, in the WAL's rotation or checkpoint) or not.
            f.durable_notes.remove("n1");
            let (_copy, image) = f.crash_image();
            f.check_holds(&image, None, &format!("{label}, crash image"));
            let n1 = all::<Note>(&image).get("n1").cloned();
            assert!(n1 == Some(note("n1", 0)) || n1 == Some(note("n1", 1)), "{label}: {n1:?}");
            drop(image);
            // The record files failed, not the WAL: the store still takes writes,
            // and the next flush writes everything.
            notes.upsert(note("n2", 1)).unwrap();
            f.store.flush().unwrap();
            f.durable_notes = all::<Note>(&f.store);
            f.store.close().unwrap();
            let reopened = open_plain(f.dir.path());
            f.check_holds(&reopened, None, &format!("{label}, reopened"));
            assert_eq!(all::<Note>(&reopened).get("n1"), Some(&note("n1", 1)), "{label}");
            n += 1;
            assert!(n < 100, "the flush never completes");
        }
        assert!(n > 3, "{kind:?}: only {n} operations of a flush were failed");
    }
}
