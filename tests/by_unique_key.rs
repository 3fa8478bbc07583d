//! `update_by_<index>` and `upsert_by_<index>`: writes keyed on a unique index, one
//! field or composite, for natural and auto ids, with typed errors. On each backend
//! (`common_pg`).

#[macro_use]
mod common_pg;

use std::sync::Arc;

use common_pg::Backend;
use serde::{Deserialize, Serialize};
use shelf::{Entity, Error, Store};

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
struct User {
    #[id]
    id: String,
    #[index(unique)]
    email: String,
    #[index(unique)]
    nick: Option<String>,
    name: String,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[index((bank, number), unique)]
struct Account {
    #[id(auto)]
    id: u64,
    bank: String,
    number: u32,
    cents: i64,
}

fn user(id: &str, email: &str, name: &str) -> User {
    User { id: id.into(), email: email.into(), nick: None, name: name.into() }
}

fn open(backend: &Backend) -> Store {
    backend.builder().register::<User>().register::<Account>().open().unwrap()
}

on_each_backend! {
fn update_by_a_unique_key_changes_that_record(backend) {
    let store = open(&backend);
    let users = store.collection::<User>().unwrap();
    users.insert(user("ada", "a@x", "Ada")).unwrap();
    users.insert(user("bob", "b@x", "Bob")).unwrap();

    let changed = users.update_by_email("a@x", |u| u.name = "Ada L.".into()).unwrap();
    assert_eq!(changed.id, "ada");
    assert_eq!(users.get("ada").unwrap().name, "Ada L.");
    assert_eq!(users.get("bob").unwrap().name, "Bob");

    // The key itself may change; the index follows.
    users.update_by_email("a@x", |u| u.email = "ada@x".into()).unwrap();
    assert!(users.by_email("a@x").is_none());
    assert_eq!(users.by_email("ada@x").unwrap().id, "ada");

    // An Option key is looked up by its inner value.
    users.update(&"bob".into(), |u| u.nick = Some("bobby".into())).unwrap();
    users.update_by_nick("bobby", |u| u.name = "Robert".into()).unwrap();
    assert_eq!(users.get("bob").unwrap().name, "Robert");

    match users.update_by_email("nobody@x", |u| u.name = "?".into()) {
        Err(Error::KeyNotFound { collection, index, key }) => {
            assert_eq!((collection.as_str(), index.as_str()), ("user", "email"));
            assert!(key.contains("nobody@x"), "{key}");
        }
        other => panic!("expected KeyNotFound, got {other:?}"),
    }
    // Taking another record's unique key is refused, the id cannot change, and
    // nothing changes either way.
    let before: Vec<Arc<User>> = users.all();
    assert!(matches!(users.update_by_email("b@x", |u| u.email = "ada@x".into()), Err(Error::UniqueViolation { .. })));
    assert!(matches!(users.update_by_email("b@x", |u| u.id = "carl".into()), Err(Error::IdChanged { .. })));
    assert_eq!(users.all(), before);
}

fn upsert_by_a_unique_key_replaces_or_inserts(backend) {
    let store = open(&backend);
    let users = store.collection::<User>().unwrap();
    users.insert(user("ada", "a@x", "Ada")).unwrap();

    // Same key, same id: replaced.
    let (id, old) = users.upsert_by_email(user("ada", "a@x", "Ada L.")).unwrap();
    assert_eq!(id, "ada");
    assert_eq!(old.unwrap().name, "Ada");
    assert_eq!(users.get("ada").unwrap().name, "Ada L.");
    // A new key: inserted.
    let (id, old) = users.upsert_by_email(user("bob", "b@x", "Bob")).unwrap();
    assert_eq!((id.as_str(), old), ("bob", None));
    assert_eq!(users.len(), 2);
    // The key names a record with another id: refused, as the id cannot change.
    match users.upsert_by_email(user("carl", "a@x", "Carl")) {
        Err(Error::IdChanged { id, new_id, .. }) => assert_eq!((id.as_str(), new_id.as_str()), ("ada", "carl")),
        other => panic!("expected IdChanged, got {other:?}"),
    }
    // A new key but an id that exists: an insert, so a duplicate id.
    assert!(matches!(users.upsert_by_email(user("ada", "new@x", "Ada")), Err(Error::DuplicateId { .. })));
    assert_eq!(users.len(), 2);
    assert_eq!(users.get("ada").unwrap().email, "a@x");
}

fn upsert_by_a_composite_key_keeps_the_auto_id(backend) {
    let store = open(&backend);
    let accounts = store.collection::<Account>().unwrap();
    let account = |bank: &str, number: u32, cents: i64| Account { id: 0, bank: bank.into(), number, cents };

    let (first, old) = accounts.upsert_by_bank_and_number(account("gls", 7, 100)).unwrap();
    assert!(old.is_none());
    let (second, _) = accounts.upsert_by_bank_and_number(account("gls", 8, 5)).unwrap();
    assert_ne!(first, second);
    // The same (bank, number): the stored record is replaced and keeps its id.
    let (again, old) = accounts.upsert_by_bank_and_number(account("gls", 7, 250)).unwrap();
    assert_eq!(again, first);
    assert_eq!(old.unwrap().cents, 100);
    assert_eq!(accounts.get(&first).unwrap().cents, 250);
    assert_eq!(accounts.len(), 2);

    accounts.update_by_bank_and_number("gls", 8, |a| a.cents += 1).unwrap();
    assert_eq!(accounts.get(&second).unwrap().cents, 6);

    // Reopened, the writes are there.
    store.close().unwrap();
    drop((accounts, store));
    let store = open(&backend);
    assert_eq!(store.collection::<Account>().unwrap().by_bank_and_number("gls", 7).unwrap().cents, 250);
}

// As the README says: a refused insert uses up its auto id; ids are never reused.
fn a_refused_insert_uses_up_its_auto_id(backend) {
    let store = open(&backend);
    let accounts = store.collection::<Account>().unwrap();
    let account = |number: u32| Account { id: 0, bank: "gls".into(), number, cents: 0 };
    assert_eq!(accounts.insert(account(1)).unwrap(), 1);
    assert!(matches!(accounts.insert(account(1)), Err(Error::UniqueViolation { .. })));
    assert_eq!(accounts.insert(account(2)).unwrap(), 3);
}
}
