//! Data survives a reopen, whether the store was closed with `close()` or all its
//! handles were simply dropped.

mod common;

use std::time::Duration;

use common::*;
use shelf::Error;

/// Writes a known state: inserts, an upsert, an update and a remove.
fn write_state(store: &shelf::Store) {
    let users = store.collection::<User>().unwrap();
    users.insert(user("ada", "Ada", 36)).unwrap();
    users.insert(user("bob", "Bob", 41)).unwrap();
    users.insert(user("carol", "Carol", 29)).unwrap();
    users.upsert(user("bob", "Robert", 41)).unwrap();
    users.update(&"ada".to_string(), |u| u.age = 37).unwrap();
    users.remove(&"carol".to_string()).unwrap();
}

fn expected() -> Vec<User> {
    vec![user("ada", "Ada", 37), user("bob", "Robert", 41)]
}

#[test]
fn reopen_after_close() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    write_state(&store);
    store.close().unwrap();
    drop(store);

    let store = open(dir.path());
    let users = store.collection::<User>().unwrap();
    assert_eq!(values(&users), expected());
    assert_eq!(users.dirty_count(), 0, "loaded records are clean");
    assert_eq!(store.health().dirty, 0);
}

#[test]
fn close_releases_the_directory_while_old_handles_still_exist() {
    let dir = tempfile::tempdir().unwrap();
    let old = open(dir.path());
    let old_users = old.collection::<User>().unwrap();
    write_state(&old);
    old.close().unwrap();

    // The old handles are alive, but the directory is free.
    let store = open(dir.path());
    let users = store.collection::<User>().unwrap();
    assert_eq!(values(&users), expected());
    users.insert(user("dave", "Dave", 50)).unwrap();
    store.flush().unwrap();

    // Dropping the closed store must not write over what the new one did.
    assert!(matches!(old_users.insert(user("zed", "Zed", 1)), Err(Error::Closed { .. })));
    drop((old, old_users));
    store.close().unwrap();
    drop((store, users));

    let store = open(dir.path());
    let users = store.collection::<User>().unwrap();
    let ids: Vec<String> = users.all().iter().map(|u| u.id.clone()).collect();
    assert_eq!(ids, ["ada", "bob", "dave"]);
}

#[test]
fn reopen_after_dropping_every_handle_without_close() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    write_state(&store);
    assert!(store.health().dirty > 0, "nothing was flushed yet");
    drop(store);

    let store = open(dir.path());
    let users = store.collection::<User>().unwrap();
    assert_eq!(values(&users), expected(), "the drop of the last handle flushed");
}

#[test]
fn a_collection_handle_keeps_the_store_open_after_the_store_handle_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let users = store.collection::<User>().unwrap();
    drop(store);

    // The directory is still held, and the handle still writes.
    match builder(dir.path()).open() {
        Err(Error::Locked { .. }) => {}
        other => panic!("expected Locked while a collection handle is alive, got {other:?}"),
    }
    users.insert(user("ada", "Ada", 36)).unwrap();
    drop(users);

    let store = open(dir.path());
    let users = store.collection::<User>().unwrap();
    assert_eq!(values(&users), [user("ada", "Ada", 36)]);
}

#[test]
fn several_reopen_cycles_accumulate() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..5u32 {
        let store = open(dir.path());
        let users = store.collection::<User>().unwrap();
        assert_eq!(users.len(), round as usize);
        users.insert(user(&format!("u{round}"), "x", round)).unwrap();
        if round % 2 == 0 {
            store.close().unwrap();
        }
        // Odd rounds: a plain drop.
    }
    let store = open(dir.path());
    assert_eq!(store.collection::<User>().unwrap().len(), 5);
}

/// When the application drops its last handle while the background flusher is in
/// the middle of a flush, the drop waits for that flush, flushes and unlocks before
/// it returns: a reopen right after dropping every handle must succeed, as it does
/// when the flusher is idle.
#[test]
fn reopen_right_after_drop_while_the_background_flusher_is_flushing() {
    let dir = tempfile::tempdir().unwrap();
    let fs = GateFs::new();
    let gate = fs.gate();
    let store = builder(dir.path()).vfs(fs).flush_interval(Duration::from_millis(10)).open().unwrap();
    let users = store.collection::<User>().unwrap();
    gate.arm();
    users.insert(user("ada", "Ada", 36)).unwrap();
    assert!(gate.wait_parked(), "the background flusher never started a flush");

    // The flush stays parked until after the drop has begun; the drop must wait for it.
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        gate.release();
    });
    drop((store, users)); // every application handle is gone
    let reopened = builder(dir.path()).open();
    releaser.join().unwrap();
    let store = reopened.unwrap_or_else(|e| panic!("reopen right after dropping every handle: {e}"));
    let users = store.collection::<User>().unwrap();
    assert_eq!(values(&users), [user("ada", "Ada", 36)]);
}
