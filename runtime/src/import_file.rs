//! Staged imports: `_import/<collection>.jsonl`, the records `shelf import` checked
//! and left for the application's next open, which applies them through the
//! collection's own type and write path (FORMAT §15).
//!
//! The tools cannot know what a type's deserializer accepts (an enum's variant
//! names, an integer's range, a custom `deserialize_with`), so they never write
//! record files: the open that has the types decides, line by line.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::error::Result;
use crate::fs::Vfs;
use crate::jsonl_file;

/// The directory of staged imports, in the data directory (a collection name
/// cannot start with `_`).
pub const IMPORT_DIR: &str = "_import";

/// The version of the staged-import format this build writes and reads.
pub(crate) const IMPORT_VERSION: u32 = 1;

/// The first line of a staged import.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Header {
    /// [`IMPORT_VERSION`].
    pub shelf_import: u32,
    /// The collection the records go to.
    pub collection: String,
    /// The field that holds each record's id.
    pub id_field: String,
}

/// One record to store: every line after the header.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Line {
    /// The record's line in the input given to `shelf import` (for reports).
    pub line: usize,
    /// The record's id.
    pub id: Box<RawValue>,
    /// The record, as the input gave it.
    pub record: Box<RawValue>,
}

/// Where collection `name`'s staged import is.
pub(crate) fn path(dir: &Path, name: &str) -> PathBuf {
    dir.join(IMPORT_DIR).join(format!("{name}.jsonl"))
}

/// A staged import's bytes: the header, then one line per record, in input order.
pub(crate) fn encode(header: &Header, lines: &[Line]) -> serde_json::Result<Vec<u8>> {
    jsonl_file::encode(header, lines)
}

/// Refuses a staged file of `len` bytes that an open would not read: open reads
/// files up to `limit` ([`DEFAULT_MAX_FILE_SIZE`](crate::fs::DEFAULT_MAX_FILE_SIZE))
/// and moves a larger one to `_quarantine/`, so `shelf import` must refuse it
/// rather than stage what the application then sets aside.
pub(crate) fn fits(len: usize, limit: u64) -> std::result::Result<(), String> {
    if len as u64 <= limit {
        return Ok(());
    }
    Err(format!(
        "the staged import would be {len} bytes, over the {limit} bytes an open reads; split the input and import each part after the application's open has applied the one before"
    ))
}

/// Reads a staged import. An error says what is wrong, naming the line.
pub(crate) fn decode(bytes: &[u8]) -> std::result::Result<(Header, Vec<Line>), String> {
    let (header, items): (Header, Vec<(usize, Line)>) = jsonl_file::decode(bytes)?;
    if header.shelf_import != IMPORT_VERSION {
        return Err(format!("staged import version {}, this build reads {IMPORT_VERSION}", header.shelf_import));
    }
    Ok((header, items.into_iter().map(|(_, line)| line).collect()))
}

/// The staged imports in `dir` (none when there is no import directory).
pub(crate) fn list(fs: &dyn Vfs, dir: &Path) -> Result<Vec<PathBuf>> {
    jsonl_file::list(fs, &dir.join(IMPORT_DIR))
}

/// The first place where `given` (an imported record) is not what its type stores
/// (`stored`: the record parsed and serialized again), as a field path such as
/// `inner.values[2]`; `None` when every value the input gives comes back. A field
/// the input leaves out may come back with a default, a number may change its
/// spelling (`1` and `1.0`), not its value, and a field the type does not write
/// back (`skip_serializing_if`) may be given only as an empty value (`null`, `[]`,
/// `{}`, `""`, `0`, `false`): those are the defaults such a field is skipped for.
pub(crate) fn first_difference(given: &Value, stored: &Value) -> Option<String> {
    fn walk(given: &Value, stored: Option<&Value>, path: &mut String) -> bool {
        match (given, stored) {
            (Value::Object(given), Some(Value::Object(stored))) => given.iter().all(|(key, value)| {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                let same = walk(value, stored.get(key), path);
                if same {
                    path.truncate(len);
                }
                same
            }),
            (Value::Array(given), Some(Value::Array(stored))) if given.len() == stored.len() => {
                given.iter().zip(stored).enumerate().all(|(i, (value, back))| {
                    let len = path.len();
                    path.push_str(&format!("[{i}]"));
                    let same = walk(value, Some(back), path);
                    if same {
                        path.truncate(len);
                    }
                    same
                })
            }
            (Value::Number(a), Some(Value::Number(b))) => same_number(a, b),
            (given, None) => is_empty_value(given),
            (given, Some(stored)) => given == stored,
        }
    }
    let mut path = String::new();
    (!walk(given, Some(stored), &mut path)).then(|| {
        if path.is_empty() {
            "the record".to_owned()
        } else {
            format!("`{path}`")
        }
    })
}

/// Whether a value is one a field is commonly left out for when it holds it.
fn is_empty_value(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// Whether two numbers have the same value: `1` and `1.0` do, `2^53 + 1` and the
/// float it rounds to do not.
fn same_number(a: &serde_json::Number, b: &serde_json::Number) -> bool {
    let int = |n: &serde_json::Number| n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from));
    match (int(a), int(b), a.as_f64(), b.as_f64()) {
        (Some(x), Some(y), _, _) => x == y,
        (Some(i), None, _, Some(f)) | (None, Some(i), Some(f), _) => {
            f.fract() == 0.0 && f as i128 == i && i as f64 == f
        }
        (None, None, Some(x), Some(y)) => x == y,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_staged_file_an_open_would_not_read_is_refused() {
        assert_eq!(fits(1 << 30, 1 << 30), Ok(()));
        let refused = fits((1 << 30) + 1, 1 << 30).unwrap_err();
        assert!(refused.contains("1073741825 bytes") && refused.contains("split the input"), "{refused}");
    }

    use serde_json::json;

    use super::*;

    #[test]
    fn a_staged_import_reads_back_as_written() {
        let header = Header { shelf_import: IMPORT_VERSION, collection: "user".into(), id_field: "id".into() };
        let lines = [Line {
            line: 3,
            id: RawValue::from_string("\"a\"".into()).unwrap(),
            record: RawValue::from_string(r#"{"id":"a","n":1.5}"#.into()).unwrap(),
        }];
        let (back, read) = decode(&encode(&header, &lines).unwrap()).unwrap();
        assert_eq!(back, header);
        assert_eq!((read[0].line, read[0].id.get(), read[0].record.get()), (3, "\"a\"", r#"{"id":"a","n":1.5}"#));
        let newer = br#"{"shelf_import":2,"collection":"user","id_field":"id"}"#;
        assert!(decode(newer).unwrap_err().contains("version 2"));
        assert!(decode(b"{\"shelf_import\":1,\"collection\":\"u\",\"id_field\":\"id\"}\n{\"line\":1}\n")
            .unwrap_err()
            .contains("line 2"));
    }

    #[test]
    fn a_difference_names_the_first_field_not_stored_as_given() {
        let stored = json!({"id": "a", "n": 1.0, "tags": ["x", "y"], "inner": {"flag": true, "deep": null}, "big": 9007199254740992.0});
        for same in [
            json!({"id": "a", "n": 1, "tags": ["x", "y"], "inner": {"flag": true}}),
            json!({"id": "a", "n": 1.0, "inner": {"flag": true, "deep": null, "gone": null}}),
            json!({"big": 9007199254740992u64}),
            json!({"skipped": [], "none": "", "zero": 0, "no": false, "empty": {}}),
            json!({}),
        ] {
            assert_eq!(first_difference(&same, &stored), None, "{same}");
        }
        for (given, path) in [
            (json!({"id": "a", "extra": 1}), "`extra`"),
            (json!({"skipped": [0]}), "`skipped`"),
            (json!({"tags": ["x", "Y"]}), "`tags[1]`"),
            (json!({"tags": ["x"]}), "`tags`"),
            (json!({"inner": {"flag": false}}), "`inner.flag`"),
            (json!({"n": 1.5}), "`n`"),
            (json!({"inner": 5}), "`inner`"),
            (json!({"big": 9007199254740993u64}), "`big`"),
            (json!("a"), "the record"),
        ] {
            let got = first_difference(&given, &stored);
            assert_eq!(got.as_deref(), Some(path), "{given}");
        }
    }
}
