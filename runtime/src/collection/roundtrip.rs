//! The write-time round trip: a value is acknowledged only if its JSON loads back
//! as the same value. A refusal names the field at fault, as a path into the record
//! (`price`, `tags[2]`, `meta.size`), found by `serde_path_to_error` for a value that
//! does not serialize or deserialize, and by comparing the two JSON trees for one
//! that loads back different.

use serde_json::Value;

use crate::entity::Entity;
use crate::error::{show_id, Error, Result};
use crate::key::Key;

/// The compact JSON of `value`, checked to load back exactly: it deserializes, and
/// the loaded value serializes to the same bytes (floats bit for bit).
///
/// Checked with plain `serde_json` first; only a value that fails is written and
/// read again through `serde_path_to_error`, to name the field at fault (tracking
/// the path made every write's check 1.7 times as costly: 12,400 instructions
/// against 7,200 for the bench's five-field record, `valgrind --tool=callgrind`
/// over `shelf-bench --bin postgres -- --shelf-only --commits 2000 --rounds 1`).
pub(super) fn loadable<T: Entity>(collection: &str, id: &T::Id, value: &T) -> Result<Vec<u8>> {
    if let Some(bytes) = loads_back(value) {
        return Ok(bytes);
    }
    let refuse = |field: String, message: String| Error::Unloadable {
        collection: collection.to_owned(),
        id: show_id(&id.encode_key()),
        field,
        message,
    };
    let mut bytes = Vec::new();
    serde_path_to_error::serialize(value, &mut serde_json::Serializer::new(&mut bytes))
        .map_err(|e| refuse(path(e.path()), format!("it does not serialize to JSON: {}", e.inner())))?;
    let back: T = serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(&bytes)).map_err(|e| {
        let message = e.inner().to_string();
        let hint = if message.contains("null") {
            " (JSON has no NaN or infinity: serde_json writes them as null)"
        } else if message.contains("recursion limit") {
            " (it is nested deeper than the 128 levels a load accepts)"
        } else {
            ""
        };
        refuse(path(e.path()), format!("its JSON does not load back: {message}{hint}"))
    })?;
    let again = serde_json::to_vec(&back)
        .map_err(|e| refuse(String::new(), format!("its loaded copy does not serialize: {e}")))?;
    if again != bytes {
        let (field, written, loaded) = first_difference(&bytes, &again);
        return Err(refuse(
            field,
            format!("it would load back as a different value: written `{written}`, loaded `{loaded}`"),
        ));
    }
    // The plain check failed and this one did not: a `Serialize` or `Deserialize`
    // that answers differently each time cannot be trusted to load back.
    Err(refuse(String::new(), "its JSON did not load back the same way twice".to_owned()))
}

/// The compact JSON of `value` if it loads back exactly (see [`loadable`]).
fn loads_back<T: Entity>(value: &T) -> Option<Vec<u8>> {
    let bytes = serde_json::to_vec(value).ok()?;
    let back: T = serde_json::from_slice(&bytes).ok()?;
    let again = serde_json::to_vec(&back).ok()?;
    (again == bytes).then_some(bytes)
}

/// A path as the message shows it: empty for the whole record.
fn path(path: &serde_path_to_error::Path) -> String {
    let text = path.to_string();
    if text == "." {
        String::new()
    } else {
        text
    }
}

/// Where two JSON documents first differ: the path, and the two values there
/// (shortened).
fn first_difference(written: &[u8], loaded: &[u8]) -> (String, String, String) {
    let parse = |b: &[u8]| serde_json::from_slice::<Value>(b).ok();
    let shorten = |v: &Value| {
        let text = v.to_string();
        match text.char_indices().nth(60) {
            Some((cut, _)) => format!("{}…", &text[..cut]),
            None => text,
        }
    };
    match (parse(written), parse(loaded)) {
        (Some(a), Some(b)) => {
            let mut at = String::new();
            let (x, y) = diff(&a, &b, &mut at).unwrap_or((&a, &b));
            (at, shorten(x), shorten(y))
        }
        _ => {
            (String::new(), String::from_utf8_lossy(written).into_owned(), String::from_utf8_lossy(loaded).into_owned())
        }
    }
}

/// The first place where `a` and `b` differ, with its path written into `at`.
fn diff<'v>(a: &'v Value, b: &'v Value, at: &mut String) -> Option<(&'v Value, &'v Value)> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (key, value) in x {
                let len = at.len();
                if !at.is_empty() {
                    at.push('.');
                }
                at.push_str(key);
                match y.get(key) {
                    None => return Some((value, &Value::Null)),
                    Some(other) => {
                        if let Some(found) = diff(value, other, at) {
                            return Some(found);
                        }
                    }
                }
                at.truncate(len);
            }
            // A key only the loaded copy has.
            y.iter().find(|(key, _)| !x.contains_key(*key)).map(|(key, value)| {
                if !at.is_empty() {
                    at.push('.');
                }
                at.push_str(key);
                (&Value::Null, value)
            })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (value, other)) in x.iter().zip(y).enumerate() {
                let len = at.len();
                at.push_str(&format!("[{i}]"));
                if let Some(found) = diff(value, other, at) {
                    return Some(found);
                }
                at.truncate(len);
            }
            None
        }
        // Numbers compare by their text: a float one ULP off is a difference.
        (Value::Number(x), Value::Number(y)) if x.to_string() == y.to_string() => None,
        _ if a == b => None,
        _ => Some((a, b)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_difference_is_named_by_its_path() {
        let (at, written, loaded) =
            first_difference(br#"{"id":"a","meta":{"tags":[1,2,3]}}"#, br#"{"id":"a","meta":{"tags":[1,5,3]}}"#);
        assert_eq!((at.as_str(), written.as_str(), loaded.as_str()), ("meta.tags[1]", "2", "5"));
        let (at, ..) = first_difference(br#"{"id":"a","x":1}"#, br#"{"id":"a"}"#);
        assert_eq!(at, "x");
        let (at, ..) = first_difference(br#"{"id":"a"}"#, br#"{"id":"a","y":true}"#);
        assert_eq!(at, "y");
        let (at, ..) = first_difference(br#"[1,2]"#, br#"[1,2,3]"#);
        assert_eq!(at, "");
    }
}
