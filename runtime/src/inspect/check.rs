//! What `import` checks before it writes a line, so that it never writes a record
//! the application's next open refuses or repairs.
//!
//! The tools have no entity types, and `shelf.json` records no field types (the
//! derive does not describe them), so a line's fields are checked against the
//! collection's stored records: each field must be one the records have, with a
//! JSON kind they have (an integer where they have numbers; `null` only where they
//! have it), and a field every record has must be present. A collection without
//! stored records cannot be checked, and import refuses it. This is conservative,
//! not complete: a value of the right kind that the type's own deserializer refuses
//! (an enum's unknown variant, a malformed date string) is not caught.
//!
//! Unique indices (from `shelf.json`, else the index files' headers) and checked
//! foreign keys (from `shelf.json`) are checked against the durable state, WAL
//! included.

use std::collections::{BTreeMap, BTreeSet};

use super::index::{self, Shape};
use super::json::Json;
use super::records::truncate;

/// A JSON value's kind, as the check compares them.
fn kind(value: &Json) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

/// The fields the stored records have, with the kinds each takes.
pub(crate) struct Fields {
    records: usize,
    /// field -> (kinds seen, how many records have it).
    seen: BTreeMap<String, (BTreeSet<&'static str>, usize)>,
}

impl Fields {
    /// Learns the fields of `records`.
    pub fn of<'a>(records: impl Iterator<Item = &'a Json>) -> Fields {
        let mut fields = Fields { records: 0, seen: BTreeMap::new() };
        for record in records {
            fields.records += 1;
            if let Json::Object(members) = record {
                for (name, value) in members {
                    let entry = fields.seen.entry(name.clone()).or_default();
                    entry.0.insert(kind(value));
                    entry.1 += 1;
                }
            }
        }
        fields
    }

    /// Whether there is anything to check against.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Checks one input record; the error says which field and why.
    pub fn check(&self, line: &Json) -> Result<(), String> {
        for (name, value) in match line {
            Json::Object(members) => members.as_slice(),
            _ => &[],
        } {
            let Some((kinds, _)) = self.seen.get(name) else {
                return Err(format!("field `{name}` is not a field of the stored records"));
            };
            let k = kind(value);
            let fits = kinds.contains(k) || (k == "an integer" && kinds.contains("a number"));
            if !fits {
                let expected: Vec<&str> = kinds.iter().copied().collect();
                return Err(format!(
                    "field `{name}` is {k} ({}), but the stored records have {} there",
                    truncate(&value.to_text()),
                    expected.join(" or ")
                ));
            }
        }
        for (name, (_, count)) in &self.seen {
            if *count == self.records && line.get(name).is_none() {
                return Err(format!("field `{name}` is missing, and every stored record has it"));
            }
        }
        Ok(())
    }
}

/// The first key of a unique index that several records hold, as `(key, ids)`.
pub(crate) fn unique_clash(
    index_name: &str,
    records: &BTreeMap<String, (Option<Json>, Json)>,
    shape: Shape,
) -> Option<(String, Vec<String>)> {
    let all: Vec<&Json> = records.values().map(|(_, r)| r).collect();
    let fields = index::fields(index_name, &all).ok()?;
    let pairs: Vec<(String, &Json)> = records.iter().map(|(id, (_, r))| (id.clone(), r)).collect();
    index::duplicates(&index::rebuild(&pairs, &fields, shape)).into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(text: &str) -> Json {
        Json::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn fields_refuse_unknown_missing_and_mistyped_fields() {
        let stored =
            [json(r#"{"id":"a","name":"x","n":1.5,"nick":null}"#), json(r#"{"id":"b","name":"y","n":2,"nick":"z"}"#)];
        let fields = Fields::of(stored.iter());
        assert!(fields.check(&json(r#"{"id":"c","name":"w","n":3,"nick":null}"#)).is_ok());
        assert!(fields
            .check(&json(r#"{"id":"c","name":5,"n":3,"nick":null}"#))
            .unwrap_err()
            .contains("field `name` is an integer"));
        assert!(fields.check(&json(r#"{"id":"c","n":3,"nick":null}"#)).unwrap_err().contains("`name` is missing"));
        assert!(fields
            .check(&json(r#"{"id":"c","name":"w","n":3,"nick":null,"x":1}"#))
            .unwrap_err()
            .contains("`x` is not"));
        assert!(Fields::of(std::iter::empty()).is_empty());
    }
}
