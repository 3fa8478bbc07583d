//! `shelf compact` folds the WAL into the files exactly as the store's own flush
//! would: the same bytes in every record file and collection file, and values that
//! load back bit for bit, integers beyond 64 bits and float edge cases included.

mod common_wal;

use common_wal::copy_dir;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shelf::inspect::{DataDir, Quiet};
use shelf::{Entity, Store};

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[storage(per_record, wal)]
struct Wide {
    #[id]
    id: String,
    big: u128,
    low: i128,
    f: f64,
    small: f32,
    #[index]
    text: String,
    pairs: Vec<Option<(u128, f32)>>,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[storage(collection_file, wal)]
struct Row {
    #[id]
    id: i64,
    big: u128,
    f: f64,
}

/// Ids beyond 64 bits, in both layouts: the file name, and the order of the lines.
#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[storage(collection_file, wal)]
struct WideLine {
    #[id]
    id: i128,
    n: u8,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[storage(per_record, wal)]
struct WideFile {
    #[id]
    id: u128,
    n: u8,
}

fn open(dir: &Path) -> Store {
    Store::builder(dir)
        .register::<Wide>()
        .register::<Row>()
        .register::<WideLine>()
        .register::<WideFile>()
        .flush_interval(Duration::from_secs(3600))
        .open()
        .unwrap()
}

fn wide(i: u32) -> Wide {
    Wide {
        id: format!("w{i}"),
        big: u128::MAX - u128::from(i),
        low: i128::MIN + i128::from(i),
        f: f64::from(i) * 0.1 + 1e-300,
        small: 1.0 / (f32::from(u16::try_from(i).unwrap()) + 3.0),
        text: format!("é\u{1F600}\t\"{i}\""),
        pairs: vec![Some((u128::from(u64::MAX) + u128::from(i), 0.1)), None],
    }
}

fn row(i: i64) -> Row {
    Row { id: i - 2, big: (1u128 << 100) + i as u128, f: 5e-324 * i as f64 }
}

/// The record files and collection files under `dir` (relative path, bytes): not
/// the WAL, index files or `shelf.json`, which compact and the store treat
/// differently by design (FORMAT §9).
fn record_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(dir).unwrap().to_path_buf();
            let name = rel.file_name().unwrap().to_string_lossy().into_owned();
            if name == "wal" || name == "indices" || rel == Path::new("shelf.json") {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else if [".json", ".jsonl", ".json.zst", ".jsonl.zst"].iter().any(|e| name.ends_with(e)) {
                out.push((rel, std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn compact_writes_the_bytes_the_store_flush_writes_and_open_loads_them_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let copy = tempfile::tempdir().unwrap();
    let image = copy.path().join("image");
    let store = open(dir.path());
    let wides = store.collection::<Wide>().unwrap();
    let rows = store.collection::<Row>().unwrap();
    let (wide_lines, wide_files) = (store.collection::<WideLine>().unwrap(), store.collection::<WideFile>().unwrap());
    // Ids that differ below f64 precision, on both sides of zero and of 2^64.
    let line_ids = [i128::MIN, -(1 << 100) - 1, -(1 << 100), -1, 1 << 64, (1 << 100) + 1, 1 << 100, i128::MAX];
    for i in 0..6 {
        wides.insert(wide(i)).unwrap();
        rows.insert(row(i64::from(i))).unwrap();
    }
    for (n, id) in line_ids.iter().take(4).enumerate() {
        wide_lines.insert(WideLine { id: *id, n: n as u8 }).unwrap();
        wide_files.insert(WideFile { id: u128::MAX - n as u128, n: n as u8 }).unwrap();
    }
    store.flush().unwrap();
    for (n, id) in line_ids.iter().enumerate().skip(4) {
        wide_lines.insert(WideLine { id: *id, n: n as u8 }).unwrap();
        wide_files.insert(WideFile { id: (1 << 100) + n as u128, n: n as u8 }).unwrap();
    }
    wide_lines.remove(&-1).unwrap();
    wide_files.upsert(WideFile { id: u128::MAX, n: 99 }).unwrap();
    // Logged only: replaced, removed and new records.
    wides.upsert(Wide { big: 7, ..wide(1) }).unwrap();
    wides.remove(&"w2".to_string()).unwrap();
    wides.insert(wide(9)).unwrap();
    rows.upsert(Row { big: u128::MAX, ..row(0) }).unwrap();
    rows.remove(&1).unwrap();
    rows.insert(row(40)).unwrap();
    copy_dir(dir.path(), &image);
    std::fs::remove_file(image.join("LOCK")).ok();
    let expected_wides = wides.all();
    let expected_rows = rows.all();
    let expected_wide_lines = wide_lines.all();
    let expected_wide_files = wide_files.all();
    store.flush().unwrap();
    store.close().unwrap();

    let report = DataDir::open(&image).unwrap().compact(&Quiet).unwrap();
    assert_eq!(report.records_replayed, 16, "{report:?}");
    assert_eq!(
        record_files(&image),
        record_files(dir.path()),
        "compact wrote other bytes than the store's flush of the same state"
    );

    let reopened = open(&image);
    assert_eq!(reopened.recovery_report().wal_records_replayed, 0, "compact left nothing to replay");
    assert_eq!(reopened.collection::<Wide>().unwrap().all(), expected_wides);
    assert_eq!(reopened.collection::<Row>().unwrap().all(), expected_rows);
    assert_eq!(reopened.collection::<WideLine>().unwrap().all(), expected_wide_lines);
    assert_eq!(reopened.collection::<WideFile>().unwrap().all(), expected_wide_files);
    reopened.close().unwrap();
}

#[test]
fn export_prints_integers_beyond_64_bits_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.collection::<Row>().unwrap().insert(Row { id: 1, big: u128::MAX, f: 0.1 }).unwrap();
    store.close().unwrap();
    let mut out = Vec::new();
    DataDir::open(dir.path()).unwrap().export("row", &mut out, &Quiet).unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), format!("{{\"id\":1,\"big\":{},\"f\":0.1}}\n", u128::MAX));
}

/// Rewrites the logged payloads of the WAL at `dir` with `edit` (same length),
/// with their checksums made valid again: a log only a bug could write.
fn edit_wal_payloads(dir: &Path, edit: impl Fn(&[u8]) -> Vec<u8>) {
    for entry in std::fs::read_dir(dir.join("wal")).unwrap() {
        let path = entry.unwrap().path();
        let mut bytes = std::fs::read(&path).unwrap();
        let mut at = 0;
        while at + 16 <= bytes.len() {
            let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            let payload = edit(&bytes[at + 16..at + 16 + len]);
            assert_eq!(payload.len(), len, "an edit keeps the length");
            bytes[at + 16..at + 16 + len].copy_from_slice(&payload);
            let crc = crc32c::crc32c_append(crc32c::crc32c(&bytes[at..at + 12]), &payload);
            bytes[at + 12..at + 16].copy_from_slice(&crc.to_le_bytes());
            at += 16 + len;
        }
        std::fs::write(&path, bytes).unwrap();
    }
}

#[test]
fn compact_refuses_a_logged_record_under_another_id_as_open_does() {
    let dir = tempfile::tempdir().unwrap();
    let copy = tempfile::tempdir().unwrap();
    let image = copy.path().join("image");
    let store = open(dir.path());
    store.collection::<Wide>().unwrap().insert(wide(9)).unwrap();
    copy_dir(dir.path(), &image);
    std::fs::remove_file(image.join("LOCK")).ok();
    store.close().unwrap();
    edit_wal_payloads(&image, |payload| {
        String::from_utf8(payload.to_vec()).unwrap().replace(r#""id":"w9","v""#, r#""id":"w8","v""#).into_bytes()
    });

    let opened = Store::builder(&image).register::<Wide>().register::<Row>().open();
    let Err(shelf::Error::WalReplay { message, .. }) = opened else { panic!("open replayed it: {:?}", opened.err()) };
    assert!(message.contains("the entry for id `w8` holds a record with id `w9`"), "{message}");
    let err = DataDir::open(&image).unwrap().compact(&Quiet).unwrap_err().to_string();
    assert!(err.contains("the entry for id `w8` holds a record with id `w9`"), "{err}");
    assert!(!image.join("wide").join("w8.json").exists() && !image.join("wide").join("w9.json").exists());
}
