//! Index files without the entity types: parsing and rebuilding from records (as
//! JSON), to check them. The format is the one of `crate::index_file`, whose codec
//! reads the header here too: a header line, then one `{"key":..,"id":..}` line per
//! entry. The tools never write index files (see `crate::index_file`).
//!
//! `shelf.json` records each index's fields and whether it is `each` (see
//! [`recorded`]); for a file of an older build that does not, an index is found by
//! its name: a field, or fields joined by `_and_` (a composite, whose key is the
//! array of the fields' values), and both shapes are tried. A `null` field has no
//! entry (an `Option`); an array field has one entry per element when indexed with
//! `each`, or one for the whole array otherwise.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::json::Json;
use super::{InspectError, Result};
use crate::batch::is_temp;
pub(crate) use crate::index_file::Header;
use crate::index_file::{checksum_ok, fingerprint_text, id_hash, read_header, INDEX_DIR};

/// A parsed index file.
pub(crate) struct IndexFile {
    pub header: Header,
    /// `(key, id)` per entry line.
    pub entries: Vec<(Json, Json)>,
    /// Whether the entry lines match the header's checksum (or it has none).
    pub checksum_ok: bool,
}

/// Entries compared as text: `(key JSON, id key text)`.
pub(crate) type Entries = BTreeSet<(String, String)>;

/// How an array field is indexed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    /// One entry per element (`#[index(each)]`).
    Each,
    /// One entry for the whole value.
    Whole,
}

/// The index files of a collection, sorted by name.
pub(crate) fn files(dir: &Path, collection: &str) -> Result<Vec<PathBuf>> {
    let index_dir = dir.join(collection).join(INDEX_DIR);
    let entries = match std::fs::read_dir(&index_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(InspectError::io("list", &index_dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| InspectError::io("list", &index_dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.path().is_file() && name.ends_with(".jsonl") && !is_temp(&name) {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// The index name of an index file: its file name without `.jsonl`.
pub(crate) fn name_of(path: &Path) -> String {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    name.strip_suffix(".jsonl").unwrap_or(&name).to_owned()
}

/// Parses a whole index file; the error says what is wrong and where.
pub(crate) fn parse(bytes: &[u8]) -> Result<IndexFile, String> {
    let (header, body) = read_header(bytes)?;
    let mut entries = Vec::new();
    for (n, line) in body.split(|&b| b == b'\n').enumerate().filter(|(_, line)| !line.is_empty()) {
        let json = Json::parse(line).map_err(|e| format!("line {}: unparsable entry: {e}", n + 2))?;
        match (json.get("key"), json.get("id")) {
            (Some(key), Some(id)) => entries.push((key.clone(), id.clone())),
            _ => return Err(format!("line {}: not a {{\"key\",\"id\"}} entry", n + 2)),
        }
    }
    let checksum_ok = checksum_ok(&header, body);
    Ok(IndexFile { header, entries, checksum_ok })
}

impl IndexFile {
    /// The entries as text; an error for an id that is not a string or an integer.
    pub fn entry_set(&self) -> Result<Entries, String> {
        self.entries
            .iter()
            .map(|(key, id)| match id.key_text() {
                Some(text) => Ok((key.to_text(), text)),
                None => Err(format!("entry with id {id}, which is not a string or an integer")),
            })
            .collect()
    }
}

/// The fields and the shape of an index, as `shelf.json` records them; `None`
/// when it does not (an older build's file), and they must be found.
pub(crate) fn recorded(info: &super::IndexInfo) -> Option<(Vec<String>, Shape)> {
    (!info.fields.is_empty()).then(|| (info.fields.clone(), if info.each { Shape::Each } else { Shape::Whole }))
}

/// The fields an index covers, found in the records.
pub(crate) fn fields(name: &str, records: &[&Json]) -> Result<Vec<String>, String> {
    let present = |field: &str| records.is_empty() || records.iter().any(|r| r.get(field).is_some());
    if present(name) {
        return Ok(vec![name.to_owned()]);
    }
    let parts: Vec<String> = name.split("_and_").map(str::to_owned).collect();
    if parts.len() > 1 && parts.iter().all(|p| present(p)) {
        return Ok(parts);
    }
    Err(format!("no field `{name}` (nor fields joined by `_and_`) in the records"))
}

/// The keys one record has under the index.
pub(crate) fn keys(record: &Json, fields: &[String], shape: Shape) -> Vec<Json> {
    match fields {
        [one] => match record.get(one) {
            None | Some(Json::Null) => Vec::new(),
            Some(Json::Array(items)) if shape == Shape::Each => {
                let mut keys: Vec<Json> = Vec::new();
                for item in items {
                    if !keys.contains(item) {
                        keys.push(item.clone());
                    }
                }
                keys
            }
            Some(value) => vec![value.clone()],
        },
        parts => vec![Json::Array(parts.iter().map(|f| record.get(f).cloned().unwrap_or(Json::Null)).collect())],
    }
}

/// Whether any record has an array in the (single) indexed field, so that the shape
/// matters.
pub(crate) fn has_arrays(records: &[&Json], fields: &[String]) -> bool {
    matches!(fields, [one] if records.iter().any(|r| matches!(r.get(one), Some(Json::Array(_)))))
}

/// The entries rebuilt from `(id text, record)` pairs.
pub(crate) fn rebuild(records: &[(String, &Json)], fields: &[String], shape: Shape) -> Entries {
    let mut out = Entries::new();
    for (id, record) in records {
        for key in keys(record, fields, shape) {
            out.insert((key.to_text(), id.clone()));
        }
    }
    out
}

/// The shape an existing file was written with, as far as its keys tell: `Whole`
/// when one of its keys is a record's whole array value, `Each` otherwise.
pub(crate) fn shape_of(file: Option<&IndexFile>, records: &[&Json], fields: &[String]) -> Shape {
    let [one] = fields else { return Shape::Each };
    let whole = file.is_some_and(|file| {
        file.entries
            .iter()
            .any(|(key, _)| matches!(key, Json::Array(_)) && records.iter().any(|r| r.get(one) == Some(key)))
    });
    if whole {
        Shape::Whole
    } else {
        Shape::Each
    }
}

/// Keys held by several records in a unique index: `(key, ids)`.
pub(crate) fn duplicates(entries: &Entries) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for (key, id) in entries {
        match out.last_mut() {
            Some((last, ids)) if last == key => ids.push(id.clone()),
            _ => out.push((key.clone(), vec![id.clone()])),
        }
    }
    out.retain(|(_, ids)| ids.len() > 1);
    out
}

/// The order-independent hash of a set of ids that index file headers carry.
pub(crate) fn fingerprint<'a>(ids: impl Iterator<Item = &'a str>) -> String {
    fingerprint_text(ids.fold(0u64, |acc, id| acc.wrapping_add(id_hash(id))))
}
