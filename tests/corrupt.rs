//! A record file that does not parse: by default `open` fails naming the file and
//! leaves it alone; with `quarantine_corrupt(true)` the file is moved to
//! `<dir>/_quarantine/<collection>/`, reported, and never overwritten.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use shelf::{Error, QUARANTINE_DIR};

/// A store holding ada, bob and carol, closed; returns bob's file after corrupting it.
fn store_with_corrupt_bob(dir: &Path, garbage: &[u8]) -> PathBuf {
    let store = open(dir);
    let users = store.collection::<User>().unwrap();
    for (id, age) in [("ada", 36), ("bob", 41), ("carol", 29)] {
        users.insert(user(id, id, age)).unwrap();
    }
    store.close().unwrap();
    drop((store, users));
    let bob = record_path(dir, "user", "bob");
    assert!(bob.is_file());
    std::fs::write(&bob, garbage).unwrap();
    bob
}

fn expect_corrupt(dir: &Path, file: &Path) -> String {
    match builder(dir).open() {
        Err(Error::CorruptRecord { collection, path, message }) => {
            assert_eq!(collection, "user");
            assert_eq!(path, file);
            assert!(!message.is_empty());
            let shown = Error::CorruptRecord { collection, path, message: message.clone() }.to_string();
            assert!(shown.contains(&file.display().to_string()), "the error names the file: {shown}");
            assert!(shown.contains(&message), "the error carries the parser's message: {shown}");
            message
        }
        Err(other) => panic!("expected CorruptRecord, got {other}"),
        Ok(_) => panic!("open succeeded over a corrupt record file"),
    }
}

#[test]
fn by_default_open_fails_naming_the_file_and_leaves_it_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let bob = store_with_corrupt_bob(dir.path(), b"{\"id\": \"bob\", \"name\": ");
    let before = snapshot(dir.path());

    let message = expect_corrupt(dir.path(), &bob);
    assert!(message.contains("EOF") || message.contains("line"), "serde's message: {message}");
    assert_eq!(snapshot(dir.path()), before, "a failed open changes no file");
    assert!(!dir.path().join(QUARANTINE_DIR).exists());

    // The failed open released the directory: it fails the same way again.
    expect_corrupt(dir.path(), &bob);

    // Repairing the file by hand makes the store open again.
    std::fs::write(&bob, serde_json::to_vec(&user("bob", "bob", 41)).unwrap()).unwrap();
    let store = open(dir.path());
    assert_eq!(store.collection::<User>().unwrap().len(), 3);
}

#[test]
fn a_record_of_the_wrong_shape_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let bob = store_with_corrupt_bob(dir.path(), br#"{"id": "bob", "name": "Bob"}"#);
    let message = expect_corrupt(dir.path(), &bob);
    assert!(message.contains("age"), "serde names the missing field: {message}");
}

#[test]
fn a_record_whose_id_does_not_match_its_file_name_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let bob = store_with_corrupt_bob(dir.path(), &serde_json::to_vec(&user("eve", "Eve", 1)).unwrap());
    let message = expect_corrupt(dir.path(), &bob);
    assert!(message.contains("eve"), "{message}");
}

#[test]
fn an_empty_record_file_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let bob = store_with_corrupt_bob(dir.path(), b"");
    expect_corrupt(dir.path(), &bob);
}

#[test]
fn quarantine_moves_the_file_aside_reports_it_and_loads_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = b"not json at all".to_vec();
    let bob = store_with_corrupt_bob(dir.path(), &garbage);

    let store = builder(dir.path()).quarantine_corrupt(true).open().unwrap();
    let users = store.collection::<User>().unwrap();
    assert_eq!(values(&users), [user("ada", "ada", 36), user("carol", "carol", 29)]);

    let target = dir.path().join(QUARANTINE_DIR).join("user").join("bob.json");
    let report = store.recovery_report();
    assert_eq!(report.quarantined.len(), 1, "{report:?}");
    let moved = &report.quarantined[0];
    assert_eq!(moved.collection, "user");
    assert_eq!(moved.from, bob);
    assert_eq!(moved.to, target);
    assert!(!moved.reason.is_empty());
    assert!(!bob.exists(), "the corrupt file left the collection directory");
    assert_eq!(std::fs::read(&target).unwrap(), garbage, "the quarantined file keeps its bytes");

    // A new record with the same id is written to the collection, not over the
    // quarantined file.
    users.insert(user("bob", "New Bob", 1)).unwrap();
    store.flush().unwrap();
    store.close().unwrap();
    drop((store, users));
    assert_eq!(std::fs::read(&target).unwrap(), garbage);
    assert_eq!(read_record::<User>(&bob), Some(user("bob", "New Bob", 1)));

    // The next open finds nothing to move, and quarantined files are not loaded.
    let store = builder(dir.path()).quarantine_corrupt(true).open().unwrap();
    assert!(store.recovery_report().quarantined.is_empty());
    assert_eq!(store.collection::<User>().unwrap().len(), 3);
    drop(store);
    assert_eq!(std::fs::read(&target).unwrap(), garbage);

    // Without quarantine the store opens too: the bad file is out of the way.
    let _store = open(dir.path());
}

#[test]
fn a_second_quarantined_file_of_the_same_name_does_not_replace_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let bob = store_with_corrupt_bob(dir.path(), b"first garbage");
    let quarantine = dir.path().join(QUARANTINE_DIR).join("user");
    drop(builder(dir.path()).quarantine_corrupt(true).open().unwrap());

    std::fs::write(&bob, b"second garbage").unwrap();
    let store = builder(dir.path()).quarantine_corrupt(true).open().unwrap();
    let report = store.recovery_report();
    assert_eq!(report.quarantined.len(), 1);
    assert_ne!(report.quarantined[0].to, quarantine.join("bob.json"));
    assert!(report.quarantined[0].to.starts_with(&quarantine));
    assert_eq!(std::fs::read(quarantine.join("bob.json")).unwrap(), b"first garbage");
    assert_eq!(std::fs::read(&report.quarantined[0].to).unwrap(), b"second garbage");
    assert_eq!(files(&quarantine).len(), 2);
    drop(store);

    // A third gets the next free suffix; the names count up from `.1`.
    std::fs::write(&bob, b"third garbage").unwrap();
    let store = builder(dir.path()).quarantine_corrupt(true).open().unwrap();
    assert_eq!(store.recovery_report().quarantined[0].to, quarantine.join("bob.json.2"));
    let mut names: Vec<PathBuf> = files(&quarantine);
    names.sort();
    assert_eq!(names, [PathBuf::from("bob.json"), PathBuf::from("bob.json.1"), PathBuf::from("bob.json.2")]);
    assert_eq!(std::fs::read(quarantine.join("bob.json.1")).unwrap(), b"second garbage");
    assert_eq!(std::fs::read(quarantine.join("bob.json.2")).unwrap(), b"third garbage");
}

#[test]
fn quarantine_reports_every_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let bob = store_with_corrupt_bob(dir.path(), b"x");
    let ada = record_path(dir.path(), "user", "ada");
    std::fs::write(&ada, b"y").unwrap();

    let store = builder(dir.path()).quarantine_corrupt(true).open().unwrap();
    let mut from: Vec<PathBuf> = store.recovery_report().quarantined.iter().map(|q| q.from.clone()).collect();
    from.sort();
    assert_eq!(from, [ada, bob]);
    assert_eq!(values(&store.collection::<User>().unwrap()), [user("carol", "carol", 29)]);
}

/// A record file whose name does not match the id inside: the message shows both
/// quoted and escaped, with the stem the id would have, so an invisible or
/// differently encoded character is visible (issue 19).
#[test]
fn a_renamed_record_file_shows_the_encoded_stem_against_the_id() {
    let dir = tempfile::tempdir().unwrap();
    // The record says id "bob\u{200b}" (a zero-width space); its file claims "bob".
    let garbage = serde_json::to_vec(&user("bob\u{200b}", "bob", 41)).unwrap();
    let bob = store_with_corrupt_bob(dir.path(), &garbage);
    let message = expect_corrupt(dir.path(), &bob);
    assert!(message.contains("stem \"bob\""), "{message}");
    assert!(message.contains("\"bob\\u{200b}\""), "the invisible character is escaped: {message}");
    assert!(message.contains("whose file name stem is \"bob%E2%80%8B\""), "{message}");
}
