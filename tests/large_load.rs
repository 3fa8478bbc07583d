//! Loading a collection large enough that parsing and indexing run on two threads:
//! file order still decides which line of an id wins, indices match the records,
//! and a bad line is reported (or quarantined) exactly as in a small collection.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shelf::{Entity, Error, Store};

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[storage(collection_file)]
struct Reading {
    #[id]
    id: u32,
    #[index(unique)]
    tag: String,
    #[index]
    sensor: u32,
}

const N: u32 = 10_000;

fn builder(dir: &Path) -> shelf::StoreBuilder {
    Store::builder(dir).register::<Reading>().flush_interval(Duration::from_secs(3600))
}

fn reading(id: u32) -> Reading {
    Reading { id, tag: format!("t{id}"), sensor: id % 7 }
}

/// A collection file of N readings, written by Shelf.
fn seeded() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let store = builder(dir.path()).open().unwrap();
    store
        .transaction(|tx| {
            for id in 0..N {
                tx.insert(reading(id))?;
            }
            Ok::<_, Error>(())
        })
        .unwrap();
    store.close().unwrap();
    dir
}

fn file(dir: &Path) -> std::path::PathBuf {
    dir.join("reading.jsonl")
}

#[test]
fn a_large_collection_loads_whole_with_its_indices() {
    let dir = seeded();
    let store = builder(dir.path()).open().unwrap();
    let readings = store.collection::<Reading>().unwrap();
    assert_eq!(readings.len(), N as usize);
    for id in [0, 1, 2047, 2048, 2049, 5000, N - 1] {
        assert_eq!(readings.by_tag(&format!("t{id}")).as_deref(), Some(&reading(id)));
    }
    for sensor in 0..7 {
        let expected = (0..N).filter(|id| id % 7 == sensor).count();
        assert_eq!(readings.count_by_sensor(sensor), expected, "sensor {sensor}");
    }
}

#[test]
fn a_later_line_with_the_same_id_wins_in_a_large_file() {
    let dir = seeded();
    // Id 10 again at the very end, with another tag: the later line is the record.
    let mut text = std::fs::read_to_string(file(dir.path())).unwrap();
    text.push_str(r#"{"id":10,"tag":"late","sensor":3}"#);
    text.push('\n');
    std::fs::write(file(dir.path()), text).unwrap();
    let store = builder(dir.path()).open().unwrap();
    let readings = store.collection::<Reading>().unwrap();
    assert_eq!(readings.len(), N as usize);
    assert_eq!(readings.get(&10).map(|r| r.tag.clone()), Some("late".to_owned()));
    assert_eq!(readings.by_tag("late").map(|r| r.id), Some(10));
    assert!(readings.by_tag("t10").is_none(), "the index kept the replaced line's key");
}

/// The file with line `bad` (1-based) replaced by garbage.
fn with_bad_line(dir: &Path, bad: usize) {
    let text = std::fs::read_to_string(file(dir)).unwrap();
    let out: Vec<&str> = text.lines().enumerate().map(|(i, l)| if i + 1 == bad { "{not json" } else { l }).collect();
    std::fs::write(file(dir), out.join("\n") + "\n").unwrap();
}

#[test]
fn a_bad_line_deep_in_a_large_file_fails_open_naming_it() {
    let dir = seeded();
    with_bad_line(dir.path(), 7001);
    match builder(dir.path()).open() {
        Err(Error::CorruptRecord { collection, path, .. }) => {
            assert_eq!(collection, "reading");
            assert_eq!(path, Path::new(&format!("{}:7001", file(dir.path()).display())));
        }
        other => panic!("expected CorruptRecord, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn a_quarantined_bad_line_drops_only_that_record() {
    let dir = seeded();
    with_bad_line(dir.path(), 7001);
    let store = builder(dir.path()).quarantine_corrupt(true).open().unwrap();
    let readings = store.collection::<Reading>().unwrap();
    assert_eq!(readings.len(), N as usize - 1);
    assert_eq!(store.recovery_report().quarantined.len(), 1);
    // Line 7001 held id 7000 (the file is sorted by id), on sensor 0.
    assert!(readings.get(&7000).is_none());
    assert_eq!(readings.count_by_sensor(0), (0..N).filter(|id| id % 7 == 0).count() - 1);
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[storage(per_record)]
struct Sample {
    #[id]
    id: String,
    #[index]
    sensor: u32,
    value: u32,
}

/// More record files than one reader chunk: they are read on reader threads.
const FILES: u32 = 3_000;

fn samples(dir: &Path) {
    let store = shelf::Store::builder(dir).register::<Sample>().open().unwrap();
    store
        .transaction(|tx| {
            for i in 0..FILES {
                tx.insert(Sample { id: format!("s{i:05}"), sensor: i % 7, value: i })?;
            }
            Ok::<_, shelf::Error>(())
        })
        .unwrap();
    store.close().unwrap();
}

#[test]
fn many_record_files_load_whole_on_reader_threads_and_a_bad_one_is_named() {
    let dir = tempfile::tempdir().unwrap();
    samples(dir.path());
    let store = shelf::Store::builder(dir.path()).register::<Sample>().open().unwrap();
    let all = store.collection::<Sample>().unwrap();
    assert_eq!(all.len(), FILES as usize);
    assert_eq!(all.by_sensor(3).len(), (0..FILES).filter(|i| i % 7 == 3).count());
    assert_eq!(all.get("s02999").unwrap().value, 2999);
    store.close().unwrap();
    drop((all, store));

    let bad = dir.path().join("sample").join("s01500.json");
    std::fs::write(&bad, b"{ not json").unwrap();
    match shelf::Store::builder(dir.path()).register::<Sample>().open() {
        Err(shelf::Error::CorruptRecord { path, .. }) => assert_eq!(path, bad),
        other => panic!("expected CorruptRecord naming {}, got {other:?}", bad.display()),
    }
    let store = shelf::Store::builder(dir.path()).register::<Sample>().quarantine_corrupt(true).open().unwrap();
    assert_eq!(store.collection::<Sample>().unwrap().len(), FILES as usize - 1);
    assert_eq!(store.recovery_report().quarantined.len(), 1);
}
