//! Evolving an entity struct with serde attributes (issue 6; docs/schema-evolution.md):
//! Shelf files are plain serde_json, so a new field needs `#[serde(default)]` (or an
//! `Option`), a renamed field `#[serde(rename)]` or `#[serde(alias)]`, and removed
//! fields are ignored on read. Old files stay as they are until their record is
//! written again.
//!
//! Each version of the struct lives in its own module and names the same collection.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use shelf::{Entity, Error, Store};

/// The first version of the struct.
mod v1 {
    use super::*;

    #[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
    #[entity(collection = "profile")]
    pub struct Profile {
        #[id]
        pub id: String,
        pub name: String,
        pub retired: bool,
    }

    /// The same, kept in one collection file.
    #[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
    #[entity(collection = "profile")]
    #[storage(collection_file)]
    pub struct ProfileFile {
        #[id]
        pub id: String,
        pub name: String,
    }
}

/// New fields: with `#[serde(default)]`, `#[serde(default = "...")]` and `Option`.
mod v2 {
    use super::*;

    #[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
    #[entity(collection = "profile")]
    pub struct Profile {
        #[id]
        pub id: String,
        pub name: String,
        pub retired: bool,
        #[serde(default)]
        pub tags: Vec<String>,
        #[serde(default = "default_level")]
        #[index]
        pub level: u32,
        pub nickname: Option<String>,
    }

    fn default_level() -> u32 {
        1
    }

    /// A new field without a default: old files cannot be read.
    #[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
    #[entity(collection = "profile")]
    pub struct Strict {
        #[id]
        pub id: String,
        pub name: String,
        pub retired: bool,
        pub level: u32,
    }
}

/// `name` renamed in Rust only: the JSON key stays `name`.
mod renamed {
    use super::*;

    #[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
    #[entity(collection = "profile")]
    #[storage(collection_file)]
    pub struct ProfileFile {
        #[id]
        pub id: String,
        #[serde(rename = "name")]
        pub display_name: String,
    }
}

/// `name` renamed to `full_name` on disk too; `alias` reads the old key. `retired`
/// is dropped from the struct.
mod aliased {
    use super::*;

    #[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
    #[entity(collection = "profile")]
    pub struct Profile {
        #[id]
        pub id: String,
        #[serde(alias = "name")]
        pub full_name: String,
    }
}

const NEVER: std::time::Duration = std::time::Duration::from_secs(3600);

fn open<T: Entity>(dir: &Path) -> shelf::Result<Store> {
    Store::builder(dir).register::<T>().flush_interval(NEVER).open()
}

fn record_file(dir: &Path, id: &str) -> std::path::PathBuf {
    dir.join("profile").join(format!("{id}.json"))
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn write_v1(dir: &Path) {
    let store = open::<v1::Profile>(dir).unwrap();
    let profiles = store.collection::<v1::Profile>().unwrap();
    for (id, name) in [("ada", "Ada Lovelace"), ("bob", "Bob Moog")] {
        profiles.insert(v1::Profile { id: id.into(), name: name.into(), retired: false }).unwrap();
    }
    store.close().unwrap();
}

#[test]
fn a_new_field_with_serde_default_gets_its_default_from_old_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_v1(dir);
    let old_bob = std::fs::read(record_file(dir, "bob")).unwrap();

    let store = open::<v2::Profile>(dir).unwrap();
    let profiles = store.collection::<v2::Profile>().unwrap();
    let ada = profiles.get(&"ada".to_string()).unwrap();
    assert_eq!(ada.tags, Vec::<String>::new(), "#[serde(default)]: the type's default");
    assert_eq!(ada.level, 1, "#[serde(default = \"default_level\")]");
    assert_eq!(ada.nickname, None, "a missing Option field is None");
    assert_eq!(profiles.by_level(1).len(), 2, "the index sees the default values");

    // Writing a record writes the new fields; records not written keep their old file.
    profiles.update(&"ada".to_string(), |p| p.tags.push("math".into())).unwrap();
    store.close().unwrap();
    drop((profiles, store));
    let ada = json(&record_file(dir, "ada"));
    assert_eq!(ada["tags"], serde_json::json!(["math"]));
    assert_eq!(ada["level"], 1);
    assert_eq!(ada["nickname"], Value::Null);
    assert_eq!(std::fs::read(record_file(dir, "bob")).unwrap(), old_bob, "an unchanged record is not rewritten");

    let store = open::<v2::Profile>(dir).unwrap();
    assert_eq!(store.collection::<v2::Profile>().unwrap().len(), 2);
}

#[test]
fn a_new_field_without_a_default_makes_old_files_unreadable() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_v1(dir);
    match open::<v2::Strict>(dir) {
        Err(Error::CorruptRecord { collection, path, message }) => {
            assert_eq!(collection, "profile");
            assert!(path.starts_with(dir.join("profile")), "{}", path.display());
            assert!(message.contains("missing field `level`"), "{message}");
        }
        other => panic!("expected CorruptRecord, got {other:?}"),
    }
}

#[test]
fn serde_rename_keeps_the_json_key_of_old_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // An "old" collection file, written by hand.
    std::fs::write(
        dir.join("profile.jsonl"),
        "{\"id\":\"ada\",\"name\":\"Ada Lovelace\"}\n{\"id\":\"bob\",\"name\":\"Bob Moog\"}\n",
    )
    .unwrap();

    let store = open::<renamed::ProfileFile>(dir).unwrap();
    let profiles = store.collection::<renamed::ProfileFile>().unwrap();
    assert_eq!(profiles.get(&"ada".to_string()).unwrap().display_name, "Ada Lovelace");
    profiles.update(&"bob".to_string(), |p| p.display_name = "Robert Moog".into()).unwrap();
    store.close().unwrap();
    drop((profiles, store));

    // Still `name` on disk, so the old declaration reads the new file too.
    let text = std::fs::read_to_string(dir.join("profile.jsonl")).unwrap();
    assert_eq!(text, "{\"id\":\"ada\",\"name\":\"Ada Lovelace\"}\n{\"id\":\"bob\",\"name\":\"Robert Moog\"}\n");
    let store = open::<v1::ProfileFile>(dir).unwrap();
    assert_eq!(store.collection::<v1::ProfileFile>().unwrap().get(&"bob".to_string()).unwrap().name, "Robert Moog");
}

#[test]
fn serde_alias_reads_the_old_key_and_writes_the_new_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_v1(dir);

    let store = open::<aliased::Profile>(dir).unwrap();
    let profiles = store.collection::<aliased::Profile>().unwrap();
    assert_eq!(profiles.get(&"ada".to_string()).unwrap().full_name, "Ada Lovelace");
    assert_eq!(profiles.get(&"bob".to_string()).unwrap().full_name, "Bob Moog");
    profiles.update(&"ada".to_string(), |p| p.full_name = "Augusta Ada King".into()).unwrap();
    store.flush().unwrap();

    // The written record has the new key (and loses the removed field); the other
    // keeps the old file, which the alias goes on reading.
    let ada = json(&record_file(dir, "ada"));
    assert_eq!(ada, serde_json::json!({"id": "ada", "full_name": "Augusta Ada King"}));
    let bob = json(&record_file(dir, "bob"));
    assert_eq!(bob, serde_json::json!({"id": "bob", "name": "Bob Moog", "retired": false}));

    // Rewriting every record moves them all to the new key; then the alias can go.
    for profile in profiles.iter() {
        profiles.upsert((*profile).clone()).unwrap();
    }
    store.close().unwrap();
    drop((profiles, store));
    assert_eq!(json(&record_file(dir, "bob")), serde_json::json!({"id": "bob", "full_name": "Bob Moog"}));
}

#[test]
fn fields_removed_from_the_struct_are_ignored_when_reading() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Files written by the newer struct, read by the older one (a downgrade).
    let store = open::<v2::Profile>(dir).unwrap();
    store
        .collection::<v2::Profile>()
        .unwrap()
        .insert(v2::Profile {
            id: "ada".into(),
            name: "Ada".into(),
            retired: true,
            tags: vec!["math".into()],
            level: 3,
            nickname: Some("Countess".into()),
        })
        .unwrap();
    store.close().unwrap();
    drop(store);
    let store = open::<v1::Profile>(dir).unwrap();
    let ada = store.collection::<v1::Profile>().unwrap().get(&"ada".to_string()).unwrap();
    assert_eq!(*ada, v1::Profile { id: "ada".into(), name: "Ada".into(), retired: true });
}
