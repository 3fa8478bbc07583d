//! Entities and helpers shared by the storage-strategy tests (`storage_strategies`,
//! `migration`): the same two collections declared with every storage layout, and a
//! reader of the on-disk layout that does not go through Shelf.
//!
//! `variant!(module, storage options...)` declares, in `module`, an `Item` entity
//! (collection `item`, String ids, two indices) and a `Log` entity (collection `log`,
//! `#[id(auto)]`), both with `#[storage(options...)]`, and a unit struct `V` that
//! implements [`Variant`]. Declaring the same collections in two modules with
//! different options is how one test binary changes a declaration between runs.
//!
//! Each test file compiles this module on its own and uses only part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use shelf::fs::Vfs;
use shelf::{Entity, Store, StoreBuilder};

/// An interval so long that the background flusher never runs during a test.
pub const NEVER: Duration = Duration::from_secs(3600);

/// A record of the `item` collection, independent of how it is declared.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Rec {
    pub id: String,
    pub color: String,
    pub code: u32,
    pub note: String,
}

pub fn rec(id: &str, color: &str, code: u32, note: &str) -> Rec {
    Rec { id: id.to_owned(), color: color.to_owned(), code, note: note.to_owned() }
}

/// A record of the `log` collection, independent of how it is declared.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LogRec {
    pub seq: u64,
    pub msg: String,
}

/// What the tests need of an `Item` declaration.
pub trait ItemApi: Entity<Id = String> + Clone + Debug + Serialize {
    fn from_rec(rec: &Rec) -> Self;
    fn to_rec(&self) -> Rec;
    fn set_color(&mut self, color: &str);
    fn set_note(&mut self, note: &str);
    /// Ids of the records with this color, through the generated index accessor.
    fn ids_by_color(store: &Store, color: &str) -> Vec<String>;
    /// The id of the record with this code, through the generated unique accessor.
    fn id_by_code(store: &Store, code: u32) -> Option<String>;
}

/// What the tests need of a `Log` declaration.
pub trait LogApi: Entity<Id = u64> + Clone + Debug + Serialize {
    fn new(msg: &str) -> Self;
    fn to_rec(&self) -> LogRec;
}

/// One declaration of both collections.
pub trait Variant {
    type Item: ItemApi;
    type Log: LogApi;
    /// The layout this declaration keeps on disk.
    const LAYOUT: Layout;
}

#[macro_export]
macro_rules! variant {
    ($module:ident, $($storage:tt)*) => {
        pub mod $module {
            use serde::{Deserialize, Serialize};
            use shelf::{Entity, Store};
            use $crate::common_storage::{ItemApi, Layout, LogApi, LogRec, Rec, Variant};

            #[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
            #[entity(collection = "item")]
            #[storage($($storage)*)]
            pub struct Item {
                #[id]
                pub id: String,
                #[index]
                pub color: String,
                #[index(unique)]
                pub code: u32,
                pub note: String,
            }

            #[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
            #[entity(collection = "log")]
            #[storage($($storage)*)]
            pub struct Log {
                #[id(auto)]
                pub seq: u64,
                pub msg: String,
            }

            impl ItemApi for Item {
                fn from_rec(r: &Rec) -> Self {
                    Item { id: r.id.clone(), color: r.color.clone(), code: r.code, note: r.note.clone() }
                }
                fn to_rec(&self) -> Rec {
                    Rec { id: self.id.clone(), color: self.color.clone(), code: self.code, note: self.note.clone() }
                }
                fn set_color(&mut self, color: &str) {
                    self.color = color.to_owned();
                }
                fn set_note(&mut self, note: &str) {
                    self.note = note.to_owned();
                }
                fn ids_by_color(store: &Store, color: &str) -> Vec<String> {
                    let mut ids: Vec<String> =
                        store.collection::<Item>().unwrap().by_color(color).iter().map(|i| i.id.clone()).collect();
                    ids.sort();
                    ids
                }
                fn id_by_code(store: &Store, code: u32) -> Option<String> {
                    store.collection::<Item>().unwrap().by_code(code).map(|i| i.id.clone())
                }
            }

            impl LogApi for Log {
                fn new(msg: &str) -> Self {
                    Log { seq: 0, msg: msg.to_owned() }
                }
                fn to_rec(&self) -> LogRec {
                    LogRec { seq: self.seq, msg: self.msg.clone() }
                }
            }

            pub struct V;

            impl Variant for V {
                type Item = Item;
                type Log = Log;
                const LAYOUT: Layout = Layout::of_tokens(stringify!($($storage)*));
            }
        }
    };
}

/// Where a collection's records are on disk, as the tests see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Layout {
    PerRecord { compress: bool, shard: u8 },
    CollectionFile { compress: bool },
    Memory,
}

impl Layout {
    /// The layout of a `#[storage(...)]` option list, e.g. `per_record, shard = 2, compress`.
    pub const fn of_tokens(tokens: &str) -> Layout {
        let bytes = tokens.as_bytes();
        let compress = contains(bytes, b"compress");
        if contains(bytes, b"memory") {
            Layout::Memory
        } else if contains(bytes, b"collection_file") {
            Layout::CollectionFile { compress }
        } else {
            let shard = if contains(bytes, b"shard = 1") {
                1
            } else if contains(bytes, b"shard = 2") {
                2
            } else if contains(bytes, b"shard = 3") {
                3
            } else {
                0
            };
            Layout::PerRecord { compress, shard }
        }
    }

    pub fn compressed(self) -> bool {
        matches!(self, Layout::PerRecord { compress: true, .. } | Layout::CollectionFile { compress: true })
    }

    /// The layout as `shelf.json` records it.
    fn from_meta(entry: &Value) -> Layout {
        let compress = entry.get("compress").and_then(Value::as_bool).unwrap_or(false);
        match entry["storage"].as_str() {
            Some("per_record") => {
                Layout::PerRecord { compress, shard: entry.get("shard").and_then(Value::as_u64).unwrap_or(0) as u8 }
            }
            Some("collection_file") => Layout::CollectionFile { compress },
            Some("memory") => Layout::Memory,
            other => panic!("shelf.json: unknown storage {other:?} in {entry}"),
        }
    }
}

const fn contains(hay: &[u8], needle: &[u8]) -> bool {
    let mut i = 0;
    while i + needle.len() <= hay.len() {
        let mut j = 0;
        while j < needle.len() && hay[i + j] == needle[j] {
            j += 1;
        }
        if j == needle.len() {
            return true;
        }
        i += 1;
    }
    false
}

/// A builder for variant `V` on the real file system, background flusher idle.
pub fn builder<V: Variant>(dir: &Path) -> StoreBuilder {
    Store::builder(dir).register::<V::Item>().register::<V::Log>().flush_interval(NEVER)
}

/// Every record of the `item` collection of an open store, by id.
pub fn items<V: Variant>(store: &Store) -> BTreeMap<String, Rec> {
    store.collection::<V::Item>().unwrap().iter().map(|i| (i.id().clone(), i.to_rec())).collect()
}

/// Every record of the `log` collection of an open store, by id.
pub fn logs<V: Variant>(store: &Store) -> BTreeMap<u64, LogRec> {
    store.collection::<V::Log>().unwrap().iter().map(|l| (*l.id(), l.to_rec())).collect()
}

/// Checks every index answer of the open store against the model.
pub fn check_indices<V: Variant>(store: &Store, model: &BTreeMap<String, Rec>, context: &str) {
    let colors: std::collections::BTreeSet<&str> =
        model.values().map(|r| r.color.as_str()).chain(["red", "green", "blue", "none"]).collect();
    for color in colors {
        let expected: Vec<String> = model.values().filter(|r| r.color == color).map(|r| r.id.clone()).collect();
        assert_eq!(V::Item::ids_by_color(store, color), expected, "{context}: by_color({color})");
    }
    for r in model.values() {
        assert_eq!(V::Item::id_by_code(store, r.code), Some(r.id.clone()), "{context}: by_code({})", r.code);
    }
    assert_eq!(V::Item::id_by_code(store, 999_999), None, "{context}: by_code of an absent code");
}

// ---- Reading the data directory without Shelf --------------------------------------

/// Every file under `dir` (recursively), relative to `dir`, sorted; none when missing.
pub fn all_files(fs: &dyn Vfs, dir: &Path) -> Vec<PathBuf> {
    fn walk(fs: &dyn Vfs, root: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = fs.read_dir(&root.join(rel)) else { return };
        for entry in entries {
            let path = rel.join(&entry.name);
            if entry.is_dir {
                walk(fs, root, &path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(fs, dir, Path::new(""), &mut out);
    out.sort();
    out
}

/// Temp files of interrupted writes anywhere under `dir`.
pub fn temp_files(fs: &dyn Vfs, dir: &Path) -> Vec<PathBuf> {
    all_files(fs, dir)
        .into_iter()
        .filter(|f| f.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(".shelf-tmp-")))
        .collect()
}

/// What a file of collection `collection` (path relative to the data directory) is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// A record file, or the collection file, of this layout.
    Data(Layout),
    /// An index file (`<c>/indices/<field>.jsonl`).
    Index,
    /// A temp file of an interrupted write.
    Temp,
    /// Something else: no Shelf layout writes such a file.
    Unknown,
}

/// Classifies a file relative to the data directory; `None` when it is not one of
/// `collection`'s files at all.
pub fn classify(collection: &str, rel: &Path) -> Option<FileKind> {
    let parts: Vec<&str> = rel.iter().map(|p| p.to_str().unwrap()).collect();
    let name = *parts.last().unwrap();
    if parts.len() == 1 {
        return if name == format!("{collection}.jsonl") {
            Some(FileKind::Data(Layout::CollectionFile { compress: false }))
        } else if name == format!("{collection}.jsonl.zst") {
            Some(FileKind::Data(Layout::CollectionFile { compress: true }))
        } else {
            None
        };
    }
    if parts[0] != collection {
        return None;
    }
    if name.starts_with(".shelf-tmp-") {
        return Some(FileKind::Temp);
    }
    if parts.len() == 3 && parts[1] == "indices" {
        return Some(FileKind::Index);
    }
    let compress = name.ends_with(".json.zst");
    if !compress && !name.ends_with(".json") {
        return Some(FileKind::Unknown);
    }
    match parts.len() {
        2 => Some(FileKind::Data(Layout::PerRecord { compress, shard: 0 })),
        3 if (1..=3).contains(&parts[1].len())
            && parts[1].bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            Some(FileKind::Data(Layout::PerRecord { compress, shard: parts[1].len() as u8 }))
        }
        _ => Some(FileKind::Unknown),
    }
}

/// `collection`'s files under `dir`, with what each is.
pub fn collection_files(fs: &dyn Vfs, dir: &Path, collection: &str) -> Vec<(PathBuf, FileKind)> {
    all_files(fs, dir).into_iter().filter_map(|f| classify(collection, &f).map(|k| (f, k))).collect()
}

/// The files of `collection` that are neither data files of `layout` nor index files.
pub fn stray_files(fs: &dyn Vfs, dir: &Path, collection: &str, layout: Layout) -> Vec<(PathBuf, FileKind)> {
    collection_files(fs, dir, collection)
        .into_iter()
        .filter(|(_, k)| *k != FileKind::Data(layout) && *k != FileKind::Index)
        .collect()
}

/// Decodes a data file's content: zstd when `compress`.
pub fn decode(path: &Path, bytes: Vec<u8>, compress: bool) -> Vec<u8> {
    if compress {
        zstd::decode_all(bytes.as_slice()).unwrap_or_else(|e| panic!("{} is not valid zstd: {e}", path.display()))
    } else {
        assert!(
            bytes.first().is_none_or(|b| *b == b'{'),
            "{} should be plain JSON, starts with {:?}",
            path.display(),
            &bytes[..bytes.len().min(8)]
        );
        bytes
    }
}

/// The text form of a record's id, as in file names.
fn id_text(value: &Value, id_field: &str) -> String {
    match &value[id_field] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => panic!("id field `{id_field}` is {other}"),
    }
}

fn id_order(a: &Value, b: &Value) -> std::cmp::Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_u64().cmp(&y.as_u64()),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        _ => panic!("ids of different types: {a} and {b}"),
    }
}

/// Reads every record `collection` holds in `layout`, straight from the files, and
/// checks the files are well formed: per-record files parse and are named after
/// their record's encoded id (in the right shard directory form); a collection file
/// holds one compact entity per line, sorted by id. Records are returned by id text.
pub fn read_layout(
    fs: &dyn Vfs,
    dir: &Path,
    collection: &str,
    layout: Layout,
    id_field: &str,
) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    match layout {
        Layout::Memory => {}
        Layout::CollectionFile { compress } => {
            let rel = PathBuf::from(format!("{collection}.jsonl{}", if compress { ".zst" } else { "" }));
            let path = dir.join(&rel);
            let bytes = match fs.read(&path) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return out,
                Err(e) => panic!("read {}: {e}", path.display()),
            };
            let text = String::from_utf8(decode(&path, bytes, compress)).unwrap();
            assert!(text.is_empty() || text.ends_with('\n'), "{}: the last line is not terminated", path.display());
            let mut previous: Option<Value> = None;
            for (n, line) in text.lines().enumerate() {
                let value: Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("{}:{}: does not parse ({e}): {line}", path.display(), n + 1));
                // Compact: as long as serde_json's compact form (key order may differ).
                assert_eq!(
                    serde_json::to_string(&value).unwrap().len(),
                    line.len(),
                    "{}:{}: not compact",
                    path.display(),
                    n + 1
                );
                if let Some(prev) = &previous {
                    assert_eq!(
                        id_order(&prev[id_field], &value[id_field]),
                        std::cmp::Ordering::Less,
                        "{}:{}: lines not sorted by id (or a duplicate id)",
                        path.display(),
                        n + 1
                    );
                }
                out.insert(id_text(&value, id_field), value.clone());
                previous = Some(value);
            }
        }
        Layout::PerRecord { compress, .. } => {
            for (rel, kind) in collection_files(fs, dir, collection) {
                if kind != FileKind::Data(layout) {
                    continue;
                }
                let path = dir.join(&rel);
                let bytes = decode(&path, fs.read(&path).unwrap(), compress);
                let value: Value =
                    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()));
                let id = id_text(&value, id_field);
                let ext = if compress { ".json.zst" } else { ".json" };
                let expected = format!("{}{ext}", shelf::encode::encode(&id));
                assert_eq!(rel.file_name().unwrap().to_str().unwrap(), expected, "{} holds id {id}", rel.display());
                assert!(out.insert(id.clone(), value).is_none(), "id {id} has two files in {layout:?}");
            }
        }
    }
    out
}

/// `collection`'s records as JSON values by id text, for comparing with [`read_layout`].
pub fn as_values<K: ToString, T: Serialize>(records: &BTreeMap<K, T>) -> BTreeMap<String, Value> {
    records.iter().map(|(k, v)| (k.to_string(), serde_json::to_value(v).unwrap())).collect()
}

/// What `shelf.json` records of a collection: its layout, the cleanup mark of an
/// interrupted migration, and the auto-id counter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetaEntry {
    pub layout: Layout,
    pub cleanup: Option<Layout>,
    pub next_id: Option<u64>,
}

pub fn meta_entry(fs: &dyn Vfs, dir: &Path, collection: &str) -> Option<MetaEntry> {
    let bytes = fs.read(&dir.join("shelf.json")).ok()?;
    let meta: Value = serde_json::from_slice(&bytes).expect("shelf.json parses");
    let entry = meta["collections"].get(collection)?;
    Some(MetaEntry {
        layout: Layout::from_meta(entry),
        cleanup: entry.get("cleanup").filter(|c| !c.is_null()).map(Layout::from_meta),
        next_id: entry.get("next_id").and_then(Value::as_u64),
    })
}

/// Checks that `collection` is on disk exactly as `layout` with exactly `expected`
/// records, that `shelf.json` records that layout without a cleanup mark, and that
/// no file of another layout (or a temp file) is left.
pub fn assert_on_disk(
    fs: &dyn Vfs,
    dir: &Path,
    collection: &str,
    layout: Layout,
    id_field: &str,
    expected: &BTreeMap<String, Value>,
    context: &str,
) {
    assert_on_disk_tolerating(fs, dir, collection, layout, id_field, expected, &[], context);
}

/// [`assert_on_disk`], but data files of the `tolerated` layouts may be left over.
#[allow(clippy::too_many_arguments)]
pub fn assert_on_disk_tolerating(
    fs: &dyn Vfs,
    dir: &Path,
    collection: &str,
    layout: Layout,
    id_field: &str,
    expected: &BTreeMap<String, Value>,
    tolerated: &[Layout],
    context: &str,
) {
    let temps = temp_files(fs, dir);
    assert!(temps.is_empty(), "{context}: temp files left: {temps:?}");
    let mut stray = stray_files(fs, dir, collection, layout);
    stray.retain(|(_, kind)| !tolerated.iter().any(|t| *kind == FileKind::Data(*t)));
    assert!(stray.is_empty(), "{context}: `{collection}` has files outside {layout:?}: {stray:?}");
    let found = read_layout(fs, dir, collection, layout, id_field);
    assert_eq!(&found, expected, "{context}: `{collection}` records on disk in {layout:?}");
    let meta = meta_entry(fs, dir, collection).unwrap_or_else(|| panic!("{context}: no shelf.json entry"));
    assert_eq!(meta.layout, layout, "{context}: shelf.json layout of `{collection}`");
    assert_eq!(meta.cleanup, None, "{context}: shelf.json still has a cleanup mark for `{collection}`");
}

/// The real file system, as a `&dyn Vfs` for the readers above.
pub fn real() -> Arc<dyn Vfs> {
    Arc::new(shelf::fs::RealFs)
}
