//! Id encoding through the store: hostile ids round-trip through insert, flush and
//! reopen, every file stays inside its collection directory, two ids never share a
//! file (not even case-insensitively), and an id too long for a file name is refused
//! before anything is written.

mod common;

use std::collections::BTreeSet;
use std::path::{Component, Path};

use common::*;
use proptest::prelude::*;
use shelf::Error;

/// Inserts a user for every id, flushes, closes, reopens, and checks that every id
/// comes back with its record and that the files are where they must be.
fn round_trip(ids: &[String]) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let users = store.collection::<User>().unwrap();
    for (n, id) in ids.iter().enumerate() {
        users.insert(user(id, &format!("user {n}"), n as u32)).unwrap_or_else(|e| panic!("insert {id:?}: {e}"));
    }
    store.flush().unwrap();
    check_files(dir.path(), ids.len());
    store.close().unwrap();
    drop((store, users));

    let store = open(dir.path());
    let users = store.collection::<User>().unwrap();
    assert_eq!(users.len(), ids.len());
    for (n, id) in ids.iter().enumerate() {
        let found = users.get(id).unwrap_or_else(|| panic!("id {id:?} is missing after reopen"));
        assert_eq!(*found, user(id, &format!("user {n}"), n as u32));
    }
    let mut sorted = ids.to_vec();
    sorted.sort();
    let all: Vec<String> = users.all().iter().map(|u| u.id.clone()).collect();
    assert_eq!(all, sorted);
}

/// The data directory holds only the store files and one file per record, directly
/// in the collection directory, with names that differ even ignoring case.
fn check_files(dir: &Path, records: usize) {
    let mut names = Vec::new();
    for file in files(dir) {
        let parts: Vec<Component> = file.components().collect();
        match parts.as_slice() {
            [Component::Normal(name)] => {
                assert!(*name == "LOCK" || *name == "shelf.json", "unexpected file {}", file.display())
            }
            [Component::Normal(collection), Component::Normal(name)] if *collection == "user" => {
                let name = name.to_str().expect("record file names are UTF-8");
                assert!(name.ends_with(".json"), "unexpected file {}", file.display());
                names.push(name.to_owned());
            }
            _ => panic!("file outside its collection directory: {}", file.display()),
        }
    }
    assert_eq!(dirs(dir), [Path::new("order"), Path::new("user")], "no directory besides the collections");
    assert_eq!(names.len(), records, "one file per record: {names:?}");
    let folded: BTreeSet<String> = names.iter().map(|n| n.to_lowercase()).collect();
    assert_eq!(folded.len(), names.len(), "two names differ only by case: {names:?}");
    let canonical = dir.join("user").canonicalize().unwrap();
    for name in &names {
        let path = dir.join("user").join(name).canonicalize().unwrap();
        assert_eq!(path.parent(), Some(canonical.as_path()), "{name} resolves outside the collection");
    }
}

#[test]
fn hostile_ids_round_trip_and_stay_inside_the_collection_directory() {
    let ids: Vec<String> = [
        "..",
        ".",
        "/",
        "a/b",
        "../../etc/passwd",
        "\\",
        "a\\..\\b",
        "\0",
        "nul\0byte",
        "CON",
        "con",
        "Nul",
        "lpt9",
        "",
        " ",
        "a.",
        "%",
        "%41",
        "a.json",
        "LOCK",
        "shelf.json",
        "_quarantine",
        ".shelf-tmp-1-1",
        "\n\t\r",
        "Ünïcödé ✓",
        "日本語",
        "🦀",
        "e\u{301}", // e + combining accent
        "\u{e9}",   // precomposed é: a different id
        "Ab",
        "ab",
        "AB",
        "aB",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    round_trip(&ids);
}

#[test]
fn ids_up_to_the_file_name_limit_round_trip() {
    let limit = shelf::encode::MAX_STEM_LEN;
    // Plain characters take one byte each, escaped ones three.
    round_trip(&["a".repeat(limit), "/".repeat(limit / 3), "é".repeat(limit / 6)]);
}

#[test]
fn a_10_kb_id_is_invalid_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let users = store.collection::<User>().unwrap();
    users.insert(user("ada", "Ada", 36)).unwrap();
    store.flush().unwrap();
    let before = snapshot(dir.path());

    let long = "x".repeat(10 * 1024);
    for outcome in [users.insert(user(&long, "Long", 1)).map(drop), users.upsert(user(&long, "Long", 1)).map(drop)] {
        match outcome {
            Err(Error::InvalidId { collection, id, reason }) => {
                assert_eq!(collection, "user");
                assert!(id.len() < 200, "the error shortens the id: {} bytes", id.len());
                assert!(!reason.is_empty());
            }
            other => panic!("expected InvalidId, got {other:?}"),
        }
    }
    assert!(!users.contains(&long));
    assert_eq!(users.len(), 1);
    assert_eq!(users.dirty_count(), 0);
    assert_eq!(store.flush().unwrap().records, 0);
    assert_eq!(snapshot(dir.path()), before, "nothing was written");
}

#[test]
fn the_first_id_past_the_limit_is_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let users = store.collection::<User>().unwrap();
    let limit = shelf::encode::MAX_STEM_LEN;
    for id in ["a".repeat(limit + 1), "/".repeat(limit / 3 + 1)] {
        match users.insert(user(&id, "x", 1)) {
            Err(Error::InvalidId { .. }) => {}
            other => panic!("expected InvalidId for a {}-byte id, got {other:?}", id.len()),
        }
    }
    assert!(users.is_empty());
    assert_eq!(users.dirty_count(), 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Any short strings (any Unicode, control characters included) round-trip
    /// through the store, one file each.
    #[test]
    fn random_ids_round_trip_through_the_store(ids in prop::collection::btree_set("(?s).{0,16}", 1..8)) {
        round_trip(&ids.into_iter().collect::<Vec<_>>());
    }
}
