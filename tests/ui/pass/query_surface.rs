#![deny(warnings)]

// The whole typed-query surface, type-checked (nothing here runs).

use std::collections::{BTreeSet, HashSet};
use std::ops::Bound;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use shelf::{Entity, Field, OptField, OrderBy, Plan, Predicate, Query, Store};

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, PartialOrd)]
struct Address {
    city: String,
    zip: u32,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
#[index((country, age))]
struct User {
    #[id]
    id: String,
    #[index]
    country: String,
    #[index(sorted)]
    age: u32,
    #[index(unique)]
    email: String,
    // Renamed for serde; queries use the Rust name.
    #[serde(rename = "full_name")]
    name: String,
    active: bool,
    #[index]
    nick: Option<String>,
    score: Option<u32>,
    height: f64,
    address: Address,
    #[index(each)]
    tags: Vec<String>,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
struct Order {
    #[id(auto)]
    id: u64,
    total_cents: u64,
}

/// The generated field set: one typed handle per struct field.
fn fields() {
    let f = User::fields();
    let _: Field<User, String> = f.id;
    let _: Field<User, String> = f.country;
    let _: Field<User, u32> = f.age;
    let _: Field<User, String> = f.name;
    let _: Field<User, bool> = f.active;
    let _: OptField<User, String> = f.nick;
    let _: OptField<User, u32> = f.score;
    let _: Field<User, f64> = f.height;
    let _: Field<User, Address> = f.address;
    let _: Field<User, Vec<String>> = f.tags;
    let _: &'static str = f.name.name();
    let _: &'static str = f.nick.name();
    // Field sets and fields are Copy and Debug.
    let g = f;
    let _ = (f, g, format!("{f:?} {:?} {:?}", f.age, f.score));
    let _: Field<Order, u64> = Order::fields().total_cents;
}

/// Every predicate, with the value types each field accepts.
fn predicates() -> Vec<Predicate<User>> {
    let f = User::fields();
    let owned = String::from("DE");
    vec![
        // Plain fields: comparisons take the field's type.
        f.age.eq(30),
        f.age.ne(30),
        f.age.lt(30),
        f.age.le(30),
        f.age.gt(30),
        f.age.ge(30u32),
        f.age.between(18..65),
        f.age.between(18..=65),
        f.age.between(18..),
        f.age.between(..65),
        f.age.between(..=65),
        f.age.between::<u32>(..),
        f.age.between((Bound::Excluded(18), Bound::Included(65))),
        f.age.is_in([18, 21]),
        f.age.is_in(vec![18u32, 21]),
        f.age.is_in(HashSet::from([18u32])),
        f.age.is_in((1..4).map(|n| n * 10)),
        // String fields take &str, &String and String.
        f.country.eq("DE"),
        f.country.eq(&owned),
        f.country.eq(owned.clone()),
        f.country.ne("FR"),
        f.name.lt("m"),
        f.name.between("a".."n"),
        f.name.between(String::from("a")..=String::from("n")),
        f.country.is_in(["DE", "FR"]),
        f.country.is_in(BTreeSet::from([String::from("DE")])),
        f.country.is_in(vec![&owned]),
        f.name.starts_with("An"),
        f.name.contains(&owned),
        f.active.eq(true),
        f.height.gt(1.8),
        f.height.between(1.5..2.0),
        f.address.eq(Address { city: "Berlin".into(), zip: 10115 }),
        f.tags.eq(vec!["a".to_string()]),
        // Option fields compare with the inner type and never match None.
        f.nick.eq("ann"),
        f.nick.ne(String::from("bob")),
        f.nick.lt("m"),
        f.score.eq(3),
        f.score.ne(3),
        f.score.lt(3),
        f.score.le(3),
        f.score.gt(3),
        f.score.ge(3),
        f.score.is_some(),
        f.nick.is_none(),
        // Combinators.
        f.age.gt(17).and(f.country.eq("DE")),
        f.age.lt(18).or(f.score.is_none()),
        f.active.eq(true).not(),
        f.age.gt(17).and(f.name.starts_with("A").or(f.name.contains("b")).not()),
    ]
}

/// Orderings: only Ord fields, ascending or descending.
fn orderings() -> Vec<OrderBy<User>> {
    let f = User::fields();
    vec![f.age.asc(), f.age.desc(), f.name.asc(), f.active.desc(), f.score.asc(), f.nick.desc(), f.tags.asc()]
}

/// A query can be built in one place and run in another.
fn adults(store: &Store) -> shelf::Result<Query<User>> {
    let f = User::fields();
    Ok(store.collection::<User>()?.query().filter(f.age.ge(18)))
}

fn _use(store: &Store) -> shelf::Result<()> {
    let users = store.collection::<User>()?;
    let f = User::fields();

    let query = users
        .query()
        .filter(f.country.eq("DE"))
        .filter(f.age.between(18..65))
        .order_by(f.name.asc())
        .then_by(f.age.desc())
        .then_by(f.score.asc())
        .offset(10)
        .limit(20);
    let _: Vec<Arc<User>> = query.collect();
    let _: Option<Arc<User>> = query.first();
    let _: usize = query.count();
    let _: Vec<String> = query.ids();
    let plan: Plan = query.explain();
    let _: Option<&str> = plan.index();
    let _: bool = plan.is_scan();
    let _: String = plan.to_string();
    let _ = format!("{plan} {plan:?}");
    let _ = plan.clone() == plan;

    // Predicates and orderings are values: cloned, printed, reused, tested directly.
    let german = f.country.eq("DE");
    let _ = users.query().filter(german.clone()).count();
    let _ = format!("{german:?} {:?}", f.age.asc());
    let record = users.get(&"ada".to_string());
    let _: bool = record.as_deref().is_some_and(|u| german.matches(u));
    for p in predicates() {
        let _ = users.query().filter(p).ids();
    }
    for o in orderings() {
        let _ = users.query().order_by(o.clone()).then_by(o).limit(1).first();
    }
    let _ = adults(store)?.order_by(f.age.asc()).collect();
    let _ = users.watch_where(f.age.gt(17));

    // Inside a transaction, queries see the transaction's own writes.
    let n: usize = store.transaction(|tx| {
        tx.insert(Order { id: 0, total_cents: 100 })?;
        let big = tx.query::<Order>()?.filter(Order::fields().total_cents.gt(50)).order_by(Order::fields().id.desc());
        let _: Vec<u64> = big.ids();
        let _: Option<Arc<Order>> = big.first();
        let _: Plan = big.explain();
        Ok::<_, shelf::Error>(tx.query::<User>()?.filter(f.age.gt(17)).count())
    })?;
    let _ = n;
    Ok(())
}

fn main() {
    fields();
}
