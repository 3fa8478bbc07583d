//! `shelf import` never writes a record the application's next open refuses: a
//! wrong-type field, a missing parent and a duplicate unique key are each refused
//! with a message naming the line, and nothing is written.

mod common;

use common::snapshot;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shelf::{Entity, Store};

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
struct User {
    #[id]
    id: String,
    name: String,
    #[index(unique)]
    email: String,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Order {
    #[id]
    id: String,
    #[belongs_to(User)]
    user_id: String,
    cents: i64,
}

fn open(dir: &Path) -> Store {
    Store::builder(dir).register::<User>().register::<Order>().flush_interval(Duration::from_secs(3600)).open().unwrap()
}

fn populated() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let users = store.collection::<User>().unwrap();
    users.insert(User { id: "ada".into(), name: "Ada".into(), email: "ada@x.org".into() }).unwrap();
    users.insert(User { id: "bob".into(), name: "Bob".into(), email: "bob@x.org".into() }).unwrap();
    store.collection::<Order>().unwrap().insert(Order { id: "o1".into(), user_id: "ada".into(), cents: 5 }).unwrap();
    store.close().unwrap();
    dir
}

fn import(dir: &Path, collection: &str, input: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_shelf"))
        .args(["import", dir.to_str().unwrap(), "--collection", collection])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    child.wait_with_output().unwrap()
}

/// Imports `input`, expects a refusal naming `line` and containing `words`, and
/// checks that nothing changed and the application still opens.
fn assert_refused(collection: &str, input: &str, line: usize, words: &str) {
    let dir = populated();
    let before = snapshot(dir.path());
    let output = import(dir.path(), collection, input);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "refused: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains(&format!("line {line}:")), "names line {line}: {stderr}");
    assert!(stderr.contains(words), "says `{words}`: {stderr}");
    assert_eq!(snapshot(dir.path()), before, "nothing was written");
    open(dir.path()).close().unwrap();
}

#[test]
fn a_wrong_type_field_is_refused_naming_the_line() {
    let input =
        "{\"id\":\"cy\",\"name\":\"Cy\",\"email\":\"cy@x.org\"}\n\n{\"id\":\"bad\",\"name\":5,\"email\":\"b@x.org\"}\n";
    assert_refused("user", input, 3, "field `name` is an integer");
}

#[test]
fn a_missing_field_is_refused_naming_the_line() {
    assert_refused("user", "{\"id\":\"cy\",\"email\":\"cy@x.org\"}\n", 1, "field `name` is missing");
}

#[test]
fn a_missing_parent_is_refused_naming_the_line() {
    let input = "{\"id\":\"o2\",\"user_id\":\"bob\",\"cents\":1}\n{\"id\":\"o3\",\"user_id\":\"nobody\",\"cents\":1}\n";
    assert_refused("order", input, 2, "refers to \"nobody\" in `user`");
}

#[test]
fn a_duplicate_unique_key_is_refused_naming_the_line() {
    // Against a stored record, and between two input lines.
    assert_refused("user", "{\"id\":\"cy\",\"name\":\"Cy\",\"email\":\"ada@x.org\"}\n", 1, "unique index `email`");
    let input = "{\"id\":\"cy\",\"name\":\"Cy\",\"email\":\"c@x.org\"}\n{\"id\":\"dee\",\"name\":\"Dee\",\"email\":\"c@x.org\"}\n";
    assert_refused("user", input, 2, "already held by record cy");
}

#[test]
fn sound_input_is_imported_and_the_application_loads_it() {
    let dir = populated();
    let output = import(dir.path(), "order", "{\"id\":\"o2\",\"user_id\":\"bob\",\"cents\":7}\n");
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let output = import(dir.path(), "user", "{\"id\":\"cy\",\"name\":\"Cy\",\"email\":\"cy@x.org\"}\n");
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let store = open(dir.path());
    assert_eq!(store.collection::<Order>().unwrap().get(&"o2".to_string()).unwrap().cents, 7);
    assert_eq!(store.collection::<User>().unwrap().by_email("cy@x.org").unwrap().id, "cy");
    assert!(store.recovery_report().unique_conflicts.is_empty());
    store.close().unwrap();
}
