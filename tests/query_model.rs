//! Model test for typed queries: random data (inserted, then updated and removed),
//! random predicates, orderings, limits and offsets. Every query must return exactly
//! what a naive filter-and-sort over a plain model returns (ties broken by the order
//! keys, then by id ascending), whichever plan runs. The model is a `BTreeMap` of the
//! records the test inserted, updated and removed, kept by the test itself: it never
//! reads the store, so a store that loses, keeps or corrupts a record is caught by
//! the comparison instead of copied into the expectation.
//!
//! Every indexed field has an unindexed twin holding the same value (`age` and
//! `age_plain`, ...). Each random query runs three times: with every predicate and
//! ordering on the indexed fields, on the unindexed twins, and on a random mix. The
//! results must be equal, and the plans must differ as the planner's documented rules
//! say: the twins never use an index.
//!
//! The same tests run on PostgreSQL (`common_pg`). There every random query also runs
//! on a second instance, opened before the writes, whose collection and indices were
//! built by the change feed.

#[macro_use]
mod common_pg;

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::ops::Bound;
use std::sync::Arc;

use common_pg::Backend;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use shelf::{Entity, Field, OrderBy, Predicate, Query, Store};

/// Persisted (one collection file), so that it is shared on PostgreSQL: a `memory`
/// collection stays local to each instance.
#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[storage(collection_file)]
struct Item {
    #[id]
    id: u32,
    #[index(sorted)]
    age: u32,
    age_plain: u32,
    #[index(unique, sorted)]
    rank: u32,
    rank_plain: u32,
    #[index]
    city: String,
    city_plain: String,
    #[index(unique)]
    code: String,
    code_plain: String,
    #[index(sorted)]
    name: String,
    name_plain: String,
    #[index(sorted)]
    score: Option<u32>,
    score_plain: Option<u32>,
    #[index]
    active: bool,
    active_plain: bool,
}

const CITIES: [&str; 6] = ["", "a", "ab", "abc", "b", "ba"];
const NAMES: [&str; 6] = ["", "ann", "anna", "bo", "bob", "Bob"];
const CODE_LETTERS: [&str; 3] = ["a", "b", "ab"];
/// Prefixes and parts for `starts_with` / `contains`.
const PARTS: [&str; 9] = ["", "a", "ab", "b", "bo", "n", "c", "1", "zz"];
/// Unique values (rank, code) are drawn from `0..UNIQUE`.
const UNIQUE: u32 = 40;

// ---------------------------------------------------------------------------------
// Data

/// The non-unique values of a record (what updates may change).
#[derive(Clone, Debug)]
struct Values {
    age: u32,
    city: &'static str,
    name: &'static str,
    score: Option<u32>,
    active: bool,
}

fn values() -> impl Strategy<Value = Values> {
    (0u32..6, 0..CITIES.len(), 0..NAMES.len(), proptest::option::of(0u32..5), any::<bool>()).prop_map(
        |(age, city, name, score, active)| Values { age, city: CITIES[city], name: NAMES[name], score, active },
    )
}

fn code_of(n: u32) -> String {
    format!("{}{}", CODE_LETTERS[(n % 3) as usize], n / 3)
}

fn item(id: u32, rank: u32, code: u32, v: &Values) -> Item {
    Item {
        id,
        age: v.age,
        age_plain: v.age,
        rank,
        rank_plain: rank,
        city: v.city.into(),
        city_plain: v.city.into(),
        code: code_of(code),
        code_plain: code_of(code),
        name: v.name.into(),
        name_plain: v.name.into(),
        score: v.score,
        score_plain: v.score,
        active: v.active,
        active_plain: v.active,
    }
}

fn apply(item: &mut Item, v: &Values) {
    item.age = v.age;
    item.age_plain = v.age;
    item.city = v.city.into();
    item.city_plain = v.city.into();
    item.name = v.name.into();
    item.name_plain = v.name.into();
    item.score = v.score;
    item.score_plain = v.score;
    item.active = v.active;
    item.active_plain = v.active;
}

#[derive(Clone, Debug)]
enum Change {
    Update(usize, Values),
    Remove(usize),
}

#[derive(Clone, Debug)]
struct Data {
    /// `(id, rank, code number, values)`; ids, ranks and codes are distinct.
    rows: Vec<(u32, u32, u32, Values)>,
    /// Applied after the inserts; indices are positions in `rows`.
    changes: Vec<Change>,
}

fn shuffled() -> impl Strategy<Value = Vec<u32>> {
    Just((0..UNIQUE).collect::<Vec<u32>>()).prop_shuffle()
}

fn data() -> impl Strategy<Value = Data> {
    (0usize..16)
        .prop_flat_map(|n| {
            let change = prop_oneof![
                3 => (0..n.max(1), values()).prop_map(|(i, v)| Change::Update(i, v)),
                1 => (0..n.max(1)).prop_map(Change::Remove),
            ];
            (
                shuffled(),
                shuffled(),
                shuffled(),
                proptest::collection::vec(values(), n),
                proptest::collection::vec(change, 0..6),
            )
        })
        .prop_map(|(ids, ranks, codes, values, changes)| Data {
            rows: values.into_iter().enumerate().map(|(i, v)| (ids[i], ranks[i], codes[i], v)).collect(),
            changes,
        })
}

// ---------------------------------------------------------------------------------
// Queries, as data: built into a `shelf` query and evaluated by the model.

#[derive(Clone, Copy, Debug, PartialEq)]
enum U32F {
    Age,
    Rank,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum StrF {
    City,
    Code,
    Name,
}

#[derive(Clone, Debug)]
enum Cmp<V> {
    Eq(V),
    Ne(V),
    Lt(V),
    Le(V),
    Gt(V),
    Ge(V),
    Between(Bound<V>, Bound<V>),
    In(Vec<V>),
}

#[derive(Clone, Debug)]
enum OptCmp {
    Eq(u32),
    Ne(u32),
    Lt(u32),
    Le(u32),
    Gt(u32),
    Ge(u32),
    IsSome,
    IsNone,
}

#[derive(Clone, Debug)]
enum Leaf {
    U32(U32F, Cmp<u32>),
    Str(StrF, Cmp<String>),
    /// Equality with a `&str` instead of a `String`.
    StrEqRef(StrF, &'static str),
    StartsWith(StrF, &'static str),
    Contains(StrF, &'static str),
    Score(OptCmp),
    Active(Cmp<bool>),
}

#[derive(Clone, Debug)]
enum Pred {
    /// A leaf; `true` puts it on the unindexed twin in mixed mode.
    Leaf(Leaf, bool),
    And(Box<Pred>, Box<Pred>),
    Or(Box<Pred>, Box<Pred>),
    Not(Box<Pred>),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum KeyF {
    Age,
    Rank,
    City,
    Code,
    Name,
    Score,
    Active,
}

#[derive(Clone, Copy, Debug)]
struct Order {
    key: KeyF,
    desc: bool,
    /// Use the unindexed twin in mixed mode.
    twin: bool,
}

#[derive(Clone, Debug)]
struct Spec {
    filters: Vec<Pred>,
    /// An ordering set first and replaced by `order_by(order[0])`.
    replaced: Option<Order>,
    order: Vec<Order>,
    offset: Option<usize>,
    limit: Option<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Indexed,
    Plain,
    Mixed,
}

impl Mode {
    /// Whether a part with this twin flag reads the unindexed twin.
    fn plain(self, twin: bool) -> bool {
        match self {
            Mode::Indexed => false,
            Mode::Plain => true,
            Mode::Mixed => twin,
        }
    }
}

fn bound<V: Clone + Debug + 'static>(v: BoxedStrategy<V>) -> BoxedStrategy<Bound<V>> {
    prop_oneof![v.clone().prop_map(Bound::Included), v.prop_map(Bound::Excluded), Just(Bound::Unbounded)].boxed()
}

fn cmp<V: Clone + Debug + 'static>(v: BoxedStrategy<V>) -> BoxedStrategy<Cmp<V>> {
    prop_oneof![
        4 => v.clone().prop_map(Cmp::Eq),
        1 => v.clone().prop_map(Cmp::Ne),
        1 => v.clone().prop_map(Cmp::Lt),
        1 => v.clone().prop_map(Cmp::Le),
        1 => v.clone().prop_map(Cmp::Gt),
        1 => v.clone().prop_map(Cmp::Ge),
        2 => (bound(v.clone()), bound(v.clone())).prop_map(|(lo, hi)| Cmp::Between(lo, hi)),
        2 => proptest::collection::vec(v, 0..4).prop_map(Cmp::In),
    ]
    .boxed()
}

fn str_value(field: StrF) -> BoxedStrategy<String> {
    match field {
        StrF::City => prop_oneof![proptest::sample::select(CITIES.to_vec()), Just("zz")].prop_map(String::from).boxed(),
        StrF::Name => prop_oneof![proptest::sample::select(NAMES.to_vec()), Just("c")].prop_map(String::from).boxed(),
        StrF::Code => (0..UNIQUE + 3).prop_map(code_of).boxed(),
    }
}

fn str_field() -> impl Strategy<Value = StrF> {
    prop_oneof![Just(StrF::City), Just(StrF::Code), Just(StrF::Name)]
}

fn leaf() -> impl Strategy<Value = Leaf> {
    let part = || proptest::sample::select(PARTS.to_vec());
    prop_oneof![
        3 => cmp((0u32..7).boxed()).prop_map(|c| Leaf::U32(U32F::Age, c)),
        2 => cmp((0..UNIQUE + 2).boxed()).prop_map(|c| Leaf::U32(U32F::Rank, c)),
        4 => str_field().prop_flat_map(|f| cmp(str_value(f)).prop_map(move |c| Leaf::Str(f, c))),
        1 => (str_field(), proptest::sample::select(CITIES.to_vec())).prop_map(|(f, v)| Leaf::StrEqRef(f, v)),
        1 => (str_field(), part()).prop_map(|(f, p)| Leaf::StartsWith(f, p)),
        1 => (str_field(), part()).prop_map(|(f, p)| Leaf::Contains(f, p)),
        2 => prop_oneof![
            (0u32..6).prop_map(OptCmp::Eq),
            (0u32..6).prop_map(OptCmp::Ne),
            (0u32..6).prop_map(OptCmp::Lt),
            (0u32..6).prop_map(OptCmp::Le),
            (0u32..6).prop_map(OptCmp::Gt),
            (0u32..6).prop_map(OptCmp::Ge),
            Just(OptCmp::IsSome),
            Just(OptCmp::IsNone),
        ]
        .prop_map(Leaf::Score),
        1 => cmp(any::<bool>().boxed()).prop_map(Leaf::Active),
    ]
}

fn pred() -> impl Strategy<Value = Pred> {
    (leaf(), any::<bool>()).prop_map(|(l, twin)| Pred::Leaf(l, twin)).prop_recursive(3, 12, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Pred::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Pred::Or(Box::new(a), Box::new(b))),
            inner.prop_map(|a| Pred::Not(Box::new(a))),
        ]
    })
}

fn order() -> impl Strategy<Value = Order> {
    let key = proptest::sample::select(vec![
        KeyF::Age,
        KeyF::Rank,
        KeyF::City,
        KeyF::Code,
        KeyF::Name,
        KeyF::Score,
        KeyF::Active,
    ]);
    (key, any::<bool>(), any::<bool>()).prop_map(|(key, desc, twin)| Order { key, desc, twin })
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        // Mostly single comparisons, so that indices get used often.
        proptest::collection::vec(
            prop_oneof![2 => (leaf(), any::<bool>()).prop_map(|(l, twin)| Pred::Leaf(l, twin)), 1 => pred()],
            0..3,
        ),
        proptest::option::weighted(0.15, order()),
        prop_oneof![1 => Just(Vec::new()), 2 => proptest::collection::vec(order(), 1..2), 1 => proptest::collection::vec(order(), 2..4)],
        proptest::option::of(0usize..12),
        proptest::option::of(0usize..12),
    )
        .prop_map(|(filters, replaced, order, offset, limit)| Spec {
            replaced: replaced.filter(|_| !order.is_empty()),
            filters,
            order,
            offset,
            limit,
        })
}

// ---------------------------------------------------------------------------------
// Building the shelf query

fn u32_field(f: U32F, plain: bool) -> Field<Item, u32> {
    let fs = Item::fields();
    match (f, plain) {
        (U32F::Age, false) => fs.age,
        (U32F::Age, true) => fs.age_plain,
        (U32F::Rank, false) => fs.rank,
        (U32F::Rank, true) => fs.rank_plain,
    }
}

fn str_field_of(f: StrF, plain: bool) -> Field<Item, String> {
    let fs = Item::fields();
    match (f, plain) {
        (StrF::City, false) => fs.city,
        (StrF::City, true) => fs.city_plain,
        (StrF::Code, false) => fs.code,
        (StrF::Code, true) => fs.code_plain,
        (StrF::Name, false) => fs.name,
        (StrF::Name, true) => fs.name_plain,
    }
}

fn build_cmp<T>(f: Field<Item, T>, c: &Cmp<T>) -> Predicate<Item>
where
    T: PartialOrd + Debug + Clone + Send + Sync + 'static,
{
    match c {
        Cmp::Eq(v) => f.eq(v.clone()),
        Cmp::Ne(v) => f.ne(v.clone()),
        Cmp::Lt(v) => f.lt(v.clone()),
        Cmp::Le(v) => f.le(v.clone()),
        Cmp::Gt(v) => f.gt(v.clone()),
        Cmp::Ge(v) => f.ge(v.clone()),
        Cmp::Between(lo, hi) => f.between::<T>((lo.clone(), hi.clone())),
        Cmp::In(vs) => f.is_in(vs.clone()),
    }
}

fn build_leaf(leaf: &Leaf, plain: bool) -> Predicate<Item> {
    let fs = Item::fields();
    match leaf {
        Leaf::U32(f, c) => build_cmp(u32_field(*f, plain), c),
        Leaf::Str(f, c) => build_cmp(str_field_of(*f, plain), c),
        Leaf::StrEqRef(f, v) => str_field_of(*f, plain).eq(*v),
        Leaf::StartsWith(f, p) => str_field_of(*f, plain).starts_with(p),
        Leaf::Contains(f, p) => str_field_of(*f, plain).contains(p),
        Leaf::Score(c) => {
            let f = if plain { fs.score_plain } else { fs.score };
            match c {
                OptCmp::Eq(v) => f.eq(*v),
                OptCmp::Ne(v) => f.ne(*v),
                OptCmp::Lt(v) => f.lt(*v),
                OptCmp::Le(v) => f.le(*v),
                OptCmp::Gt(v) => f.gt(*v),
                OptCmp::Ge(v) => f.ge(*v),
                OptCmp::IsSome => f.is_some(),
                OptCmp::IsNone => f.is_none(),
            }
        }
        Leaf::Active(c) => build_cmp(if plain { fs.active_plain } else { fs.active }, c),
    }
}

fn build_pred(p: &Pred, mode: Mode) -> Predicate<Item> {
    match p {
        Pred::Leaf(leaf, twin) => build_leaf(leaf, mode.plain(*twin)),
        Pred::And(a, b) => build_pred(a, mode).and(build_pred(b, mode)),
        Pred::Or(a, b) => build_pred(a, mode).or(build_pred(b, mode)),
        Pred::Not(a) => build_pred(a, mode).not(),
    }
}

fn build_order(o: &Order, mode: Mode) -> OrderBy<Item> {
    let fs = Item::fields();
    let plain = mode.plain(o.twin);
    macro_rules! pick {
        ($indexed:ident, $twin:ident) => {{
            let f = if plain { fs.$twin } else { fs.$indexed };
            if o.desc {
                f.desc()
            } else {
                f.asc()
            }
        }};
    }
    match o.key {
        KeyF::Age => pick!(age, age_plain),
        KeyF::Rank => pick!(rank, rank_plain),
        KeyF::City => pick!(city, city_plain),
        KeyF::Code => pick!(code, code_plain),
        KeyF::Name => pick!(name, name_plain),
        KeyF::Score => pick!(score, score_plain),
        KeyF::Active => pick!(active, active_plain),
    }
}

fn build(mut q: Query<Item>, spec: &Spec, mode: Mode) -> Query<Item> {
    for p in &spec.filters {
        q = q.filter(build_pred(p, mode));
    }
    if let Some(o) = &spec.replaced {
        q = q.order_by(build_order(o, mode));
    }
    for (i, o) in spec.order.iter().enumerate() {
        q = if i == 0 { q.order_by(build_order(o, mode)) } else { q.then_by(build_order(o, mode)) };
    }
    if let Some(n) = spec.offset {
        q = q.offset(n);
    }
    if let Some(n) = spec.limit {
        q = q.limit(n);
    }
    q
}

// ---------------------------------------------------------------------------------
// The model: a naive filter-and-sort

fn u32_value(f: U32F, plain: bool, it: &Item) -> u32 {
    match (f, plain) {
        (U32F::Age, false) => it.age,
        (U32F::Age, true) => it.age_plain,
        (U32F::Rank, false) => it.rank,
        (U32F::Rank, true) => it.rank_plain,
    }
}

fn str_value_of(f: StrF, plain: bool, it: &Item) -> &str {
    match (f, plain) {
        (StrF::City, false) => &it.city,
        (StrF::City, true) => &it.city_plain,
        (StrF::Code, false) => &it.code,
        (StrF::Code, true) => &it.code_plain,
        (StrF::Name, false) => &it.name,
        (StrF::Name, true) => &it.name_plain,
    }
}

fn in_bounds<T: PartialOrd>(v: &T, lo: &Bound<T>, hi: &Bound<T>) -> bool {
    let above = match lo {
        Bound::Included(lo) => v >= lo,
        Bound::Excluded(lo) => v > lo,
        Bound::Unbounded => true,
    };
    let below = match hi {
        Bound::Included(hi) => v <= hi,
        Bound::Excluded(hi) => v < hi,
        Bound::Unbounded => true,
    };
    above && below
}

fn eval_cmp<T: PartialOrd>(v: &T, c: &Cmp<T>) -> bool {
    match c {
        Cmp::Eq(x) => v == x,
        Cmp::Ne(x) => v != x,
        Cmp::Lt(x) => v < x,
        Cmp::Le(x) => v <= x,
        Cmp::Gt(x) => v > x,
        Cmp::Ge(x) => v >= x,
        Cmp::Between(lo, hi) => in_bounds(v, lo, hi),
        Cmp::In(xs) => xs.iter().any(|x| x == v),
    }
}

fn eval_leaf(leaf: &Leaf, plain: bool, it: &Item) -> bool {
    match leaf {
        Leaf::U32(f, c) => eval_cmp(&u32_value(*f, plain, it), c),
        Leaf::Str(f, c) => eval_cmp(&str_value_of(*f, plain, it).to_owned(), c),
        Leaf::StrEqRef(f, v) => str_value_of(*f, plain, it) == *v,
        Leaf::StartsWith(f, p) => str_value_of(*f, plain, it).starts_with(p),
        Leaf::Contains(f, p) => str_value_of(*f, plain, it).contains(p),
        Leaf::Score(c) => {
            // SQL NULL semantics: comparisons never match None.
            let v = if plain { it.score_plain } else { it.score };
            match c {
                OptCmp::Eq(x) => v == Some(*x),
                OptCmp::Ne(x) => v.is_some_and(|v| v != *x),
                OptCmp::Lt(x) => v.is_some_and(|v| v < *x),
                OptCmp::Le(x) => v.is_some_and(|v| v <= *x),
                OptCmp::Gt(x) => v.is_some_and(|v| v > *x),
                OptCmp::Ge(x) => v.is_some_and(|v| v >= *x),
                OptCmp::IsSome => v.is_some(),
                OptCmp::IsNone => v.is_none(),
            }
        }
        Leaf::Active(c) => eval_cmp(if plain { &it.active_plain } else { &it.active }, c),
    }
}

fn eval(p: &Pred, mode: Mode, it: &Item) -> bool {
    match p {
        Pred::Leaf(leaf, twin) => eval_leaf(leaf, mode.plain(*twin), it),
        Pred::And(a, b) => eval(a, mode, it) && eval(b, mode, it),
        Pred::Or(a, b) => eval(a, mode, it) || eval(b, mode, it),
        Pred::Not(a) => !eval(a, mode, it),
    }
}

fn order_cmp(o: &Order, mode: Mode, a: &Item, b: &Item) -> Ordering {
    let plain = mode.plain(o.twin);
    let ord = match (o.key, plain) {
        (KeyF::Age, false) => a.age.cmp(&b.age),
        (KeyF::Age, true) => a.age_plain.cmp(&b.age_plain),
        (KeyF::Rank, false) => a.rank.cmp(&b.rank),
        (KeyF::Rank, true) => a.rank_plain.cmp(&b.rank_plain),
        (KeyF::City, false) => a.city.cmp(&b.city),
        (KeyF::City, true) => a.city_plain.cmp(&b.city_plain),
        (KeyF::Code, false) => a.code.cmp(&b.code),
        (KeyF::Code, true) => a.code_plain.cmp(&b.code_plain),
        (KeyF::Name, false) => a.name.cmp(&b.name),
        (KeyF::Name, true) => a.name_plain.cmp(&b.name_plain),
        // None sorts first ascending, last descending.
        (KeyF::Score, false) => a.score.cmp(&b.score),
        (KeyF::Score, true) => a.score_plain.cmp(&b.score_plain),
        (KeyF::Active, false) => a.active.cmp(&b.active),
        (KeyF::Active, true) => a.active_plain.cmp(&b.active_plain),
    };
    if o.desc {
        ord.reverse()
    } else {
        ord
    }
}

/// The records that match every filter, sorted by the order keys then by id.
fn model_matches(all: &[Item], spec: &Spec, mode: Mode) -> Vec<u32> {
    let mut out: Vec<&Item> = all.iter().filter(|r| spec.filters.iter().all(|p| eval(p, mode, r))).collect();
    out.sort_by(|a, b| {
        spec.order.iter().map(|o| order_cmp(o, mode, a, b)).find(|o| o.is_ne()).unwrap_or_else(|| a.id.cmp(&b.id))
    });
    out.into_iter().map(|r| r.id).collect()
}

fn page(ids: &[u32], spec: &Spec) -> Vec<u32> {
    let skipped = ids.iter().copied().skip(spec.offset.unwrap_or(0));
    match spec.limit {
        Some(n) => skipped.take(n).collect(),
        None => skipped.collect(),
    }
}

// ---------------------------------------------------------------------------------
// The plan the documented rules predict

/// `(name, unique, sorted)` of the index on the field a leaf reads, if any.
fn leaf_index(leaf: &Leaf, plain: bool) -> Option<(&'static str, bool, bool)> {
    if plain {
        return None;
    }
    Some(match leaf {
        Leaf::U32(U32F::Age, _) => ("age", false, true),
        Leaf::U32(U32F::Rank, _) => ("rank", true, true),
        Leaf::Str(f, _) | Leaf::StrEqRef(f, _) | Leaf::StartsWith(f, _) | Leaf::Contains(f, _) => match f {
            StrF::City => ("city", false, false),
            StrF::Code => ("code", true, false),
            StrF::Name => ("name", false, true),
        },
        Leaf::Score(_) => ("score", false, true),
        Leaf::Active(_) => ("active", false, false),
    })
}

/// What an index can answer of a predicate: `(rank, names of the indices that could
/// serve it at that rank)`; lower ranks are better: a unique equality, an equality,
/// a list, a range.
type Access = Option<(u8, BTreeSet<&'static str>)>;

fn best(a: Access, b: Access) -> Access {
    match (a, b) {
        (None, x) | (x, None) => x,
        (Some((ra, na)), Some((rb, nb))) => match ra.cmp(&rb) {
            Ordering::Less => Some((ra, na)),
            Ordering::Greater => Some((rb, nb)),
            Ordering::Equal => Some((ra, na.union(&nb).copied().collect())),
        },
    }
}

fn leaf_access(leaf: &Leaf, plain: bool) -> Access {
    let (name, unique, sorted) = leaf_index(leaf, plain)?;
    let rank = match leaf {
        Leaf::U32(_, c) => cmp_rank(c, unique, sorted)?,
        Leaf::Str(_, c) => cmp_rank(c, unique, sorted)?,
        Leaf::Active(c) => cmp_rank(c, unique, sorted)?,
        Leaf::StrEqRef(..) => eq_rank(unique),
        Leaf::StartsWith(..) | Leaf::Contains(..) => return None,
        // Equality and ranges on an Option field use its (sorted) index.
        Leaf::Score(OptCmp::Eq(_)) => eq_rank(unique),
        Leaf::Score(OptCmp::Lt(_) | OptCmp::Le(_) | OptCmp::Gt(_) | OptCmp::Ge(_)) if sorted => 3,
        Leaf::Score(_) => return None,
    };
    Some((rank, BTreeSet::from([name])))
}

fn eq_rank(unique: bool) -> u8 {
    if unique {
        0
    } else {
        1
    }
}

fn cmp_rank<V>(c: &Cmp<V>, unique: bool, sorted: bool) -> Option<u8> {
    match c {
        Cmp::Eq(_) => Some(eq_rank(unique)),
        Cmp::In(_) => Some(2),
        Cmp::Lt(_) | Cmp::Le(_) | Cmp::Gt(_) | Cmp::Ge(_) | Cmp::Between(..) if sorted => Some(3),
        _ => None,
    }
}

fn access(p: &Pred, mode: Mode) -> Access {
    match p {
        Pred::Leaf(leaf, twin) => leaf_access(leaf, mode.plain(*twin)),
        // Either side's index serves a conjunction.
        Pred::And(a, b) => best(access(a, mode), access(b, mode)),
        Pred::Or(..) | Pred::Not(..) => None,
    }
}

/// The index names the plan may use; empty for a scan.
fn expected_indices(spec: &Spec, mode: Mode) -> BTreeSet<&'static str> {
    if let Some((_, names)) = spec.filters.iter().map(|p| access(p, mode)).fold(None, best) {
        return names;
    }
    // An order_by on a sorted index plus a limit walks the index.
    if let ([only], Some(_)) = (spec.order.as_slice(), spec.limit) {
        if !mode.plain(only.twin) {
            match only.key {
                KeyF::Age => return BTreeSet::from(["age"]),
                KeyF::Rank => return BTreeSet::from(["rank"]),
                KeyF::Name => return BTreeSet::from(["name"]),
                KeyF::Score => return BTreeSet::from(["score"]),
                // The rest are not sorted.
                _ => {}
            }
        }
    }
    BTreeSet::new()
}

// ---------------------------------------------------------------------------------
// The property

/// Writes `data` into the store and returns the model: the records as the test
/// wrote them, by id, computed without reading the store.
fn load(store: &Store, data: &Data) -> BTreeMap<u32, Item> {
    let items = store.collection::<Item>().unwrap();
    let mut model = BTreeMap::new();
    for (id, rank, code, v) in &data.rows {
        let record = item(*id, *rank, *code, v);
        items.insert(record.clone()).unwrap();
        model.insert(*id, record);
    }
    for change in &data.changes {
        match change {
            Change::Update(i, v) => {
                if let Some((id, ..)) = data.rows.get(*i) {
                    let result = items.update(id, |it| apply(it, v));
                    match model.get_mut(id) {
                        Some(record) => {
                            result.unwrap();
                            apply(record, v);
                        }
                        // Removed already: the update must fail.
                        None => assert!(result.is_err(), "update of removed {id} succeeded"),
                    }
                }
            }
            Change::Remove(i) => {
                if let Some((id, ..)) = data.rows.get(*i) {
                    let removed = items.remove(id).unwrap();
                    assert_eq!(removed.is_some(), model.remove(id).is_some(), "remove of {id}");
                }
            }
        }
    }
    model
}

fn ids_of(records: &[Arc<Item>]) -> Vec<u32> {
    records.iter().map(|r| r.id).collect()
}

fn check(store: &Store, model: &BTreeMap<u32, Item>, spec: &Spec) {
    let items = store.collection::<Item>().unwrap();
    let all: Vec<Item> = model.values().cloned().collect();
    let mut results = Vec::new();
    for mode in [Mode::Indexed, Mode::Plain, Mode::Mixed] {
        let matching = model_matches(&all, spec, mode);
        let expected = page(&matching, spec);
        let query = build(items.query(), spec, mode);
        let plan = query.explain();
        let context = format!("{mode:?} {spec:?}\nplan:\n{plan}");

        let got = query.collect();
        assert_eq!(ids_of(&got), expected, "collect: {context}");
        assert_eq!(query.ids(), expected, "ids: {context}");
        assert_eq!(query.count(), matching.len(), "count ignores offset and limit: {context}");
        if spec.limit != Some(0) {
            // limit(0) is checked on its own: `first_respects_limit_zero`.
            assert_eq!(query.first().map(|r| r.id), expected.first().copied(), "first: {context}");
        }
        for r in &got {
            // Results are the records as written.
            assert_eq!(Some(&**r), model.get(&r.id), "{context}");
        }

        // The plan follows the documented rules; it never changes the results.
        let wanted = expected_indices(spec, mode);
        match plan.index() {
            None => assert!(wanted.is_empty(), "expected one of the indices {wanted:?}: {context}"),
            Some(name) => assert!(wanted.contains(name), "index {name} not in {wanted:?}: {context}"),
        }
        assert_eq!(plan.is_scan(), plan.index().is_none(), "{context}");
        if mode == Mode::Plain {
            assert!(plan.is_scan(), "unindexed twins never use an index: {context}");
        }
        assert!(!plan.to_string().is_empty());

        // The same query in a transaction's view (no writes): same results, scans.
        store
            .transaction(|tx| {
                let query = build(tx.query::<Item>()?, spec, mode);
                assert!(query.explain().is_scan(), "a transaction view scans: {context}");
                assert_eq!(query.ids(), expected, "transaction view: {context}");
                assert_eq!(query.count(), matching.len(), "transaction view count: {context}");
                Ok::<_, shelf::Error>(())
            })
            .unwrap();
        results.push(expected);
    }
    assert_eq!(results[0], results[1], "indexed and unindexed twins agree: {spec:?}");
    assert_eq!(results[0], results[2], "indexed and mixed agree: {spec:?}");
}

fn open(backend: &Backend) -> Store {
    backend.builder().register::<Item>().open().unwrap()
}

/// Loads `data` and checks every query of `specs` against the model, on the store
/// that wrote and (on PostgreSQL) on a second instance that followed the feed.
fn queries_match(backend: &Backend, data: &Data, specs: &[Spec]) {
    let store = open(backend);
    let other = backend.is_postgres().then(|| open(backend));
    let model = load(&store, data);
    if let Some(other) = &other {
        other.sync().unwrap();
    }
    for spec in specs {
        check(&store, &model, spec);
        if let Some(other) = &other {
            check(other, &model, spec);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, ..ProptestConfig::default() })]

    #[test]
    fn queries_match_a_naive_filter_and_sort(data in data(), specs in proptest::collection::vec(spec(), 1..10)) {
        queries_match(&Backend::files(), &data, &specs);
    }
}

proptest! {
    // Each case makes a schema and commits each write in PostgreSQL.
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn postgres_queries_match_a_naive_filter_and_sort_in_both_instances(
        data in data(),
        specs in proptest::collection::vec(spec(), 1..10),
    ) {
        if let Some(backend) = Backend::postgres_case("query_model") {
            queries_match(&backend, &data, &specs);
        }
    }
}

// ---------------------------------------------------------------------------------
// Fixed cases: the plans for the indexed field and its twin, side by side.

fn fixed_store(backend: &Backend) -> Store {
    let store = open(backend);
    let rows = [
        (1, 30, "a", "ann", Some(1), true),
        (2, 17, "ab", "bob", None, false),
        (3, 30, "b", "anna", Some(3), true),
        (4, 41, "a", "bo", Some(1), false),
        (5, 17, "ba", "Bob", None, true),
        (6, 25, "a", "ann", Some(2), true),
    ];
    for (id, age, city, name, score, active) in rows {
        let v = Values { age, city, name, score, active };
        store.collection::<Item>().unwrap().insert(item(id, 10 + id, id, &v)).unwrap();
    }
    store
}

/// Runs the query on the indexed field and on its twin: the results are equal, the
/// plans are as given.
fn twins(
    store: &Store,
    indexed: impl Fn(Query<Item>) -> Query<Item>,
    plain: impl Fn(Query<Item>) -> Query<Item>,
    index: Option<&str>,
) -> Vec<u32> {
    let items = store.collection::<Item>().unwrap();
    let (a, b) = (indexed(items.query()), plain(items.query()));
    assert_eq!(a.explain().index(), index, "indexed plan:\n{}", a.explain());
    assert_eq!(b.explain().index(), None, "twin plan:\n{}", b.explain());
    assert!(b.explain().is_scan());
    assert_eq!(a.ids(), b.ids(), "indexed plan:\n{}\ntwin plan:\n{}", a.explain(), b.explain());
    a.ids()
}

on_each_backend! {
fn indexed_fields_and_their_twins_plan_differently_and_agree(backend) {
    let store = fixed_store(&backend);
    let f = Item::fields();

    // Equality on a hash index, on a unique index, on an Option index, on a bool index.
    assert_eq!(
        twins(&store, |q| q.filter(f.city.eq("a")), |q| q.filter(f.city_plain.eq("a")), Some("city")),
        [1, 4, 6]
    );
    assert_eq!(
        twins(&store, |q| q.filter(f.code.eq(code_of(3))), |q| q.filter(f.code_plain.eq(code_of(3))), Some("code")),
        [3]
    );
    assert_eq!(twins(&store, |q| q.filter(f.score.eq(1)), |q| q.filter(f.score_plain.eq(1)), Some("score")), [1, 4]);
    assert_eq!(
        twins(&store, |q| q.filter(f.active.eq(false)), |q| q.filter(f.active_plain.eq(false)), Some("active")),
        [2, 4]
    );
    // is_in on an index.
    assert_eq!(
        twins(&store, |q| q.filter(f.age.is_in([17, 41])), |q| q.filter(f.age_plain.is_in([17, 41])), Some("age")),
        [2, 4, 5]
    );
    // Ranges on a sorted index; results still sorted by id without an order_by.
    assert_eq!(twins(&store, |q| q.filter(f.age.gt(20)), |q| q.filter(f.age_plain.gt(20)), Some("age")), [1, 3, 4, 6]);
    assert_eq!(
        twins(&store, |q| q.filter(f.age.between(17..30)), |q| q.filter(f.age_plain.between(17..30)), Some("age")),
        [2, 5, 6]
    );
    assert_eq!(
        twins(
            &store,
            |q| q.filter(f.name.between("an".."b")),
            |q| q.filter(f.name_plain.between("an".."b")),
            Some("name")
        ),
        [1, 3, 6]
    );
    // A range on a hash index scans.
    assert_eq!(twins(&store, |q| q.filter(f.city.gt("a")), |q| q.filter(f.city_plain.gt("a")), None), [2, 3, 5]);
    // Ordered walk: order_by on a sorted index plus limit; desc ties broken by id ascending.
    assert_eq!(
        twins(&store, |q| q.order_by(f.age.desc()).limit(3), |q| q.order_by(f.age_plain.desc()).limit(3), Some("age")),
        [4, 1, 3]
    );
    assert_eq!(
        twins(
            &store,
            |q| q.order_by(f.age.asc()).offset(1).limit(3),
            |q| q.order_by(f.age_plain.asc()).offset(1).limit(3),
            Some("age")
        ),
        [5, 6, 1]
    );
    assert_eq!(
        twins(
            &store,
            |q| q.filter(f.active.ne(false)).order_by(f.name.asc()).limit(2),
            |q| q.filter(f.active_plain.ne(false)).order_by(f.name_plain.asc()).limit(2),
            Some("name")
        ),
        [5, 1]
    );
    // No limit, or a then_by: a sort, not a walk.
    assert_eq!(twins(&store, |q| q.order_by(f.age.asc()), |q| q.order_by(f.age_plain.asc()), None), [2, 5, 6, 1, 3, 4]);
    assert_eq!(
        twins(
            &store,
            |q| q.order_by(f.age.asc()).then_by(f.name.desc()).limit(4),
            |q| q.order_by(f.age_plain.asc()).then_by(f.name_plain.desc()).limit(4),
            None
        ),
        [2, 5, 6, 3]
    );
    // A disjunction or a negation cannot use an index; a conjunction can.
    assert_eq!(
        twins(
            &store,
            |q| q.filter(f.city.eq("a").or(f.age.eq(17))),
            |q| q.filter(f.city_plain.eq("a").or(f.age_plain.eq(17))),
            None
        ),
        [1, 2, 4, 5, 6]
    );
    assert_eq!(
        twins(&store, |q| q.filter(f.city.eq("a").not()), |q| q.filter(f.city_plain.eq("a").not()), None),
        [2, 3, 5]
    );
    assert_eq!(
        twins(
            &store,
            |q| q.filter(f.name.starts_with("an").and(f.code.eq(code_of(6)))),
            |q| q.filter(f.name_plain.starts_with("an").and(f.code_plain.eq(code_of(6)))),
            Some("code")
        ),
        [6]
    );
    // A unique equality is preferred over a plain equality and a range.
    assert_eq!(
        twins(
            &store,
            |q| q.filter(f.age.gt(0)).filter(f.city.eq("a")).filter(f.rank.eq(14)),
            |q| q.filter(f.age_plain.gt(0)).filter(f.city_plain.eq("a")).filter(f.rank_plain.eq(14)),
            Some("rank")
        ),
        [4]
    );
    // Option comparisons never match None; ordering puts None first ascending.
    assert_eq!(twins(&store, |q| q.filter(f.score.lt(3)), |q| q.filter(f.score_plain.lt(3)), Some("score")), [1, 4, 6]);
    assert_eq!(twins(&store, |q| q.filter(f.score.ne(1)), |q| q.filter(f.score_plain.ne(1)), None), [3, 6]);
    assert_eq!(
        twins(&store, |q| q.order_by(f.score.asc()), |q| q.order_by(f.score_plain.asc()), None),
        [2, 5, 1, 4, 6, 3]
    );
    assert_eq!(
        twins(&store, |q| q.order_by(f.score.desc()), |q| q.order_by(f.score_plain.desc()), None),
        [3, 6, 1, 4, 2, 5]
    );
    // With a limit, the Option field's sorted index is walked: None first ascending
    // (records 2 and 5, found apart from the index), None last descending.
    assert_eq!(
        twins(
            &store,
            |q| q.order_by(f.score.asc()).limit(3),
            |q| q.order_by(f.score_plain.asc()).limit(3),
            Some("score")
        ),
        [2, 5, 1]
    );
    assert_eq!(
        twins(
            &store,
            |q| q.order_by(f.score.desc()).limit(5),
            |q| q.order_by(f.score_plain.desc()).limit(5),
            Some("score")
        ),
        [3, 6, 1, 4, 2]
    );
    // Empty and inverted ranges answer nothing rather than panicking.
    assert_eq!(
        twins(
            &store,
            |q| q.filter(f.age.is_in(Vec::<u32>::new())),
            |q| q.filter(f.age_plain.is_in(Vec::<u32>::new())),
            Some("age")
        ),
        [] as [u32; 0]
    );
    #[allow(clippy::reversed_empty_ranges)]
    let inverted =
        twins(&store, |q| q.filter(f.age.between(40..20)), |q| q.filter(f.age_plain.between(40..20)), Some("age"));
    assert!(inverted.is_empty());
    let excluded = |v: u32| (Bound::Excluded(v), Bound::Excluded(v));
    assert!(twins(
        &store,
        |q| q.filter(f.age.between(excluded(30))),
        |q| q.filter(f.age_plain.between(excluded(30))),
        Some("age")
    )
    .is_empty());
}

// A limit that is "everything" (`usize::MAX`) with an offset, on an ordered walk.
fn huge_limit_with_offset_on_an_ordered_walk(backend) {
    let store = fixed_store(&backend);
    let f = Item::fields();
    let items = store.collection::<Item>().unwrap();
    let walk = items.query().order_by(f.age.asc()).offset(2).limit(usize::MAX);
    assert_eq!(walk.explain().index(), Some("age"));
    assert_eq!(walk.ids(), [6, 1, 3, 4]);
    let sort = items.query().order_by(f.age_plain.asc()).offset(2).limit(usize::MAX);
    assert_eq!(sort.ids(), [6, 1, 3, 4]);
}

// `first()` is the first record `collect()` returns; with `limit(0)` there is none.
fn first_respects_limit_zero(backend) {
    let store = fixed_store(&backend);
    let f = Item::fields();
    let items = store.collection::<Item>().unwrap();
    for query in
        [items.query().limit(0), items.query().order_by(f.age.asc()).limit(0), items.query().offset(1).limit(0)]
    {
        assert!(query.collect().is_empty(), "plan:\n{}", query.explain());
        assert_eq!(query.first().map(|r| r.id), None, "plan:\n{}", query.explain());
    }
}
}

/// The issue: "A composite index serves an equality on its prefix."
#[test]
fn composite_index_serves_an_equality_on_its_prefix() {
    #[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
    #[storage(memory)]
    #[index((country, age))]
    struct Person {
        #[id]
        id: u32,
        country: String,
        age: u32,
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path()).register::<Person>().open().unwrap();
    let people = store.collection::<Person>().unwrap();
    for (id, country, age) in [(1, "DE", 30), (2, "FR", 30), (3, "DE", 20)] {
        people.insert(Person { id, country: country.into(), age }).unwrap();
    }
    let f = Person::fields();
    let query = people.query().filter(f.country.eq("DE"));
    assert_eq!(query.ids(), [1, 3]);
    assert_eq!(query.explain().index(), Some("country_and_age"), "plan:\n{}", query.explain());
}
