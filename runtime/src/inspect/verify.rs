//! `verify`: every record file, index file and WAL segment, checked and reported.

use std::collections::HashMap;
use std::path::PathBuf;

use super::index::{self, Shape};
use super::json::Json;
use super::records::{infer_id_field, strategy, truncate, Parsed};
use super::wal::{self, WalDamage, WalScan, WalSummary};
use super::{CollectionInfo, DataDir, Progress, Result};
use crate::entity::StorageKind;
use crate::fs::RealFs;
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
    /// records; every WAL record passes its checksum and parses. Referential
    /// integrity is not checked: `shelf.json` does not record foreign keys.
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
        for info in self.collections.iter().filter(|c| c.is_persisted()) {
            self.verify_collection(info, &scan, &mut report, progress)?;
        }
        self.verify_wal(&scan, &mut report);
        report.wal = scan.summary;
        report.notes.push(
            "referential integrity was not checked: shelf.json does not record foreign keys yet (a Store checks them on open)"
                .into(),
        );
        Ok(report)
    }

    fn verify_collection(
        &self,
        info: &CollectionInfo,
        scan: &WalScan,
        report: &mut VerifyReport,
        progress: &dyn Progress,
    ) -> Result<()> {
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
                return Ok(());
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
        let id_field = infer_id_field(&parsed, &pairs);
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
            id_field,
        });
        Ok(())
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
                let Some(file_id) = p.record.file_id() else {
                    report.problem(location, format!("the file name `{stem}` is not an id as Shelf encodes it"));
                    continue;
                };
                if let Some(field) = id_field {
                    match json.get(field).and_then(Json::key_text) {
                        Some(id) if id == file_id => {}
                        Some(id) => report.problem(
                            location,
                            format!(
                                "holds id `{}`, but its file name is for id `{}`",
                                truncate(&id),
                                truncate(&file_id)
                            ),
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
        let rebuilds = "; the next open rebuilds it from the records";
        let bytes = match std::fs::read(path) {
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
        if !rebuild {
            return;
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
        let fields = match index::fields(&index_name, &jsons) {
            Ok(fields) => fields,
            Err(e) => {
                report
                    .notes
                    .push(format!("index `{name}/{index_name}` was not rebuilt: {e}; only its form was checked"));
                return;
            }
        };
        let pairs: Vec<(String, &Json)> = ids.into_iter().zip(jsons.iter().copied()).collect();
        let mut shapes = vec![Shape::Each];
        if index::has_arrays(&jsons, &fields) {
            shapes.push(Shape::Whole);
        }
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
                    "corrupt: the record at offset {offset} fails its checksum, and valid records follow it; open fails unless the store is opened with repair_wal(true), which drops everything from there"
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
