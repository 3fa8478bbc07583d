//! What `open` repairs and what it refuses: leftover temp files of an interrupted
//! flush are deleted and reported; a `shelf.json` it cannot read, or one from a newer
//! format, fails the open and is left as it is.

mod common;

use common::*;
use shelf::{Error, FORMAT_VERSION};

#[test]
fn leftover_temp_files_are_removed_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.collection::<User>().unwrap().insert(user("ada", "Ada", 36)).unwrap();
    store.close().unwrap();
    drop(store);
    // What a crash in the middle of a flush leaves behind.
    std::fs::write(dir.path().join("user").join(".shelf-tmp-1-1"), b"{\"id\": \"ada\", \"na").unwrap();
    std::fs::write(dir.path().join("user").join(".shelf-tmp-1-2"), b"").unwrap();
    std::fs::write(dir.path().join(".shelf-tmp-1-3"), b"{}").unwrap();

    let store = open(dir.path());
    assert_eq!(store.recovery_report().temp_files_removed, 3);
    assert!(store.recovery_report().quarantined.is_empty());
    assert!(temp_files(dir.path()).is_empty());
    assert_eq!(values(&store.collection::<User>().unwrap()), [user("ada", "Ada", 36)]);
    drop(store);

    let store = open(dir.path());
    assert_eq!(store.recovery_report().temp_files_removed, 0);
}

#[test]
fn shelf_json_records_the_format_and_the_collections() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("shelf.json")).unwrap()).unwrap();
    // Version 1: nothing of version 2 (a change feed, a staged import) is used, so
    // older builds still read the directory.
    assert_eq!(meta["format_version"], 1);
    assert_eq!(meta["collections"]["user"]["storage"], "per_record");
    assert_eq!(meta["collections"]["order"]["storage"], "per_record");
    assert_eq!(meta["collections"]["session"]["storage"], "memory");
}

#[test]
fn a_newer_format_version_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    let path = dir.path().join("shelf.json");
    let mut meta: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    meta["format_version"] = (FORMAT_VERSION + 1).into();
    let bytes = serde_json::to_vec_pretty(&meta).unwrap();
    std::fs::write(&path, &bytes).unwrap();

    match builder(dir.path()).open() {
        Err(Error::Meta { path: p, message }) => {
            assert_eq!(p, path);
            assert!(message.contains(&(FORMAT_VERSION + 1).to_string()), "{message}");
        }
        other => panic!("expected Error::Meta, got {other:?}"),
    }
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

#[test]
fn an_unreadable_shelf_json_is_an_error_and_is_not_replaced() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    let path = dir.path().join("shelf.json");
    std::fs::write(&path, b"{ garbage").unwrap();
    match builder(dir.path()).open() {
        Err(Error::Meta { path: p, .. }) => assert_eq!(p, path),
        other => panic!("expected Error::Meta, got {other:?}"),
    }
    assert_eq!(std::fs::read(&path).unwrap(), b"{ garbage");
}
