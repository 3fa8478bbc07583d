//! The writers: `import` and `compact`. Both take the directory lock first and write
//! the way a flush does: every file through one [`WriteBatch`] (temp file, made
//! durable, rename, directory fsync), so a crash leaves each file old or new, never torn.
//!
//! `import` writes no record file: it stages the checked lines in
//! `_import/<collection>.jsonl`, and the application's next open applies them
//! through the collection's type and commit path (FORMAT §15), since only the type
//! knows what its deserializer accepts.
//!
//! They never write index files: the header's content hash is computed over the
//! typed keys, which the tools do not have. The index files of a collection that
//! changes are removed first, durably, and the store writes them again (it rebuilds
//! every index from the records on open, and writes a missing file at close). A
//! crash between the two steps leaves records without index files, never an index
//! file of other records.

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::path::PathBuf;

use super::check;
use super::index;
use super::json::{compare, Json};
use super::lock::lock;
use super::records::{infer_id_field, strategy, truncate, Parsed};
use super::wal::{self, WalDamage};
use super::{CollectionInfo, DataDir, InspectError, Progress, Quiet, Result};
use crate::batch::{is_temp, SyncMode, WriteBatch};
use crate::encode;
use crate::entity::StorageKind;
use crate::feed_file;
use crate::fs::{create_dir_durable, RealFs, Vfs};
use crate::import_file;
use crate::index_file::INDEX_DIR;
use crate::meta::Meta;
use crate::storage::FileChange;

/// Options of [`DataDir::import`].
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// The field that holds each record's id. Found from the stored records (or
    /// `id`) when not given.
    pub id_field: Option<String>,
}

/// What [`DataDir::import`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Records read from the input.
    pub read: usize,
    /// Of those, ids that are new (applied at the application's next open).
    pub inserted: usize,
    /// Of those, ids that replace a stored record (a later line with the same id
    /// replaces an earlier one, too).
    pub replaced: usize,
    /// The id field used.
    pub id_field: String,
    /// The staged import (`_import/<collection>.jsonl`): the application's next open
    /// applies it through the collection's type, and reports the lines it refuses.
    pub staged: PathBuf,
}

/// What [`DataDir::compact`] did to one collection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// The collection.
    pub name: String,
    /// Records written.
    pub written: usize,
    /// Records removed.
    pub removed: usize,
}

/// What [`DataDir::compact`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactReport {
    /// WAL records applied to the files.
    pub records_replayed: usize,
    /// Per collection touched, in name order.
    pub collections: Vec<Applied>,
    /// WAL segment files deleted.
    pub segments_removed: usize,
    /// Bytes of a torn WAL tail that were dropped with the segments.
    pub torn_bytes_dropped: u64,
    /// Index files removed (the store writes them again; see the module docs).
    pub index_files_removed: usize,
    /// Leftover temp files of interrupted flushes that were deleted.
    pub temp_files_removed: usize,
    /// Remarks, e.g. writes skipped for a collection now kept in memory.
    pub notes: Vec<String>,
}

/// One change to a record: its id (text and JSON) and its new value, or removal.
struct Change {
    id_text: String,
    id: Json,
    value: Option<Json>,
    /// A parent entry: applies only where no record with its id exists.
    parent: bool,
}

/// What staging one collection's changes did.
#[derive(Default)]
struct Staged {
    inserted: usize,
    replaced: usize,
    removed: usize,
    /// The collection's index files, to remove before the records change.
    index_files: Vec<PathBuf>,
}

fn invalid(message: String) -> InspectError {
    InspectError::Invalid(message)
}

impl DataDir {
    /// Reads JSON lines (one record object per line; blank lines are skipped) and
    /// stages them for a collection: a record with a stored id will replace it.
    /// Takes the directory lock.
    ///
    /// Every line is checked first, and one bad line refuses the whole input: its
    /// fields against the stored records' fields and their JSON kinds (when the
    /// collection has stored records), its checked foreign keys against the parents'
    /// durable records, and the unique indices (see the `check` module for what this
    /// can and cannot catch).
    ///
    /// The lines are then staged in `_import/<collection>.jsonl`, not written to
    /// record files: the application's next open applies them through the
    /// collection's type and commit path, all together, and reports each line the
    /// type or the commit refuses in
    /// [`RecoveryReport::imports`](crate::RecoveryReport::imports). So a line only
    /// the type could refuse (an unknown enum variant, an integer out of range, a
    /// custom deserializer's refusal) never makes the open fail.
    ///
    /// # Errors
    ///
    /// [`InspectError::Locked`] when a `Store` holds the directory; an unknown or
    /// memory collection; [`InspectError::Invalid`] for a bad line (the message names
    /// it), an id that cannot be a file name, unreadable stored records, unflushed
    /// WAL writes to the collection (run `compact` first), or an import into the
    /// collection already staged. Nothing is written then.
    pub fn import(
        &self,
        name: &str,
        input: &mut dyn BufRead,
        options: &ImportOptions,
        progress: &dyn Progress,
    ) -> Result<ImportReport> {
        let _lock = lock(&self.dir)?;
        let data = DataDir::open(&self.dir)?;
        let info = data.collection(name)?.clone();
        if !info.is_persisted() {
            return Err(InspectError::MemoryCollection { name: name.to_owned() });
        }
        let scan = wal::scan(&data.dir)?;
        if let Some(WalDamage::Corrupt { segment, .. }) = &scan.summary.damage {
            return Err(invalid(format!("the WAL is corrupt ({}); run `shelf verify`", data.relative(segment))));
        }
        let pending = scan.records.iter().filter_map(|r| r.writes().ok()).flatten().filter(|w| w.collection == name);
        if pending.count() > 0 {
            return Err(invalid(format!(
                "the WAL holds writes to `{name}` not yet in its files; run `shelf compact` first"
            )));
        }
        progress.start(&format!("reading {name}"), None);
        let parsed = data.parsed(name, progress)?;
        progress.finish();
        let lines = read_lines(input)?;
        let id_field =
            match options.id_field.clone().or_else(|| info.id_field.clone()).or_else(|| infer_id_field(&parsed, &[])) {
                Some(field) => field,
                None if lines.first().is_some_and(|(_, l)| l.get("id").is_some()) => "id".to_owned(),
                None => return Err(invalid("cannot tell which field holds the id; pass it with --id-field".into())),
            };
        let refuse = |n: usize, message: String| invalid(format!("line {n}: {message}; nothing was imported"));
        // Without stored records there is nothing to compare fields with: the
        // application's open checks every line through its type anyway.
        let fields = check::Fields::of(parsed.iter().filter_map(|p| p.json.as_ref().ok()));
        let mut changes = Vec::with_capacity(lines.len());
        let mut numbers = Vec::with_capacity(lines.len());
        let mut line_of: BTreeMap<String, usize> = BTreeMap::new();
        for (n, line) in lines {
            let Some(id) = line.get(&id_field).cloned() else {
                return Err(refuse(n, format!("no `{id_field}` field (the id)")));
            };
            let Some(id_text) = id.key_text() else {
                return Err(refuse(n, format!("id {id} is not a string or an integer")));
            };
            if !fields.is_empty() {
                fields.check(&line).map_err(|e| refuse(n, e))?;
            }
            line_of.insert(id_text.clone(), n);
            numbers.push(n);
            changes.push(Change { id_text, id, value: Some(line), parent: false });
        }
        data.check_import_references(&info, &parsed, &changes, &id_field, &line_of)?;
        data.check_import_unique(&info, &parsed, &changes, &id_field, &line_of)?;
        let read = changes.len();
        let path = import_file::path(&data.dir, name);
        match RealFs.read(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(InspectError::io("read", &path, e)),
            Ok(_) => {
                let staged = data.relative(&path);
                return Err(invalid(format!(
                    "an import into `{name}` is already staged ({staged}); open the store with the application to apply it first"
                )));
            }
        }
        let stored: BTreeSet<String> = parsed.iter().filter_map(|p| p.id_text(Some(&id_field))).collect();
        let mut seen = BTreeSet::new();
        let replaced = changes.iter().filter(|c| stored.contains(&c.id_text) || !seen.insert(&c.id_text)).count();
        progress.start(&format!("staging {name}"), Some(read as u64));
        let raw =
            |json: &Json| serde_json::value::to_raw_value(json).map_err(|e| invalid(format!("cannot serialize: {e}")));
        let mut staged = Vec::with_capacity(read);
        for (change, line) in changes.iter().zip(numbers) {
            let Some(value) = &change.value else { continue };
            staged.push(import_file::Line { line, id: raw(&change.id)?, record: raw(value)? });
        }
        let header = import_file::Header {
            shelf_import: import_file::IMPORT_VERSION,
            collection: name.to_owned(),
            id_field: id_field.clone(),
        };
        let bytes = import_file::encode(&header, &staged).map_err(|e| invalid(format!("cannot serialize: {e}")))?;
        import_file::fits(bytes.len(), crate::fs::DEFAULT_MAX_FILE_SIZE).map_err(invalid)?;
        // An older build would ignore the staged file (and a later open would then
        // apply it over newer records): the directory is raised to the version
        // that knows it, first.
        if data.meta.format_version < crate::meta::FEED_AND_IMPORT_VERSION {
            let meta = Meta { format_version: crate::meta::FEED_AND_IMPORT_VERSION, ..data.meta.clone() };
            crate::batch::write_atomic(&RealFs, Meta::path(&data.dir), meta.to_bytes(&data.dir)?)?;
        }
        let import_dir = data.dir.join(import_file::IMPORT_DIR);
        create_dir_durable(&RealFs, &import_dir).map_err(|e| InspectError::io("create directory", &import_dir, e))?;
        crate::batch::write_atomic(&RealFs, path.clone(), bytes)?;
        progress.advance(read as u64);
        progress.finish();
        Ok(ImportReport { read, inserted: read - replaced, replaced, id_field, staged: path })
    }

    /// Checkpoints the WAL: applies its valid records to the files in sequence order
    /// (a value sets the record, `null` removes it), makes that durable, then deletes
    /// the segments, durably. A torn tail is dropped, as an open would. Index files
    /// of the touched collections are rewritten, and leftover temp files deleted.
    /// Takes the directory lock.
    ///
    /// # Errors
    ///
    /// [`InspectError::Locked`] when a `Store` holds the directory;
    /// [`InspectError::Invalid`] when the WAL is corrupt (valid records after a bad
    /// one), writes to a collection `shelf.json` does not list, or a collection has
    /// unreadable records. Nothing is written then.
    pub fn compact(&self, progress: &dyn Progress) -> Result<CompactReport> {
        let _lock = lock(&self.dir)?;
        let data = DataDir::open(&self.dir)?;
        let scan = wal::scan(&data.dir)?;
        let mut report = CompactReport::default();
        match &scan.summary.damage {
            Some(WalDamage::Corrupt { segment, offset }) => {
                return Err(invalid(format!(
                    "the WAL is corrupt: {} has a bad record at offset {offset} followed by valid ones; compact will not drop them (open the store with repair_wal(true) to cut the log there)",
                    data.relative(segment)
                )))
            }
            Some(WalDamage::TornTail { bytes, .. }) => report.torn_bytes_dropped = *bytes,
            None => {}
        }
        progress.start("reading the WAL", Some(scan.records.len() as u64));
        let mut per_collection: BTreeMap<String, Vec<Change>> = BTreeMap::new();
        for record in &scan.records {
            let writes = record.writes().map_err(|e| invalid(format!("WAL record {}: {e}", record.lsn)))?;
            for write in writes {
                let Some(id_text) = write.id.key_text() else {
                    return Err(invalid(format!(
                        "WAL record {}: id {} is not a string or an integer",
                        record.lsn, write.id
                    )));
                };
                // Open refuses an entry whose record holds another id (indices file
                // a record under its own id); so does compact, with open's words.
                let id_field = data.collection(&write.collection).ok().and_then(|info| info.id_field.clone());
                let held = write.value.as_ref().zip(id_field).and_then(|(v, f)| v.get(&f).and_then(Json::key_text));
                if let Some(held) = held.filter(|held| *held != id_text) {
                    return Err(invalid(format!(
                        "WAL record {}: collection `{}`: {}",
                        record.lsn,
                        write.collection,
                        crate::error::other_id(&id_text, &held)
                    )));
                }
                per_collection.entry(write.collection).or_default().push(Change {
                    id_text,
                    id: write.id,
                    value: write.value,
                    parent: write.parent,
                });
            }
            progress.advance(1);
        }
        progress.finish();
        report.records_replayed = scan.records.len();
        let mut batch = WriteBatch::default();
        let mut meta = data.meta.clone();
        let mut touched = Vec::new();
        let mut index_files = Vec::new();
        for (name, changes) in per_collection {
            let info = data.collection(&name)?.clone();
            if !info.is_persisted() {
                report
                    .notes
                    .push(format!("skipped {} WAL writes to `{name}`, which is now kept in memory", changes.len()));
                continue;
            }
            bump_next_id(&mut meta, &name, &changes);
            let parsed = data.parsed(&name, &Quiet)?;
            let pairs: Vec<(&Json, &Json)> =
                changes.iter().filter_map(|c| c.value.as_ref().map(|v| (&c.id, v))).collect();
            let id_field = info.id_field.clone().or_else(|| infer_id_field(&parsed, &pairs));
            let count = changes.len();
            let staged = data.stage(&info, parsed, changes, id_field.as_deref(), &mut batch)?;
            report.index_files_removed += staged.index_files.len();
            index_files.extend(staged.index_files);
            report.collections.push(Applied { name, written: count - staged.removed, removed: staged.removed });
            touched.push(info);
        }
        if meta != data.meta {
            batch.write(Meta::path(&data.dir), meta.to_bytes(&data.dir)?);
        }
        for info in &touched {
            for dir in strategy(&data.dir, info).dirs() {
                create_dir_durable(&RealFs, &dir).map_err(|e| InspectError::io("create directory", &dir, e))?;
            }
        }
        remove_index_files(&index_files)?;
        // The records change without events: a kept change feed would skip them.
        feed_file::discard(&RealFs, &data.dir)?;
        batch.commit(&RealFs, SyncMode::Batched)?;
        // The files hold every logged commit now: the segments can go.
        for segment in &scan.segments {
            match RealFs.remove_file(segment) {
                Ok(()) => report.segments_removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(InspectError::io("remove WAL segment", segment, e)),
            }
        }
        if report.segments_removed > 0 {
            let wal_dir = data.dir.join(crate::wal::WAL_DIR);
            RealFs.sync_dir(&wal_dir).map_err(|e| InspectError::io("sync directory", &wal_dir, e))?;
        }
        report.temp_files_removed = data.sweep_temps()?;
        Ok(report)
    }

    /// Applies `changes` to a collection's records (`parsed`) and stages the files
    /// that change, and its index files, into `batch`.
    fn stage(
        &self,
        info: &CollectionInfo,
        parsed: Vec<Parsed>,
        changes: Vec<Change>,
        id_field: Option<&str>,
        batch: &mut WriteBatch,
    ) -> Result<Staged> {
        let name = info.name.as_str();
        let mut staged = Staged::default();
        // The stored records by id text: (id JSON if known, record).
        let mut records: BTreeMap<String, (Option<Json>, Json)> = BTreeMap::new();
        for p in parsed {
            let json = p.json.as_ref().map_err(|e| {
                invalid(format!(
                    "{}: {e}; fix or remove it first (`shelf verify` lists every problem)",
                    self.relative(&p.record.location)
                ))
            })?;
            let Some(id_text) = p.id_text(id_field) else {
                return Err(invalid(format!(
                    "{}: cannot tell its id{}",
                    self.relative(&p.record.location),
                    if id_field.is_none() { "; pass the id field with --id-field" } else { "" }
                )));
            };
            let id = id_field.and_then(|f| json.get(f)).cloned();
            records.insert(id_text, (id, json.clone()));
        }
        let mut changed: BTreeMap<String, Option<Json>> = BTreeMap::new();
        for change in changes {
            match change.value {
                Some(_) if change.parent && records.contains_key(&change.id_text) => {}
                Some(value) => {
                    match records.insert(change.id_text.clone(), (Some(change.id), value.clone())) {
                        Some(_) => staged.replaced += 1,
                        None => staged.inserted += 1,
                    }
                    changed.insert(change.id_text, Some(value));
                }
                None => {
                    records.remove(&change.id_text);
                    staged.removed += 1;
                    changed.insert(change.id_text, None);
                }
            }
        }
        let strategy = strategy(&self.dir, info);
        match info.storage {
            StorageKind::PerRecord => {
                let mut files = Vec::with_capacity(changed.len());
                for (id_text, value) in changed {
                    let bytes = value.map(|v| pretty(&v)).transpose()?;
                    files.push(FileChange { stem: encode::encode(&id_text), bytes });
                }
                strategy.stage(files, batch)?;
            }
            StorageKind::CollectionFile => {
                let mut all: Vec<&(Option<Json>, Json)> = records.values().collect();
                all.sort_by(|a, b| compare(a.0.as_ref().unwrap_or(&Json::Null), b.0.as_ref().unwrap_or(&Json::Null)));
                let mut jsonl = Vec::new();
                for (_, record) in all {
                    jsonl.extend_from_slice(record.to_text().as_bytes());
                    jsonl.push(b'\n');
                }
                strategy.stage_all(jsonl, batch)?;
            }
            StorageKind::Memory => return Err(InspectError::MemoryCollection { name: name.to_owned() }),
        }
        staged.index_files = index::files(&self.dir, name)?;
        Ok(staged)
    }

    /// Refuses input records whose checked foreign keys name a parent that does not
    /// exist in the parent collection's durable state (or, for a collection that is
    /// its own parent, among the stored and imported records).
    fn check_import_references(
        &self,
        info: &CollectionInfo,
        parsed: &[Parsed],
        changes: &[Change],
        id_field: &str,
        line_of: &BTreeMap<String, usize>,
    ) -> Result<()> {
        for fk in info.foreign_keys.iter().filter(|fk| fk.check) {
            let parents: BTreeSet<String> = if fk.parent == info.name {
                parsed
                    .iter()
                    .filter_map(|p| p.id_text(Some(id_field)))
                    .chain(changes.iter().map(|c| c.id_text.clone()))
                    .collect()
            } else {
                self.durable_state(&fk.parent, &Quiet)?.records.into_keys().collect()
            };
            for change in changes {
                let Some(value) = change.value.as_ref().and_then(|v| v.get(&fk.field)) else { continue };
                if *value == Json::Null {
                    continue;
                }
                if value.key_text().is_some_and(|id| parents.contains(&id)) {
                    continue;
                }
                let n = line_of.get(&change.id_text).copied().unwrap_or(0);
                return Err(invalid(format!(
                    "line {n}: field `{}` refers to {} in `{}`, which has no such record; nothing was imported",
                    fk.field,
                    truncate(&value.to_text()),
                    fk.parent
                )));
            }
        }
        Ok(())
    }

    /// Refuses input records that would share a key of a unique index with another
    /// record. The unique indices are those `shelf.json` records (or, in an older
    /// one, those whose index files say so).
    fn check_import_unique(
        &self,
        info: &CollectionInfo,
        parsed: &[Parsed],
        changes: &[Change],
        id_field: &str,
        line_of: &BTreeMap<String, usize>,
    ) -> Result<()> {
        let files = index::files(&self.dir, &info.name)?;
        let old = |index_name: &str| {
            files
                .iter()
                .find(|p| index::name_of(p) == index_name)
                .and_then(|p| RealFs.read(p).ok())
                .and_then(|bytes| index::parse(&bytes).ok())
        };
        let unique: Vec<String> = if info.indices.is_empty() {
            files
                .iter()
                .filter(|p| old(&index::name_of(p)).is_some_and(|f| f.header.unique))
                .map(|p| index::name_of(p))
                .collect()
        } else {
            info.indices.iter().filter(|i| i.unique).map(|i| i.name.clone()).collect()
        };
        let mut records: BTreeMap<String, (Option<Json>, Json)> = BTreeMap::new();
        for p in parsed {
            if let (Some(id), Ok(json)) = (p.id_text(Some(id_field)), &p.json) {
                records.insert(id, (None, json.clone()));
            }
        }
        let before: Vec<&Json> = records.values().map(|(_, r)| r).collect();
        let before: Vec<Json> = before.into_iter().cloned().collect();
        for change in changes {
            if let Some(value) = &change.value {
                records.insert(change.id_text.clone(), (None, value.clone()));
            }
        }
        for index_name in unique {
            let all: Vec<&Json> = before.iter().collect();
            let recorded = info.indices.iter().find(|i| i.name == index_name).and_then(index::recorded);
            let (fields, shape) = recorded.unwrap_or_else(|| {
                // An older shelf.json: the fields from the name, and one key per
                // element (the stricter reading) unless the index file shows whole
                // arrays.
                let fields = index::fields(&index_name, &all).unwrap_or_default();
                let shape = index::shape_of(old(&index_name).as_ref(), &all, &fields);
                (fields, shape)
            });
            if let Some((key, ids)) = check::unique_clash(&fields, &records, shape) {
                let n = ids.iter().filter_map(|id| line_of.get(id)).max().copied().unwrap_or(0);
                let others: Vec<&str> =
                    ids.iter().filter(|id| line_of.get(*id) != Some(&n)).map(String::as_str).collect();
                return Err(invalid(format!(
                    "line {n}: unique index `{index_name}`: key {} is already held by record {}; nothing was imported",
                    truncate(&key),
                    others.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// Deletes leftover temp files in the directory, its collections' directories and
    /// their index directories, durably. Returns how many.
    fn sweep_temps(&self) -> Result<usize> {
        let mut dirs = vec![self.dir.clone()];
        for info in self.collections.iter().filter(|c| c.is_persisted()) {
            dirs.extend(strategy(&self.dir, info).dirs());
            dirs.push(self.dir.join(&info.name));
            dirs.push(self.dir.join(&info.name).join(INDEX_DIR));
        }
        dirs.sort();
        dirs.dedup();
        let mut removed = 0;
        for dir in dirs {
            let Ok(entries) = RealFs.read_dir(&dir) else { continue };
            let temps: Vec<_> = entries.into_iter().filter(|e| !e.is_dir && is_temp(&e.name)).collect();
            for entry in &temps {
                let path = dir.join(&entry.name);
                RealFs.remove_file(&path).map_err(|e| InspectError::io("remove temp file", &path, e))?;
            }
            if !temps.is_empty() {
                RealFs.sync_dir(&dir).map_err(|e| InspectError::io("sync directory", &dir, e))?;
                removed += temps.len();
            }
        }
        Ok(removed)
    }
}

/// Removes index files durably (one directory sync each), before the records they
/// index change.
fn remove_index_files(paths: &[PathBuf]) -> Result<()> {
    let mut batch = WriteBatch::default();
    for path in paths {
        batch.remove(path.clone());
    }
    batch.commit(&RealFs, SyncMode::Batched)?;
    Ok(())
}

/// Raises a collection's `next_id` past every integer id the WAL wrote or removed,
/// so an auto id is never handed out twice.
fn bump_next_id(meta: &mut Meta, name: &str, changes: &[Change]) {
    let Some(entry) = meta.collections.get_mut(name) else { return };
    let Some(next) = entry.next_id else { return };
    let highest = changes.iter().filter_map(|c| if let Json::Number(n) = &c.id { n.as_u64() } else { None }).max();
    if let Some(highest) = highest {
        entry.next_id = Some(next.max(highest.saturating_add(1)));
    }
}

/// A record file's content: pretty JSON and a newline, as a flush writes it.
fn pretty(value: &Json) -> Result<Vec<u8>> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|e| invalid(format!("cannot serialize: {e}")))?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// The non-blank lines of the input, each a JSON object, with its line number.
fn read_lines(input: &mut dyn BufRead) -> Result<Vec<(usize, Json)>> {
    let mut out = Vec::new();
    for (n, line) in input.lines().enumerate() {
        let line = line.map_err(|e| InspectError::io("read", "<input>", e))?;
        if line.trim().is_empty() {
            continue;
        }
        match Json::parse(line.as_bytes()) {
            Ok(json @ Json::Object(_)) => out.push((n + 1, json)),
            Ok(_) => return Err(invalid(format!("line {}: not a JSON object", n + 1))),
            Err(e) => return Err(invalid(format!("line {}: {e}", n + 1))),
        }
    }
    Ok(out)
}
