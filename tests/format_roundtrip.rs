//! Every file kind the store writes is read back by the tools' codec
//! (`shelf::inspect`): record files in every layout (plain, compressed, sharded),
//! collection files (plain and compressed), index files, WAL segments (a live log,
//! and a torn one), and `shelf.json` with its schema.

mod common_wal;

use common_wal::copy_dir;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use shelf::inspect::{DataDir, Quiet, WalDamage};
use shelf::{Entity, Store};

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[index((kind, rank))]
struct Plain {
    #[id]
    id: String,
    #[index(unique)]
    code: String,
    #[index]
    kind: String,
    rank: u32,
    n: f64,
    #[index(each)]
    tags: Vec<String>,
    nested: Option<Inner>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Inner {
    a: Vec<u32>,
    e: Shape,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
enum Shape {
    Dot,
    Circle { r: f64 },
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[storage(per_record, compress)]
struct Packed {
    #[id]
    id: u64,
    #[index(sorted)]
    at: u64,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[storage(per_record, shard = 2)]
struct Sharded {
    #[id]
    id: String,
    #[belongs_to(Plain)]
    plain_id: String,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[storage(collection_file)]
struct Line {
    #[id(auto)]
    id: u64,
    text: String,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[storage(collection_file, compress)]
struct Squeezed {
    #[id]
    id: i64,
    #[index]
    text: String,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[storage(per_record, wal)]
struct Logged {
    #[id]
    id: String,
    #[index(unique)]
    owner: String,
    cents: i64,
}

fn open(dir: &Path) -> Store {
    Store::builder(dir)
        .register::<Plain>()
        .register::<Packed>()
        .register::<Sharded>()
        .register::<Line>()
        .register::<Squeezed>()
        .register::<Logged>()
        .flush_interval(Duration::from_secs(3600))
        .open()
        .unwrap()
}

fn plain(i: u32) -> Plain {
    Plain {
        id: format!("P.{i}"),
        code: format!("c{i}"),
        kind: ["x", "y"][i as usize % 2].into(),
        rank: i / 2,
        n: f64::from(i) * 0.1 + 806023.0 * 0.01,
        tags: vec![format!("t{}", i % 3), "all".into()],
        nested: i.is_multiple_of(2).then(|| Inner {
            a: vec![i, i + 1],
            e: if i.is_multiple_of(4) { Shape::Dot } else { Shape::Circle { r: 1.5 } },
        }),
    }
}

/// What the tools export for a collection, by id text.
fn exported(data: &DataDir, collection: &str) -> Vec<Value> {
    let mut out = Vec::new();
    data.export(collection, &mut out, &Quiet).unwrap();
    String::from_utf8(out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn values<T: Serialize>(records: &[T]) -> Vec<Value> {
    records.iter().map(|r| serde_json::to_value(r).unwrap()).collect()
}

#[test]
fn every_file_kind_the_store_writes_is_read_back_by_the_tools() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let plains: Vec<Plain> = (0..6).map(plain).collect();
    for p in &plains {
        store.collection::<Plain>().unwrap().insert(p.clone()).unwrap();
    }
    let packed: Vec<Packed> = (1..=4).map(|i| Packed { id: i, at: 100 - i }).collect();
    for p in &packed {
        store.collection::<Packed>().unwrap().insert(p.clone()).unwrap();
    }
    let sharded: Vec<Sharded> =
        (0..5).map(|i| Sharded { id: format!("s{i}"), plain_id: format!("P.{}", i % 6) }).collect();
    for s in &sharded {
        store.collection::<Sharded>().unwrap().insert(s.clone()).unwrap();
    }
    for text in ["a", "b", "c"] {
        store.collection::<Line>().unwrap().insert(Line { id: 0, text: text.into() }).unwrap();
    }
    let squeezed: Vec<Squeezed> = [-3i64, 2, 10].iter().map(|&id| Squeezed { id, text: format!("t{id}") }).collect();
    for s in &squeezed {
        store.collection::<Squeezed>().unwrap().insert(s.clone()).unwrap();
    }
    let logged: Vec<Logged> =
        (0..3).map(|i| Logged { id: format!("L{i}"), owner: format!("o{i}"), cents: i64::from(i) * 7 }).collect();
    for l in &logged {
        store.collection::<Logged>().unwrap().insert(l.clone()).unwrap();
    }

    // While the store runs: the WAL holds Logged's commits, and the tools read them.
    let data = DataDir::open(dir.path()).unwrap();
    let wal = data.wal().unwrap();
    assert_eq!(wal.records, 3, "one WAL record per commit: {wal:?}");
    assert_eq!(wal.damage, None);
    assert_eq!(exported(&data, "logged"), values(&logged), "export reads the live WAL's payloads");
    store.close().unwrap();

    // After close: every layout's files, read back.
    let data = DataDir::open(dir.path()).unwrap();
    let mut sorted_plains = plains.clone();
    sorted_plains.sort_by(|a, b| a.id.cmp(&b.id));
    let back = exported(&data, "plain");
    assert_eq!(back, values(&sorted_plains), "record files, floats bit for bit");
    for (b, p) in back.iter().zip(&sorted_plains) {
        assert_eq!(b["n"].as_f64().unwrap().to_bits(), p.n.to_bits());
    }
    assert_eq!(exported(&data, "packed"), values(&packed), "compressed record files");
    let mut sorted_sharded = sharded.clone();
    sorted_sharded.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(exported(&data, "sharded"), values(&sorted_sharded), "sharded record files");
    let lines: Vec<Value> = exported(&data, "line");
    assert_eq!(lines.iter().map(|l| l["text"].as_str().unwrap()).collect::<Vec<_>>(), ["a", "b", "c"]);
    assert_eq!(exported(&data, "squeezed"), values(&squeezed), "compressed collection file, sorted by integer id");
    assert_eq!(exported(&data, "logged"), values(&logged));

    // Index files and the checkpointed WAL: verify reads every one, and finds them sound.
    let report = data.verify(&Quiet).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    let index_files: usize = report.collections.iter().map(|c| c.index_files).sum();
    // plain: code, kind, tags, kind_and_rank; packed: at; sharded: plain_id; squeezed: text; logged: owner
    assert_eq!(index_files, 8, "{:?}", report.collections);

    // shelf.json: the schema the store records.
    let by_name: BTreeMap<&str, _> = data.collections().iter().map(|c| (c.name.as_str(), c)).collect();
    assert_eq!(by_name["plain"].id_field.as_deref(), Some("id"));
    let plain_indices: Vec<(&str, bool, bool, Vec<&str>, bool)> = by_name["plain"]
        .indices
        .iter()
        .map(|i| (i.name.as_str(), i.unique, i.sorted, i.fields.iter().map(String::as_str).collect(), i.each))
        .collect();
    // Each index with its fields (a composite's in key order) and whether it is `each`.
    for expected in [
        ("code", true, false, vec!["code"], false),
        ("kind", false, false, vec!["kind"], false),
        ("tags", false, false, vec!["tags"], true),
        ("kind_and_rank", false, false, vec!["kind", "rank"], false),
    ] {
        assert!(plain_indices.contains(&expected), "{expected:?} in {plain_indices:?}");
    }
    assert_eq!(
        by_name["packed"].indices.iter().map(|i| (i.name.as_str(), i.sorted)).collect::<Vec<_>>(),
        [("at", true)]
    );
    let fk = &by_name["sharded"].foreign_keys;
    assert_eq!((fk.len(), fk[0].field.as_str(), fk[0].parent.as_str(), fk[0].check), (1, "plain_id", "plain", true));
    assert_eq!(by_name["squeezed"].describe_storage(), "collection_file, compress");
    assert_eq!(by_name["sharded"].describe_storage(), "per_record, shard = 2");
    assert_eq!(by_name["line"].next_id, Some(4));
    assert!(by_name["logged"].wal);
}

/// The crash image (the files as they were, without close) of a store that logged
/// four commits to `logged`, at `copy/image`.
fn crash_image_of_four_logged_commits(copy: &Path) -> std::path::PathBuf {
    let dir = tempfile::tempdir().unwrap();
    let image = copy.join("image");
    let store = open(dir.path());
    let logged = store.collection::<Logged>().unwrap();
    for i in 0..4 {
        logged.insert(Logged { id: format!("L{i}"), owner: format!("o{i}"), cents: i }).unwrap();
    }
    copy_dir(dir.path(), &image);
    store.close().unwrap();
    std::fs::remove_file(image.join("LOCK")).ok();
    image
}

#[test]
fn a_torn_wal_tail_is_measured_by_the_tools_as_open_drops_it() {
    let copy = tempfile::tempdir().unwrap();
    let image = crash_image_of_four_logged_commits(copy.path());
    let segment = std::fs::read_dir(image.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal") && std::fs::metadata(p).unwrap().len() > 0)
        .max()
        .unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes.truncate(bytes.len() - 5); // the last append, torn
    std::fs::write(&segment, &bytes).unwrap();

    let data = DataDir::open(&image).unwrap();
    let wal = data.wal().unwrap();
    let Some(WalDamage::TornTail { bytes: torn, .. }) = wal.damage else { panic!("a torn tail: {wal:?}") };
    assert_eq!(wal.records, 3);
    assert_eq!(exported(&data, "logged").len(), 3, "export applies the three whole records");

    let store = open(&image);
    assert_eq!(store.recovery_report().wal_bytes_truncated, torn, "the tools and open count the same bytes");
    assert_eq!(store.collection::<Logged>().unwrap().len(), 3);
    store.close().unwrap();
}

#[test]
fn a_corrupt_wal_record_is_reported_by_the_tools_where_open_refuses_it() {
    let copy = tempfile::tempdir().unwrap();
    let image = crash_image_of_four_logged_commits(copy.path());
    let segments: Vec<_> = std::fs::read_dir(image.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal") && std::fs::metadata(p).unwrap().len() > 0)
        .collect();
    assert_eq!(segments.len(), 1, "the four commits are in one segment: {segments:?}");
    let mut bytes = std::fs::read(&segments[0]).unwrap();
    bytes[17] ^= 0x01; // in the first record's payload: three valid records follow
    std::fs::write(&segments[0], &bytes).unwrap();

    let data = DataDir::open(&image).unwrap();
    let wal = data.wal().unwrap();
    let Some(WalDamage::Corrupt { segment, offset }) = &wal.damage else { panic!("corruption: {wal:?}") };
    assert_eq!((segment, *offset), (&segments[0], 0));
    match Store::builder(&image).register::<Logged>().open() {
        Err(shelf::Error::WalCorrupt { segment: s, offset: o }) => assert_eq!((s, o), (segments[0].clone(), 0)),
        Err(other) => panic!("expected WalCorrupt, got {other}"),
        Ok(_) => panic!("open accepted a corrupt WAL"),
    }
}
