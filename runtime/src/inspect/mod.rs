//! Untyped access to a data directory, without the entity types that wrote it: what
//! the `shelf` command-line tool is built on.
//!
//! [`DataDir::open`] reads `shelf.json`. From there:
//!
//! - [`DataDir::collections`] and [`DataDir::usage`]: each collection's layout, record
//!   count and size on disk; [`DataDir::wal`]: the write-ahead log;
//! - [`DataDir::records`] and [`DataDir::export`]: every record of a collection, in any
//!   layout (zstd-compressed files included), as JSON;
//! - [`DataDir::verify`]: checks every record file, index file and WAL segment, and
//!   the references of the foreign keys `shelf.json` records, and reports what it
//!   finds;
//! - [`DataDir::import`] and [`DataDir::compact`]: the only writers. Each takes the
//!   directory lock first, so it refuses a directory an open `Store` holds, and writes
//!   files the way a flush does (temp file made durable, rename, directory fsync).
//!
//! Records are JSON objects. An index is found by its name: the field name, or the
//! field names joined by `_and_` for a composite. The id field is inferred: the field
//! whose value is the id a record's file name or WAL entry carries, or `id`.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use shelf::inspect::DataDir;
//!
//! #[derive(shelf::Entity, Serialize, Deserialize, Clone, Debug)]
//! struct Note { #[id] id: String, text: String }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let store = shelf::Store::builder(dir.path()).register::<Note>().open()?;
//! store.collection::<Note>()?.insert(Note { id: "a".into(), text: "hi".into() })?;
//! store.close()?;
//!
//! let data = DataDir::open(dir.path())?;
//! assert_eq!(data.usage("note")?.records, 1);
//! let mut out = Vec::new();
//! data.export("note", &mut out, &shelf::inspect::Quiet)?;
//! assert_eq!(String::from_utf8(out)?, "{\"id\":\"a\",\"text\":\"hi\"}\n");
//! assert!(data.verify(&shelf::inspect::Quiet)?.is_clean());
//! # Ok(()) }
//! ```

mod check;
mod error;
mod index;
mod json;
mod lock;
mod records;
mod verify;
mod wal;
mod write;

use std::path::{Path, PathBuf};

pub use error::InspectError;
pub use records::Record;
pub use verify::{CollectionCheck, Problem, VerifyReport};
pub use wal::{WalDamage, WalSummary};
pub use write::{Applied, CompactReport, ImportOptions, ImportReport};

use crate::entity::StorageKind;
use crate::fs::RealFs;
use crate::meta::{Layout, Meta};

/// How many index files `Store::open` has parsed entry by entry in this process:
/// files whose header lacks the content hash and checksum that let open check a file
/// without reading its entries. Files written by a store always have them, and the
/// tools here never write index files, so after `import` or `compact` this does not
/// grow. For tests and diagnostics.
pub fn index_files_parsed_entry_by_entry() -> u64 {
    crate::index_file::parsed_entry_by_entry()
}

/// Shorthand for results of this module.
pub type Result<T, E = InspectError> = std::result::Result<T, E>;

/// Reports the progress of a long operation (a progress bar, or nothing).
pub trait Progress {
    /// A new step starts: `label`, with `total` units of work when known.
    fn start(&self, label: &str, total: Option<u64>) {
        let _ = (label, total);
    }
    /// `n` more units are done.
    fn advance(&self, n: u64) {
        let _ = n;
    }
    /// The step is over.
    fn finish(&self) {}
}

/// A [`Progress`] that shows nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct Quiet;

impl Progress for Quiet {}

/// What `shelf.json` says of one collection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CollectionInfo {
    /// The collection name (its directory and file names).
    pub name: String,
    /// The Rust type that last registered it.
    pub entity: String,
    /// Where its records are.
    pub storage: StorageKind,
    /// Whether its files are zstd-compressed.
    pub compress: bool,
    /// `per_record` shard depth (hex digits of the shard directory names), 0 for none.
    pub shard: u8,
    /// Whether its commits are logged in the WAL.
    pub wal: bool,
    /// The field that holds the ids, as the last `Store` to open the directory
    /// recorded it; `None` in a directory written by an older Shelf (the field is
    /// then inferred from the records).
    pub id_field: Option<String>,
    /// The next `#[id(auto)]` value, for auto-id collections.
    pub next_id: Option<u64>,
    /// An interrupted migration left files of an older layout to remove.
    pub cleanup_pending: bool,
    /// An interrupted migration left partial files of a newer layout; the records
    /// are still wholly in this one, and the next open starts the migration again.
    pub migration_pending: bool,
    /// Its `#[belongs_to]` fields, as the last `Store` to open the directory
    /// recorded them (empty in a `shelf.json` written before they were recorded).
    pub foreign_keys: Vec<ForeignKeyInfo>,
    /// Its indices, as the last `Store` to open the directory recorded them (empty
    /// in a `shelf.json` written before they were recorded).
    pub indices: Vec<IndexInfo>,
    /// Its record's fields, as the derive of the last `Store` to open the
    /// directory described them (empty in a `shelf.json` written before they were
    /// recorded).
    pub fields: Vec<FieldInfo>,
    layout: Layout,
}

/// What `shelf.json` says of one field of a collection's records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldInfo {
    /// The JSON key the field is stored under; empty for a `#[serde(flatten)]`
    /// field, whose own keys are in the record.
    pub key: String,
    /// The Rust field name, when it differs from the key.
    pub field: Option<String>,
    /// The field's Rust type, as written in the struct.
    pub ty: String,
    /// `#[serde(flatten)]`.
    pub flatten: bool,
}

/// What `shelf.json` says of one index of a collection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexInfo {
    /// The index name, which its file carries: the field, or the fields of a
    /// composite joined by `_and_`.
    pub name: String,
    /// At most one record per key.
    pub unique: bool,
    /// Keys kept in order.
    pub sorted: bool,
    /// The fields the key is made of, in key order; empty when `shelf.json` (of an
    /// older build) does not say, and the tools then find them from the name.
    pub fields: Vec<String>,
    /// One key per element of the field (`#[index(each)]`), when `fields` is known.
    pub each: bool,
}

/// What `shelf.json` says of one `#[belongs_to]` field of a collection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForeignKeyInfo {
    /// The field holding the parent's id (null for a detached `Option` key).
    pub field: String,
    /// The parent's collection.
    pub parent: String,
    /// Whether references are checked (`false` for `#[belongs_to(..., check = false)]`,
    /// which [`DataDir::verify`] skips as writes do).
    pub check: bool,
}

impl CollectionInfo {
    /// The layout in `#[storage(...)]` words, e.g. `per_record, wal, compress, shard = 2`.
    pub fn describe_storage(&self) -> String {
        let mut parts = vec![match self.storage {
            StorageKind::PerRecord => "per_record",
            StorageKind::CollectionFile => "collection_file",
            StorageKind::Memory => "memory",
        }
        .to_owned()];
        if self.wal {
            parts.push("wal".to_owned());
        }
        if self.compress {
            parts.push("compress".to_owned());
        }
        if self.shard > 0 {
            parts.push(format!("shard = {}", self.shard));
        }
        parts.join(", ")
    }

    /// Whether the collection has files.
    pub fn is_persisted(&self) -> bool {
        self.storage != StorageKind::Memory
    }
}

/// A collection's size on disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Records stored in its files.
    pub records: usize,
    /// Record files (one per record, or the collection file).
    pub files: usize,
    /// Bytes of those files, as stored (compressed, if they are).
    pub bytes: u64,
    /// Index files.
    pub index_files: usize,
    /// Bytes of the index files.
    pub index_bytes: u64,
}

/// A data directory opened for inspection. Reading takes no lock: what an open
/// `Store` writes meanwhile may or may not be seen.
#[derive(Debug)]
pub struct DataDir {
    dir: PathBuf,
    meta: Meta,
    collections: Vec<CollectionInfo>,
}

impl DataDir {
    /// Reads `dir/shelf.json`.
    ///
    /// # Errors
    ///
    /// [`InspectError::NotADataDir`] without `shelf.json`; [`InspectError::Shelf`] when
    /// it cannot be read or parsed, or comes from a newer Shelf.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        if !Meta::path(&dir).is_file() {
            return Err(InspectError::NotADataDir { dir });
        }
        let meta = Meta::load(&RealFs, &dir)?;
        let collections = meta
            .collections
            .iter()
            .map(|(name, m)| CollectionInfo {
                name: name.clone(),
                entity: m.entity.clone(),
                storage: m.layout.storage,
                compress: m.layout.compress,
                shard: m.layout.shard,
                wal: m.wal,
                id_field: m.id_field.clone(),
                next_id: m.next_id,
                cleanup_pending: m.cleanup.is_some(),
                migration_pending: m.migrating.is_some(),
                foreign_keys: m
                    .foreign_keys
                    .iter()
                    .map(|fk| ForeignKeyInfo { field: fk.field.clone(), parent: fk.parent.clone(), check: fk.check })
                    .collect(),
                indices: m
                    .indices
                    .iter()
                    .map(|i| IndexInfo {
                        name: i.name.clone(),
                        unique: i.unique,
                        sorted: i.sorted,
                        fields: i.fields.clone(),
                        each: i.each,
                    })
                    .collect(),
                fields: m
                    .fields
                    .iter()
                    .map(|f| FieldInfo {
                        key: f.key.clone(),
                        field: f.field.clone(),
                        ty: f.ty.clone(),
                        flatten: f.flatten,
                    })
                    .collect(),
                layout: m.layout,
            })
            .collect();
        Ok(DataDir { dir, meta, collections })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The format version `shelf.json` was written in.
    pub fn format_version(&self) -> u32 {
        self.meta.format_version
    }

    /// Every collection `shelf.json` lists, by name.
    pub fn collections(&self) -> &[CollectionInfo] {
        &self.collections
    }

    /// One collection.
    ///
    /// # Errors
    ///
    /// [`InspectError::UnknownCollection`] when `shelf.json` does not list it.
    pub fn collection(&self, name: &str) -> Result<&CollectionInfo> {
        self.collections.iter().find(|c| c.name == name).ok_or_else(|| InspectError::UnknownCollection {
            name: name.to_owned(),
            known: self.collections.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", "),
        })
    }

    /// Whether an open `Store` (in any process) holds the directory right now;
    /// `None` when that cannot be told without taking the lock, which this never
    /// does: a `Store` opening at that moment would fail. Told on Linux.
    pub fn is_locked(&self) -> Option<bool> {
        lock::is_locked(&self.dir)
    }

    /// A path inside the directory, relative to it, for messages.
    pub fn relative(&self, path: &Path) -> String {
        path.strip_prefix(&self.dir).unwrap_or(path).display().to_string()
    }

    /// The collection's size on disk: records, files and bytes, and its index files.
    ///
    /// # Errors
    ///
    /// [`InspectError::UnknownCollection`], or an I/O error.
    pub fn usage(&self, name: &str) -> Result<Usage> {
        let info = self.collection(name)?;
        let mut usage = Usage::default();
        if !info.is_persisted() {
            return Ok(usage);
        }
        let strategy = records::strategy(&self.dir, info);
        for file in strategy.files(&RealFs)? {
            usage.files += 1;
            usage.bytes += file_len(&file)?;
        }
        usage.records = match info.storage {
            StorageKind::CollectionFile => {
                let mut count = 0;
                strategy.load(&RealFs, &mut |_| {
                    count += 1;
                    Ok(())
                })?;
                count
            }
            _ => usage.files,
        };
        for file in index::files(&self.dir, name)? {
            usage.index_files += 1;
            usage.index_bytes += file_len(&file)?;
        }
        Ok(usage)
    }
}

fn file_len(path: &Path) -> Result<u64> {
    std::fs::metadata(path).map(|m| m.len()).map_err(|e| InspectError::io("stat", path, e))
}
