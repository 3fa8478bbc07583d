//! Model test for the query power features (issue 20): sorted indices on `Option`
//! fields in plans, `count()` without materializing, `group_by` with
//! count/sum/min/max, `distinct`, projections, relationship queries and traversal.
//!
//! The oracle is a plain `BTreeMap` of the records written (never the store's own
//! reads), random data is written, changed and removed, and the store is reopened
//! between rounds. Every construct runs on an indexed field and on its unindexed twin
//! (`due` / `due_plain`, ...): both must equal the oracle, and the plans must say
//! which one used the index.
//!
//! The same tests run on PostgreSQL (`common_pg`), where after each round a second
//! instance, kept by the change feed, must answer the same.

#[macro_use]
mod common_pg;

use std::collections::{BTreeMap, BTreeSet};

use common_pg::Backend;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use shelf::{Entity, Store};

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[has_many(tasks: Task, key = project)]
struct Project {
    #[id]
    id: u32,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Task {
    #[id]
    id: u32,
    #[belongs_to(Project)]
    project: u32,
    #[index(sorted)]
    due: Option<u32>,
    due_plain: Option<u32>,
    #[index]
    priority: u8,
    priority_plain: u8,
    #[index(sorted)]
    owner: String,
    size: u64,
    #[index(each)]
    tags: Vec<String>,
    tags_plain: Vec<String>,
}

/// A directed edge for traversals.
#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Link {
    #[id]
    id: u32,
    #[index]
    from: u32,
    to: u32,
}

const OWNERS: [&str; 4] = ["ann", "bob", "cy", "dee"];
const PROJECTS: u32 = 4;

fn open(backend: &Backend) -> Store {
    backend.builder().register::<Project>().register::<Task>().register::<Link>().open().expect("open")
}

#[derive(Clone, Debug)]
struct Values {
    project: u32,
    due: Option<u32>,
    priority: u8,
    owner: &'static str,
    size: u64,
    tags: Vec<&'static str>,
}

const TAGS: [&str; 3] = ["x", "y", "z"];

fn values() -> impl Strategy<Value = Values> {
    let tags = proptest::collection::vec(0..TAGS.len(), 0..4);
    (0..PROJECTS, proptest::option::of(0u32..8), 0u8..3, 0..OWNERS.len(), 0u64..1000, tags).prop_map(
        |(project, due, priority, owner, size, tags)| Values {
            project,
            due,
            priority,
            owner: OWNERS[owner],
            size,
            tags: tags.into_iter().map(|t| TAGS[t]).collect(),
        },
    )
}

fn task(id: u32, v: &Values) -> Task {
    Task {
        id,
        project: v.project,
        due: v.due,
        due_plain: v.due,
        priority: v.priority,
        priority_plain: v.priority,
        owner: v.owner.to_owned(),
        size: v.size,
        tags: v.tags.iter().map(|t| t.to_string()).collect(),
        tags_plain: v.tags.iter().map(|t| t.to_string()).collect(),
    }
}

#[derive(Clone, Debug)]
enum Write {
    Put(u32, Values),
    Remove(u32),
}

fn writes() -> impl Strategy<Value = Vec<Write>> {
    proptest::collection::vec(
        prop_oneof![3 => (0u32..40, values()).prop_map(|(id, v)| Write::Put(id, v)), 1 => (0u32..40).prop_map(Write::Remove)],
        0..40,
    )
}

/// A range on `due`: `(op, value, upper)` for lt/le/gt/ge/between.
fn ranges() -> impl Strategy<Value = (u8, u32, u32)> {
    (0u8..5, 0u32..9, 0u32..9)
}

fn in_range(op: u8, a: u32, b: u32, v: Option<u32>) -> bool {
    let Some(v) = v else { return false };
    match op {
        0 => v < a,
        1 => v <= a,
        2 => v > a,
        3 => v >= a,
        _ => a <= v && v < b,
    }
}

fn range_query(store: &Store, op: u8, a: u32, b: u32, indexed: bool) -> shelf::Query<Task> {
    let f = Task::fields();
    let field = if indexed { f.due } else { f.due_plain };
    let predicate = match op {
        0 => field.lt(a),
        1 => field.le(a),
        2 => field.gt(a),
        3 => field.ge(a),
        _ => field.between(a..b),
    };
    store.collection::<Task>().expect("tasks").query().filter(predicate)
}

/// The ids of the oracle's records, sorted by `key` then id.
fn sorted_ids<K: Ord>(oracle: &BTreeMap<u32, Task>, key: impl Fn(&Task) -> K) -> Vec<u32> {
    let mut all: Vec<&Task> = oracle.values().collect();
    all.sort_by(|a, b| key(a).cmp(&key(b)).then(a.id.cmp(&b.id)));
    all.iter().map(|t| t.id).collect()
}

fn check(store: &Store, oracle: &BTreeMap<u32, Task>, range: (u8, u32, u32), limit: usize, project: u32) {
    let tasks = store.collection::<Task>().expect("tasks");
    let f = Task::fields();
    let (op, a, b) = range;

    // Ranges on an Option sorted field use the index; the twin scans; both are right.
    let want: Vec<u32> = oracle.values().filter(|t| in_range(op, a, b, t.due)).map(|t| t.id).collect();
    for indexed in [true, false] {
        let query = range_query(store, op, a, b, indexed);
        assert_eq!(query.ids(), want, "range {range:?} indexed={indexed}");
        assert_eq!(query.count(), want.len(), "count of range {range:?} indexed={indexed}");
        let plan = query.explain();
        assert_eq!(plan.index(), indexed.then_some("due"), "plan of range {range:?}: {plan}");
        let count_plan = query.explain_count().to_string();
        assert_eq!(count_plan.starts_with("count entries of index `due`"), indexed, "{count_plan}");
    }

    // Ordered walks with a limit over the Option field: None first ascending, last
    // descending, ties by id.
    let asc = sorted_ids(oracle, |t| t.due);
    let desc = sorted_ids(oracle, |t| std::cmp::Reverse(t.due));
    for (indexed, descending) in [(true, false), (true, true), (false, false), (false, true)] {
        let field = if indexed { f.due } else { f.due_plain };
        let order = if descending { field.desc() } else { field.asc() };
        let query = tasks.query().order_by(order).limit(limit);
        let want: Vec<u32> = (if descending { &desc } else { &asc }).iter().copied().take(limit).collect();
        assert_eq!(query.ids(), want, "order by due desc={descending} indexed={indexed} limit {limit}");
        let plan = query.explain().to_string();
        assert_eq!(plan.starts_with("walk sorted index `due`"), indexed, "{plan}");
    }

    // count() without a filter, with an exact equality, and with two filters.
    assert_eq!(tasks.query().count(), oracle.len());
    assert_eq!(tasks.query().explain_count().to_string(), "count: records");
    for p in 0u8..3 {
        let n = oracle.values().filter(|t| t.priority == p).count();
        let query = tasks.query().filter(f.priority.eq(p));
        assert_eq!(query.count(), n);
        assert!(query.explain_count().to_string().starts_with("count entries of index `priority`"));
        let both = tasks.query().filter(f.priority.eq(p)).filter(f.owner.eq("ann"));
        let n2 = oracle.values().filter(|t| t.priority == p && t.owner == "ann").count();
        assert_eq!(both.count(), n2);
        assert_eq!(tasks.query().filter(f.priority_plain.eq(p)).count(), n);
    }

    // group_by: counts from the index (no scan) and by a pass; sums, min, max.
    let mut per_priority: BTreeMap<u8, usize> = BTreeMap::new();
    let mut size_per_owner: BTreeMap<String, u128> = BTreeMap::new();
    let mut max_due: BTreeMap<String, Option<u32>> = BTreeMap::new();
    let mut min_size: BTreeMap<u8, u64> = BTreeMap::new();
    for t in oracle.values() {
        *per_priority.entry(t.priority).or_default() += 1;
        *size_per_owner.entry(t.owner.clone()).or_default() += u128::from(t.size);
        let m = max_due.entry(t.owner.clone()).or_insert(t.due);
        *m = (*m).max(t.due);
        let s = min_size.entry(t.priority).or_insert(t.size);
        *s = (*s).min(t.size);
    }
    let per_priority: Vec<(u8, usize)> = per_priority.into_iter().collect();
    let grouped = tasks.query().group_by(f.priority);
    assert_eq!(grouped.count(), per_priority);
    assert!(grouped.explain().to_string().contains("count entries per key of index `priority`"));
    let twin = tasks.query().group_by(f.priority_plain);
    assert_eq!(twin.count(), per_priority);
    assert!(twin.explain().to_string().contains("pass over matches"));
    assert_eq!(tasks.query().group_by(f.owner).sum(f.size), size_per_owner.into_iter().collect::<Vec<_>>());
    assert_eq!(tasks.query().group_by(f.owner).max(f.due), max_due.into_iter().collect::<Vec<_>>());
    assert_eq!(tasks.query().group_by(f.priority).min(f.size), min_size.into_iter().collect::<Vec<_>>());
    // Group counts of an Option field include None; the index and a pass agree.
    let mut per_due: BTreeMap<Option<u32>, usize> = BTreeMap::new();
    oracle.values().for_each(|t| *per_due.entry(t.due).or_default() += 1);
    let per_due: Vec<_> = per_due.into_iter().collect();
    assert_eq!(tasks.query().group_by(f.due).count(), per_due);
    assert_eq!(tasks.query().group_by(f.due_plain).count(), per_due);
    // Filtered group counts take a pass.
    let filtered: BTreeMap<u8, usize> =
        oracle.values().filter(|t| t.owner == "bob").fold(BTreeMap::new(), |mut m, t| {
            *m.entry(t.priority).or_default() += 1;
            m
        });
    assert_eq!(
        tasks.query().filter(f.owner.eq("bob")).group_by(f.priority).count(),
        filtered.into_iter().collect::<Vec<_>>()
    );

    // distinct: from the index, from a pass, and with a filter.
    let owners: BTreeSet<String> = oracle.values().map(|t| t.owner.clone()).collect();
    assert_eq!(tasks.query().distinct(f.owner), owners.into_iter().collect::<Vec<_>>());
    let dues: BTreeSet<Option<u32>> = oracle.values().map(|t| t.due).collect();
    assert_eq!(tasks.query().distinct(f.due), dues.iter().copied().collect::<Vec<_>>());
    assert_eq!(tasks.query().distinct(f.due_plain), dues.into_iter().collect::<Vec<_>>());
    let sizes: BTreeSet<u64> = oracle.values().filter(|t| t.priority == 1).map(|t| t.size).collect();
    assert_eq!(tasks.query().filter(f.priority.eq(1)).distinct(f.size), sizes.into_iter().collect::<Vec<_>>());

    // Whole-query sum/min/max.
    assert_eq!(tasks.query().sum(f.size), oracle.values().map(|t| u128::from(t.size)).sum::<u128>());
    assert_eq!(tasks.query().sum(f.due), oracle.values().filter_map(|t| t.due).map(u128::from).sum::<u128>());
    assert_eq!(tasks.query().max(f.size), oracle.values().map(|t| t.size).max());
    assert_eq!(tasks.query().min(f.owner), oracle.values().map(|t| t.owner.clone()).min());

    // Projections, in result order after limit.
    let by_owner = sorted_ids(oracle, |t| t.owner.clone());
    let want: Vec<(String, u64)> =
        by_owner.iter().take(limit).map(|id| (oracle[id].owner.clone(), oracle[id].size)).collect();
    assert_eq!(tasks.query().order_by(f.owner.asc()).limit(limit).select((f.owner, f.size)), want);

    // Vec element predicate: the `each` index serves it exactly; the twin scans.
    for tag in TAGS {
        let want: Vec<u32> = oracle.values().filter(|t| t.tags.iter().any(|x| x == tag)).map(|t| t.id).collect();
        let query = tasks.query().filter(f.tags.includes(tag));
        assert_eq!(query.ids(), want, "tags include {tag}");
        assert_eq!(query.count(), want.len());
        assert_eq!(query.explain().index(), Some("tags"), "{}", query.explain());
        let twin = tasks.query().filter(f.tags_plain.includes(tag));
        assert_eq!(twin.ids(), want);
        assert!(twin.explain().is_scan());
    }

    // Keyset pagination through an ordered walk (Option field, both directions) and
    // through a sort: the pages concatenate to the whole ordered list.
    let page = limit.max(1);
    for (indexed, descending) in [(true, true), (true, false), (false, true)] {
        let field = if indexed { f.due } else { f.due_plain };
        let order = || if descending { field.desc() } else { field.asc() };
        let mut seen = Vec::new();
        let mut last = None;
        loop {
            let query = tasks.query().order_by(order()).limit(page);
            let query = match &last {
                Some(last) => query.after(last),
                None => query,
            };
            assert_eq!(query.explain().to_string().starts_with("walk sorted index `due`"), indexed);
            let got = query.collect();
            seen.extend(got.iter().map(|t| t.id));
            match got.last() {
                Some(l) if seen.len() <= oracle.len() => last = Some(std::sync::Arc::clone(l)),
                _ => break,
            }
        }
        assert_eq!(seen, if descending { desc.clone() } else { asc.clone() }, "keyset pages desc={descending}");
    }

    // Relationship query: filter, order and limit over one project's tasks.
    let parent = Project { id: project };
    let query = parent.tasks_query(store).expect("tasks_query");
    assert_eq!(query.explain().index(), Some("project"), "{}", query.explain());
    let children: Vec<&Task> = oracle.values().filter(|t| t.project == project).collect();
    assert_eq!(query.count(), children.len());
    assert_eq!(query.ids(), children.iter().map(|t| t.id).collect::<Vec<_>>());
    let mut latest: Vec<&Task> = children.iter().copied().filter(|t| t.priority != 0).collect();
    latest.sort_by(|a, b| b.due.cmp(&a.due).then(a.id.cmp(&b.id)));
    let got = parent.tasks_query(store).expect("q").filter(f.priority.ne(0)).order_by(f.due.desc()).limit(limit).ids();
    assert_eq!(got, latest.iter().take(limit).map(|t| t.id).collect::<Vec<_>>());
}

/// Distances from `start` by levels: level d+1 is level d plus its successors.
fn naive_closure(edges: &[(u32, u32)], start: u32, max_depth: usize) -> Vec<(u32, usize)> {
    let mut reached: BTreeMap<u32, usize> = BTreeMap::from([(start, 0)]);
    for d in 0..max_depth.min(64) {
        let level: Vec<u32> = reached.iter().filter(|(_, dd)| **dd == d).map(|(n, _)| *n).collect();
        for n in level {
            for (_, to) in edges.iter().filter(|(from, _)| *from == n) {
                reached.entry(*to).or_insert(d + 1);
            }
        }
    }
    reached.into_iter().collect()
}

/// Rounds of random task writes, each checked, then checked again after a reopen
/// (and, on PostgreSQL, on a second instance after `sync`).
fn power_rounds(backend: &Backend, rounds: Vec<Vec<Write>>, range: (u8, u32, u32), limit: usize, project: u32) {
    let mut oracle: BTreeMap<u32, Task> = BTreeMap::new();
    {
        let store = open(backend);
        let projects = store.collection::<Project>().expect("projects");
        for id in 0..PROJECTS {
            projects.insert(Project { id }).expect("insert project");
        }
        store.flush().expect("flush");
    }
    let other = backend.is_postgres().then(|| open(backend));
    for round in rounds {
        let store = open(backend);
        let tasks = store.collection::<Task>().expect("tasks");
        for write in round {
            match write {
                Write::Put(id, v) => {
                    tasks.upsert(task(id, &v)).expect("upsert");
                    oracle.insert(id, task(id, &v));
                }
                Write::Remove(id) => {
                    tasks.remove(&id).expect("remove");
                    oracle.remove(&id);
                }
            }
        }
        check(&store, &oracle, range, limit, project);
        store.flush().expect("flush");
        drop(tasks);
        drop(store);
        // After a reopen the indices are rebuilt or loaded; the answers are the same.
        let store = open(backend);
        check(&store, &oracle, range, limit, project);
        if let Some(other) = &other {
            other.sync().expect("sync");
            check(other, &oracle, range, limit, project);
        }
    }
}

proptest! {
    // Each case makes a schema and commits each write in PostgreSQL.
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    #[test]
    fn postgres_query_power_matches_a_naive_model_in_both_instances(
        rounds in proptest::collection::vec(writes(), 1..4),
        range in ranges(),
        limit in 0usize..12,
        project in 0..PROJECTS,
    ) {
        if let Some(backend) = Backend::postgres_case("query_power_model") {
            power_rounds(&backend, rounds, range, limit, project);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn query_power_matches_a_naive_model(
        rounds in proptest::collection::vec(writes(), 1..4),
        range in ranges(),
        limit in 0usize..12,
        project in 0..PROJECTS,
    ) {
        power_rounds(&Backend::files(), rounds, range, limit, project);
    }

    #[test]
    fn closure_matches_levels_on_random_graphs_with_cycles(
        edges in proptest::collection::vec((0u32..12, 0u32..12), 0..40),
        start in 0u32..12,
        depth in 0usize..6,
    ) {
        let backend = Backend::files();
        {
            let store = open(&backend);
            let links = store.collection::<Link>().expect("links");
            for (id, (from, to)) in edges.iter().enumerate() {
                links.insert(Link { id: id as u32, from: *from, to: *to }).expect("insert");
            }
            store.flush().expect("flush");
        }
        let store = open(&backend);
        let links = store.collection::<Link>().expect("links");
        for max_depth in [depth, usize::MAX] {
            let got = shelf::closure([start], max_depth, |n| Ok(links.by_from(*n).iter().map(|l| l.to).collect()))
                .expect("closure");
            prop_assert_eq!(got, naive_closure(&edges, start, max_depth));
        }
    }
}
