//! `verify`: every record file, index file and WAL segment, checked and reported.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use super::index::{self, Shape};
use super::json::Json;
use super::records::{infer_id_field, strategy, truncate, Parsed};
use super::wal::{self, WalDamage, WalScan, WalSummary};
use super::{CollectionInfo, DataDir, ForeignKeyInfo, Progress, Result};
use crate::encode;
use crate::entity::StorageKind;
use crate::fs::{RealFs, Vfs};
use crate::storage::codec::Codec;
use crate::storage::per_record::PerRecord;

/// Something wrong in the data directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The file (or `file:line`).
    pub location: PathBuf,
    /// What is wrong.
    pub message: String,
    /// Whether the next open of the store repairs it by itself (a stale index file,
    /// a torn WAL tail); otherwise it needs a person.
    pub repairable: bool,
}

/// What `verify` read of one collection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CollectionCheck {
    /// The collection.
    pub name: String,
    /// Its records.
    pub records: usize,
    /// Its index files.
    pub index_files: usize,
    /// The field found to hold the id, if one was.
    pub id_field: Option<String>,
}

/// The outcome of [`DataDir::verify`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Every persisted collection that was checked.
    pub collections: Vec<CollectionCheck>,
    /// The WAL.
    pub wal: WalSummary,
    /// Foreign-key references (non-null `#[belongs_to]` values of records in the
    /// files) that were checked against their parent collections.
    pub references: usize,
    /// What is wrong; empty when the directory is sound.
    pub problems: Vec<Problem>,
    /// What could not be checked, and other remarks that are not problems.
    pub notes: Vec<String>,
}

impl VerifyReport {
    /// Whether no problem was found.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    fn problem(&mut self, location: impl Into<PathBuf>, message: impl Into<String>) {
        self.problems.push(Problem { location: location.into(), message: message.into(), repairable: false });
    }

    fn repairable(&mut self, location: impl Into<PathBuf>, message: impl Into<String>) {
        self.problems.push(Problem { location: location.into(), message: message.into(), repairable: true });
    }
}

impl DataDir {
    /// Checks the directory: every record parses as a JSON object and sits in the
    /// file its id names; every index file matches the index rebuilt from the
    /// records; every WAL record passes its checksum and parses; and, for every
    /// foreign key `shelf.json` records with `check` on, every record's value of the
    /// field is null (or absent: a detached `Option` key) or the id of a record of
    /// the parent collection. Ids compare by key text: a string as it is, an integer
    /// in decimal. As the other checks, this one reads the record files only:
    /// commits still in the WAL are not taken into account.
    ///
    /// # Errors
    ///
    /// Only when the directory cannot be listed: what is wrong with files is in the
    /// report.
    pub fn verify(&self, progress: &dyn Progress) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        if self.is_locked() == Some(true) {
            report.notes.push("an open Store holds this directory: its files may change while they are read".into());
        }
        let scan = wal::scan(&self.dir)?;
        let parents: HashSet<&str> = self.checked_foreign_keys().map(|(_, fk)| fk.parent.as_str()).collect();
        let mut refs = RefScan::default();
        for info in self.collections.iter().filter(|c| c.is_persisted()) {
            for stray in strategy(&self.dir, info).strays(&RealFs)? {
                report.notes.push(format!(
                    "collection `{}`: {} is not a file Shelf wrote (no record file, temp file or index directory); it is left alone",
                    info.name,
                    self.relative(&stray)
                ));
            }
            if let Some((parsed, id_field)) = self.verify_collection(info, &scan, &mut report, progress)? {
                refs.read(info, &parsed, id_field.as_deref(), parents.contains(info.name.as_str()));
            }
        }
        self.verify_wal(&scan, &mut report);
        self.check_references(refs, !scan.records.is_empty(), &mut report);
        for staged in crate::import_file::list(&RealFs, &self.dir)? {
            report.notes.push(format!(
                "{} is a staged import: the application's next open applies it (its records are not checked here)",
                self.relative(&staged)
            ));
        }
        report.wal = scan.summary;
        Ok(report)
    }

    /// Every foreign key with `check` on, with its child collection.
    fn checked_foreign_keys(&self) -> impl Iterator<Item = (&CollectionInfo, &ForeignKeyInfo)> {
        self.collections.iter().flat_map(|c| c.foreign_keys.iter().filter(|fk| fk.check).map(move |fk| (c, fk)))
    }

    /// Checks the references [`RefScan::read`] collected, and notes what was checked.
    fn check_references(&self, refs: RefScan, wal_pending: bool, report: &mut VerifyReport) {
        let mut detached = 0;
        for (child, fk) in self.checked_foreign_keys() {
            let Some(values) = refs.children.get(&(child.name.clone(), fk.field.clone())) else {
                // A memory collection, or one that could not be read (a problem already).
                continue;
            };
            let unchecked =
                |why: String| format!("collection `{}`: field `{}` was not checked: {why}", child.name, fk.field);
            let parent_ids = match self.collection(&fk.parent) {
                Err(_) => {
                    report
                        .notes
                        .push(unchecked(format!("its parent collection `{}` is not listed in shelf.json", fk.parent)));
                    continue;
                }
                Ok(parent) if !parent.is_persisted() => {
                    report.notes.push(unchecked(format!(
                        "its parent collection `{}` is kept in memory, with no records on disk",
                        fk.parent
                    )));
                    continue;
                }
                Ok(_) => match refs.parent_ids.get(&fk.parent) {
                    Some(Some(ids)) => ids,
                    Some(None) => {
                        report.notes.push(unchecked(format!(
                            "the ids of its parent collection `{}` are unknown (no id field was found)",
                            fk.parent
                        )));
                        continue;
                    }
                    None => {
                        report
                            .notes
                            .push(unchecked(format!("its parent collection `{}` could not be read", fk.parent)));
                        continue;
                    }
                },
            };
            for value in values {
                let record = match &value.id {
                    Some(id) => format!("`{}` record `{}`", child.name, truncate(id)),
                    None => format!("a `{}` record", child.name),
                };
                match &value.key {
                    RefKey::Detached => detached += 1,
                    RefKey::Invalid(text) => report.problem(
                        &value.location,
                        format!(
                            "{record}: foreign key `{}` holds {}, which is neither null nor an id of `{}` (a string or an integer)",
                            fk.field,
                            truncate(text),
                            fk.parent
                        ),
                    ),
                    RefKey::Id(key) => {
                        report.references += 1;
                        if !parent_ids.contains(key) {
                            report.problem(
                                &value.location,
                                format!(
                                    "{record}: foreign key `{}` references `{}` record `{}`, which does not exist (a Store opens anyway, and lists it in `store.verify()`)",
                                    fk.field,
                                    fk.parent,
                                    truncate(key)
                                ),
                            );
                        }
                    }
                }
            }
        }
        let mut note = format!(
            "referential integrity: {} checked",
            match report.references {
                1 => "1 reference".to_owned(),
                n => format!("{n} references"),
            }
        );
        let keys = self.checked_foreign_keys().count();
        if keys == 0 {
            note.push_str(" (shelf.json records no foreign keys to check)");
        } else {
            note.push_str(&format!(" over {keys} foreign key{}", if keys == 1 { "" } else { "s" }));
        }
        if detached > 0 {
            note.push_str(&format!("; {detached} null (detached)"));
        }
        let skipped: Vec<String> = self
            .collections
            .iter()
            .flat_map(|c| {
                c.foreign_keys.iter().filter(|fk| !fk.check).map(move |fk| format!("{}.{}", c.name, fk.field))
            })
            .collect();
        if !skipped.is_empty() {
            note.push_str(&format!("; not checked, as declared with `check = false`: {}", skipped.join(", ")));
        }
        if wal_pending {
            note.push_str(
                "; as for the other checks, only the record files were read: records written or removed by commits still in the WAL were not taken into account (`shelf compact` applies them)",
            );
        }
        report.notes.push(note);
    }

    /// Checks one collection; returns its records and id field, unless it could
    /// not be read at all.
    fn verify_collection(
        &self,
        info: &CollectionInfo,
        scan: &WalScan,
        report: &mut VerifyReport,
        progress: &dyn Progress,
    ) -> Result<Option<(Vec<Parsed>, Option<String>)>> {
        let name = info.name.as_str();
        let total = match info.storage {
            StorageKind::PerRecord => Some(strategy(&self.dir, info).files(&RealFs)?.len() as u64),
            _ => None,
        };
        progress.start(&format!("checking {name}"), total);
        let parsed = match self.parsed(name, progress) {
            Ok(parsed) => parsed,
            Err(e) => {
                progress.finish();
                let files = strategy(&self.dir, info).files(&RealFs).unwrap_or_default();
                let location = files.into_iter().next().unwrap_or_else(|| self.dir.join(name));
                report.problem(location, format!("collection `{name}` cannot be read: {e}"));
                return Ok(None);
            }
        };
        progress.finish();
        if info.migration_pending {
            report.notes.push(format!(
                "collection `{name}`: an interrupted migration left partial files of a new layout; the records are in its recorded layout, and the next open migrates again"
            ));
        }
        if info.cleanup_pending {
            report.notes.push(format!(
                "collection `{name}`: an interrupted migration left files of its old layout; the next open removes them"
            ));
        }
        let wal_writes: Vec<wal::WalWrite> = scan
            .records
            .iter()
            .filter_map(|r| r.writes().ok())
            .flatten()
            .filter(|w| w.collection == name && w.value.is_some())
            .collect();
        let pairs: Vec<(&Json, &Json)> =
            wal_writes.iter().filter_map(|w| w.value.as_ref().map(|v| (&w.id, v))).collect();
        let id_field = info.id_field.clone().or_else(|| infer_id_field(&parsed, &pairs));
        if id_field.is_none() && !parsed.is_empty() {
            report.notes.push(format!(
                "collection `{name}`: no field was found to hold the ids, so ids were not checked against file names"
            ));
        }
        self.check_records(info, &parsed, id_field.as_deref(), report);
        let index_files = index::files(&self.dir, name)?;
        let readable = parsed.iter().all(|p| p.json.is_ok());
        if !readable && !index_files.is_empty() {
            report.notes.push(format!(
                "collection `{name}`: its index files were checked for form only, as it has unreadable records"
            ));
        }
        for path in &index_files {
            self.check_index(name, path, &parsed, id_field.as_deref(), readable, report);
        }
        report.collections.push(CollectionCheck {
            name: name.to_owned(),
            records: parsed.len(),
            index_files: index_files.len(),
            id_field: id_field.clone(),
        });
        Ok(Some((parsed, id_field)))
    }

    fn check_records(
        &self,
        info: &CollectionInfo,
        parsed: &[Parsed],
        id_field: Option<&str>,
        report: &mut VerifyReport,
    ) {
        let sharding =
            (info.shard > 0).then(|| PerRecord::new(self.dir.join(&info.name), Codec::new(false, 0), info.shard));
        let mut seen: HashMap<String, PathBuf> = HashMap::new();
        for p in parsed {
            let location = &p.record.location;
            let json = match &p.json {
                Ok(json) => json,
                Err(e) => {
                    report.problem(location, format!("not a valid record: {e}"));
                    continue;
                }
            };
            if let Some(stem) = &p.record.stem {
                let Some(name) = encode::read_name(stem) else {
                    report.problem(location, format!("the file name `{stem}` is not an id as Shelf encodes it"));
                    continue;
                };
                if let Some(field) = id_field {
                    match json.get(field).and_then(Json::key_text) {
                        Some(id) if p.record.named_for(&id) => {}
                        Some(id) => report.problem(
                            location,
                            match name {
                                encode::Name::Id(file_id) => format!(
                                    "holds id `{}`, but its file name is for id `{}`",
                                    truncate(&id),
                                    truncate(&file_id)
                                ),
                                // A long id's name is a hash: it cannot say which id.
                                encode::Name::Hashed { .. } => format!(
                                    "holds id `{}`, but its file name `{}` is the hashed name of another id",
                                    truncate(&id),
                                    truncate(stem)
                                ),
                            },
                        ),
                        None => report.problem(location, format!("has no string or integer `{field}` field (its id)")),
                    }
                }
                if let Some(sharding) = &sharding {
                    let expected = sharding.shard_of(stem);
                    let actual =
                        location.parent().and_then(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned());
                    if actual.as_deref() != Some(expected.as_str()) {
                        report.problem(
                            location,
                            format!("is in the wrong shard directory (its id belongs in `{expected}`)"),
                        );
                    }
                }
            } else if let Some(field) = id_field {
                match json.get(field).and_then(Json::key_text) {
                    None => report.problem(location, format!("has no string or integer `{field}` field (its id)")),
                    Some(id) => {
                        if let Some(first) = seen.insert(id.clone(), location.clone()) {
                            report.problem(
                                location,
                                format!("id `{}` is also at {}", truncate(&id), self.relative(&first)),
                            );
                        }
                    }
                }
            }
        }
    }

    fn check_index(
        &self,
        name: &str,
        path: &std::path::Path,
        parsed: &[Parsed],
        id_field: Option<&str>,
        rebuild: bool,
        report: &mut VerifyReport,
    ) {
        let index_name = index::name_of(path);
        let rebuilds = "; open rebuilds the index from the records, and the next clean close rewrites the file";
        let bytes = match RealFs.read(path) {
            Ok(bytes) => bytes,
            Err(e) => return report.problem(path, format!("cannot be read: {e}")),
        };
        let file = match index::parse(&bytes) {
            Ok(file) => file,
            Err(e) => return report.repairable(path, format!("corrupt index file: {e}{rebuilds}")),
        };
        if file.header.index != index_name {
            report.repairable(path, format!("its header names index `{}`{rebuilds}", file.header.index));
        }
        if file.header.entries != file.entries.len() {
            return report.repairable(
                path,
                format!(
                    "truncated: the header says {} entries, the file has {}{rebuilds}",
                    file.header.entries,
                    file.entries.len()
                ),
            );
        }
        let file_set = match file.entry_set() {
            Ok(set) => set,
            Err(e) => return report.repairable(path, format!("corrupt index file: {e}{rebuilds}")),
        };
        let checksum = |report: &mut VerifyReport| {
            if !file.checksum_ok {
                report.repairable(path, format!("corrupt: its checksum does not match{rebuilds}"));
            }
        };
        if !rebuild {
            return checksum(report);
        }
        let jsons: Vec<&Json> = parsed.iter().filter_map(|p| p.json.as_ref().ok()).collect();
        if file.header.records != parsed.len() {
            return report.repairable(
                path,
                format!(
                    "stale: built from {} records, the collection has {}{rebuilds}",
                    file.header.records,
                    parsed.len()
                ),
            );
        }
        let ids: Option<Vec<String>> = parsed.iter().map(|p| p.id_text(id_field)).collect();
        let Some(ids) = ids else {
            report.notes.push(format!("index `{name}/{index_name}` was not rebuilt: the records' ids are unknown"));
            return;
        };
        if index::fingerprint(ids.iter().map(String::as_str)) != file.header.fingerprint {
            return report.repairable(path, format!("stale: built from another set of records{rebuilds}"));
        }
        let recorded = self
            .collections
            .iter()
            .find(|c| c.name == name)
            .and_then(|c| c.indices.iter().find(|i| i.name == index_name))
            .and_then(index::recorded);
        let (fields, shapes) = match recorded {
            Some((fields, shape)) => (fields, vec![shape]),
            // An older shelf.json: the fields from the name, and both shapes tried.
            None => match index::fields(&index_name, &jsons) {
                Ok(fields) => {
                    let mut shapes = vec![Shape::Each];
                    if index::has_arrays(&jsons, &fields) {
                        shapes.push(Shape::Whole);
                    }
                    (fields, shapes)
                }
                Err(e) => {
                    report
                        .notes
                        .push(format!("index `{name}/{index_name}` was not rebuilt: {e}; only its form was checked"));
                    return;
                }
            },
        };
        let pairs: Vec<(String, &Json)> = ids.into_iter().zip(jsons.iter().copied()).collect();
        let rebuilt: Vec<index::Entries> = shapes.iter().map(|&s| index::rebuild(&pairs, &fields, s)).collect();
        let Some(matched) = rebuilt.iter().find(|r| **r == file_set) else {
            let expected = &rebuilt[0];
            let missing: Vec<_> = expected.difference(&file_set).collect();
            let extra: Vec<_> = file_set.difference(expected).collect();
            let example = |set: &[&(String, String)]| {
                set.first().map(|(k, id)| format!(" (e.g. key {} for id `{id}`)", truncate(k))).unwrap_or_default()
            };
            return report.repairable(
                path,
                format!(
                    "stale: {} entries of the records are missing{}, {} entries match no record{}{rebuilds}",
                    missing.len(),
                    example(&missing),
                    extra.len(),
                    example(&extra)
                ),
            );
        };
        if file.header.unique {
            for (key, ids) in index::duplicates(matched) {
                report.problem(
                    path,
                    format!("unique index, but key {} is held by several records: {}", truncate(&key), ids.join(", ")),
                );
            }
        }
        checksum(report);
    }

    fn verify_wal(&self, scan: &WalScan, report: &mut VerifyReport) {
        match &scan.summary.damage {
            Some(WalDamage::TornTail { segment, offset, bytes }) => report.repairable(
                segment,
                format!(
                    "torn tail: {bytes} bytes from offset {offset} are not a valid record and nothing valid follows (an interrupted append); the next open truncates them"
                ),
            ),
            Some(WalDamage::Corrupt { segment, offset }) => report.problem(
                segment,
                format!(
                    "corrupt: the record at offset {offset} fails its checksum, and valid records follow it (or it is a valid record whose sequence number is out of order); open fails unless the store is opened with repair_wal(true), which drops everything from there"
                ),
            ),
            None => {}
        }
        for record in &scan.records {
            let at = format!("{}@{}", record.segment.display(), record.offset);
            let writes = match record.writes() {
                Ok(writes) => writes,
                Err(e) => {
                    report.problem(&at, format!("record {}: {e}", record.lsn));
                    continue;
                }
            };
            for write in writes {
                if self.collection(&write.collection).is_err() {
                    report.problem(
                        &at,
                        format!(
                            "record {} writes to collection `{}`, which shelf.json does not list",
                            record.lsn, write.collection
                        ),
                    );
                } else if write.id.key_text().is_none() {
                    report
                        .problem(&at, format!("record {}: id {} is not a string or an integer", record.lsn, write.id));
                } else if write.value.as_ref().is_some_and(|v| !matches!(v, Json::Object(_))) {
                    report.problem(&at, format!("record {}: the value is not a JSON object", record.lsn));
                }
            }
        }
        if !scan.records.is_empty() {
            report.notes.push(format!(
                "the WAL holds {} commits not yet checkpointed into the files; `shelf compact` or the next open applies them",
                scan.records.len()
            ));
        }
    }
}

/// What the foreign-key check keeps of the collections as they are read: the ids of
/// parents, and the `#[belongs_to]` values of children.
#[derive(Default)]
struct RefScan {
    /// By parent collection: the ids of its records, `None` when they are unknown.
    parent_ids: HashMap<String, Option<HashSet<String>>>,
    /// By (child collection, field): the value of every readable record.
    children: HashMap<(String, String), Vec<RefValue>>,
}

/// A child record's foreign-key value.
struct RefValue {
    location: PathBuf,
    /// The child's id, when known.
    id: Option<String>,
    key: RefKey,
}

/// A foreign-key value, read.
enum RefKey {
    /// Null or absent: a detached `Option` key.
    Detached,
    /// The parent's id as key text.
    Id(String),
    /// Neither: the value's JSON text.
    Invalid(String),
}

impl RefScan {
    fn read(&mut self, info: &CollectionInfo, parsed: &[Parsed], id_field: Option<&str>, is_parent: bool) {
        if is_parent {
            // Without an id field, only file names tell ids. A record whose id is
            // unknown otherwise is a problem already, and is left out.
            let unknown = id_field.is_none() && parsed.iter().any(|p| p.record.stem.is_none());
            let ids = (!unknown).then(|| parsed.iter().filter_map(|p| p.id_text(id_field)).collect());
            self.parent_ids.insert(info.name.clone(), ids);
        }
        for fk in info.foreign_keys.iter().filter(|fk| fk.check) {
            let values = parsed
                .iter()
                .filter_map(|p| {
                    // An unreadable record is a problem already.
                    let json = p.json.as_ref().ok()?;
                    let key = match json.get(&fk.field) {
                        None | Some(Json::Null) => RefKey::Detached,
                        Some(value) => value.key_text().map_or_else(|| RefKey::Invalid(value.to_text()), RefKey::Id),
                    };
                    Some(RefValue { location: p.record.location.clone(), id: p.id_text(id_field), key })
                })
                .collect();
            self.children.insert((info.name.clone(), fk.field.clone()), values);
        }
    }
}
