//! A failed flush keeps the data dirty, is visible to the application (an error from
//! `flush()`/`close()` and in `health()`), and the next flush writes everything.
//!
//! Failures are injected two ways: through the file-system seam (`FaultFs`, which
//! fails one chosen operation), and by a directory standing where a record file must go.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use shelf::fs::{FaultFs, FaultKind};
use shelf::{Error, Store};

fn open_faulty(dir: &Path, fs: &std::sync::Arc<FaultFs>) -> Store {
    builder(dir).vfs(std::sync::Arc::clone(fs)).open().unwrap()
}

#[test]
fn an_injected_io_error_keeps_data_dirty_and_the_next_flush_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultFs::new();
    let store = open_faulty(dir.path(), &fs);
    let users = store.collection::<User>().unwrap();
    let orders = store.collection::<Order>().unwrap();
    users.insert(user("ada", "Ada", 36)).unwrap();
    users.insert(user("bob", "Bob", 41)).unwrap();
    orders.insert(order("book")).unwrap();
    assert_eq!((users.dirty_count(), orders.dirty_count()), (2, 1));

    let flushes = store.health().flushes;
    fs.fail_at(0, FaultKind::Eio);
    let err = store.flush().unwrap_err();
    assert!(!fs.pending(), "the fault fired");
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("injected"), "{err}");

    let health = store.health();
    assert!(!health.is_ok());
    assert_eq!(health.last_error.as_ref().map(ToString::to_string), Some(err.to_string()));
    assert_eq!(health.consecutive_failures, 1);
    assert_eq!(health.flushes, flushes, "a failed flush is not counted as one");
    assert_eq!(health.dirty, 3);
    assert_eq!((users.dirty_count(), orders.dirty_count()), (2, 1), "a failed flush clears no dirty mark");
    assert_eq!(users.len(), 2, "memory is unaffected");

    let stats = store.flush().unwrap();
    assert_eq!(stats.records, 3);
    let health = store.health();
    assert!(health.is_ok() && health.consecutive_failures == 0 && health.flushes == flushes + 1, "{health:?}");
    assert_eq!(health.dirty, 0);
    assert!(temp_files(dir.path()).is_empty());
    store.close().unwrap();
    drop((store, users, orders));

    let store = open(dir.path());
    assert_eq!(values(&store.collection::<User>().unwrap()), [user("ada", "Ada", 36), user("bob", "Bob", 41)]);
    assert_eq!(values(&store.collection::<Order>().unwrap()), [Order { id: 1, item: "book".into() }]);
}

#[test]
fn a_failed_close_keeps_the_store_open_and_a_second_close_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultFs::new();
    let store = open_faulty(dir.path(), &fs);
    let users = store.collection::<User>().unwrap();
    users.insert(user("ada", "Ada", 36)).unwrap();

    fs.fail_at(0, FaultKind::NoSpace);
    let err = store.close().unwrap_err();
    assert!(matches!(&err, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::StorageFull), "{err:?}");
    assert!(!store.health().is_ok());
    assert_eq!(users.dirty_count(), 1);
    users.insert(user("bob", "Bob", 41)).expect("the store is still open after a failed close");

    store.close().unwrap();
    drop((store, users));
    let store = open(dir.path());
    assert_eq!(store.collection::<User>().unwrap().len(), 2);
}

/// The state the failure-point test starts from, flushed.
fn baseline(store: &Store) {
    let users = store.collection::<User>().unwrap();
    let orders = store.collection::<Order>().unwrap();
    users.insert(user("ada", "Ada", 36)).unwrap();
    users.insert(user("bob", "Bob", 41)).unwrap();
    users.insert(user("carol", "Carol", 29)).unwrap();
    orders.insert(order("book")).unwrap();
    orders.insert(order("lamp")).unwrap();
    store.flush().unwrap();
}

/// One flush's worth of every kind of change: an update, a removal, an insert, an
/// auto-id insert (which changes the counter in shelf.json) and an auto-id removal.
fn changes(store: &Store) {
    let users = store.collection::<User>().unwrap();
    let orders = store.collection::<Order>().unwrap();
    users.update(&"ada".to_string(), |u| u.age = 37).unwrap();
    users.remove(&"bob".to_string()).unwrap();
    users.insert(user("dave", "Dave", 50)).unwrap();
    assert_eq!(orders.insert(order("pen")).unwrap(), 3);
    orders.remove(&1).unwrap();
}

fn expected_users() -> Vec<User> {
    vec![user("ada", "Ada", 37), user("carol", "Carol", 29), user("dave", "Dave", 50)]
}

fn expected_orders() -> Vec<Order> {
    vec![Order { id: 2, item: "lamp".into() }, Order { id: 3, item: "pen".into() }]
}

/// Each record file holds its old or its new content (or is absent where that is
/// one of the two), never anything else.
fn assert_old_or_new(dir: &Path, point: u64) {
    let ada = read_record::<User>(&record_path(dir, "user", "ada"));
    assert!(ada == Some(user("ada", "Ada", 36)) || ada == Some(user("ada", "Ada", 37)), "op {point}: ada is {ada:?}");
    let bob = read_record::<User>(&record_path(dir, "user", "bob"));
    assert!(bob.is_none() || bob == Some(user("bob", "Bob", 41)), "op {point}: bob is {bob:?}");
    let dave = read_record::<User>(&record_path(dir, "user", "dave"));
    assert!(dave.is_none() || dave == Some(user("dave", "Dave", 50)), "op {point}: dave is {dave:?}");
}

/// Fails operation `point` of the flush of `changes` with `kind`, then checks that
/// nothing was lost: the data stays dirty, the retry writes it all, and a reopen
/// sees exactly the new state.
fn fail_one_flush_at(kind: FaultKind, point: u64, ops: u64) {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultFs::new();
    let store = open_faulty(dir.path(), &fs);
    baseline(&store);
    changes(&store);
    let users = store.collection::<User>().unwrap();
    let orders = store.collection::<Order>().unwrap();
    let dirty = (users.dirty_count(), orders.dirty_count());

    fs.fail_at(point, kind);
    let outcome = store.flush();
    assert!(!fs.pending(), "{kind:?} at op {point} of {ops} never fired");
    assert!(outcome.is_err(), "{kind:?} at op {point}: the flush reported success");
    assert_eq!((users.dirty_count(), orders.dirty_count()), dirty, "{kind:?} at op {point}: marks cleared");
    assert_eq!(store.health().consecutive_failures, 1);
    assert_eq!(values(&users), expected_users());
    assert_old_or_new(dir.path(), point);

    store.flush().unwrap_or_else(|e| panic!("{kind:?} at op {point}: the retry failed: {e}"));
    assert_eq!(store.health().dirty, 0);
    assert!(store.health().is_ok());
    store.close().unwrap();
    drop((store, users, orders));
    assert!(temp_files(dir.path()).is_empty(), "{kind:?} at op {point}: temp files left");

    let store = open(dir.path());
    let users = store.collection::<User>().unwrap();
    let orders = store.collection::<Order>().unwrap();
    assert_eq!(values(&users), expected_users(), "{kind:?} at op {point}");
    assert_eq!(values(&orders), expected_orders(), "{kind:?} at op {point}");
    assert_eq!(orders.insert(order("next")).unwrap(), 4, "{kind:?} at op {point}: auto-id counter");
}

#[test]
fn a_failure_at_any_operation_of_a_flush_loses_nothing() {
    // How many file-system operations the flush of `changes` takes.
    let ops = {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultFs::new();
        let store = open_faulty(dir.path(), &fs);
        baseline(&store);
        changes(&store);
        let before = fs.ops();
        store.flush().unwrap();
        fs.ops() - before
    };
    // Create, write and sync a temp file for each of 4 writes (3 records and
    // shelf.json), rename each, 2 removals, and a directory sync or more.
    assert!(ops >= 19, "a flush of 5 changes took only {ops} operations");

    // Every point is independent (its own directory and FaultFs): run them at once.
    std::thread::scope(|scope| {
        for kind in [FaultKind::Eio, FaultKind::ShortWrite] {
            for point in 0..ops {
                scope.spawn(move || fail_one_flush_at(kind, point, ops));
            }
        }
    });
}

/// Makes `<dir>/user/<id>.json` a non-empty directory, so no file can be renamed
/// or removed there.
fn block_record_path(dir: &Path, id: &str) -> std::path::PathBuf {
    let path = record_path(dir, "user", id);
    if path.is_file() {
        std::fs::remove_file(&path).unwrap();
    }
    std::fs::create_dir(&path).unwrap();
    std::fs::write(path.join("keep"), b"not Shelf's").unwrap();
    path
}

#[test]
fn a_directory_where_a_record_file_must_go_fails_the_flush_until_it_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let users = store.collection::<User>().unwrap();
    users.insert(user("ada", "Ada", 36)).unwrap();
    users.insert(user("bob", "Bob", 41)).unwrap();
    let blocked = block_record_path(dir.path(), "ada");

    for attempt in 1..=2 {
        match store.flush() {
            Err(Error::Io { path, .. }) => assert_eq!(path, blocked),
            other => panic!("expected an Io error about {}, got {other:?}", blocked.display()),
        }
        let health = store.health();
        assert_eq!(health.consecutive_failures, attempt);
        assert!(health.last_error.is_some());
        assert_eq!(health.dirty, 2);
        assert_eq!(users.dirty_count(), 2);
        assert!(temp_files(dir.path()).is_empty(), "a failed flush leaves no temp files");
    }

    std::fs::remove_dir_all(&blocked).unwrap();
    store.flush().unwrap();
    assert!(store.health().is_ok());
    assert_eq!(users.dirty_count(), 0);
    assert_eq!(read_record::<User>(&blocked), Some(user("ada", "Ada", 36)));
    drop((store, users));

    let store = open(dir.path());
    assert_eq!(values(&store.collection::<User>().unwrap()), [user("ada", "Ada", 36), user("bob", "Bob", 41)]);
}

#[test]
fn a_removal_that_cannot_be_made_stays_dirty_until_it_can() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let users = store.collection::<User>().unwrap();
    users.insert(user("ada", "Ada", 36)).unwrap();
    store.flush().unwrap();
    let blocked = block_record_path(dir.path(), "ada");

    users.remove(&"ada".to_string()).unwrap();
    assert!(store.flush().is_err());
    assert_eq!(users.dirty_count(), 1);
    assert!(blocked.join("keep").is_file(), "Shelf never deletes what it did not write");

    std::fs::remove_dir_all(&blocked).unwrap();
    store.flush().unwrap();
    assert_eq!(users.dirty_count(), 0);
    drop((store, users));
    assert!(open(dir.path()).collection::<User>().unwrap().is_empty());
}

#[test]
fn the_background_flusher_reports_failures_and_retries() {
    let dir = tempfile::tempdir().unwrap();
    let store = builder(dir.path()).flush_interval(Duration::from_millis(20)).open().unwrap();
    let users = store.collection::<User>().unwrap();
    let blocked = block_record_path(dir.path(), "ada");
    users.insert(user("ada", "Ada", 36)).unwrap();

    wait_until("a background flush has failed", || store.health().consecutive_failures >= 1);
    let health = store.health();
    assert!(health.last_error.is_some(), "{health:?}");
    assert_eq!(health.dirty, 1);
    assert_eq!(users.dirty_count(), 1);

    std::fs::remove_dir_all(&blocked).unwrap();
    wait_until("a background flush has succeeded", || store.health().is_ok() && store.health().dirty == 0);
    assert_eq!(store.health().consecutive_failures, 0);
    assert_eq!(read_record::<User>(&blocked), Some(user("ada", "Ada", 36)));
}

/// `close()` flushes, marks the store closed, and flushes once more for writes that
/// came in meanwhile. Its documentation says that when the flush fails "the store
/// stays open and the error is returned: fix the cause and call close again". When
/// that second flush fails, the store is already marked closed: later writes get
/// `Closed`, a second `close()` returns `Ok` without flushing, and the drop does not
/// flush either, so a write that returned `Ok` is lost although every call after it
/// reported success.
#[test]
fn a_close_whose_final_flush_fails_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let fs = GateFs::new();
    let gate = fs.gate();
    let store = builder(dir.path()).vfs(fs).open().unwrap();
    let users = store.collection::<User>().unwrap();
    users.insert(user("ada", "Ada", 36)).unwrap();

    gate.arm();
    let closer = {
        let store = store.clone();
        std::thread::spawn(move || store.close())
    };
    let parked = gate.wait_parked();
    // close()'s first flush is parked at a directory sync; the store is open, so
    // this write is accepted and must reach disk. Its file cannot be written yet,
    // so the final flush of close() fails.
    let late = users.insert(user("late", "Late", 1));
    let blocked = block_record_path(dir.path(), "late");
    gate.release();
    let closed = closer.join().unwrap();
    assert!(parked, "close() never reached a directory sync");
    late.expect("the store was open when this write came in");
    match &closed {
        Err(Error::Io { path, .. }) => assert_eq!(path, &blocked, "{closed:?}"),
        other => panic!("the final flush of close() was meant to fail on {}: {other:?}", blocked.display()),
    }
    assert_eq!(users.dirty_count(), 1, "the late write is still dirty");

    // Fix the cause. As documented, the store is still open, and closing again
    // writes everything.
    std::fs::remove_dir_all(&blocked).unwrap();
    users.insert(user("after", "After", 2)).expect("the store stays open after a failed close");
    store.close().unwrap();
    drop((store, users));
    let store = open(dir.path());
    let ids: Vec<String> = store.collection::<User>().unwrap().all().iter().map(|u| u.id.clone()).collect();
    assert_eq!(ids, ["ada", "after", "late"]);
}

/// The one-file-at-a-time sync mode (`SyncMode::PerFile`, kept for measuring) makes
/// a flush durable like the default: written records and removals are on disk, and a
/// removal of a record that never reached a file is no error.
#[test]
fn the_per_file_sync_mode_writes_and_removes_like_the_batched_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = builder(dir.path()).sync_mode(shelf::SyncMode::PerFile).open().unwrap();
    let users = store.collection::<User>().unwrap();
    users.insert(user("ada", "Ada", 36)).unwrap();
    users.insert(user("bob", "Bob", 41)).unwrap();
    store.flush().unwrap();
    assert_eq!(read_record::<User>(&record_path(dir.path(), "user", "ada")), Some(user("ada", "Ada", 36)));
    users.remove("bob").unwrap();
    // Inserted and removed between two flushes: its removal finds no file.
    users.insert(user("eve", "Eve", 29)).unwrap();
    users.remove("eve").unwrap();
    store.flush().unwrap();
    assert!(!record_path(dir.path(), "user", "bob").exists(), "the removal was not made");
    assert!(!record_path(dir.path(), "user", "eve").exists());
    store.close().unwrap();
    let reopened = open(dir.path());
    let users = reopened.collection::<User>().unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(users.get("ada").as_deref(), Some(&user("ada", "Ada", 36)));
}

/// In the per-file sync mode too, a removal that fails (here: a directory in the
/// record file's place) fails the flush and stays dirty; only a file that is
/// already gone is no error.
#[test]
fn the_per_file_sync_mode_fails_a_flush_whose_removal_fails() {
    let dir = tempfile::tempdir().unwrap();
    let store = builder(dir.path()).sync_mode(shelf::SyncMode::PerFile).open().unwrap();
    let users = store.collection::<User>().unwrap();
    users.insert(user("ada", "Ada", 36)).unwrap();
    store.flush().unwrap();
    let blocked = block_record_path(dir.path(), "ada");

    users.remove("ada").unwrap();
    assert!(store.flush().is_err(), "a removal that failed was reported durable");
    assert_eq!(users.dirty_count(), 1);
    assert!(blocked.join("keep").is_file(), "Shelf never deletes what it did not write");

    std::fs::remove_dir_all(&blocked).unwrap();
    store.flush().unwrap();
    assert_eq!(users.dirty_count(), 0);
}
