//! `shelf import` (through `shelf::inspect::DataDir::import`) never writes a record
//! the application's next open refuses: random JSON lines, valid and invalid, for
//! entity types with nested structs, enums, `Option` and `Vec` fields. Open never
//! fails, and every line is either stored exactly or reported as rejected.
//!
//! Two kinds of invalid lines are drawn. The mistakes the tool's check catches (see
//! `runtime/src/inspect/check.rs`: a wrong JSON kind, a missing or unknown field, at
//! any depth, an unknown struct variant) refuse the whole input, naming a line, and
//! nothing changes. The mistakes only the type can see (an unknown unit variant
//! name, an integer out of range) pass the check; the
//! staged lines then go through the real types at the next open, which stores
//! every other line and reports each of these in `RecoveryReport::imports`.
//! `SHELF_IMPORT_CASES` sets the number of cases (default 64).

use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use shelf::inspect::{DataDir, ImportOptions, Quiet};
use shelf::{Entity, Store};

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Item {
    #[id]
    id: String,
    #[index(unique)]
    code: String,
    count: u32,
    score: f64,
    note: Option<String>,
    tags: Vec<String>,
    inner: Inner,
    shape: Shape,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Inner {
    flag: bool,
    values: Vec<i64>,
    deep: Option<Deep>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Deep {
    label: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
enum Shape {
    Dot,
    Circle { r: f64 },
    Poly(Vec<u32>),
}

fn open(dir: &Path) -> Store {
    Store::builder(dir).register::<Item>().flush_interval(Duration::from_secs(3600)).open().unwrap()
}

/// Stored records that show every field in every form: `None` and `Some`, empty and
/// full vectors, every variant.
fn seed(dir: &Path) -> Vec<Item> {
    let items = vec![
        Item {
            id: "s0".into(),
            code: "c-s0".into(),
            count: 1,
            score: 0.5,
            note: None,
            tags: vec![],
            inner: Inner { flag: true, values: vec![], deep: None },
            shape: Shape::Dot,
        },
        Item {
            id: "s1".into(),
            code: "c-s1".into(),
            count: 2,
            score: 1.25,
            note: Some("n".into()),
            tags: vec!["a".into()],
            inner: Inner { flag: false, values: vec![-1, 2], deep: Some(Deep { label: "d".into() }) },
            shape: Shape::Circle { r: 2.0 },
        },
        Item {
            id: "s2".into(),
            code: "c-s2".into(),
            count: 3,
            score: 2.0,
            note: None,
            tags: vec!["b".into(), "c".into()],
            inner: Inner { flag: true, values: vec![5], deep: None },
            shape: Shape::Poly(vec![1, 2, 3]),
        },
    ];
    let store = open(dir);
    for item in &items {
        store.collection::<Item>().unwrap().insert(item.clone()).unwrap();
    }
    store.close().unwrap();
    items
}

fn valid_item() -> impl Strategy<Value = Item> {
    let shape = prop_oneof![
        Just(Shape::Dot),
        (0.0..100.0f64).prop_map(|r| Shape::Circle { r }),
        prop::collection::vec(0..1000u32, 0..3).prop_map(Shape::Poly),
    ];
    let deep = prop::option::of("[a-z]{0,4}".prop_map(|label| Deep { label }));
    let inner = (any::<bool>(), prop::collection::vec(-1000..1000i64, 0..3), deep)
        .prop_map(|(flag, values, deep)| Inner { flag, values, deep });
    (
        "[a-z]{1,6}",
        0..1000u32,
        -1e6..1e6f64,
        prop::option::of("[a-z ]{0,5}"),
        prop::collection::vec("[a-z]{1,3}", 0..3),
        inner,
        shape,
    )
        .prop_map(|(id, count, score, note, tags, inner, shape)| Item {
            code: format!("code-{id}"),
            id: format!("i-{id}"),
            count,
            score,
            note,
            tags,
            inner,
            shape,
        })
}

/// A mistake the check claims to catch, at some path of a valid record.
#[derive(Clone, Debug)]
enum Mistake {
    WrongKind(&'static str),
    Missing(&'static str),
    Unknown(&'static str),
    UnknownStructVariant,
    NestedWrongKind,
    ElementWrongKind,
    /// A fraction where the stored records have integers: the check catches it.
    Fraction,
    /// Only the type can tell: the check passes these.
    UnknownUnitVariant,
    OutOfRange,
}

impl Mistake {
    /// Whether only the type's deserializer sees it.
    fn type_only(&self) -> bool {
        matches!(self, Mistake::UnknownUnitVariant | Mistake::OutOfRange)
    }
}

fn mistake() -> impl Strategy<Value = Mistake> {
    prop_oneof![
        prop::sample::select(vec!["code", "count", "score", "tags", "inner", "shape"]).prop_map(Mistake::WrongKind),
        prop::sample::select(vec!["code", "count", "score", "tags", "inner", "shape", "note"])
            .prop_map(Mistake::Missing),
        prop::sample::select(vec!["extra", "Code"]).prop_map(Mistake::Unknown),
        Just(Mistake::UnknownStructVariant),
        Just(Mistake::NestedWrongKind),
        Just(Mistake::ElementWrongKind),
        Just(Mistake::UnknownUnitVariant),
        Just(Mistake::OutOfRange),
        Just(Mistake::Fraction),
    ]
}

fn apply(mistake: &Mistake, mut value: Value) -> Value {
    let obj = value.as_object_mut().unwrap();
    match mistake {
        Mistake::WrongKind(field) => {
            let wrong = match &obj[*field] {
                Value::String(_) => json!(5),
                Value::Number(_) => json!("five"),
                Value::Array(_) => json!({"a": 1}),
                Value::Object(_) => json!([true]),
                _ => json!(false),
            };
            obj.insert((*field).to_owned(), wrong);
        }
        Mistake::Missing(field) => {
            obj.remove(*field);
        }
        Mistake::Unknown(field) => {
            obj.insert((*field).to_owned(), json!(1));
        }
        Mistake::UnknownStructVariant => {
            obj.insert("shape".into(), json!({"Square": {"side": 1.0}}));
        }
        Mistake::NestedWrongKind => {
            obj.get_mut("inner").unwrap().as_object_mut().unwrap().insert("flag".into(), json!("yes"));
        }
        Mistake::ElementWrongKind => {
            obj.insert("tags".into(), json!(["ok", 7]));
        }
        Mistake::UnknownUnitVariant => {
            obj.insert("shape".into(), json!("Square"));
        }
        Mistake::OutOfRange => {
            obj.insert("count".into(), json!(5_000_000_000u64));
        }
        Mistake::Fraction => {
            obj.insert("count".into(), json!(1.5));
        }
    }
    value
}

fn cases() -> u32 {
    std::env::var("SHELF_IMPORT_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn every_imported_line_is_stored_exactly_or_reported_and_open_never_fails(
        lines in prop::collection::vec((valid_item(), prop::option::weighted(0.2, mistake())), 1..6),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let seeded = seed(dir.path());
        let mut input = String::new();
        // Per id, the last line the type takes; the lines it cannot take.
        let mut stored: std::collections::BTreeMap<String, Item> = std::collections::BTreeMap::new();
        let mut rejected = Vec::new();
        let mut caught = false;
        for (n, (item, mistake)) in lines.iter().enumerate() {
            let value = serde_json::to_value(item).unwrap();
            let value = match mistake {
                Some(m) if m.type_only() => { rejected.push(n + 1); apply(m, value) }
                Some(m) => { caught = true; apply(m, value) }
                None => { stored.insert(item.id.clone(), item.clone()); value }
            };
            input.push_str(&serde_json::to_string(&value).unwrap());
            input.push('\n');
        }
        let data = DataDir::open(dir.path()).unwrap();
        let outcome = data.import("item", &mut input.as_bytes(), &ImportOptions::default(), &Quiet);

        // Open never fails, whatever the import did.
        let store = Store::builder(dir.path()).register::<Item>().open();
        prop_assert!(store.is_ok(), "open failed after import ({outcome:?}): {:?}", store.err());
        let store = store.unwrap();
        let items = store.collection::<Item>().unwrap();
        let report = store.recovery_report();
        prop_assert!(report.unique_conflicts.is_empty());
        match outcome {
            Ok(staged) => {
                prop_assert!(!caught, "a mistake the check catches was staged: {input}");
                prop_assert_eq!(staged.read, lines.len());
                prop_assert_eq!(report.imports.len(), 1);
                let applied = &report.imports[0];
                let got: Vec<usize> = applied.rejected.iter().map(|r| r.line).collect();
                prop_assert_eq!(&got, &rejected, "the rejected lines, by number: {:?}", applied.rejected);
                prop_assert_eq!(applied.applied, lines.len() - rejected.len());
                prop_assert_eq!(applied.kept.is_some(), !rejected.is_empty());
                for item in stored.values() {
                    prop_assert_eq!(items.get(&item.id).map(|i| (*i).clone()), Some(item.clone()));
                }
                prop_assert_eq!(items.len(), seeded.len() + stored.len());
            }
            Err(e) => {
                // Refused whole: the stored records are exactly the seed. A refusal
                // of input without a caught mistake is allowed only for a clash (two
                // lines with one code) or for what the check cannot tell, and says so.
                let message = e.to_string();
                prop_assert!(message.contains("line "), "the refusal names a line: {message}");
                if !caught {
                    prop_assert!(
                        message.contains("have none there") || message.contains("unique index"),
                        "input without a caught mistake refused: {message}\n{input}"
                    );
                }
                prop_assert!(report.imports.is_empty());
                prop_assert_eq!(items.len(), seeded.len());
                for item in &seeded {
                    prop_assert_eq!(items.get(&item.id).map(|i| (*i).clone()), Some(item.clone()));
                }
            }
        }
        prop_assert!(!dir.path().join("_import").join("item.jsonl").exists(), "applied or never staged");
        store.close().unwrap();
    }
}
