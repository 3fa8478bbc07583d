//! `#[storage(memory, ttl = "..")]`: records expire a TTL after their last write.
//! Expired records are gone from reads by id, index lookups, queries and listings,
//! and their removal is a normal commit: index entries go, watchers get `Remove`
//! events. No test asserts how long anything took: a short TTL is only checked
//! after sleeping past it, and a long one (an hour) only before it.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shelf::{Change, Entity, Store};

/// Expires quickly: checked only after sleeping longer than this.
#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[storage(memory, ttl = "40ms")]
struct Session {
    #[id]
    token: String,
    #[index]
    user: String,
}

/// Never expires within a test.
#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[storage(memory, ttl = "1h")]
struct Cache {
    #[id]
    key: String,
    value: u32,
}

/// Sleeps of this long let the TTL pass: wall time is what a TTL is about. They
/// order no threads.
const PAST_TTL: Duration = Duration::from_millis(80);

fn open(dir: &std::path::Path) -> Store {
    Store::builder(dir).register::<Session>().register::<Cache>().open().unwrap()
}

fn session(token: &str, user: &str) -> Session {
    Session { token: token.into(), user: user.into() }
}

#[test]
fn expired_records_leave_reads_indices_and_queries() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let sessions = store.collection::<Session>().unwrap();
    sessions.insert(session("t1", "ada")).unwrap();
    sessions.insert(session("t2", "ada")).unwrap();
    std::thread::sleep(PAST_TTL);

    // Each read path, on its own handle state: all agree the records are gone.
    assert!(sessions.get("t1").is_none());
    assert!(!sessions.contains("t2"));
    assert!(sessions.by_user("ada").is_empty());
    assert_eq!(sessions.count_by_user("ada"), 0);
    assert!(sessions.query().collect().is_empty());
    assert_eq!(sessions.len(), 0);
    assert!(sessions.all().is_empty());
    // The id is free again.
    sessions.insert(session("t1", "bob")).unwrap();
    assert_eq!(sessions.get("t1").unwrap().user, "bob");
}

#[test]
fn expiry_is_a_commit_with_remove_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let sessions = store.collection::<Session>().unwrap();
    let events = sessions.watch();
    for t in ["a", "b", "c"] {
        sessions.insert(session(t, "ada")).unwrap();
    }
    std::thread::sleep(PAST_TTL);
    // On demand: no other use of the collection needed.
    assert_eq!(sessions.expire().unwrap(), 3);
    assert_eq!(sessions.expire().unwrap(), 0);
    let mut removed = BTreeSet::new();
    for event in events.try_iter() {
        match event.change {
            Change::Insert(_) => {}
            Change::Remove(s) => assert!(removed.insert(s.token.clone())),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(removed, BTreeSet::from(["a".to_owned(), "b".to_owned(), "c".to_owned()]));
}

#[test]
fn records_within_their_ttl_stay_and_other_collections_never_expire() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let cache = store.collection::<Cache>().unwrap();
    cache.insert(Cache { key: "k".into(), value: 1 }).unwrap();
    cache.update(&"k".into(), |c| c.value = 2).unwrap();
    assert_eq!(cache.expire().unwrap(), 0);
    assert_eq!(cache.get("k").unwrap().value, 2);
    assert_eq!(cache.len(), 1);
}

#[test]
fn a_transaction_does_not_see_expired_records() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let sessions = store.collection::<Session>().unwrap();
    sessions.insert(session("t1", "ada")).unwrap();
    std::thread::sleep(PAST_TTL);
    store
        .transaction(|tx| {
            assert!(tx.get::<Session>(&"t1".into()).is_none());
            // The handle cannot write here, but still hides the record.
            assert!(sessions.get("t1").is_none());
            Ok::<_, shelf::Error>(())
        })
        .unwrap();
    assert_eq!(sessions.expire().unwrap(), 1);
}

/// A child of a TTL collection: relationship accessors skip expired children too.
#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[storage(memory)]
#[has_many(tokens: Token, key = account_id)]
struct Account {
    #[id]
    id: String,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[storage(memory, ttl = "40ms")]
struct Token {
    #[id]
    id: String,
    #[belongs_to(Account, on_delete = cascade)]
    account_id: String,
}

#[test]
fn relationship_accessors_skip_expired_children() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path()).register::<Account>().register::<Token>().open().unwrap();
    let accounts = store.collection::<Account>().unwrap();
    accounts.insert(Account { id: "a".into() }).unwrap();
    store.collection::<Token>().unwrap().insert(Token { id: "t".into(), account_id: "a".into() }).unwrap();
    std::thread::sleep(PAST_TTL);
    let account = accounts.get("a").unwrap();
    // Read through the store, without touching the token handle first.
    assert!(account.tokens(&store).unwrap().is_empty());
    assert_eq!(store.collection::<Token>().unwrap().expire().unwrap(), 1);
}
