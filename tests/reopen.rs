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

    // The flush stays parked until the drop is blocked waiting for it: the drop runs
    // on its own thread, and the gate opens only once that thread is seen asleep
    // after it began the drop (the drop has nothing else to wait for).
    let (began, dropping) = std::sync::mpsc::channel();
    let dropper = std::thread::Builder::new()
        .name(DROPPER.into())
        .spawn(move || {
            began.send(()).unwrap();
            drop((store, users)); // every application handle is gone
        })
        .unwrap();
    dropping.recv_timeout(DEADLINE).expect("the dropping thread did not start");
    wait_until("the drop waits for the parked flush", || blocked(DROPPER));
    assert!(!dropper.is_finished(), "the drop returned while a flush was parked");
    gate.release();
    dropper.join().unwrap();
    let store = builder(dir.path()).open().unwrap_or_else(|e| panic!("reopen right after dropping every handle: {e}"));
    let users = store.collection::<User>().unwrap();
    assert_eq!(values(&users), [user("ada", "Ada", 36)]);
}

const DROPPER: &str = "shelf-dropper";

/// Whether the thread of this process named `name` is asleep (blocked), per
/// `/proc/self/task/*/stat`. Elsewhere than Linux: `true` once the thread exists,
/// a weaker gate.
fn blocked(name: &str) -> bool {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return true };
    tasks.filter_map(Result::ok).any(|task| {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // `pid (comm) S ...`: the state follows the last `)`.
        let state = stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next());
        comm.trim_end() == name && matches!(state, Some('S' | 'D'))
    })
}
