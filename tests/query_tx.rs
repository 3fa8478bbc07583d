//! Queries inside a transaction (`tx.query::<T>()`) see the transaction's own
//! inserts, updates and removes; queries through the collection see the committed
//! state only, until the transaction commits (and never, if it rolls back).

#[macro_use]
mod common_pg;

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use shelf::{Entity, Error, Query, Store};

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
struct User {
    #[id]
    id: u32,
    #[index(unique)]
    email: String,
    #[index]
    country: String,
    #[index(sorted)]
    age: u32,
    nick: Option<String>,
}

fn user(id: u32, country: &str, age: u32) -> User {
    User { id, email: format!("u{id}@x"), country: country.into(), age, nick: None }
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
struct Unregistered {
    #[id]
    id: u32,
}

/// A transaction body's error: a store error, or a deliberate rollback.
#[derive(Debug)]
enum Abort {
    Store(Error),
    Rollback,
}

impl From<Error> for Abort {
    fn from(e: Error) -> Self {
        Abort::Store(e)
    }
}

fn open(dir: &std::path::Path) -> Store {
    Store::builder(dir).register::<User>().open().unwrap()
}

/// A store with users 1 (DE, 30), 2 (FR, 20), 3 (DE, 40).
fn seeded() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    seed(&store);
    (dir, store)
}

/// [`seeded`] on a backend.
fn seeded_on(backend: &common_pg::Backend) -> Store {
    let store = backend.builder().register::<User>().open().unwrap();
    seed(&store);
    store
}

fn seed(store: &Store) {
    let users = store.collection::<User>().unwrap();
    for u in [user(1, "DE", 30), user(2, "FR", 20), user(3, "DE", 40)] {
        users.insert(u).unwrap();
    }
}

fn german(q: Query<User>) -> Query<User> {
    q.filter(User::fields().country.eq("DE")).order_by(User::fields().age.asc())
}

#[test]
fn transaction_queries_survive_a_reopen_after_commit() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        store
            .transaction(|tx| {
                tx.insert(user(1, "DE", 30))?;
                tx.insert(user(2, "DE", 20))?;
                Ok::<_, Error>(())
            })
            .unwrap();
        store.close().unwrap();
    }
    let store = open(dir.path());
    let users = store.collection::<User>().unwrap();
    assert_eq!(german(users.query()).ids(), [2, 1]);
    assert_eq!(users.query().filter(User::fields().email.eq("u1@x")).ids(), [1]);
}

#[test]
fn a_transaction_query_on_an_unregistered_type_is_an_error() {
    let (_dir, store) = seeded();
    let result = store.transaction(|tx| {
        let q = tx.query::<Unregistered>();
        assert!(matches!(q, Err(Error::NotRegistered { .. })), "{:?}", q.err());
        Ok::<_, Error>(())
    });
    result.unwrap();
}

// ---------------------------------------------------------------------------------
// Random writes in a transaction against a model of the committed state and of the
// transaction's view.

#[derive(Clone, Debug)]
enum TxOp {
    Insert(u32, &'static str, u32),
    Upsert(u32, &'static str, u32),
    Update(u32, &'static str, u32),
    Remove(u32),
}

const COUNTRIES: [&str; 3] = ["DE", "FR", "IT"];

fn tx_op() -> impl Strategy<Value = TxOp> {
    let country = proptest::sample::select(COUNTRIES.to_vec());
    prop_oneof![
        (0u32..8, country.clone(), 0u32..5).prop_map(|(i, c, a)| TxOp::Insert(i, c, a)),
        (0u32..8, country.clone(), 0u32..5).prop_map(|(i, c, a)| TxOp::Upsert(i, c, a)),
        (0u32..8, country, 0u32..5).prop_map(|(i, c, a)| TxOp::Update(i, c, a)),
        (0u32..8).prop_map(TxOp::Remove),
    ]
}

/// `(country, age)` by id.
type Model = BTreeMap<u32, (&'static str, u32)>;

/// For each country: the ids in `(age, id)` order, as the model says.
fn expected(model: &Model, country: &str) -> Vec<u32> {
    let mut v: Vec<(u32, u32)> =
        model.iter().filter(|(_, (c, _))| *c == country).map(|(id, (_, a))| (*a, *id)).collect();
    v.sort_unstable();
    v.into_iter().map(|(_, id)| id).collect()
}

fn assert_view(q: impl Fn() -> Query<User>, model: &Model, what: &str) {
    let f = User::fields();
    for country in COUNTRIES {
        assert_eq!(q().filter(f.country.eq(country)).order_by(f.age.asc()).ids(), expected(model, country), "{what}");
    }
    for age in 0..5 {
        let want: Vec<u32> = model.iter().filter(|(_, (_, a))| *a == age).map(|(id, _)| *id).collect();
        assert_eq!(q().filter(f.age.eq(age)).ids(), want, "{what}: age {age}");
        let want: Vec<u32> = model.iter().filter(|(_, (_, a))| *a >= age).map(|(id, _)| *id).collect();
        assert_eq!(q().filter(f.age.ge(age)).ids(), want, "{what}: age >= {age}");
    }
    for id in 0..8 {
        let email = format!("u{id}@x");
        let want: Vec<u32> = model.keys().copied().filter(|i| *i == id).collect();
        assert_eq!(q().filter(f.email.eq(email.as_str())).ids(), want, "{what}: email {email}");
    }
    assert_eq!(q().count(), model.len(), "{what}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn transaction_queries_match_a_model(
        before in proptest::collection::vec((0u32..8, proptest::sample::select(COUNTRIES.to_vec()), 0u32..5), 0..6),
        ops in proptest::collection::vec(tx_op(), 0..10),
        commit in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let users = store.collection::<User>().unwrap();
        let mut committed = Model::new();
        for (id, country, age) in before {
            if let std::collections::btree_map::Entry::Vacant(slot) = committed.entry(id) {
                slot.insert((country, age));
                users.insert(user(id, country, age)).unwrap();
            }
        }
        let mut view = committed.clone();
        let result: Result<(), Abort> = store.transaction(|tx| {
            for op in &ops {
                match *op {
                    TxOp::Insert(id, c, a) => {
                        let r = tx.insert(user(id, c, a));
                        assert_eq!(r.is_ok(), !view.contains_key(&id), "{op:?}: {r:?}");
                        if r.is_ok() {
                            view.insert(id, (c, a));
                        }
                    }
                    TxOp::Upsert(id, c, a) => {
                        tx.upsert(user(id, c, a))?;
                        view.insert(id, (c, a));
                    }
                    TxOp::Update(id, c, a) => {
                        let r = tx.update::<User>(&id, |u| {
                            u.country = c.into();
                            u.age = a;
                        });
                        assert_eq!(r.is_ok(), view.contains_key(&id), "{op:?}: {r:?}");
                        if r.is_ok() {
                            view.insert(id, (c, a));
                        }
                    }
                    TxOp::Remove(id) => {
                        tx.remove::<User>(&id)?;
                        view.remove(&id);
                    }
                }
                // After every write: the transaction sees it, the collection does not.
                assert_view(|| tx.query::<User>().unwrap(), &view, "inside");
                assert_view(|| users.query(), &committed, "outside, during");
            }
            if commit { Ok(()) } else { Err(Abort::Rollback) }
        });
        if let Err(Abort::Store(e)) = &result {
            panic!("the transaction failed: {e}");
        }
        prop_assert_eq!(result.is_ok(), commit);
        let after = if commit { &view } else { &committed };
        assert_view(|| users.query(), after, "outside, after");
        store.transaction(|tx| {
            assert_view(|| tx.query::<User>().unwrap(), after, "next transaction");
            Ok::<_, Error>(())
        }).unwrap();
    }
}

// The tests above that mean the same on every backend run on each: files and
// PostgreSQL (common_pg::on_each_backend).
on_each_backend! {
    fn a_transaction_sees_its_own_inserts_and_others_see_them_after_commit(b) {
        let store = seeded_on(&b);
        let users = store.collection::<User>().unwrap();
        store
            .transaction(|tx| {
                tx.insert(user(4, "DE", 10))?;
                tx.insert(user(5, "FR", 50))?;
                let inside = german(tx.query::<User>()?);
                assert_eq!(inside.ids(), [4, 1, 3]);
                assert_eq!(inside.count(), 3);
                assert_eq!(inside.first().map(|u| u.id), Some(4));
                assert_eq!(tx.query::<User>()?.count(), 5);
                // Not yet visible outside the transaction, even through an index.
                let outside = german(users.query());
                assert_eq!(outside.explain().index(), Some("country"));
                assert_eq!(outside.ids(), [1, 3]);
                assert_eq!(users.query().filter(User::fields().email.eq("u4@x")).ids(), [] as [u32; 0]);
                assert_eq!(users.query().count(), 3);
                Ok::<_, Error>(())
            })
            .unwrap();
        assert_eq!(german(users.query()).ids(), [4, 1, 3]);
        assert_eq!(users.query().filter(User::fields().email.eq("u4@x")).ids(), [4]);
        assert_eq!(users.query().count(), 5);
    }

    fn a_transaction_sees_its_own_updates_including_indexed_fields(b) {
        let store = seeded_on(&b);
        let users = store.collection::<User>().unwrap();
        let f = User::fields();
        store
            .transaction(|tx| {
                // Moves user 2 to DE and changes a unique and a sorted indexed field.
                tx.update::<User>(&2, |u| {
                    u.country = "DE".into();
                    u.email = "new@x".into();
                    u.age = 35;
                    u.nick = Some("neo".into());
                })?;
                assert_eq!(german(tx.query::<User>()?).ids(), [1, 2, 3]);
                // By the new values, not by the old ones: the committed indices are not used.
                let by_email = tx.query::<User>()?.filter(f.email.eq("new@x"));
                assert!(by_email.explain().is_scan(), "{}", by_email.explain());
                assert_eq!(by_email.ids(), [2]);
                assert_eq!(tx.query::<User>()?.filter(f.email.eq("u2@x")).ids(), [] as [u32; 0]);
                assert_eq!(tx.query::<User>()?.filter(f.country.eq("FR")).count(), 0);
                assert_eq!(tx.query::<User>()?.filter(f.age.between(31..=39)).ids(), [2]);
                assert_eq!(tx.query::<User>()?.filter(f.nick.eq("neo")).ids(), [2]);
                assert_eq!(tx.query::<User>()?.order_by(f.age.desc()).limit(2).ids(), [3, 2]);
                // Outside: still the committed values.
                assert_eq!(german(users.query()).ids(), [1, 3]);
                assert_eq!(users.query().filter(f.email.eq("u2@x")).ids(), [2]);
                assert_eq!(users.query().filter(f.email.eq("new@x")).count(), 0);
                assert_eq!(users.query().filter(f.nick.is_some()).count(), 0);
                assert_eq!(users.query().order_by(f.age.desc()).limit(2).ids(), [3, 1]);
                Ok::<_, Error>(())
            })
            .unwrap();
        assert_eq!(german(users.query()).ids(), [1, 2, 3]);
        assert_eq!(users.query().filter(f.email.eq("new@x")).ids(), [2]);
        assert_eq!(users.query().filter(f.email.eq("u2@x")).count(), 0);
        assert_eq!(users.query().filter(f.country.eq("FR")).count(), 0);
        assert_eq!(users.query().order_by(f.age.desc()).limit(2).ids(), [3, 2]);
    }

    fn a_transaction_does_not_see_what_it_removed(b) {
        let store = seeded_on(&b);
        let users = store.collection::<User>().unwrap();
        let f = User::fields();
        store
            .transaction(|tx| {
                tx.remove::<User>(&1)?;
                assert_eq!(german(tx.query::<User>()?).ids(), [3]);
                assert_eq!(tx.query::<User>()?.filter(f.email.eq("u1@x")).count(), 0);
                assert_eq!(tx.query::<User>()?.ids(), [2, 3]);
                // Removed, then inserted again with other values.
                tx.insert(user(1, "FR", 99))?;
                assert_eq!(german(tx.query::<User>()?).ids(), [3]);
                assert_eq!(tx.query::<User>()?.filter(f.country.eq("FR")).order_by(f.age.asc()).ids(), [2, 1]);
                // And user 3 removed for good.
                tx.remove::<User>(&3)?;
                assert_eq!(german(tx.query::<User>()?).count(), 0);
                assert_eq!(tx.query::<User>()?.first().map(|u| u.id), Some(1));
                // Outside: all three, as committed.
                assert_eq!(german(users.query()).ids(), [1, 3]);
                assert_eq!(users.query().count(), 3);
                Ok::<_, Error>(())
            })
            .unwrap();
        assert_eq!(german(users.query()).count(), 0);
        assert_eq!(users.query().filter(f.country.eq("FR")).order_by(f.age.asc()).ids(), [2, 1]);
        assert_eq!(users.query().ids(), [1, 2]);
    }

    fn a_rolled_back_transaction_is_never_seen(b) {
        let store = seeded_on(&b);
        let users = store.collection::<User>().unwrap();
        let f = User::fields();
        let result: Result<(), Abort> = store.transaction(|tx| {
            tx.insert(user(4, "DE", 10))?;
            tx.update::<User>(&2, |u| u.country = "DE".into())?;
            tx.remove::<User>(&3)?;
            assert_eq!(german(tx.query::<User>()?).ids(), [4, 2, 1]);
            Err(Abort::Rollback)
        });
        assert!(matches!(result, Err(Abort::Rollback)), "{result:?}");
        assert_eq!(german(users.query()).ids(), [1, 3]);
        assert_eq!(users.query().filter(f.country.eq("FR")).ids(), [2]);
        assert_eq!(users.query().count(), 3);
        // A new transaction starts from the committed state.
        store
            .transaction(|tx| {
                assert_eq!(german(tx.query::<User>()?).ids(), [1, 3]);
                Ok::<_, Error>(())
            })
            .unwrap();
    }

    fn the_transaction_view_plan_is_a_scan_and_says_so(b) {
        let store = seeded_on(&b);
        let f = User::fields();
        store
            .transaction(|tx| {
                let q = tx.query::<User>()?.filter(f.email.eq("u1@x")).order_by(f.age.asc()).limit(1);
                let plan = q.explain();
                assert!(plan.is_scan());
                assert_eq!(plan.index(), None);
                assert!(plan.to_string().starts_with("scan (transaction view)"), "{plan}");
                assert_eq!(q.ids(), [1]);
                Ok::<_, Error>(())
            })
            .unwrap();
    }
}
