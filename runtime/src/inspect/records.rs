//! Reading a collection's records, in any layout, and telling their ids.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::json::{compare, Json};
use super::wal::{self, WalDamage};
use super::{CollectionInfo, DataDir, InspectError, Progress, Result};
use crate::encode;
use crate::fs::RealFs;
use crate::storage::{strategy_for, Strategy};
use crate::store::DEFAULT_COMPRESSION_LEVEL;

/// One record as stored, not yet parsed.
#[derive(Clone, Debug)]
pub struct Record {
    /// Where it is: its file, or `file:line` in a collection file.
    pub location: PathBuf,
    /// The encoded id its file name carries (`per_record` only).
    pub stem: Option<String>,
    /// Its JSON text (decompressed).
    pub bytes: Vec<u8>,
}

impl Record {
    /// The record as JSON.
    ///
    /// # Errors
    ///
    /// Why its text is not JSON.
    pub fn value(&self) -> Result<serde_json::Value, String> {
        serde_json::from_slice(&self.bytes).map_err(|e| e.to_string())
    }

    /// The id its file name says (the decoded stem), `per_record` only; `None` also
    /// for a hashed name (a long id, whose id is only inside the file) and when the
    /// file name is not one Shelf can write.
    pub fn file_id(&self) -> Option<String> {
        self.stem.as_deref().and_then(encode::decode)
    }

    /// Whether its file name is the one of the id with key text `id` (`per_record`
    /// only; `false` without a file name). Works for hashed names too.
    pub fn named_for(&self, id: &str) -> bool {
        self.stem.as_deref().is_some_and(|stem| encode::is_name_of(stem, id))
    }

    pub(crate) fn json(&self) -> Result<Json, String> {
        match Json::parse(&self.bytes)? {
            json @ Json::Object(_) => Ok(json),
            other => Err(format!("not a JSON object but `{}`", truncate(&other.to_text()))),
        }
    }
}

/// A record read and parsed.
pub(crate) struct Parsed {
    pub record: Record,
    pub json: Result<Json, String>,
}

impl Parsed {
    /// The record's id text: from its id field when known, else its file name.
    pub fn id_text(&self, id_field: Option<&str>) -> Option<String> {
        match (id_field, &self.json) {
            (Some(field), Ok(json)) => json.get(field).and_then(Json::key_text),
            _ => self.record.file_id(),
        }
    }
}

/// The strategy that reads `info`'s layout.
pub(crate) fn strategy(dir: &Path, info: &CollectionInfo) -> Box<dyn Strategy> {
    strategy_for(info.layout.spec(), dir, &info.name, DEFAULT_COMPRESSION_LEVEL)
}

impl DataDir {
    /// Calls `sink` with every record of a collection, in storage order. A memory
    /// collection has none.
    ///
    /// # Errors
    ///
    /// [`InspectError::UnknownCollection`]; an I/O error, or a collection file that
    /// cannot be decompressed; or what `sink` returns.
    pub fn records(&self, name: &str, sink: &mut dyn FnMut(Record) -> Result<()>) -> Result<()> {
        let info = self.collection(name)?;
        if !info.is_persisted() {
            return Ok(());
        }
        let mut failure = None;
        let outcome = strategy(&self.dir, info).load(&RealFs, &mut |raw| {
            let record = Record { location: raw.location(), stem: raw.stem, bytes: raw.bytes.to_vec() };
            sink(record).map_err(|e| {
                failure = Some(e);
                // Only stops the load: the sink's own error, kept above, is returned.
                crate::Error::Closed { dir: PathBuf::new() }
            })
        });
        match (outcome, failure) {
            (_, Some(e)) => Err(e),
            (Err(e), None) => Err(e.into()),
            (Ok(()), None) => Ok(()),
        }
    }

    /// Every record of a collection, parsed.
    pub(crate) fn parsed(&self, name: &str, progress: &dyn Progress) -> Result<Vec<Parsed>> {
        let mut out = Vec::new();
        self.records(name, &mut |record| {
            let json = record.json();
            out.push(Parsed { record, json });
            progress.advance(1);
            Ok(())
        })?;
        Ok(out)
    }

    /// A collection's records as the next open would load them: the stored records
    /// with the WAL's valid records applied in sequence order, by id text, each with
    /// its id as JSON. See [`DataDir::export`].
    pub(crate) fn durable_state(&self, name: &str, progress: &dyn Progress) -> Result<DurableState> {
        let info = self.collection(name)?;
        let scan = wal::scan(&self.dir)?;
        if let Some(WalDamage::Corrupt { segment, offset }) = &scan.summary.damage {
            return Err(InspectError::Invalid(format!(
                "the WAL is corrupt ({} at byte {offset}), so the durable state of `{name}` cannot be told; run `shelf verify`",
                self.relative(segment)
            )));
        }
        let mut pending = Vec::new();
        for record in &scan.records {
            let writes = record.writes().map_err(|e| {
                InspectError::Invalid(format!("WAL record {} in {}: {e}", record.lsn, self.relative(&record.segment)))
            })?;
            pending.extend(writes.into_iter().filter(|w| w.collection == name));
        }
        progress.start(&format!("reading {name}"), None);
        let records = self.parsed(name, progress)?;
        progress.finish();
        let pairs: Vec<(&Json, &Json)> = pending.iter().filter_map(|w| w.value.as_ref().map(|v| (&w.id, v))).collect();
        let id_field = info.id_field.clone().or_else(|| infer_id_field(&records, &pairs));
        // By id text: (the id as JSON, for sorting; the record).
        let mut state: BTreeMap<String, (Json, Json)> = BTreeMap::new();
        for parsed in records {
            let json = parsed.json.map_err(|e| {
                InspectError::Invalid(format!("{}: {e}; run `shelf verify`", self.relative(&parsed.record.location)))
            })?;
            let file_id = parsed.record.file_id();
            let id = match id_field.as_deref() {
                Some(field) => json.get(field).cloned(),
                None => file_id.map(Json::String),
            };
            let Some(text) = id.as_ref().and_then(Json::key_text) else {
                return Err(InspectError::Invalid(format!(
                    "{}: cannot tell its id; run `shelf verify`",
                    self.relative(&parsed.record.location)
                )));
            };
            state.insert(text, (id.unwrap_or(Json::Null), json));
        }
        if !pending.is_empty() && id_field.is_none() {
            return Err(InspectError::Invalid(format!(
                "the WAL holds writes to `{name}` not yet in its files, and its id field is not recorded in shelf.json; open the store once (or run `shelf compact`) and try again"
            )));
        }
        for write in pending {
            let Some(text) = write.id.key_text() else {
                return Err(InspectError::Invalid(format!(
                    "a WAL write to `{name}` has id {}, which is not a string or an integer",
                    write.id
                )));
            };
            match write.value {
                Some(_) if write.parent && state.contains_key(&text) => None,
                Some(value) => state.insert(text, (write.id, value)),
                None => state.remove(&text),
            };
        }
        Ok(DurableState { records: state })
    }

    /// Writes every record of a collection to `out` as JSON lines, sorted by id, with
    /// each record's fields in stored order. Returns how many were written.
    ///
    /// This is the durable state, as the next open would load it: the WAL's valid
    /// records (commits a crash, or a running `Store`, left unflushed) are applied to
    /// the stored records in memory first, in sequence order: a value sets the
    /// record, `null` removes it. A torn WAL tail is not applied (its commit was
    /// never acknowledged). Nothing is written to the directory.
    ///
    /// # Errors
    ///
    /// As [`DataDir::records`]; [`InspectError::Invalid`] for a record that is not a
    /// JSON object (run `verify`), a corrupt WAL, or WAL writes to the collection
    /// whose records' id field cannot be told; an I/O error writing `out`.
    pub fn export(&self, name: &str, out: &mut dyn Write, progress: &dyn Progress) -> Result<usize> {
        let info = self.collection(name)?;
        if !info.is_persisted() {
            return Err(InspectError::MemoryCollection { name: name.to_owned() });
        }
        let state = self.durable_state(name, progress)?;
        let mut lines: Vec<(Json, Json)> = state.records.into_values().collect();
        lines.sort_by(|a, b| compare(&a.0, &b.0));
        for (_, json) in &lines {
            let mut line = json.to_text().into_bytes();
            line.push(b'\n');
            out.write_all(&line).map_err(|e| InspectError::io("write", "<output>", e))?;
        }
        out.flush().map_err(|e| InspectError::io("write", "<output>", e))?;
        Ok(lines.len())
    }
}

/// A collection's durable records: see [`DataDir::durable_state`].
pub(crate) struct DurableState {
    /// By id text: (the id as JSON, the record).
    pub records: BTreeMap<String, (Json, Json)>,
}

/// The field that holds a record's id, from evidence: the field whose value is the
/// id of the record's file name, or of a WAL entry's (`(id, record)` pairs), in the
/// most cases (a record with a wrong id does not hide the field). Prefers `id` on a
/// tie; without evidence, `id` if records have it.
pub(crate) fn infer_id_field(records: &[Parsed], wal_pairs: &[(&Json, &Json)]) -> Option<String> {
    // (field, how many records it matched), fields in the order first seen.
    let mut scores: Vec<(String, usize)> = Vec::new();
    let mut vote = |fields: Vec<&str>| {
        for field in fields {
            match scores.iter_mut().find(|(f, _)| f == field) {
                Some((_, n)) => *n += 1,
                None => scores.push((field.to_owned(), 1)),
            }
        }
    };
    for parsed in records.iter().take(64) {
        if let (Some(_), Ok(json)) = (&parsed.record.stem, &parsed.json) {
            // A field whose value has this file name (full or hashed).
            vote(
                json.keys()
                    .into_iter()
                    .filter(|k| json.get(k).and_then(Json::key_text).is_some_and(|id| parsed.record.named_for(&id)))
                    .collect(),
            );
        }
    }
    for (id, record) in wal_pairs.iter().take(64) {
        vote(record.keys().into_iter().filter(|k| record.get(k) == Some(*id)).collect());
    }
    let best = scores.iter().map(|(_, n)| *n).max();
    match best {
        Some(best) if scores.iter().any(|(f, n)| f == "id" && *n == best) => Some("id".to_owned()),
        Some(best) => scores.into_iter().find(|(_, n)| *n == best).map(|(f, _)| f),
        None => {
            records.iter().find_map(|p| p.json.as_ref().ok()).and_then(|json| json.get("id")).map(|_| "id".to_owned())
        }
    }
}

/// Shortens text for a message.
pub(crate) fn truncate(text: &str) -> String {
    const MAX: usize = 80;
    match text.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_owned(),
    }
}
