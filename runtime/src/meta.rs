//! `shelf.json`: the store's format version and what it knows of each collection.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::entity::{Entity, StorageKind, StorageSpec};
use crate::error::{Error, Result};
use crate::fs::Vfs;

/// The newest on-disk format this build reads (and writes, where needed).
///
/// Version 2 adds what a version-1 build would misread by ignoring it: the change
/// feed's sequence ranges (`feed_epoch`) and kept feeds (`_feed/`), and staged
/// imports (`_import/`). A directory is raised to 2 only when it uses them (an open
/// with `feed_retention`, or `shelf import`); others stay at 1, readable by older
/// builds.
pub const FORMAT_VERSION: u32 = 2;

/// The format of a directory that uses nothing of a later version.
pub(crate) const BASE_FORMAT_VERSION: u32 = 1;

/// The version that a change feed or a staged import needs (see [`FORMAT_VERSION`]).
pub(crate) const FEED_AND_IMPORT_VERSION: u32 = 2;

/// The file name of the metadata file.
pub(crate) const META_FILE: &str = "shelf.json";

/// The contents of `shelf.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Meta {
    pub format_version: u32,
    /// Every collection this directory has held. A collection that is not registered
    /// in this run keeps its entry, so its files are not forgotten.
    pub collections: BTreeMap<String, CollectionMeta>,
    /// The last range of sequence numbers an open with a change feed took (see
    /// `start_feed_epoch`): so that a cursor from an earlier open is never read in
    /// a later open's numbering (see `StoreBuilder::feed_retention`).
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub feed_epoch: u64,
}

/// Where the feed epoch starts in a sequence number: an open numbers up to 2^40
/// commits above its epoch's base.
pub(crate) const SEQ_EPOCH_SHIFT: u32 = 40;

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

/// Where a collection's records are on disk: what a migration moves between.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Layout {
    pub storage: StorageKind,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub compress: bool,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub shard: u8,
}

fn is_zero(n: &u8) -> bool {
    *n == 0
}

impl Layout {
    pub fn of(spec: StorageSpec) -> Self {
        let persisted = spec.kind != StorageKind::Memory;
        Layout {
            storage: spec.kind,
            compress: persisted && spec.compress,
            shard: if spec.kind == StorageKind::PerRecord { spec.shard } else { 0 },
        }
    }

    /// The storage spec that reads and writes this layout.
    pub fn spec(self) -> StorageSpec {
        StorageSpec { kind: self.storage, wal: false, compress: self.compress, shard: self.shard }
    }
}

/// What `shelf.json` records of one collection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct CollectionMeta {
    /// The Rust type that last registered the collection, for humans and tools.
    pub entity: String,
    /// Where the records are.
    #[serde(flatten)]
    pub layout: Layout,
    /// Whether commits are logged (informational; the declaration decides).
    #[serde(default)]
    pub wal: bool,
    /// The field that holds the id (for tools; absent in older files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_field: Option<String>,
    /// A migration moved the records away from this layout, and its files may still
    /// need removing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleanup: Option<Layout>,
    /// A migration to this layout has begun and not yet been recorded as done: its
    /// files may be partial and are removed before anything else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migrating: Option<Layout>,
    /// The next `#[id(auto)]` value, for auto-id collections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_id: Option<u64>,
    /// The `#[belongs_to]` fields, so tools can check references without the types.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub foreign_keys: Vec<ForeignKeyMeta>,
    /// The indices, so tools can check unique keys without the types (absent in
    /// files written before they were recorded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub indices: Vec<IndexMeta>,
    /// The record's fields as serde writes them, so tools read records by the
    /// keys they are stored under (absent in files written before they were
    /// recorded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldMeta>,
}

/// What `shelf.json` records of a record field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FieldMeta {
    /// The JSON key (`rename`, `rename_all` applied); empty for a flattened field.
    pub key: String,
    /// The Rust field name, when it differs from the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The field's Rust type as written.
    #[serde(rename = "type")]
    pub ty: String,
    /// `#[serde(flatten)]`: the field's own keys are in the record.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub flatten: bool,
}

impl FieldMeta {
    /// The description the derive emitted for one field.
    pub fn of(field: &crate::entity::RecordField) -> FieldMeta {
        FieldMeta {
            key: field.key.to_owned(),
            field: (field.field != field.key).then(|| field.field.to_owned()),
            ty: field.ty.to_owned(),
            flatten: field.flatten,
        }
    }
}

/// What `shelf.json` records of one index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct IndexMeta {
    /// The index name (and its file's name): the field, or for a composite the
    /// fields joined by `_and_`.
    pub name: String,
    /// At most one record per key.
    pub unique: bool,
    /// Keys kept in order.
    pub sorted: bool,
    /// The fields the key is made of, in key order (one, or a composite's). Absent
    /// in files of older builds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    /// One key per element of the (collection) field: `#[index(each)]`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub each: bool,
}

impl IndexMeta {
    /// The indices `T` declares: the one place that reads them for `shelf.json`.
    pub fn of<T: Entity>() -> Vec<IndexMeta> {
        T::__indices()
            .iter()
            .map(|index| {
                let kind = index.kind();
                let described = T::__index_fields().iter().find(|(name, _, _)| *name == index.name());
                IndexMeta {
                    name: index.name().to_owned(),
                    unique: kind.unique,
                    sorted: kind.sorted,
                    fields: described
                        .map(|(_, fields, _)| fields.iter().map(|f| (*f).to_owned()).collect())
                        .unwrap_or_default(),
                    each: described.is_some_and(|(_, _, each)| *each),
                }
            })
            .collect()
    }
}

/// What `shelf.json` records of a `#[belongs_to]` field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ForeignKeyMeta {
    /// The field holding the parent's id (or null for a detached `Option`).
    pub field: String,
    /// The parent's collection.
    pub parent: String,
    /// Whether writes check that the parent exists (`check = false` opts out).
    pub check: bool,
}

impl Meta {
    pub fn empty() -> Self {
        Meta { format_version: BASE_FORMAT_VERSION, collections: BTreeMap::new(), feed_epoch: 0 }
    }

    /// Counts an open with a change feed in `feed_epoch` and returns the sequence
    /// number its commits count up from: above every number an earlier open with a
    /// feed gave out (each gives out fewer than 2^40), and above those of opens
    /// without a feed, which count from 0. The `n`th open with a feed counts from
    /// `(n - 1) << 40`; in a directory `fresh` from any open, the first counts from
    /// 0, and otherwise range 0 is skipped, being the opens' without a feed.
    pub fn start_feed_epoch(&mut self, dir: &Path, fresh: bool) -> Result<u64> {
        let step = if self.feed_epoch == 0 && !fresh { 2 } else { 1 };
        let epoch = self.feed_epoch.saturating_add(step);
        let base = (epoch - 1).checked_mul(1 << SEQ_EPOCH_SHIFT).ok_or_else(|| Error::Meta {
            path: Self::path(dir),
            message: format!(
                "`feed_epoch` {} leaves no sequence numbers for another open with a change feed",
                self.feed_epoch
            ),
        })?;
        self.feed_epoch = epoch;
        self.format_version = self.format_version.max(FEED_AND_IMPORT_VERSION);
        Ok(base)
    }

    pub fn path(dir: &Path) -> PathBuf {
        dir.join(META_FILE)
    }

    /// Reads `shelf.json`, or an empty `Meta` when the file does not exist. A file
    /// that exists but cannot be read is an error, never replaced.
    pub fn load(fs: &dyn Vfs, dir: &Path) -> Result<Self> {
        let path = Self::path(dir);
        let bytes = match fs.read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::empty()),
            Err(e) => return Err(Error::io("read", path, e)),
        };
        // Check the version before the rest, so a newer format gets the clear message.
        #[derive(Deserialize)]
        struct Version {
            format_version: u32,
        }
        let version: Version = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Meta { path: path.clone(), message: format!("cannot parse: {e}") })?;
        if version.format_version > FORMAT_VERSION {
            return Err(Error::Meta {
                path,
                message: format!(
                    "written in format version {}, but this build of Shelf reads versions up to {FORMAT_VERSION}; upgrade Shelf",
                    version.format_version
                ),
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| Error::Meta { path, message: format!("cannot parse: {e}") })
    }

    pub fn to_bytes(&self, dir: &Path) -> Result<Vec<u8>> {
        let mut bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::Meta { path: Self::path(dir), message: format!("cannot serialize: {e}") })?;
        bytes.push(b'\n');
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_open_with_a_feed_takes_a_range_above_every_earlier_one() {
        let dir = Path::new("/data");
        // A new directory: the first open counts from 0, the next from 2^40.
        let mut meta = Meta::empty();
        assert_eq!(meta.format_version, 1);
        assert_eq!(meta.start_feed_epoch(dir, true).unwrap(), 0);
        assert_eq!(meta.format_version, 2, "an older build would misread the ranges");
        assert_eq!(meta.start_feed_epoch(dir, false).unwrap(), 1 << 40);
        assert_eq!(meta.feed_epoch, 2);
        // A directory opened before without a feed: range 0 is theirs, so skip it.
        let mut meta = Meta::empty();
        assert_eq!(meta.start_feed_epoch(dir, false).unwrap(), 1 << 40);
        // The field round-trips, and is left out while 0.
        let mut with = Meta::empty();
        assert!(!String::from_utf8(with.to_bytes(dir).unwrap()).unwrap().contains("feed_epoch"));
        with.feed_epoch = 7;
        let back: Meta = serde_json::from_slice(&with.to_bytes(dir).unwrap()).unwrap();
        assert_eq!(back.feed_epoch, 7);
    }

    #[test]
    fn an_exhausted_feed_epoch_is_an_error_naming_shelf_json() {
        let dir = Path::new("/data");
        for last in [1 << 24, u64::MAX - 1, u64::MAX] {
            let mut meta = Meta { feed_epoch: last, ..Meta::empty() };
            let err = meta.start_feed_epoch(dir, false).unwrap_err();
            assert!(matches!(&err, Error::Meta { path, .. } if path.ends_with("shelf.json")), "{err}");
            assert_eq!(meta.feed_epoch, last, "a refused open takes no range");
        }
        // The last range: its numbers reach u64::MAX.
        let mut meta = Meta { feed_epoch: (1 << 24) - 1, ..Meta::empty() };
        assert_eq!(meta.start_feed_epoch(dir, false).unwrap(), ((1 << 24) - 1) << 40);
    }
}
