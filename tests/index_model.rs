//! Model test for indices: random sequences of writes, flushes and reopens run
//! against the store and against a plain `BTreeMap`. After every step each index
//! must answer exactly what a full scan of the model answers — also after reopen with
//! the index files intact, deleted or corrupted.
//!
//! The same model runs on PostgreSQL (`common_pg`), where a second instance on the
//! same database must answer the same after `sync()`: its indices are kept by the
//! change feed, not by its own writes.

#[macro_use]
mod common_pg;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common_pg::Backend;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use shelf::{Entity, Error, Store};

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[index((country, age))]
#[index((country, level), unique)]
struct Person {
    #[id]
    id: u32,
    #[index(unique)]
    email: String,
    #[index]
    country: String,
    #[index(sorted)]
    age: u32,
    #[index(unique, sorted)]
    rank: u32,
    #[index]
    nick: Option<String>,
    #[index(each)]
    tags: Vec<String>,
    level: u8,
}

const EMAILS: [&str; 4] = ["a@x", "b@x", "c@x", "d@x"];
const COUNTRIES: [&str; 2] = ["DE", "FR"];
const NICKS: [&str; 2] = ["n1", "n2"];
const TAGS: [&str; 3] = ["t1", "t2", "t3"];

fn person() -> impl Strategy<Value = Person> {
    (
        0u32..6,
        0..EMAILS.len(),
        0..COUNTRIES.len(),
        0u32..5,
        0u32..8,
        proptest::option::of(0..NICKS.len()),
        proptest::collection::vec(0..TAGS.len(), 0..3),
        0u8..3,
    )
        .prop_map(|(id, email, country, age, rank, nick, tags, level)| Person {
            id,
            email: EMAILS[email].into(),
            country: COUNTRIES[country].into(),
            age,
            rank,
            nick: nick.map(|n| NICKS[n].to_string()),
            tags: tags.into_iter().map(|t| TAGS[t].to_string()).collect(),
            level,
        })
}

#[derive(Clone, Debug)]
enum IndexFiles {
    Keep,
    Delete,
    Corrupt,
}

#[derive(Clone, Debug)]
enum Op {
    Insert(Person),
    Upsert(Person),
    /// Replace every field but the id of record `id` with those of the person.
    Update(u32, Person),
    Remove(u32),
    Flush,
    Reopen(IndexFiles),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => person().prop_map(Op::Insert),
        2 => person().prop_map(Op::Upsert),
        3 => (0u32..6, person()).prop_map(|(id, p)| Op::Update(id, p)),
        2 => (0u32..6).prop_map(Op::Remove),
        1 => Just(Op::Flush),
        1 => prop_oneof![Just(IndexFiles::Keep), Just(IndexFiles::Delete), Just(IndexFiles::Corrupt)].prop_map(Op::Reopen),
    ]
}

/// Whether `candidate` (as record `id`) would clash with another record of the model
/// on a unique index.
fn clashes(model: &BTreeMap<u32, Person>, id: u32, candidate: &Person) -> bool {
    model.values().filter(|other| other.id != id).any(|other| {
        other.email == candidate.email
            || other.rank == candidate.rank
            || (other.country == candidate.country && other.level == candidate.level)
    })
}

fn open(backend: &Backend) -> Store {
    backend.builder().register::<Person>().flush_interval(Duration::from_secs(3600)).open().expect("open")
}

fn ids(records: Vec<std::sync::Arc<Person>>) -> Vec<u32> {
    let mut ids: Vec<u32> = records.iter().map(|p| p.id).collect();
    ids.sort_unstable();
    ids
}

fn scan(model: &BTreeMap<u32, Person>, keep: impl Fn(&Person) -> bool) -> Vec<u32> {
    model.values().filter(|p| keep(p)).map(|p| p.id).collect()
}

/// Every index of the store answers what a scan of the model answers.
fn assert_indices_match(store: &Store, model: &BTreeMap<u32, Person>) {
    let people = store.collection::<Person>().unwrap();
    assert_eq!(ids(people.all()), model.keys().copied().collect::<Vec<_>>());
    for email in EMAILS {
        assert_eq!(
            people.by_email(email).map(|p| p.id),
            scan(model, |p| p.email == email).first().copied(),
            "email {email}"
        );
    }
    for country in COUNTRIES {
        assert_eq!(ids(people.by_country(country)), scan(model, |p| p.country == country), "country {country}");
        assert_eq!(people.count_by_country(country), scan(model, |p| p.country == country).len());
        for age in 0..5 {
            let expected = scan(model, |p| p.country == country && p.age == age);
            assert_eq!(ids(people.by_country_and_age(country, age)), expected);
        }
        for level in 0..3 {
            let expected = scan(model, |p| p.country == country && p.level == level).first().copied();
            assert_eq!(people.by_country_and_level(country, level).map(|p| p.id), expected);
        }
    }
    for age in 0..5 {
        assert_eq!(ids(people.by_age(age)), scan(model, |p| p.age == age));
    }
    // Sorted indices answer ranges in key order.
    let range: Vec<(u32, u32)> = people.range_by_age(1..4).iter().map(|p| (p.age, p.id)).collect();
    let mut expected: Vec<(u32, u32)> =
        model.values().filter(|p| (1..4).contains(&p.age)).map(|p| (p.age, p.id)).collect();
    expected.sort_unstable();
    assert_eq!(range, expected, "range_by_age(1..4)");
    let ranks: Vec<u32> = people.range_by_rank(2..=6).iter().map(|p| p.rank).collect();
    let mut expected: Vec<u32> = model.values().map(|p| p.rank).filter(|r| (2..=6).contains(r)).collect();
    expected.sort_unstable();
    assert_eq!(ranks, expected, "range_by_rank(2..=6)");
    for rank in 0..8 {
        assert_eq!(people.by_rank(rank).map(|p| p.id), scan(model, |p| p.rank == rank).first().copied());
    }
    for nick in NICKS {
        assert_eq!(ids(people.by_nick(nick)), scan(model, |p| p.nick.as_deref() == Some(nick)), "nick {nick}");
    }
    for tag in TAGS {
        assert_eq!(ids(people.by_tags(tag)), scan(model, |p| p.tags.iter().any(|t| t == tag)), "tag {tag}");
    }
}

fn tamper_index_files(dir: &Path, how: &IndexFiles) {
    let index_dir = dir.join("person").join("indices");
    let Ok(entries) = std::fs::read_dir(&index_dir) else { return };
    for entry in entries {
        let path = entry.unwrap().path();
        match how {
            IndexFiles::Keep => {}
            IndexFiles::Delete => std::fs::remove_file(&path).unwrap(),
            IndexFiles::Corrupt => {
                let mut bytes = std::fs::read(&path).unwrap();
                bytes.truncate(bytes.len() / 2);
                bytes.extend_from_slice(b"{\"key\": garbage\n");
                std::fs::write(&path, bytes).unwrap();
            }
        }
    }
}

fn run(backend: &Backend, ops: Vec<Op>) {
    let mut store = open(backend);
    // On PostgreSQL, a second instance that only reads: the feed keeps its indices.
    let other = backend.is_postgres().then(|| open(backend));
    let mut model: BTreeMap<u32, Person> = BTreeMap::new();
    for op in ops {
        let people = store.collection::<Person>().unwrap();
        match op {
            Op::Insert(p) => {
                let expect_ok = !model.contains_key(&p.id) && !clashes(&model, p.id, &p);
                let result = people.insert(p.clone());
                assert_eq!(result.is_ok(), expect_ok, "insert {p:?}: {result:?}");
                if let Err(e) = &result {
                    assert!(matches!(e, Error::DuplicateId { .. } | Error::UniqueViolation { .. }), "{e}");
                } else {
                    model.insert(p.id, p);
                }
            }
            Op::Upsert(p) => {
                let expect_ok = !clashes(&model, p.id, &p);
                let result = people.upsert(p.clone());
                assert_eq!(result.is_ok(), expect_ok, "upsert {p:?}: {result:?}");
                if result.is_ok() {
                    model.insert(p.id, p);
                }
            }
            Op::Update(id, new) => {
                let target = model.get(&id).map(|_| Person { id, ..new.clone() });
                let result = people.update(&id, |p| *p = Person { id, ..new.clone() });
                match target {
                    None => assert!(matches!(result, Err(Error::NotFound { .. })), "{result:?}"),
                    Some(target) if clashes(&model, id, &target) => {
                        assert!(matches!(result, Err(Error::UniqueViolation { .. })), "{result:?}")
                    }
                    Some(target) => {
                        assert!(result.is_ok(), "{result:?}");
                        model.insert(id, target);
                    }
                }
            }
            Op::Remove(id) => {
                let removed = people.remove(&id).unwrap();
                assert_eq!(removed.map(|p| p.id), model.remove(&id).map(|p| p.id));
            }
            Op::Flush => {
                store.flush().unwrap();
            }
            Op::Reopen(files) => {
                store.close().unwrap();
                drop(people);
                drop(store);
                let Backend::Files(dir) = backend else {
                    // PostgreSQL keeps no index files: the reopened cache is built
                    // from the tables.
                    store = open(backend);
                    assert_indices_match(&store, &model);
                    continue;
                };
                tamper_index_files(dir.path(), &files);
                // Open does not trust a tampered index file, and the clean close
                // after it rewrites every index file, whatever was done to it.
                open(backend).close().unwrap();
                store = open(backend);
                if !model.is_empty() {
                    for entry in std::fs::read_dir(dir.path().join("person").join("indices")).unwrap() {
                        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
                        assert!(text.lines().all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()), "{text}");
                    }
                }
            }
        }
        assert_indices_match(&store, &model);
        if let Some(other) = &other {
            other.sync().unwrap();
            assert_indices_match(other, &model);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn indices_answer_what_a_scan_answers(ops in proptest::collection::vec(op(), 1..40)) {
        run(&Backend::files(), ops);
    }
}

proptest! {
    // Each case makes a schema and commits each write in PostgreSQL.
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn postgres_indices_answer_what_a_scan_answers_in_both_instances(ops in proptest::collection::vec(op(), 1..40)) {
        if let Some(backend) = Backend::postgres_case("index_model") {
            run(&backend, ops);
        }
    }
}

on_each_backend! {
fn an_update_that_violates_only_its_last_unique_index_changes_nothing(backend) {
    let store = open(&backend);
    let people = store.collection::<Person>().unwrap();
    let base = Person {
        id: 1,
        email: "a@x".into(),
        country: "DE".into(),
        age: 1,
        rank: 1,
        nick: None,
        tags: vec!["t1".into()],
        level: 0,
    };
    people.insert(base.clone()).unwrap();
    people.insert(Person { id: 2, email: "b@x".into(), rank: 2, level: 1, ..base.clone() }).unwrap();
    store.flush().unwrap();
    // Changes email (free), age, tags and rank; only rank clashes (with record 2).
    let result = people.update(&1, |p| {
        p.email = "c@x".into();
        p.age = 4;
        p.tags = vec!["t3".into()];
        p.rank = 2;
    });
    match result {
        Err(Error::UniqueViolation { index, existing_id, .. }) => {
            assert_eq!(index, "rank");
            assert_eq!(existing_id, "2");
        }
        other => panic!("expected a unique violation, got {other:?}"),
    }
    assert_eq!(*people.get(&1).unwrap(), base);
    assert!(people.by_email("c@x").is_none());
    assert_eq!(people.by_email("a@x").unwrap().id, 1);
    assert!(people.by_tags("t3").is_empty());
    assert_eq!(people.count_by_age(4), 0);
    assert_eq!(people.dirty_count(), 0, "a refused update must not mark the record dirty");
}

// Lookups return the current version of a record, also after an update that left
// its index keys unchanged.
fn lookups_return_the_current_version_after_updates(backend) {
    let store = open(&backend);
    let people = store.collection::<Person>().unwrap();
    let base = Person {
        id: 1,
        email: "a@x".into(),
        country: "DE".into(),
        age: 1,
        rank: 1,
        nick: None,
        tags: vec![],
        level: 0,
    };
    people.insert(base.clone()).unwrap();
    people.update(&1, |p| p.level = 2).unwrap(); // no index key changes
    assert_eq!(people.by_email("a@x").unwrap().level, 2);
    assert_eq!(people.by_country("DE")[0].level, 2);
    assert_eq!(people.range_by_age(0..5)[0].level, 2);
    assert_eq!(people.by_country_and_age("DE", 1)[0].level, 2);
    people.upsert(Person { level: 3, ..base }).unwrap();
    assert_eq!(people.by_rank(1).unwrap().level, 3);
    let f = Person::fields();
    assert_eq!(people.query().filter(f.email.eq("a@x")).first().unwrap().level, 3);
}
}
