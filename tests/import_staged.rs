//! Staged imports (`shelf import`, FORMAT §15): what the application's open does
//! with the lines, through the real types and the commit path.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shelf::inspect::{DataDir, ImportOptions, Quiet};
use shelf::{Entity, Store};

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Category {
    #[id]
    id: u64,
    #[belongs_to(Category)]
    parent_id: Option<u64>,
    #[index(unique)]
    code: String,
    kind: Kind,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
enum Kind {
    Shelf,
    Box,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Reading {
    #[id]
    id: String,
    x: f32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    tags: Vec<String>,
}

fn open(dir: &Path) -> Store {
    Store::builder(dir)
        .register::<Category>()
        .register::<Reading>()
        .flush_interval(Duration::from_secs(3600))
        .open()
        .unwrap()
}

fn category(id: u64, parent_id: Option<u64>, code: &str) -> Category {
    Category { id, parent_id, code: code.into(), kind: Kind::Shelf }
}

fn import(dir: &Path, collection: &str, lines: &str) {
    DataDir::open(dir).unwrap().import(collection, &mut lines.as_bytes(), &ImportOptions::default(), &Quiet).unwrap();
}

/// The refused lines of the one import an open applied: (line numbers, records stored).
fn outcome(store: &Store) -> (Vec<usize>, usize) {
    let imports = &store.recovery_report().imports;
    assert_eq!(imports.len(), 1, "{imports:?}");
    (imports[0].rejected.iter().map(|r| r.line).collect(), imports[0].applied)
}

/// A store with category 1 (code K, no parent) and 5 (under 1), so that the tool
/// sees both forms of `parent_id`.
fn seeded(dir: &Path) {
    let store = open(dir);
    let categories = store.collection::<Category>().unwrap();
    categories.insert(category(1, None, "K")).unwrap();
    categories.insert(category(5, Some(1), "e")).unwrap();
}

#[test]
fn when_the_one_commit_is_refused_each_line_goes_in_once_what_it_needs_is_there() {
    let dir = tempfile::tempdir().unwrap();
    seeded(dir.path());
    // Line 4 takes code K, which line 5 frees (record 1 moves to K2): the tool
    // checks the final state and lets it in, but the commit checks op by op and
    // refuses the one commit. One by one, line 1 waits for its parent (line 2) and
    // line 4 for line 5; line 3 is an unknown variant, refused by the type.
    let lines = [
        r#"{"id":10,"parent_id":20,"code":"a","kind":"Shelf"}"#,
        r#"{"id":20,"parent_id":null,"code":"b","kind":"Box"}"#,
        r#"{"id":50,"parent_id":null,"code":"d","kind":"Crate"}"#,
        r#"{"id":60,"parent_id":null,"code":"K","kind":"Shelf"}"#,
        r#"{"id":1,"parent_id":null,"code":"K2","kind":"Shelf"}"#,
    ];
    import(dir.path(), "category", &(lines.join("\n") + "\n"));
    let store = open(dir.path());
    let (rejected, applied) = outcome(&store);
    assert_eq!(rejected, [3], "{:?}", store.recovery_report().imports);
    assert_eq!(applied, 4);
    let categories = store.collection::<Category>().unwrap();
    assert_eq!(categories.get(&10).unwrap().parent_id, Some(20));
    assert_eq!(categories.by_code("K").unwrap().id, 60);
    assert_eq!(categories.by_code("K2").unwrap().id, 1);
    assert!(categories.get(&50).is_none());
    let kept = store.recovery_report().imports[0].kept.clone().unwrap();
    assert!(kept.starts_with(dir.path().join(shelf::QUARANTINE_DIR)), "{}", kept.display());
    drop(categories);
    drop(store);
    // Durable, and applied once: the next open has nothing to apply.
    let store = open(dir.path());
    assert!(store.recovery_report().imports.is_empty());
    assert_eq!(store.collection::<Category>().unwrap().len(), 5, "1, 5, 10, 20 and 60");
}

#[test]
fn a_later_line_with_the_same_id_wins_when_lines_go_in_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    seeded(dir.path());
    // The swap of K (lines 2 and 4) makes the lines go in one by one; line 3 still
    // replaces line 1, as in one commit.
    let lines = [
        r#"{"id":2,"parent_id":null,"code":"first","kind":"Shelf"}"#,
        r#"{"id":3,"parent_id":null,"code":"K","kind":"Shelf"}"#,
        r#"{"id":2,"parent_id":null,"code":"last","kind":"Box"}"#,
        r#"{"id":1,"parent_id":null,"code":"K2","kind":"Shelf"}"#,
    ];
    import(dir.path(), "category", &(lines.join("\n") + "\n"));
    let store = open(dir.path());
    assert_eq!(outcome(&store), (vec![], 4));
    let categories = store.collection::<Category>().unwrap();
    assert_eq!(categories.get(&2).unwrap().code, "last");
    assert_eq!(categories.by_code("K").unwrap().id, 3);
}

#[test]
fn an_export_imports_back_as_it_is_with_f32_values_and_skipped_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let readings = store.collection::<Reading>().unwrap();
    readings.insert(Reading { id: "a".into(), x: 0.1, tags: vec![] }).unwrap();
    readings.insert(Reading { id: "b".into(), x: 1.7, tags: vec!["t".into()] }).unwrap();
    drop(readings);
    drop(store);
    let mut exported = Vec::new();
    DataDir::open(dir.path()).unwrap().export("reading", &mut exported, &Quiet).unwrap();
    let mut text = String::from_utf8(exported).unwrap();
    assert!(text.contains("0.1") && !text.contains("0.10000000149011612"), "{text}");
    // A hand-written line may spell out the default the type skips.
    text.push_str(r#"{"id":"c","x":2.5,"tags":[]}"#);
    text.push('\n');
    import(dir.path(), "reading", &text);
    let store = open(dir.path());
    assert_eq!(outcome(&store), (vec![], 3), "{:?}", store.recovery_report().imports);
    let readings = store.collection::<Reading>().unwrap();
    assert_eq!(readings.get(&"a".to_owned()).unwrap().x, 0.1f32);
    assert_eq!(readings.get(&"c".to_owned()).unwrap().tags, Vec::<String>::new());
}

#[test]
fn a_line_whose_value_the_type_would_not_keep_is_refused_not_changed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.collection::<Reading>().unwrap().insert(Reading { id: "a".into(), x: 1.0, tags: vec![] }).unwrap();
    drop(store);
    // 16777217 is past the integers an f32 holds: the type would store 16777216.
    import(dir.path(), "reading", "{\"id\":\"b\",\"x\":16777217}\n{\"id\":\"c\",\"x\":0.5}\n");
    let store = open(dir.path());
    let imports = &store.recovery_report().imports;
    assert_eq!(outcome(&store), (vec![1], 1), "{imports:?}");
    assert!(imports[0].rejected[0].reason.contains("`x` would not be stored as given"), "{imports:?}");
    assert!(store.collection::<Reading>().unwrap().get(&"b".to_owned()).is_none());
}

#[test]
fn a_staged_import_for_a_collection_this_open_does_not_register_waits_for_one_that_does() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.collection::<Reading>().unwrap().insert(Reading { id: "a".into(), x: 1.0, tags: vec![] }).unwrap();
    drop(store);
    import(dir.path(), "reading", "{\"id\":\"b\",\"x\":2.0}\n");
    let only_categories = Store::builder(dir.path()).register::<Category>().open().unwrap();
    let report = only_categories.recovery_report();
    assert!(report.imports.is_empty());
    assert_eq!(report.pending_imports, [dir.path().join("_import").join("reading.jsonl")]);
    drop(only_categories);
    let store = open(dir.path());
    assert_eq!(outcome(&store), (vec![], 1));
    assert!(store.recovery_report().pending_imports.is_empty());
}
