#![deny(warnings)]

// Every index kind and the lookups it generates, type-checked (nothing here runs).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use shelf::{Entity, Error, Store};

/// A key type of the user's own: taken by reference.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Sku {
    code: String,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
#[index((country, age), sorted)]
#[index((country, level), unique)]
#[index((sku, level))]
struct User {
    #[id]
    id: String,
    #[index(unique)]
    email: String,
    #[index]
    country: String,
    #[index(sorted)]
    age: u32,
    #[index(unique, sorted)]
    rank: i64,
    #[index(sorted)]
    name: String,
    #[index]
    nick: Option<String>,
    #[index(unique)]
    badge: Option<u32>,
    #[index(each)]
    tags: Vec<String>,
    #[index(each)]
    lucky: Vec<u8>,
    #[index]
    sku: Sku,
    #[index(sorted)]
    initial: char,
    #[index]
    active: bool,
    level: u8,
    // Not indexed, and fine as a plain field.
    height: f64,
}

/// Indices of a memory collection live in memory only.
#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
#[storage(memory)]
struct Session {
    #[id]
    token: String,
    #[index]
    user_id: String,
}

fn _lookups(store: &Store) -> shelf::Result<()> {
    let users = store.collection::<User>()?;
    // unique: Option; String keys by &str.
    let _: Option<Arc<User>> = users.by_email("ada@example.com");
    let email = String::from("bob@example.com");
    let _: Option<Arc<User>> = users.by_email(&email);
    // non-unique: Vec, and a count.
    let _: Vec<Arc<User>> = users.by_country("DE");
    let _: usize = users.count_by_country("DE");
    // sorted: ranges in key order; integers by value.
    let _: Vec<Arc<User>> = users.by_age(30);
    let _: Vec<Arc<User>> = users.range_by_age(18..65);
    let _: Vec<Arc<User>> = users.range_by_age(..=17);
    let _: Option<Arc<User>> = users.by_rank(-1);
    let _: Vec<Arc<User>> = users.range_by_rank(..);
    let _: Vec<Arc<User>> = users.range_by_name("a".."n");
    let _: Vec<Arc<User>> = users.range_by_initial('a'..='f');
    // Option fields index Some values, looked up by the inner type.
    let _: Vec<Arc<User>> = users.by_nick("ada");
    let _: Option<Arc<User>> = users.by_badge(7);
    // each: one entry per element, looked up by the element type.
    let _: Vec<Arc<User>> = users.by_tags("rust");
    let _: usize = users.count_by_lucky(7);
    // Other key types by reference; bool by value.
    let _: Vec<Arc<User>> = users.by_sku(&Sku { code: "x".into() });
    let _: Vec<Arc<User>> = users.by_active(true);
    // Composites: one argument per field, in order.
    let _: Vec<Arc<User>> = users.by_country_and_age("DE", 30);
    let _: usize = users.count_by_country_and_age("DE", 30);
    let _: Vec<Arc<User>> = users.range_by_country_and_age(("DE".to_owned(), 18)..("DE".to_owned(), 65));
    let _: Option<Arc<User>> = users.by_country_and_level("DE", 3);
    let _: Vec<Arc<User>> = users.by_sku_and_level(&Sku { code: "x".into() }, 1);
    // The handle is still a collection.
    let _: Option<Arc<User>> = users.get(&"ada".to_owned());
    let _: usize = users.len();

    let sessions = store.collection::<Session>()?;
    let _: Vec<Arc<Session>> = sessions.by_user_id("ada");
    Ok(())
}

fn _unique_violation(store: &Store, user: User) -> bool {
    let users = store.collection::<User>().unwrap();
    matches!(users.insert(user), Err(Error::UniqueViolation { .. }))
}

fn main() {}
