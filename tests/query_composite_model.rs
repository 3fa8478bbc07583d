//! Model test for composite walks (issue 17) and the latest child per parent and
//! `through` relationship queries (issue 20).
//!
//! - `owner == x order by at [desc] limit n` walks the sorted composite index
//!   `(owner, at)` within `x`, and a three-field `(kind, at, size)` one too, whose
//!   ties on `at` the query puts back in result order;
//! - `group_by(owner).max_by(at)` / `min_by` / `max` / `min` take one seek per owner;
//! - `post.tags_query(&store)` is a query over the linked tags.
//!
//! The oracle is a plain `BTreeMap` of what was written (never the store's reads).
//! Random writes, reopens between rounds; every answer is compared with the oracle
//! and every plan is asserted (the walk, the seek per key, or the fallback).
//!
//! The same tests run on PostgreSQL (`common_pg`), where after each round a second
//! instance, kept by the change feed, must answer the same.

#[macro_use]
mod common_pg;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use common_pg::Backend;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use shelf::{Entity, Store};

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[index((owner, at), sorted)]
#[index((kind, at, size), sorted)]
struct Event {
    #[id]
    id: u32,
    owner: u32,
    at: u32,
    #[index]
    kind: u8,
    size: u8,
    /// `at`'s twin, in no index: the same queries by a sort.
    at_plain: u32,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[has_many(tags: Tag, through = PostTag)]
struct Post {
    #[id]
    id: u32,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Tag {
    #[id]
    id: u32,
    rank: u32,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
struct PostTag {
    #[id]
    id: u32,
    #[belongs_to(Post, on_delete = cascade)]
    post: u32,
    #[belongs_to(Tag, on_delete = cascade)]
    tag: u32,
}

const OWNERS: u32 = 5;
const POSTS: u32 = 4;
const TAGS: u32 = 8;

fn open(backend: &Backend) -> Store {
    backend
        .builder()
        .register::<Event>()
        .register::<Post>()
        .register::<Tag>()
        .register::<PostTag>()
        .open()
        .expect("open")
}

#[derive(Clone, Debug)]
enum Write {
    Event { id: u32, owner: u32, at: u32, kind: u8, size: u8 },
    RemoveEvent(u32),
    Tag { id: u32, rank: u32 },
    Link { id: u32, post: u32, tag: u32 },
    Unlink(u32),
}

fn writes() -> impl Strategy<Value = Vec<Write>> {
    let event = (0u32..40, 0..OWNERS, 0u32..12, 0u8..3, 0u8..4).prop_map(|(id, owner, at, kind, size)| Write::Event {
        id,
        owner,
        at,
        kind,
        size,
    });
    let tag = (0..TAGS, 0u32..6).prop_map(|(id, rank)| Write::Tag { id, rank });
    let link = (0u32..30, 0..POSTS, 0..TAGS).prop_map(|(id, post, tag)| Write::Link { id, post, tag });
    proptest::collection::vec(
        prop_oneof![
            5 => event,
            1 => (0u32..40).prop_map(Write::RemoveEvent),
            1 => tag,
            2 => link,
            1 => (0u32..30).prop_map(Write::Unlink),
        ],
        0..50,
    )
}

#[derive(Default)]
struct Oracle {
    events: BTreeMap<u32, Event>,
    tags: BTreeMap<u32, Tag>,
    links: BTreeMap<u32, PostTag>,
}

fn apply(store: &Store, oracle: &mut Oracle, write: Write) {
    let events = store.collection::<Event>().expect("events");
    let tags = store.collection::<Tag>().expect("tags");
    let links = store.collection::<PostTag>().expect("links");
    match write {
        Write::Event { id, owner, at, kind, size } => {
            let e = Event { id, owner, at, kind, size, at_plain: at };
            events.upsert(e.clone()).expect("upsert event");
            oracle.events.insert(id, e);
        }
        Write::RemoveEvent(id) => {
            events.remove(&id).expect("remove event");
            oracle.events.remove(&id);
        }
        Write::Tag { id, rank } => {
            tags.upsert(Tag { id, rank }).expect("upsert tag");
            oracle.tags.insert(id, Tag { id, rank });
        }
        Write::Link { id, post, tag } => {
            // A link needs its tag (restrict on insert); make it first.
            if let std::collections::btree_map::Entry::Vacant(slot) = oracle.tags.entry(tag) {
                tags.insert(Tag { id: tag, rank: 0 }).expect("insert tag");
                slot.insert(Tag { id: tag, rank: 0 });
            }
            // A join pair is unique (the index `through` implies): a second row
            // for a linked pair is refused and changes nothing.
            let taken = oracle.links.values().any(|l| l.id != id && l.post == post && l.tag == tag);
            match links.upsert(PostTag { id, post, tag }) {
                Ok(_) if !taken => {
                    oracle.links.insert(id, PostTag { id, post, tag });
                }
                Err(shelf::Error::UniqueViolation { .. }) if taken => {}
                other => panic!("upsert link {id} ({post}, {tag}), pair taken: {taken}: {other:?}"),
            }
        }
        Write::Unlink(id) => {
            links.remove(&id).expect("remove link");
            oracle.links.remove(&id);
        }
    }
}

/// The oracle's events that pass `keep`, ordered by `key` then id, paged.
fn expect<K: Ord>(
    oracle: &Oracle,
    keep: impl Fn(&Event) -> bool,
    key: impl Fn(&Event) -> K,
    offset: usize,
    limit: usize,
) -> Vec<u32> {
    let mut all: Vec<&Event> = oracle.events.values().filter(|e| keep(e)).collect();
    all.sort_by(|a, b| key(a).cmp(&key(b)).then(a.id.cmp(&b.id)));
    all.iter().skip(offset).take(limit).map(|e| e.id).collect()
}

fn check_walks(store: &Store, oracle: &Oracle, limit: usize, offset: usize) {
    let events = store.collection::<Event>().expect("events");
    let f = Event::fields();
    for owner in 0..OWNERS + 1 {
        for desc in [false, true] {
            let key = |e: &Event| if desc { (u64::MAX - u64::from(e.at), 0) } else { (u64::from(e.at), 0) };
            let want = expect(oracle, |e| e.owner == owner, key, offset, limit);
            let (order, twin) = if desc { (f.at.desc(), f.at_plain.desc()) } else { (f.at.asc(), f.at_plain.asc()) };
            let query = events.query().filter(f.owner.eq(owner)).order_by(order.clone()).offset(offset).limit(limit);
            assert_eq!(query.ids(), want, "owner {owner} desc={desc} offset {offset} limit {limit}");
            let plan = query.explain().to_string();
            let dir = if desc { "descending" } else { "ascending" };
            assert!(
                plan.starts_with(&format!("walk sorted index `owner_and_at` within owner == {owner}, at {dir}")),
                "{plan}"
            );
            assert!(!plan.contains("sort:"), "a two-field walk needs no sort: {plan}");
            assert_eq!(query.explain().index(), Some("owner_and_at"));
            // The same query ordered by the unindexed twin: the owner's index, a sort.
            let plain = events.query().filter(f.owner.eq(owner)).order_by(twin).offset(offset).limit(limit);
            assert_eq!(plain.ids(), want, "twin owner {owner} desc={desc}");
            assert!(plain.explain().to_string().contains("sort:"), "{}", plain.explain());

            // With another filter, the walk skips what it rejects.
            let small =
                events.query().filter(f.owner.eq(owner)).filter(f.size.lt(2)).order_by(order.clone()).limit(limit);
            let want_small = expect(oracle, |e| e.owner == owner && e.size < 2, key, 0, limit);
            assert_eq!(small.ids(), want_small, "owner {owner} size < 2");
            assert_eq!(small.explain().index(), Some("owner_and_at"));

            // then_by: ties on `at` by size descending, then id.
            let tie = |e: &Event| (key(e).0, u8::MAX - e.size);
            let ordered = events.query().filter(f.owner.eq(owner)).order_by(order).then_by(f.size.desc()).limit(limit);
            assert_eq!(ordered.ids(), expect(oracle, |e| e.owner == owner, tie, 0, limit), "then_by size");
            assert_eq!(ordered.explain().index(), Some("owner_and_at"));
        }
        // Keyset pages through the walk concatenate to the owner's whole list.
        let page = limit.max(1);
        let mut seen = Vec::new();
        let mut last: Option<Arc<Event>> = None;
        loop {
            let q = events.query().filter(f.owner.eq(owner)).order_by(f.at.desc()).limit(page);
            let q = match &last {
                Some(l) => q.after(l),
                None => q,
            };
            let got = q.collect();
            seen.extend(got.iter().map(|e| e.id));
            match got.last() {
                Some(l) if seen.len() <= oracle.events.len() => last = Some(Arc::clone(l)),
                _ => break,
            }
        }
        let all = expect(oracle, |e| e.owner == owner, |e| std::cmp::Reverse(e.at), 0, usize::MAX);
        assert_eq!(seen, all, "keyset pages of owner {owner}");
    }

    // A three-field index (kind, at, size): walked within kind, ties on `at` (which
    // the index orders by size) put back in id order.
    for kind in 0u8..4 {
        for desc in [false, true] {
            let key = |e: &Event| if desc { u64::MAX - u64::from(e.at) } else { u64::from(e.at) };
            let order = if desc { f.at.desc() } else { f.at.asc() };
            let query = events.query().filter(f.kind.eq(kind)).order_by(order).offset(offset).limit(limit);
            assert_eq!(query.ids(), expect(oracle, |e| e.kind == kind, key, offset, limit), "kind {kind} desc={desc}");
            let plan = query.explain().to_string();
            assert!(plan.starts_with("walk sorted index `kind_and_at_and_size` within kind =="), "{plan}");
            assert!(plan.contains("sort: at"), "ties are sorted: {plan}");
        }
    }
    // No equality on the first field: no composite walk.
    let q = events.query().filter(f.owner.gt(1)).order_by(f.at.desc()).limit(3);
    assert_ne!(q.explain().index(), Some("owner_and_at"), "{}", q.explain());
    assert_eq!(q.ids(), expect(oracle, |e| e.owner > 1, |e| std::cmp::Reverse(e.at), 0, 3));
    // Ordered by a field that is not the composite's second: no walk.
    let q = events.query().filter(f.owner.eq(1)).order_by(f.size.asc()).limit(3);
    assert!(q.explain().to_string().contains("sort:"), "{}", q.explain());
    assert_eq!(q.ids(), expect(oracle, |e| e.owner == 1, |e| e.size, 0, 3));
}

fn check_tops(store: &Store, oracle: &Oracle) {
    let events = store.collection::<Event>().expect("events");
    let f = Event::fields();
    // The oracle: per owner, the max and min `at`, and the record with it (ties:
    // the smallest id).
    let mut latest: BTreeMap<u32, &Event> = BTreeMap::new();
    let mut first: BTreeMap<u32, &Event> = BTreeMap::new();
    for e in oracle.events.values() {
        let l = latest.entry(e.owner).or_insert(e);
        if e.at > l.at {
            *l = e;
        }
        let m = first.entry(e.owner).or_insert(e);
        if e.at < m.at {
            *m = e;
        }
    }
    let ids = |v: Vec<(u32, Arc<Event>)>| v.into_iter().map(|(k, e)| (k, e.id)).collect::<Vec<_>>();
    let grouped = events.query().group_by(f.owner);
    assert_eq!(ids(grouped.max_by(f.at)), latest.iter().map(|(k, e)| (*k, e.id)).collect::<Vec<_>>());
    assert_eq!(ids(grouped.min_by(f.at)), first.iter().map(|(k, e)| (*k, e.id)).collect::<Vec<_>>());
    assert_eq!(grouped.max(f.at), latest.iter().map(|(k, e)| (*k, e.at)).collect::<Vec<_>>());
    assert_eq!(grouped.min(f.at), first.iter().map(|(k, e)| (*k, e.at)).collect::<Vec<_>>());
    assert_eq!(
        grouped.explain_top(f.at).to_string(),
        "group by owner: last of each key of sorted index `owner_and_at` (one seek per key)"
    );
    // The twin in no composite reads each owner's records (from the composite's
    // prefix index on `owner`) and agrees.
    assert_eq!(ids(grouped.max_by(f.at_plain)), ids(grouped.max_by(f.at)));
    assert_eq!(grouped.max(f.at_plain), grouped.max(f.at));
    let plan = grouped.explain_top(f.at_plain).to_string();
    assert_eq!(plan, "group by owner: each key's records from index `owner_and_at`");
    // A filter: a pass, over the matches only.
    let mut big: BTreeMap<u32, &Event> = BTreeMap::new();
    for e in oracle.events.values().filter(|e| e.size >= 2) {
        let l = big.entry(e.owner).or_insert(e);
        if e.at > l.at {
            *l = e;
        }
    }
    let filtered = events.query().filter(f.size.ge(2)).group_by(f.owner);
    assert_eq!(ids(filtered.max_by(f.at)), big.iter().map(|(k, e)| (*k, e.id)).collect::<Vec<_>>());
    assert!(filtered.explain_top(f.at).to_string().contains("pass over matches"));
    // The three-field index gives the max `at` per kind; max_by (ties by id) is
    // served another way, and agrees with the oracle too.
    let mut per_kind: BTreeMap<u8, &Event> = BTreeMap::new();
    for e in oracle.events.values() {
        let l = per_kind.entry(e.kind).or_insert(e);
        if e.at > l.at {
            *l = e;
        }
    }
    let kinds = events.query().group_by(f.kind);
    assert_eq!(kinds.max(f.at), per_kind.iter().map(|(k, e)| (*k, e.at)).collect::<Vec<_>>());
    let by_kind: Vec<(u8, u32)> = kinds.max_by(f.at).into_iter().map(|(k, e)| (k, e.id)).collect();
    assert_eq!(by_kind, per_kind.iter().map(|(k, e)| (*k, e.id)).collect::<Vec<_>>());
    assert_eq!(kinds.explain_top(f.at).to_string(), "group by kind: each key's records from index `kind`");
}

fn check_through(store: &Store, oracle: &Oracle, limit: usize) {
    let f = Tag::fields();
    for post in 0..POSTS + 1 {
        let linked: BTreeSet<u32> = oracle.links.values().filter(|l| l.post == post).map(|l| l.tag).collect();
        let mut want: Vec<&Tag> = linked.iter().filter_map(|t| oracle.tags.get(t)).collect();
        let p = Post { id: post };
        let all = p.tags_query(store).expect("tags_query");
        assert_eq!(all.ids(), want.iter().map(|t| t.id).collect::<Vec<_>>(), "tags of post {post}");
        assert_eq!(all.count(), want.len());
        assert_eq!(all.explain().index(), Some("id"), "{}", all.explain());
        assert!(all.explain().to_string().starts_with("get by id: id in the"), "{}", all.explain());
        // The list accessor agrees.
        let listed: Vec<u32> = p.tags(store).expect("tags").iter().map(|t| t.id).collect();
        assert_eq!(listed, all.ids());
        // Filter, order and limit apply.
        want.retain(|t| t.rank >= 2);
        want.sort_by(|a, b| b.rank.cmp(&a.rank).then(a.id.cmp(&b.id)));
        let got = p.tags_query(store).expect("q").filter(f.rank.ge(2)).order_by(f.rank.desc()).limit(limit).ids();
        assert_eq!(got, want.iter().take(limit).map(|t| t.id).collect::<Vec<_>>(), "ranked tags of post {post}");
    }
}

fn check(store: &Store, oracle: &Oracle, limit: usize, offset: usize) {
    check_walks(store, oracle, limit, offset);
    check_tops(store, oracle);
    check_through(store, oracle, limit);
}

/// Rounds of random writes, each checked, then checked again after a reopen (and,
/// on PostgreSQL, on a second instance after `sync`).
fn composite_rounds(backend: &Backend, rounds: Vec<Vec<Write>>, limit: usize, offset: usize) {
    {
        let store = open(backend);
        let posts = store.collection::<Post>().expect("posts");
        for id in 0..POSTS {
            posts.insert(Post { id }).expect("insert post");
        }
        store.flush().expect("flush");
    }
    let other = backend.is_postgres().then(|| open(backend));
    let mut oracle = Oracle::default();
    for round in rounds {
        let store = open(backend);
        for write in round {
            apply(&store, &mut oracle, write);
        }
        check(&store, &oracle, limit, offset);
        store.flush().expect("flush");
        drop(store);
        // After a reopen the indices are loaded or rebuilt; the answers hold.
        let store = open(backend);
        check(&store, &oracle, limit, offset);
        if let Some(other) = &other {
            other.sync().expect("sync");
            check(other, &oracle, limit, offset);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn composite_walks_tops_and_through_queries_match_a_naive_model(
        rounds in proptest::collection::vec(writes(), 1..4),
        limit in 0usize..8,
        offset in 0usize..3,
    ) {
        composite_rounds(&Backend::files(), rounds, limit, offset);
    }
}

proptest! {
    // Each case makes a schema and commits each write in PostgreSQL.
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    #[test]
    fn postgres_composite_walks_tops_and_through_queries_match_a_naive_model_in_both_instances(
        rounds in proptest::collection::vec(writes(), 1..4),
        limit in 0usize..8,
        offset in 0usize..3,
    ) {
        if let Some(backend) = Backend::postgres_case("query_composite_model") {
            composite_rounds(&backend, rounds, limit, offset);
        }
    }
}

/// A relationship query over a parent's children (`has_many(key = ..)`) orders by
/// the composite `(parent, at)` with a walk, and a transaction's view (no indices)
/// answers the same by a scan.
#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[has_many(versions: Version, key = krate)]
struct Krate {
    #[id]
    id: String,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[index((krate, published), sorted)]
struct Version {
    #[id]
    id: u32,
    #[belongs_to(Krate)]
    krate: String,
    published: u64,
}

on_each_backend! {
fn a_relationship_query_walks_the_composite_of_its_key(backend) {
    let store = backend.builder().register::<Krate>().register::<Version>().open().expect("open");
    let krates = store.collection::<Krate>().expect("krates");
    let versions = store.collection::<Version>().expect("versions");
    for name in ["serde", "tokio"] {
        krates.insert(Krate { id: name.into() }).expect("krate");
    }
    let mut oracle = Vec::new();
    for id in 0..60u32 {
        let v = Version {
            id,
            krate: if id % 3 == 0 { "tokio" } else { "serde" }.into(),
            published: u64::from((id * 37) % 23),
        };
        versions.insert(v.clone()).expect("version");
        oracle.push(v);
    }
    let f = Version::fields();
    let serde = Krate { id: "serde".into() };
    let query = serde.versions_query(&store).expect("q").order_by(f.published.desc()).limit(3);
    let mut want: Vec<&Version> = oracle.iter().filter(|v| v.krate == "serde").collect();
    want.sort_by(|a, b| b.published.cmp(&a.published).then(a.id.cmp(&b.id)));
    assert_eq!(query.ids(), want.iter().take(3).map(|v| v.id).collect::<Vec<_>>());
    assert!(
        query.explain().to_string().starts_with("walk sorted index `krate_and_published` within krate == \"serde\""),
        "{}",
        query.explain()
    );
    let in_tx = store
        .transaction(|tx| -> shelf::Result<Vec<u32>> {
            Ok(tx.query::<Version>()?.filter(f.krate.eq("serde")).order_by(f.published.desc()).limit(3).ids())
        })
        .expect("tx");
    assert_eq!(in_tx, query.ids());
}
}
