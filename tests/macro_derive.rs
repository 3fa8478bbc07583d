//! What `#[derive(Entity)]` generates, used as a user would: raw identifiers become
//! the names a user means, a one-to-one key (`#[id] #[belongs_to(..)]`) works with a
//! `has_one` accessor, and ids are looked up by their borrowed form.
//!
//! Compiled under `#![deny(warnings)]` (and clippy's `-D warnings` in the gate), so
//! the generated code is warning-free in a user crate.

#![deny(warnings)]

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use shelf::{Entity, Error, Store};

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Kind {
    #[id]
    id: String,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[index((r#type, size))]
struct File {
    #[id]
    id: String,
    #[index]
    r#type: String,
    size: u64,
    #[belongs_to(Kind)]
    r#match: String,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[has_one(profile: Profile, key = user_id)]
#[has_many(profiles: Profile, key = user_id)]
struct User {
    #[id]
    id: String,
    name: String,
}

/// One-to-one: the id is the foreign key.
#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Profile {
    #[id]
    #[belongs_to(User, on_delete = cascade)]
    user_id: String,
    bio: String,
}

fn open(dir: &std::path::Path) -> Store {
    Store::builder(dir).register::<Kind>().register::<File>().register::<User>().register::<Profile>().open().unwrap()
}

fn file(id: &str, ty: &str, size: u64) -> File {
    File { id: id.into(), r#type: ty.into(), size, r#match: "doc".into() }
}

/// Every file name under `dir`, recursively.
fn file_names(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            out.extend(file_names(&entry.path()));
        }
        out.push(entry.file_name().to_string_lossy().into_owned());
    }
    out
}

fn ids(records: &[Arc<File>]) -> Vec<&str> {
    records.iter().map(|f| f.id.as_str()).collect()
}

#[test]
fn raw_identifiers_get_plain_names_in_lookups_fields_plans_and_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.collection::<Kind>().unwrap().insert(Kind { id: "doc".into() }).unwrap();
    let files = store.collection::<File>().unwrap();
    files.insert(file("a", "pdf", 10)).unwrap();
    files.insert(file("b", "pdf", 20)).unwrap();
    files.insert(file("c", "txt", 10)).unwrap();

    assert_eq!(ids(&files.by_type("pdf")), ["a", "b"]);
    assert_eq!(files.count_by_type("txt"), 1);
    assert_eq!(ids(&files.by_type_and_size("pdf", 20)), ["b"]);
    assert_eq!(files.get("a").unwrap().r#match(&store).unwrap().unwrap().id, "doc");

    let f = File::fields();
    assert_eq!(f.r#type.name(), "type");
    assert_eq!(f.r#match.name(), "match");
    let query = files.query().filter(f.r#type.eq("txt".to_string()));
    let plan = query.explain().to_string();
    assert!(plan.contains("type") && !plan.contains("r#type"), "plan: {plan}");
    assert_eq!(ids(&query.collect()), ["c"]);

    // The foreign key is named without `r#`.
    let err = store.collection::<Kind>().unwrap().remove("doc").unwrap_err();
    assert!(matches!(&err, Error::ForeignKey { field, .. } if field == "match"), "{err}");

    // So are the index files that close writes.
    store.close().unwrap();
    let names = file_names(dir.path());
    assert!(names.iter().any(|n| n.contains("type")), "no index file for `type`: {names:?}");
    assert!(names.iter().all(|n| !n.contains("r#")), "a file name keeps `r#`: {names:?}");
}

#[test]
fn a_one_to_one_key_links_both_ways_and_cascades() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let users = store.collection::<User>().unwrap();
    let profiles = store.collection::<Profile>().unwrap();
    users.insert(User { id: "ada".into(), name: "Ada".into() }).unwrap();
    users.insert(User { id: "bob".into(), name: "Bob".into() }).unwrap();
    profiles.insert(Profile { user_id: "ada".into(), bio: "maths".into() }).unwrap();

    let ada = users.get("ada").unwrap();
    assert_eq!(ada.profile(&store).unwrap().unwrap().bio, "maths");
    assert_eq!(ada.profiles(&store).unwrap().len(), 1);
    assert!(users.get("bob").unwrap().profile(&store).unwrap().is_none());
    assert_eq!(profiles.get("ada").unwrap().user(&store).unwrap().unwrap().name, "Ada");

    let orphan = profiles.insert(Profile { user_id: "nobody".into(), bio: String::new() });
    assert!(matches!(orphan, Err(Error::MissingParent { .. })), "{orphan:?}");

    users.remove("ada").unwrap();
    assert!(profiles.get("ada").is_none(), "on_delete = cascade removes the profile");
}

#[test]
fn ids_are_looked_up_by_their_borrowed_form() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let users = store.collection::<User>().unwrap();
    users.insert(User { id: "ada".into(), name: "Ada".into() }).unwrap();
    users.insert(User { id: "bob".into(), name: "Bob".into() }).unwrap();

    let id: &str = "ada";
    assert_eq!(users.get(id).unwrap().name, "Ada");
    assert_eq!(users.get(&"ada".to_string()).unwrap().name, "Ada", "the owned form still works");
    assert!(users.contains("bob"));
    assert!(!users.contains("cy"));

    let many = users.get_many(["bob", "cy", "ada"]);
    let names: Vec<Option<&str>> = many.iter().map(|u| u.as_ref().map(|u| u.name.as_str())).collect();
    assert_eq!(names, [Some("Bob"), None, Some("Ada")]);

    assert_eq!(users.remove("bob").unwrap().unwrap().name, "Bob");
    assert!(users.remove("bob").unwrap().is_none());
    assert!(!users.contains("bob"));
}
