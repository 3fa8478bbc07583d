//! Open never destroys what it does not understand (issue 19): when `shelf.json`
//! names another layout than the files on disk hold (edited, copied, restored from
//! another backup, or deleted), open loads what is really there, or fails naming
//! both; the files are never truncated or ignored.

use std::path::Path;

use serde::{Deserialize, Serialize};
use shelf::{Entity, Error, Store};

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[entity(collection = "mig")]
#[storage(collection_file)]
struct Plain {
    #[id]
    id: String,
    n: u32,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[entity(collection = "mig")]
#[storage(collection_file, compress)]
struct Zst {
    #[id]
    id: String,
    n: u32,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[entity(collection = "rec")]
#[storage(per_record)]
struct Rec {
    #[id]
    id: String,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[entity(collection = "mem")]
#[storage(memory)]
struct Mem {
    #[id]
    id: String,
}

/// `Collection::path` names the directory of the collection's files: per_record's
/// own directory, the data directory for a collection file, none in memory.
#[test]
fn a_collections_path_is_the_directory_of_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path()).register::<Rec>().register::<Plain>().register::<Mem>().open().unwrap();
    store.collection::<Rec>().unwrap().insert(Rec { id: "a".into() }).unwrap();
    store.collection::<Plain>().unwrap().insert(Plain { id: "a".into(), n: 1 }).unwrap();
    store.collection::<Mem>().unwrap().insert(Mem { id: "a".into() }).unwrap();
    store.flush().unwrap();
    let rec = store.collection::<Rec>().unwrap().path();
    assert_eq!(rec.as_deref(), Some(dir.path().join("rec").as_path()));
    assert!(dir.path().join("rec").join("a.json").is_file());
    let plain = store.collection::<Plain>().unwrap().path();
    assert_eq!(plain.as_deref(), Some(dir.path()));
    assert!(dir.path().join("mig.jsonl").is_file());
    assert_eq!(store.collection::<Mem>().unwrap().path(), None);
}

fn seed(dir: &Path) -> Vec<u8> {
    let store = Store::builder(dir).register::<Plain>().open().unwrap();
    let mig = store.collection::<Plain>().unwrap();
    for i in 0..5 {
        mig.insert(Plain { id: format!("r{i}"), n: i }).unwrap();
    }
    store.close().unwrap();
    std::fs::read(dir.join("mig.jsonl")).unwrap()
}

fn edit_meta(dir: &Path, from: &str, to: &str) {
    let path = dir.join("shelf.json");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{text}");
    std::fs::write(&path, text.replace(from, to)).unwrap();
}

#[test]
fn a_shelf_json_naming_another_layout_does_not_empty_the_collection() {
    let dir = tempfile::tempdir().unwrap();
    let original = seed(dir.path());
    // shelf.json now claims per-record files; the records are in mig.jsonl.
    edit_meta(dir.path(), "\"collection_file\"", "\"per_record\"");
    let store = Store::builder(dir.path()).register::<Plain>().open().unwrap();
    assert_eq!(store.collection::<Plain>().unwrap().len(), 5, "the records in mig.jsonl were not loaded");
    assert_eq!(std::fs::read(dir.path().join("mig.jsonl")).unwrap(), original, "mig.jsonl changed");
    store.close().unwrap();
    // shelf.json says what is really there again.
    let meta = std::fs::read_to_string(dir.path().join("shelf.json")).unwrap();
    assert!(meta.contains("\"collection_file\""), "{meta}");
}

#[test]
fn a_deleted_shelf_json_and_a_changed_declaration_migrate_from_the_files_found() {
    let dir = tempfile::tempdir().unwrap();
    seed(dir.path());
    std::fs::remove_file(dir.path().join("shelf.json")).unwrap();
    let store = Store::builder(dir.path()).register::<Zst>().open().unwrap();
    let mig = store.collection::<Zst>().unwrap();
    assert_eq!(mig.len(), 5, "the old mig.jsonl was ignored");
    assert_eq!(mig.get("r3").unwrap().n, 3);
    store.close().unwrap();
    assert!(dir.path().join("mig.jsonl.zst").exists());
}

#[test]
fn files_of_two_layouts_fail_open_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let original = seed(dir.path());
    // A compressed copy of another backup next to the plain file.
    let other = tempfile::tempdir().unwrap();
    let store = Store::builder(other.path()).register::<Zst>().open().unwrap();
    store.collection::<Zst>().unwrap().insert(Zst { id: "x".into(), n: 9 }).unwrap();
    store.close().unwrap();
    std::fs::copy(other.path().join("mig.jsonl.zst"), dir.path().join("mig.jsonl.zst")).unwrap();
    let err = Store::builder(dir.path()).register::<Plain>().open().unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Meta { .. }), "{err:?}");
    assert!(text.contains("mig.jsonl") && text.contains("mig.jsonl.zst"), "{text}");
    assert_eq!(std::fs::read(dir.path().join("mig.jsonl")).unwrap(), original);
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[storage(per_record)]
struct Member {
    #[id]
    id: String,
    #[index(unique)]
    email: String,
}

/// Two record files edited by hand to share a unique key: open does not fail (a
/// crash in the middle of a flush can leave the same), but it does not keep quiet
/// either: the recovery report names the index, the key and both ids.
#[test]
fn records_sharing_a_unique_key_on_disk_are_reported_by_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path()).register::<Member>().open().unwrap();
    let members = store.collection::<Member>().unwrap();
    members.insert(Member { id: "a".into(), email: "a@x".into() }).unwrap();
    members.insert(Member { id: "b".into(), email: "b@x".into() }).unwrap();
    store.close().unwrap();
    drop((members, store));
    let b = dir.path().join("member").join("b.json");
    let text = std::fs::read_to_string(&b).unwrap().replace("b@x", "a@x");
    std::fs::write(&b, text).unwrap();
    let store = Store::builder(dir.path()).register::<Member>().open().unwrap();
    let conflicts = &store.recovery_report().unique_conflicts;
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!((conflicts[0].collection.as_str(), conflicts[0].index.as_str()), ("member", "email"));
    assert!(conflicts[0].key.contains("a@x"), "{conflicts:?}");
    assert_eq!(conflicts[0].ids.len(), 2, "{conflicts:?}");
}
