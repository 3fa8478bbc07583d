//! Long ids (URLs) through the CLI: a long id's record file has a hashed name, and
//! `verify`, `export` and `import` take the id from inside the record. A record moved
//! onto another long id's hashed name is a problem for `verify`, as it is for open.

use std::path::Path;
use std::process::{Command, Output};

use serde::{Deserialize, Serialize};
use shelf::{Entity, Store};

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[storage(per_record)]
struct Link {
    #[id]
    url: String,
    title: String,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[storage(collection_file)]
struct Visit {
    #[id]
    url: String,
    count: u32,
}

fn url(n: u32) -> String {
    format!("https://example.com/{}?page={n}", "very/long/path/".repeat(20))
}

fn shelf(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shelf")).args(args).output().unwrap()
}

fn fill(dir: &Path) {
    let store = Store::builder(dir).register::<Link>().register::<Visit>().open().unwrap();
    let links = store.collection::<Link>().unwrap();
    let visits = store.collection::<Visit>().unwrap();
    for n in 0..3 {
        links.insert(Link { url: url(n), title: format!("page {n}") }).unwrap();
        visits.insert(Visit { url: url(n), count: n }).unwrap();
    }
    store.close().unwrap();
}

fn exported(dir: &Path, collection: &str, field: &str) -> Vec<String> {
    let out = shelf(&["export", dir.to_str().unwrap(), "--collection", collection]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let mut ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()[field].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

#[test]
fn verify_and_export_read_long_ids_from_the_records() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path());
    let names: Vec<String> = std::fs::read_dir(dir.path().join("link"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json"))
        .collect();
    assert_eq!(names.len(), 3);
    assert!(names.iter().all(|n| n.contains('~') && n.len() <= 245), "{names:?}");

    let out = shelf(&["verify", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    let want: Vec<String> = (0..3).map(url).collect();
    assert_eq!(exported(dir.path(), "link", "url"), want);
    assert_eq!(exported(dir.path(), "visit", "url"), want);
}

#[test]
fn import_writes_long_ids_under_their_hashed_names() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path());
    let file = dir.path().join("in.jsonl");
    // One replaces a stored record, one is new.
    let lines =
        [serde_json::json!({"url": url(1), "title": "replaced"}), serde_json::json!({"url": url(7), "title": "new"})];
    std::fs::write(&file, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    let out = shelf(&["import", dir.path().to_str().unwrap(), "--collection", "link", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("(1 new, 1 replaced"), "{text}");
    std::fs::remove_file(&file).unwrap();

    let store = Store::builder(dir.path()).register::<Link>().register::<Visit>().open().unwrap();
    let links = store.collection::<Link>().unwrap();
    assert_eq!(links.len(), 4);
    assert_eq!(links.get(url(1).as_str()).unwrap().title, "replaced");
    assert_eq!(links.get(url(7).as_str()).unwrap().title, "new");
}

#[test]
fn verify_reports_a_record_under_another_long_ids_name() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path());
    let link = dir.path().join("link");
    let from = link.join(format!("{}.json", shelf::encode::encode(&url(0))));
    let to = link.join(format!("{}.json", shelf::encode::encode(&url(9))));
    std::fs::rename(&from, &to).unwrap();

    assert!(Store::builder(dir.path()).register::<Link>().register::<Visit>().open().is_err());
    let out = shelf(&["verify", dir.path().to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("hashed name of another id"), "{stdout}");
}
