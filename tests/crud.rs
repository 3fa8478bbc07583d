//! CRUD on a collection handle: insert, upsert, update, remove, get, contains, len,
//! iter and all, with the errors that must change nothing.

mod common;

#[macro_use]
mod common_pg;

use common::*;
use shelf::{Error, Store};

/// A store of the test entities on a backend.
fn open_on(backend: &common_pg::Backend) -> Store {
    backend.builder().register::<User>().register::<Order>().register::<Session>().flush_interval(NEVER).open().unwrap()
}

/// How many records wait for a flush after `n` writes: none on PostgreSQL, where
/// every commit is in the database when it returns.
fn dirty(backend: &common_pg::Backend, n: usize) -> usize {
    if backend.is_postgres() {
        0
    } else {
        n
    }
}

#[test]
fn insert_get_contains_len() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let users = store.collection::<User>().unwrap();
    assert!(users.is_empty());
    assert_eq!(users.len(), 0);
    assert!(users.get(&"ada".to_string()).is_none());

    let id = users.insert(user("ada", "Ada", 36)).unwrap();
    assert_eq!(id, "ada");
    assert_eq!(users.len(), 1);
    assert!(!users.is_empty());
    assert!(users.contains(&"ada".to_string()));
    assert!(!users.contains(&"bob".to_string()));
    assert_eq!(*users.get(&"ada".to_string()).unwrap(), user("ada", "Ada", 36));
    assert_eq!(users.dirty_count(), 1);
    assert_eq!(users.name(), "user");
    assert_eq!(users.path(), Some(dir.path().join("user")));
}

#[test]
fn insert_of_a_duplicate_id_is_an_error_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let users = store.collection::<User>().unwrap();
    users.insert(user("ada", "Ada", 36)).unwrap();
    store.flush().unwrap();
    assert_eq!(users.dirty_count(), 0);
    let on_disk = snapshot(dir.path());

    let err = users.insert(user("ada", "Impostor", 1)).unwrap_err();
    match &err {
        Error::DuplicateId { collection, id } => {
            assert_eq!(collection, "user");
            assert_eq!(id, "ada");
        }
        other => panic!("expected DuplicateId, got {other:?}"),
    }
    assert!(err.to_string().contains("ada"), "{err}");
    assert_eq!(*users.get(&"ada".to_string()).unwrap(), user("ada", "Ada", 36));
    assert_eq!(users.len(), 1);
    assert_eq!(users.dirty_count(), 0, "a failed insert must not mark anything dirty");
    assert_eq!(store.flush().unwrap().records, 0);
    assert_eq!(snapshot(dir.path()), on_disk);
}

#[test]
fn remove_returns_the_record_and_then_none() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let users = store.collection::<User>().unwrap();
    users.insert(user("ada", "Ada", 36)).unwrap();
    users.insert(user("bob", "Bob", 41)).unwrap();
    store.flush().unwrap();

    let removed = users.remove(&"ada".to_string()).unwrap().expect("ada was there");
    assert_eq!(*removed, user("ada", "Ada", 36));
    assert!(!users.contains(&"ada".to_string()));
    assert!(users.get(&"ada".to_string()).is_none());
    assert_eq!(users.len(), 1);
    assert_eq!(users.dirty_count(), 1);

    assert_eq!(users.remove(&"ada".to_string()).unwrap(), None);
    assert_eq!(users.remove(&"nobody".to_string()).unwrap(), None);
    assert_eq!(users.dirty_count(), 1, "removing a missing id marks nothing");

    store.flush().unwrap();
    assert!(!record_path(dir.path(), "user", "ada").exists(), "the removed record's file is deleted");
    assert!(record_path(dir.path(), "user", "bob").exists());
}

#[test]
fn an_unregistered_type_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path()).register::<User>().flush_interval(NEVER).open().unwrap();
    let err = store.collection::<Order>().unwrap_err();
    match &err {
        Error::NotRegistered { type_name } => assert!(type_name.ends_with("Order"), "{type_name}"),
        other => panic!("expected NotRegistered, got {other:?}"),
    }
    let message = err.to_string();
    assert!(message.contains("Order") && message.contains("register"), "{message}");
}

#[test]
fn writes_after_close_are_refused_and_reads_still_work() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let users = store.collection::<User>().unwrap();
    users.insert(user("ada", "Ada", 36)).unwrap();
    store.close().unwrap();
    store.close().unwrap(); // closing twice is harmless

    let closed = |r: shelf::Result<()>| match r {
        Err(Error::Closed { dir: d }) => assert_eq!(d, dir.path()),
        other => panic!("expected Closed, got {other:?}"),
    };
    closed(users.insert(user("bob", "Bob", 41)).map(drop));
    closed(users.upsert(user("bob", "Bob", 41)).map(drop));
    closed(users.update(&"ada".to_string(), |u| u.age = 0).map(drop));
    closed(users.remove(&"ada".to_string()).map(drop));
    closed(store.flush().map(drop));
    assert_eq!(*users.get(&"ada".to_string()).unwrap(), user("ada", "Ada", 36));
    assert_eq!(users.len(), 1);
}

// The API tests above that mean the same on every backend run on each: files
// and PostgreSQL (common_pg::on_each_backend).
on_each_backend! {
    fn upsert_inserts_then_replaces_and_returns_the_old_value(b) {
        let store = open_on(&b);
        let users = store.collection::<User>().unwrap();
        assert_eq!(users.upsert(user("ada", "Ada", 36)).unwrap(), None);
        let old = users.upsert(user("ada", "Ada Lovelace", 37)).unwrap().expect("the old value");
        assert_eq!(*old, user("ada", "Ada", 36));
        assert_eq!(*users.get(&"ada".to_string()).unwrap(), user("ada", "Ada Lovelace", 37));
        assert_eq!(users.len(), 1);
        assert_eq!(users.dirty_count(), dirty(&b, 1));
    }

    fn update_changes_the_record_in_place(b) {
        let store = open_on(&b);
        let users = store.collection::<User>().unwrap();
        users.insert(user("ada", "Ada", 36)).unwrap();
        store.flush().unwrap();

        let before = users.get(&"ada".to_string()).unwrap();
        let new = users.update(&"ada".to_string(), |u| u.age += 1).unwrap();
        assert_eq!(*new, user("ada", "Ada", 37));
        assert_eq!(*users.get(&"ada".to_string()).unwrap(), user("ada", "Ada", 37));
        assert_eq!(*before, user("ada", "Ada", 36), "a value handed out earlier is a snapshot");
        assert_eq!(users.dirty_count(), dirty(&b, 1));
    }

    fn update_of_a_missing_id_is_not_found_and_changes_nothing(b) {
        let store = open_on(&b);
        let users = store.collection::<User>().unwrap();
        users.insert(user("ada", "Ada", 36)).unwrap();
        store.flush().unwrap();

        let mut called = false;
        let err = users.update(&"bob".to_string(), |_| called = true).unwrap_err();
        match &err {
            Error::NotFound { collection, id } => {
                assert_eq!(collection, "user");
                assert_eq!(id, "bob");
            }
            other => panic!("expected NotFound, got {other:?}"),
        }
        assert!(!called, "the closure must not run for a missing record");
        assert_eq!(users.len(), 1);
        assert!(!users.contains(&"bob".to_string()));
        assert_eq!(users.dirty_count(), dirty(&b, 0));
    }

    fn update_that_changes_the_id_is_an_error_and_changes_nothing(b) {
        let store = open_on(&b);
        let users = store.collection::<User>().unwrap();
        users.insert(user("ada", "Ada", 36)).unwrap();
        store.flush().unwrap();

        let err = users
            .update(&"ada".to_string(), |u| {
                u.id = "eve".into();
                u.name = "Eve".into();
            })
            .unwrap_err();
        match &err {
            Error::IdChanged { collection, id, new_id } => {
                assert_eq!(collection, "user");
                assert_eq!(id, "ada");
                assert_eq!(new_id, "eve");
            }
            other => panic!("expected IdChanged, got {other:?}"),
        }
        assert_eq!(*users.get(&"ada".to_string()).unwrap(), user("ada", "Ada", 36));
        assert!(!users.contains(&"eve".to_string()));
        assert_eq!(users.len(), 1);
        assert_eq!(users.dirty_count(), dirty(&b, 0));
    }

    fn update_whose_closure_panics_changes_nothing(b) {
        let store = open_on(&b);
        let users = store.collection::<User>().unwrap();
        users.insert(user("ada", "Ada", 36)).unwrap();
        store.flush().unwrap();

        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            users.update(&"ada".to_string(), |u| {
                u.name = "half-changed".into();
                panic!("the closure fails");
            })
        }));
        assert!(outcome.is_err());
        assert_eq!(*users.get(&"ada".to_string()).unwrap(), user("ada", "Ada", 36));
        assert_eq!(users.dirty_count(), dirty(&b, 0));
        // The collection is still usable.
        users.update(&"ada".to_string(), |u| u.age = 40).unwrap();
        assert_eq!(users.get(&"ada".to_string()).unwrap().age, 40);
    }

    fn iter_is_a_snapshot_and_all_is_sorted_by_id(b) {
        let store = open_on(&b);
        let users = store.collection::<User>().unwrap();
        for (id, age) in [("carol", 3), ("ada", 1), ("bob", 2)] {
            users.insert(user(id, id, age)).unwrap();
        }

        let iter = users.iter();
        users.insert(user("dave", "dave", 4)).unwrap();
        users.remove(&"ada".to_string()).unwrap();
        let mut seen: Vec<String> = iter.map(|u| u.id.clone()).collect();
        seen.sort();
        assert_eq!(seen, ["ada", "bob", "carol"], "later writes do not change an iterator already made");

        let all: Vec<String> = users.all().iter().map(|u| u.id.clone()).collect();
        assert_eq!(all, ["bob", "carol", "dave"]);
        assert_eq!(users.iter().count(), users.len());
    }

    fn all_sorts_integer_ids_numerically(b) {
        let store = open_on(&b);
        let orders = store.collection::<Order>().unwrap();
        for n in [10u64, 2, 33, 1] {
            orders.upsert(Order { id: n, item: format!("item {n}") }).unwrap();
        }
        let ids: Vec<u64> = orders.all().iter().map(|o| o.id).collect();
        assert_eq!(ids, [1, 2, 10, 33]);
    }

    fn handles_of_the_same_collection_share_state(b) {
        let store = open_on(&b);
        let a = store.collection::<User>().unwrap();
        let b = store.collection::<User>().unwrap();
        let c = a.clone();
        a.insert(user("ada", "Ada", 36)).unwrap();
        assert!(b.contains(&"ada".to_string()));
        c.update(&"ada".to_string(), |u| u.age = 1).unwrap();
        assert_eq!(b.get(&"ada".to_string()).unwrap().age, 1);
    }
}
