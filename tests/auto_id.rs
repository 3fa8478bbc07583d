//! `#[id(auto)]`: insert assigns the next integer, and the counter survives reopen,
//! so an id is never handed out twice, even after its record was removed.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::*;
use shelf::Store;

fn reopen_and_insert(dir: &Path, item: &str) -> u64 {
    let store = open(dir);
    store.collection::<Order>().unwrap().insert(order(item)).unwrap()
}

#[test]
fn insert_assigns_increasing_ids_whatever_the_field_held() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let orders = store.collection::<Order>().unwrap();
    let ids: Vec<u64> =
        ["a", "b", "c"].iter().map(|i| orders.insert(Order { id: 999, item: i.to_string() }).unwrap()).collect();
    assert_eq!(ids, [1, 2, 3]);
    assert_eq!(*orders.get(&2).unwrap(), Order { id: 2, item: "b".into() });
    assert!(!orders.contains(&999));
}

#[test]
fn the_counter_survives_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let orders = store.collection::<Order>().unwrap();
    for item in ["a", "b", "c"] {
        orders.insert(order(item)).unwrap();
    }
    store.close().unwrap();
    drop((store, orders));
    assert_eq!(reopen_and_insert(dir.path(), "d"), 4);
    assert_eq!(reopen_and_insert(dir.path(), "e"), 5, "a plain drop keeps the counter too");
}

#[test]
fn removing_the_highest_id_does_not_hand_it_out_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let orders = store.collection::<Order>().unwrap();
    for item in ["a", "b", "c"] {
        orders.insert(order(item)).unwrap();
    }
    assert_eq!(orders.remove(&3).unwrap().map(|o| o.id), Some(3));
    store.flush().unwrap();
    drop((store, orders));

    let store = open(dir.path());
    let orders = store.collection::<Order>().unwrap();
    let ids: Vec<u64> = orders.all().iter().map(|o| o.id).collect();
    assert_eq!(ids, [1, 2]);
    assert_eq!(orders.insert(order("d")).unwrap(), 4, "3 was used once and must not come back");
}

#[test]
fn removing_every_record_keeps_the_counter() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let orders = store.collection::<Order>().unwrap();
    for item in ["a", "b", "c"] {
        orders.insert(order(item)).unwrap();
    }
    store.flush().unwrap();
    for id in 1..=3 {
        orders.remove(&id).unwrap();
    }
    store.close().unwrap();
    drop((store, orders));
    assert_eq!(reopen_and_insert(dir.path(), "d"), 4);
}

#[test]
fn an_id_whose_record_never_reached_disk_is_not_reused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let orders = store.collection::<Order>().unwrap();
    assert_eq!(orders.insert(order("a")).unwrap(), 1);
    orders.remove(&1).unwrap();
    store.close().unwrap();
    drop((store, orders));
    assert_eq!(reopen_and_insert(dir.path(), "b"), 2);
}

#[test]
fn upsert_with_an_explicit_id_moves_the_counter_past_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let orders = store.collection::<Order>().unwrap();
    assert_eq!(orders.upsert(Order { id: 10, item: "ten".into() }).unwrap(), None);
    assert_eq!(orders.insert(order("next")).unwrap(), 11);
    store.close().unwrap();
    drop((store, orders));
    assert_eq!(reopen_and_insert(dir.path(), "after reopen"), 12);
}

#[test]
fn the_counter_is_rebuilt_from_the_records_when_shelf_json_lacks_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let orders = store.collection::<Order>().unwrap();
    for item in ["a", "b", "c"] {
        orders.insert(order(item)).unwrap();
    }
    store.close().unwrap();
    drop((store, orders));
    std::fs::remove_file(dir.path().join("shelf.json")).unwrap();
    assert_eq!(reopen_and_insert(dir.path(), "d"), 4);
}

#[test]
fn the_counter_survives_a_run_that_did_not_register_the_collection() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for item in ["a", "b", "c"] {
        store.collection::<Order>().unwrap().insert(order(item)).unwrap();
    }
    store.collection::<Order>().unwrap().remove(&3).unwrap();
    store.close().unwrap();
    drop(store);

    let users_only = Store::builder(dir.path()).register::<User>().flush_interval(NEVER).open().unwrap();
    users_only.collection::<User>().unwrap().insert(user("ada", "Ada", 36)).unwrap();
    users_only.close().unwrap();
    drop(users_only);

    assert_eq!(reopen_and_insert(dir.path(), "d"), 4);
}

#[test]
fn concurrent_inserts_get_distinct_ids() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let orders = store.collection::<Order>().unwrap();
    let ids: Vec<u64> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let orders = orders.clone();
                scope.spawn(move || {
                    (0..50).map(|i| orders.insert(order(&format!("{t}-{i}"))).unwrap()).collect::<Vec<_>>()
                })
            })
            .collect();
        threads.into_iter().flat_map(|t| t.join().unwrap()).collect()
    });
    let distinct: BTreeSet<u64> = ids.iter().copied().collect();
    assert_eq!(distinct, (1..=200).collect());
    store.close().unwrap();
    drop((store, orders));
    assert_eq!(reopen_and_insert(dir.path(), "last"), 201);
}
