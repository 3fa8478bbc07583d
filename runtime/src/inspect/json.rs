//! An untyped JSON value that keeps object members in their order.
//!
//! `serde_json::Value` sorts object keys (without its `preserve_order` feature), so a
//! record read and written back through it would come out with its fields in
//! alphabetical order. The tools rewrite users' files, which stay readable when the
//! fields keep the order the entity declared them in; hence this type.
//!
//! A number keeps the text it was read as. `serde_json::Number` (without the
//! `arbitrary_precision` feature, which would change every user's `serde_json`)
//! reads an integer beyond 64 bits as a float: a `u128` field written back through
//! it would no longer load. The tools write back exactly what they read.

use std::cmp::Ordering;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::value::RawValue;

/// A JSON number, as the text it was read as (a valid JSON number).
#[derive(Clone, Debug)]
pub(crate) struct Number(Box<RawValue>);

impl Number {
    /// Its text if it is an integer, of any size: no fraction, no exponent, and
    /// not `-0` (which serde reads as the float -0.0, refused by integer types).
    pub fn integer_text(&self) -> Option<&str> {
        let text = self.0.get();
        (!text.contains(['.', 'e', 'E']) && text != "-0").then_some(text)
    }
    /// The number if it is an integer that fits a `u64`.
    pub fn as_u64(&self) -> Option<u64> {
        self.integer_text()?.parse().ok()
    }
    /// The number as the nearest `f64`.
    pub fn as_f64(&self) -> Option<f64> {
        self.0.get().parse().ok()
    }
    /// Whether it is an integer ([`Number::integer_text`]).
    pub fn is_integer(&self) -> bool {
        self.integer_text().is_some()
    }
}

impl PartialEq for Number {
    fn eq(&self, other: &Number) -> bool {
        self.0.get() == other.0.get()
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.get())
    }
}

/// A JSON value; objects keep their members in order.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Json {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    /// Parses JSON text.
    pub fn parse(bytes: &[u8]) -> Result<Json, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }

    /// The member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The member names of an object, in order.
    pub fn keys(&self) -> Vec<&str> {
        match self {
            Json::Object(members) => members.iter().map(|(k, _)| k.as_str()).collect(),
            _ => Vec::new(),
        }
    }

    /// The canonical text form of a value used as an id: a string as it is, an
    /// integer in decimal (what `Key::encode_key` gives for the key types).
    pub fn key_text(&self) -> Option<String> {
        match self {
            Json::String(s) => Some(s.clone()),
            Json::Number(n) => n.integer_text().map(str::to_owned),
            _ => None,
        }
    }

    /// Compact JSON text, members in order.
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    fn rank(&self) -> u8 {
        match self {
            Json::Null => 0,
            Json::Bool(_) => 1,
            Json::Number(_) => 2,
            Json::String(_) => 3,
            Json::Array(_) => 4,
            Json::Object(_) => 5,
        }
    }
}

/// An order close to the typed one, for writing sorted files: numbers by value,
/// strings by bytes, arrays (tuples) element by element.
pub(crate) fn compare(a: &Json, b: &Json) -> Ordering {
    match (a, b) {
        (Json::Bool(x), Json::Bool(y)) => x.cmp(y),
        (Json::Number(x), Json::Number(y)) => compare_numbers(x, y),
        (Json::String(x), Json::String(y)) => x.cmp(y),
        (Json::Array(x), Json::Array(y)) => {
            x.iter().zip(y).map(|(p, q)| compare(p, q)).find(|o| o.is_ne()).unwrap_or(x.len().cmp(&y.len()))
        }
        (Json::Object(_), Json::Object(_)) => a.to_text().cmp(&b.to_text()),
        _ => a.rank().cmp(&b.rank()),
    }
}

fn compare_numbers(x: &Number, y: &Number) -> Ordering {
    match (x.integer_text(), y.integer_text()) {
        (Some(p), Some(q)) => compare_integers(p, q),
        _ => x.as_f64().partial_cmp(&y.as_f64()).unwrap_or(Ordering::Equal),
    }
}

/// Two integers written in decimal (JSON: no leading zeros, no `+`), of any size,
/// by value: the sign, then the number of digits, then the digits.
fn compare_integers(p: &str, q: &str) -> Ordering {
    let magnitude = |a: &str, b: &str| a.len().cmp(&b.len()).then_with(|| a.cmp(b));
    match (p.strip_prefix('-'), q.strip_prefix('-')) {
        (None, None) => magnitude(p, q),
        (Some(p), Some(q)) => magnitude(q, p),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
    }
}

impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl Serialize for Json {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Json::Null => serializer.serialize_unit(),
            Json::Bool(b) => serializer.serialize_bool(*b),
            Json::Number(n) => n.0.serialize(serializer),
            Json::String(s) => serializer.serialize_str(s),
            Json::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Json::Object(members) => {
                let mut map = serializer.serialize_map(Some(members.len()))?;
                for (k, v) in members {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Json, D::Error> {
        // Only JSON text is read into this type: through the raw text, numbers
        // keep their digits.
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        Json::from_raw(raw.get(), 1).map_err(de::Error::custom)
    }
}

impl Json {
    /// The value of one valid JSON text, read level by level: objects and arrays
    /// as raw members, scalars as themselves. Nested at most [`MAX_DEPTH`] deep,
    /// as serde_json reads a record: deeper is an error, never a stack overflow.
    fn from_raw(text: &str, depth: usize) -> Result<Json, serde_json::Error> {
        use serde::de::Error as _;
        if depth > MAX_DEPTH && matches!(text.as_bytes().first(), Some(b'{' | b'[')) {
            return Err(serde_json::Error::custom(format!("nested more than {MAX_DEPTH} levels deep")));
        }
        Ok(match text.as_bytes().first() {
            Some(b'{') => {
                let RawMembers(members) = serde_json::from_str(text)?;
                Json::Object(
                    members
                        .into_iter()
                        .map(|(k, v)| Ok((k, Json::from_raw(v.get(), depth + 1)?)))
                        .collect::<Result<_, _>>()?,
                )
            }
            Some(b'[') => {
                let items: Vec<&RawValue> = serde_json::from_str(text)?;
                Json::Array(items.into_iter().map(|v| Json::from_raw(v.get(), depth + 1)).collect::<Result<_, _>>()?)
            }
            Some(b'"') => Json::String(serde_json::from_str(text)?),
            Some(b't' | b'f') => Json::Bool(serde_json::from_str(text)?),
            Some(b'n') => Json::Null,
            _ => Json::Number(Number(RawValue::from_string(text.to_owned())?)),
        })
    }
}

/// How deep values may nest: serde_json's own limit, which every typed load has
/// (its 128th level is refused; the test below checks the two agree).
const MAX_DEPTH: usize = 127;

/// An object's members in order, their values still raw.
struct RawMembers<'a>(Vec<(String, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for RawMembers<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for MembersVisitor<'a> {
            type Value = RawMembers<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawMembers<'a>, A::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some(member) = map.next_entry::<String, &'de RawValue>()? {
                    members.push(member);
                }
                Ok(RawMembers(members))
            }
        }
        deserializer.deserialize_map(MembersVisitor(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_member_order_and_round_trips() {
        let text = r#"{"z":1,"a":[true,null,"x",-3,2.5],"m":{"b":1,"a":2}}"#;
        let json = Json::parse(text.as_bytes()).unwrap();
        assert_eq!(json.to_text(), text);
        assert_eq!(json.keys(), ["z", "a", "m"]);
        assert_eq!(json.get("z").and_then(Json::key_text).as_deref(), Some("1"));
    }

    #[test]
    fn numbers_keep_their_text_beyond_64_bits_and_in_every_float_form() {
        let text = r#"{"big":340282366920938463463374607431768211455,"low":-170141183460469231731687303715884105728,"f":1e-300,"g":0.30000000000000004,"h":5e-324,"i":-0.0,"j":1.0,"k":[18446744073709551616,{"m":2E+3}]}"#;
        let json = Json::parse(text.as_bytes()).unwrap();
        assert_eq!(json.to_text(), text);
        let pretty =
            serde_json::to_string_pretty(&Json::parse(br#"{"a":[18446744073709551616,2E+3]}"#).unwrap()).unwrap();
        assert_eq!(pretty, "{\n  \"a\": [\n    18446744073709551616,\n    2E+3\n  ]\n}", "pretty keeps the digits too");
        let Some(Json::Number(big)) = json.get("big") else { panic!("a number") };
        assert_eq!((big.as_u64(), big.as_f64()), (None, Some(3.402823669209385e38)));
        assert_eq!(json.get("j").map(Json::to_text).as_deref(), Some("1.0"));
        assert!(Json::parse(b"{\"a\":01}").is_err(), "still only valid JSON");
    }

    #[test]
    fn minus_zero_is_no_integer_and_wide_integers_are_ids_in_order() {
        let n = |t: &str| Json::parse(t.as_bytes()).unwrap();
        assert_eq!(n("-0").key_text(), None, "serde reads -0 as a float");
        let Json::Number(zero) = n("-0") else { panic!("a number") };
        assert!(!zero.is_integer() && zero.as_u64().is_none());
        let wide = "1267650600228229401496703205376";
        assert_eq!(n(wide).key_text().as_deref(), Some(wide));
        let sorted = [
            "-340282366920938463463374607431768211455",
            "-18446744073709551616",
            "-1",
            "0",
            "9",
            "10",
            "18446744073709551615",
            "18446744073709551616",
            "1267650600228229401496703205376",
            "1267650600228229401496703205377",
        ];
        for pair in sorted.windows(2) {
            assert_eq!(compare(&n(pair[0]), &n(pair[1])), Ordering::Less, "{} < {}", pair[0], pair[1]);
            assert_eq!(compare(&n(pair[1]), &n(pair[0])), Ordering::Greater);
        }
    }

    #[test]
    fn nesting_deeper_than_a_load_accepts_is_an_error_not_a_stack_overflow() {
        let deep = |levels: usize| format!("{}{}", "[".repeat(levels), "]".repeat(levels));
        for levels in [MAX_DEPTH, MAX_DEPTH + 1] {
            let typed = serde_json::from_str::<serde_json::Value>(&deep(levels)).is_ok();
            assert_eq!(Json::parse(deep(levels).as_bytes()).is_ok(), typed, "{levels} levels: as a typed load");
        }
        assert!(Json::parse(deep(MAX_DEPTH).as_bytes()).is_ok());
        assert!(Json::parse(deep(200_000).as_bytes()).is_err());
    }

    #[test]
    fn compares_like_the_typed_keys() {
        let n = |t: &str| Json::parse(t.as_bytes()).unwrap();
        assert_eq!(compare(&n("2"), &n("10")), Ordering::Less);
        assert_eq!(compare(&n("-1"), &n("18446744073709551615")), Ordering::Less);
        assert_eq!(compare(&n(r#"["DE",17]"#), &n(r#"["DE",34]"#)), Ordering::Less);
        assert_eq!(compare(&n(r#""b""#), &n(r#""a""#)), Ordering::Greater);
    }
}
