//! The generated data every subject gets, and Shelf's entity types for it.
//!
//! Users are about 200 bytes of compact JSON, with a unique `email` and an indexed
//! `country`; each user has [`ORDERS_PER_USER`] orders that point at it by `user_id`.
//! The same plain [`User`] and [`Order`] values are turned into each subject's own
//! types (Shelf entities, SQLite rows, redb JSON values, native_db models), so every
//! subject stores the same content.
//!
//! Shelf's storage strategy is an attribute, so each strategy gets its own pair of
//! entity types, made by [`shelf_kind!`] and used through the [`ShelfKind`] trait.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shelf::{Entity, Store, StoreBuilder};

/// Orders made for each user of the read workloads.
pub const ORDERS_PER_USER: usize = 3;

const COUNTRIES: [&str; 8] = ["DE", "FR", "GB", "US", "JP", "BR", "IN", "NG"];

/// A user as every subject stores it: about 200 bytes as compact JSON.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct User {
    pub id: u64,
    pub email: String,
    pub name: String,
    pub country: String,
    pub age: u32,
    pub created_at: u64,
    pub active: bool,
    pub street: String,
    pub city: String,
}

/// An order of a user: the 1:N side.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Order {
    pub id: u64,
    pub user_id: u64,
    pub total_cents: u64,
    pub item: String,
}

/// User number `i` (ids start at 1, emails are unique).
pub fn user(i: u64) -> User {
    User {
        id: i,
        email: format!("user.{i}@example.com"),
        name: format!("User Number {i}"),
        country: COUNTRIES[(i % COUNTRIES.len() as u64) as usize].to_owned(),
        age: 18 + (i % 70) as u32,
        created_at: 1_700_000_000 + i,
        active: !i.is_multiple_of(3),
        street: format!("{} Long Example Street, Apt {}", i % 997, i % 53),
        city: format!("Springfield District {}", i % 41),
    }
}

/// Users `first..first + count`.
pub fn users(first: u64, count: usize) -> Vec<User> {
    (first..first + count as u64).map(user).collect()
}

/// The orders of users `1..=users`: order `k` of user `u` has id `(u - 1) * ORDERS_PER_USER + k + 1`.
pub fn orders(users: usize) -> Vec<Order> {
    (0..(users * ORDERS_PER_USER) as u64)
        .map(|i| Order {
            id: i + 1,
            user_id: i / ORDERS_PER_USER as u64 + 1,
            total_cents: 100 + (i * 7919) % 100_000,
            item: format!("Catalogue item {}", i % 5003),
        })
        .collect()
}

/// Mean size of a user as compact JSON.
pub fn user_json_bytes(users: &[User]) -> usize {
    let total: usize = users.iter().map(|u| serde_json::to_vec(u).map(|v| v.len()).unwrap_or(0)).sum();
    total / users.len().max(1)
}

pub use crate::rng::Rng;

/// One way to keep the users and orders in Shelf: a storage strategy.
pub trait ShelfKind {
    /// How the table names the strategy, e.g. `per_record+compress`.
    const LABEL: &'static str;
    type U: Entity<Id = u64> + Clone;
    type O: Entity<Id = u64> + Clone;
    fn user(user: &User) -> Self::U;
    fn order(order: &Order) -> Self::O;
    /// The unique lookup `by_email`.
    fn by_email(users: &<Self::U as Entity>::Handle, email: &str) -> Option<Arc<Self::U>>;
    /// A change to a user: one year older.
    fn touch(user: &mut Self::U);
    /// The 1:N accessor `user.orders(&store)`.
    fn orders_of(store: &Store, user: &Self::U) -> shelf::Result<Vec<Arc<Self::O>>>;

    /// A builder with both entities registered.
    fn builder(dir: &std::path::Path) -> StoreBuilder {
        Store::builder(dir).register::<Self::U>().register::<Self::O>()
    }

    /// Opens a store whose background flusher never runs: only explicit flushes write.
    fn open_manual(dir: &std::path::Path) -> shelf::Result<Store> {
        Self::builder(dir).flush_interval(Duration::from_secs(24 * 3600)).open()
    }
}

/// Defines the entity pair of one storage strategy and its [`ShelfKind`].
macro_rules! shelf_kind {
    ($module:ident, $kind:ident, $user:ident, $order:ident, $label:literal, $($storage:tt)*) => {
        pub use $module::$kind;

        mod $module {
        // The derive's query types (`UserFields`) are not used by the benchmarks.
        #![allow(dead_code)]
        use super::*;

        #[derive(Entity, Serialize, Deserialize, Clone, Debug)]
        #[entity(collection = "user")]
        #[storage($($storage)*)]
        #[has_many(orders: $order, key = user_id)]
        pub struct $user {
            #[id]
            pub id: u64,
            #[index(unique)]
            pub email: String,
            pub name: String,
            #[index]
            pub country: String,
            pub age: u32,
            pub created_at: u64,
            pub active: bool,
            pub street: String,
            pub city: String,
        }

        #[derive(Entity, Serialize, Deserialize, Clone, Debug)]
        #[entity(collection = "order")]
        #[storage($($storage)*)]
        pub struct $order {
            #[id]
            pub id: u64,
            #[belongs_to($user)]
            pub user_id: u64,
            pub total_cents: u64,
            pub item: String,
        }

        /// The storage strategy named by its label.
        pub struct $kind;

        impl ShelfKind for $kind {
            const LABEL: &'static str = $label;
            type U = $user;
            type O = $order;

            fn user(u: &User) -> $user {
                $user {
                    id: u.id,
                    email: u.email.clone(),
                    name: u.name.clone(),
                    country: u.country.clone(),
                    age: u.age,
                    created_at: u.created_at,
                    active: u.active,
                    street: u.street.clone(),
                    city: u.city.clone(),
                }
            }

            fn order(o: &Order) -> $order {
                $order { id: o.id, user_id: o.user_id, total_cents: o.total_cents, item: o.item.clone() }
            }

            fn by_email(users: &<$user as Entity>::Handle, email: &str) -> Option<Arc<$user>> {
                users.by_email(email)
            }

            fn touch(user: &mut $user) {
                user.age += 1;
            }

            fn orders_of(store: &Store, user: &$user) -> shelf::Result<Vec<Arc<$order>>> {
                user.orders(store)
            }
        }
        }
    };
}

shelf_kind!(kind_per_record, PerRecord, PrUser, PrOrder, "per_record", per_record);
shelf_kind!(kind_per_record_z, PerRecordZ, PrzUser, PrzOrder, "per_record+compress", per_record, compress);
shelf_kind!(kind_collection_file, CollectionFile, CfUser, CfOrder, "collection_file", collection_file);
shelf_kind!(
    kind_collection_file_z,
    CollectionFileZ,
    CfzUser,
    CfzOrder,
    "collection_file+compress",
    collection_file,
    compress
);
shelf_kind!(kind_per_record_wal, PerRecordWal, PrwUser, PrwOrder, "per_record+wal", per_record, wal);

/// Bytes of the files under `dir`: `(apparent, allocated)`; allocated counts whole
/// blocks, which is what many small files really cost.
pub fn disk_usage(dir: &std::path::Path) -> std::io::Result<(u64, u64)> {
    let mut apparent = 0;
    let mut allocated = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                apparent += meta.len();
                allocated += blocks(&meta);
            }
        }
    }
    Ok((apparent, allocated))
}

#[cfg(unix)]
fn blocks(meta: &std::fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    meta.blocks() * 512
}

#[cfg(not(unix))]
fn blocks(meta: &std::fs::Metadata) -> u64 {
    meta.len()
}

/// `12.3 MB`.
pub fn fmt_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{:.2} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else {
        format!("{:.1} kB", b / 1e3)
    }
}
