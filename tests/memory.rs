//! `#[storage(memory)]` collections: fully usable, never written, empty after reopen.

mod common;

use std::path::Path;

use common::*;
use shelf::{Error, Store};

#[test]
fn a_memory_collection_leaves_no_files_and_is_empty_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let sessions = store.collection::<Session>().unwrap();
    let users = store.collection::<User>().unwrap();
    assert_eq!(sessions.path(), None);

    sessions.insert(session("t1", "ada")).unwrap();
    sessions.insert(session("t2", "bob")).unwrap();
    sessions.upsert(session("t2", "carol")).unwrap();
    sessions.update(&"t1".to_string(), |s| s.user = "dave".into()).unwrap();
    sessions.insert(session("t3", "eve")).unwrap();
    sessions.remove(&"t3".to_string()).unwrap();
    assert!(matches!(sessions.insert(session("t1", "x")), Err(Error::DuplicateId { .. })));
    assert_eq!(values(&sessions), [session("t1", "dave"), session("t2", "carol")]);
    assert_eq!(sessions.dirty_count(), 0, "nothing of a memory collection waits for disk");
    users.insert(user("ada", "Ada", 36)).unwrap();
    assert_eq!(store.health().dirty, 1, "only the persisted record is dirty");

    let stats = store.flush().unwrap();
    assert_eq!(stats.records, 1, "only the user was written");
    store.close().unwrap();
    drop((store, sessions, users));

    assert!(!dir.path().join("session").exists());
    assert_eq!(dirs(dir.path()), [Path::new("order"), Path::new("user")]);
    for file in files(dir.path()) {
        assert!(!file.starts_with("session"), "a memory collection wrote {}", file.display());
        let text = std::fs::read_to_string(dir.path().join(&file)).unwrap();
        assert!(!text.contains("dave") && !text.contains("carol"), "session data leaked into {}", file.display());
    }

    let store = open(dir.path());
    assert!(store.collection::<Session>().unwrap().is_empty());
    assert_eq!(store.collection::<User>().unwrap().len(), 1);
}

#[test]
fn a_store_of_only_memory_collections_writes_no_record_files() {
    let dir = tempfile::tempdir().unwrap();
    let open = || Store::builder(dir.path()).register::<Session>().flush_interval(NEVER).open().unwrap();
    let store = open();
    let sessions = store.collection::<Session>().unwrap();
    for n in 0..10 {
        sessions.insert(session(&format!("t{n}"), "ada")).unwrap();
    }
    assert_eq!(store.flush().unwrap().records, 0);
    store.close().unwrap();
    drop((store, sessions));

    assert!(dirs(dir.path()).is_empty(), "no directories: {:?}", dirs(dir.path()));
    assert_eq!(files(dir.path()), [Path::new("LOCK"), Path::new("shelf.json")]);
    let store = open();
    assert!(store.collection::<Session>().unwrap().is_empty());
}
