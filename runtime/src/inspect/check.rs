//! What `import` checks before it writes a line, so that it never writes a record
//! the application's next open refuses or repairs.
//!
//! The tools have no entity types, and `shelf.json` records no field types (the
//! derive does not describe them), so a line's fields are checked against the
//! collection's stored records, nested objects and array elements included: each
//! field must be one the records have at that place, with a JSON kind they have
//! there (an integer where they have numbers; `null` only where they have it), and
//! a field every record has there must be present. A collection without stored
//! records cannot be checked, and import refuses it; so is a non-empty array where
//! the records only ever have empty ones. This is conservative, not complete: a
//! value of the right kind that the type's own deserializer refuses (a unit enum
//! variant's unknown name, an integer out of the field's range, a malformed date
//! string) is not caught.
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
        Json::Number(n) if n.is_integer() => "an integer",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

/// The shape of the values the stored records hold at one place (the record itself,
/// a field, a nested field, the elements of an array): the kinds seen there and,
/// for objects and arrays, the shapes inside.
#[derive(Default)]
struct Node {
    kinds: BTreeSet<&'static str>,
    /// Objects seen here, and the fields they had.
    objects: usize,
    fields: BTreeMap<String, Node>,
    /// The elements of the arrays seen here.
    elements: Option<Box<Node>>,
    /// Values seen here.
    seen: usize,
}

impl Node {
    fn learn(&mut self, value: &Json) {
        self.seen += 1;
        self.kinds.insert(kind(value));
        match value {
            Json::Object(members) => {
                self.objects += 1;
                for (name, inner) in members {
                    self.fields.entry(name.clone()).or_default().learn(inner);
                }
            }
            Json::Array(items) => {
                let elements = self.elements.get_or_insert_with(Box::default);
                for item in items {
                    elements.learn(item);
                }
            }
            _ => {}
        }
    }

    fn check(&self, value: &Json, path: &str) -> Result<(), String> {
        let k = kind(value);
        let fits = self.kinds.contains(k) || (k == "an integer" && self.kinds.contains("a number"));
        if !fits {
            let expected: Vec<&str> = self.kinds.iter().copied().collect();
            return Err(format!(
                "field `{path}` is {k} ({}), but the stored records have {} there",
                truncate(&value.to_text()),
                expected.join(" or ")
            ));
        }
        match value {
            Json::Object(members) => {
                let at = |name: &str| if path.is_empty() { name.to_owned() } else { format!("{path}.{name}") };
                for (name, inner) in members {
                    let Some(node) = self.fields.get(name) else {
                        return Err(format!("field `{}` is not a field of the stored records", at(name)));
                    };
                    node.check(inner, &at(name))?;
                }
                for (name, node) in &self.fields {
                    if node.seen == self.objects && value.get(name).is_none() {
                        return Err(format!("field `{}` is missing, and every stored record has it", at(name)));
                    }
                }
            }
            Json::Array(items) if !items.is_empty() => {
                let Some(elements) = self.elements.as_ref().filter(|e| e.seen > 0) else {
                    return Err(format!(
                        "field `{path}` holds elements, and the stored records have none there to check them against"
                    ));
                };
                for (i, item) in items.iter().enumerate() {
                    elements.check(item, &format!("{path}[{i}]"))?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// The fields the stored records have, nested ones included, with the kinds each
/// takes.
pub(crate) struct Fields {
    root: Node,
}

impl Fields {
    /// Learns the fields of `records`.
    pub fn of<'a>(records: impl Iterator<Item = &'a Json>) -> Fields {
        let mut root = Node::default();
        for record in records {
            root.learn(record);
        }
        Fields { root }
    }

    /// Whether there is anything to check against.
    pub fn is_empty(&self) -> bool {
        self.root.seen == 0
    }

    /// Checks one input record; the error says which field and why.
    pub fn check(&self, line: &Json) -> Result<(), String> {
        self.root.check(line, "")
    }
}

/// The first key of a unique index that several records hold, as `(key, ids)`.
pub(crate) fn unique_clash(
    fields: &[String],
    records: &BTreeMap<String, (Option<Json>, Json)>,
    shape: Shape,
) -> Option<(String, Vec<String>)> {
    if fields.is_empty() {
        return None;
    }
    let pairs: Vec<(String, &Json)> = records.iter().map(|(id, (_, r))| (id.clone(), r)).collect();
    index::duplicates(&index::rebuild(&pairs, fields, shape)).into_iter().next()
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
        let nested = [
            json(r#"{"id":"a","in":{"v":[1,2],"e":"Dot"}}"#),
            json(r#"{"id":"b","in":{"v":[],"e":{"Circle":{"r":1.5}}}}"#),
        ];
        let fields = Fields::of(nested.iter());
        assert!(fields.check(&json(r#"{"id":"c","in":{"v":[3],"e":{"Circle":{"r":2}}}}"#)).is_ok());
        assert!(fields
            .check(&json(r#"{"id":"c","in":{"v":["x"],"e":"Dot"}}"#))
            .unwrap_err()
            .contains("field `in.v[0]` is a string"));
        assert!(fields
            .check(&json(r#"{"id":"c","in":{"v":[],"e":{"Square":{}}}}"#))
            .unwrap_err()
            .contains("`in.e.Square` is not"));
        assert!(fields.check(&json(r#"{"id":"c","in":{"e":"Dot"}}"#)).unwrap_err().contains("`in.v` is missing"));
    }
}
