//! `shelf.json` describes each collection's record fields as serde writes them
//! (FORMAT §7): the JSON key after `rename` and `rename_all`, the Rust type, and
//! `flatten`; fields serde skips are left out. The id field, the index fields and
//! the foreign keys are recorded by their JSON keys too, so the tools read records
//! by the keys they are stored under instead of guessing.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use shelf::inspect::{DataDir, FieldInfo, Quiet};
use shelf::{Entity, Store};

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[storage(collection_file)]
struct Team {
    #[id]
    id: u64,
    name: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
struct Extra {
    note: String,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
struct Member {
    #[id]
    #[serde(rename = "ID")]
    id: u64,
    display_name: String,
    #[index(unique)]
    email_address: String,
    #[belongs_to(Team)]
    team_id: u64,
    #[serde(skip)]
    cache: Option<u32>,
    #[serde(flatten)]
    extra: Extra,
    r#type: Option<Vec<String>>,
}

fn open(dir: &Path) -> Store {
    Store::builder(dir).register::<Team>().register::<Member>().open().unwrap()
}

fn member(id: u64, email: &str) -> Member {
    Member {
        id,
        display_name: format!("m{id}"),
        email_address: email.to_owned(),
        team_id: 1,
        cache: None,
        extra: Extra { note: "n".into() },
        r#type: None,
    }
}

fn field(key: &str, rust: Option<&str>, ty: &str, flatten: bool) -> FieldInfo {
    FieldInfo { key: key.to_owned(), field: rust.map(str::to_owned), ty: ty.to_owned(), flatten }
}

#[test]
fn shelf_json_records_each_field_by_the_key_serde_writes() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        store.collection::<Team>().unwrap().insert(Team { id: 1, name: "t".into() }).unwrap();
        store.collection::<Member>().unwrap().insert(member(7, "a@x")).unwrap();
        store.close().unwrap();
    }
    let data = DataDir::open(dir.path()).unwrap();
    let members = data.collections().iter().find(|c| c.name == "member").cloned().unwrap();
    assert_eq!(
        members.fields,
        vec![
            field("ID", Some("id"), "u64", false),
            field("displayName", Some("display_name"), "String", false),
            field("emailAddress", Some("email_address"), "String", false),
            field("teamId", Some("team_id"), "u64", false),
            field("", Some("extra"), "Extra", true),
            field("type", None, "Option<Vec<String>>", false),
        ],
        "`cache` is skipped by serde and left out"
    );
    assert_eq!(members.id_field.as_deref(), Some("ID"));
    let email = members.indices.iter().find(|i| i.name == "email_address").unwrap();
    assert_eq!(email.fields, ["emailAddress"]);
    assert_eq!(members.foreign_keys.iter().map(|fk| fk.field.as_str()).collect::<Vec<_>>(), ["teamId"]);

    // The record file holds exactly those keys (the flattened struct's own).
    let mut out = Vec::new();
    data.export("member", &mut out, &Quiet).unwrap();
    let exported: Vec<Value> =
        out.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(|l| serde_json::from_slice(l).unwrap()).collect();
    let keys: Vec<&str> = exported[0].as_object().unwrap().keys().map(String::as_str).collect();
    let mut expected = vec!["ID", "displayName", "emailAddress", "teamId", "note", "type"];
    expected.sort_unstable();
    let mut keys = keys;
    keys.sort_unstable();
    assert_eq!(keys, expected);
}

#[test]
fn the_tools_check_renamed_ids_unique_keys_and_foreign_keys_without_guessing() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        store.collection::<Team>().unwrap().insert(Team { id: 1, name: "t".into() }).unwrap();
        let members = store.collection::<Member>().unwrap();
        members.insert(member(7, "a@x")).unwrap();
        members.insert(member(8, "b@x")).unwrap();
        store.close().unwrap();
    }
    let data = DataDir::open(dir.path()).unwrap();
    let report = data.verify(&Quiet).unwrap();
    assert!(report.problems.is_empty(), "a sound store: {:?}", report.problems);

    // A second record with a taken email, and one whose team does not exist: the
    // tools must find both through the recorded keys.
    let line = |id: u64, email: &str, team: u64| {
        format!(r#"{{"ID":{id},"displayName":"x","emailAddress":"{email}","teamId":{team},"note":"n","type":null}}"#)
    };
    let taken = data.import("member", &mut line(9, "a@x", 1).as_bytes(), &Default::default(), &Quiet);
    let message = taken.unwrap_err().to_string();
    assert!(message.contains("emailAddress") || message.contains("email_address"), "{message}");
    assert!(message.contains("a@x"), "the unique key is named: {message}");
    let orphan = data.import("member", &mut line(10, "c@x", 99).as_bytes(), &Default::default(), &Quiet);
    let message = orphan.unwrap_err().to_string();
    assert!(message.contains("teamId") && message.contains("99"), "the missing parent is named: {message}");
    let fine = data.import("member", &mut line(11, "d@x", 1).as_bytes(), &Default::default(), &Quiet);
    let report = fine.unwrap();
    assert_eq!(report.id_field, "ID", "the recorded id field is used, not a guess");
    assert_eq!((report.read, report.inserted), (1, 1));
}
