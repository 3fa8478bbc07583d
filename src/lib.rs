//! # Shelf
//!
//! An embedded, file-backed, typed entity store. Annotate a struct with
//! `#[derive(Entity)]`, register it, and get a typed collection that lives in
//! memory and is written to disk in batches as atomic, human-readable JSON files.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use shelf::{Entity, Store};
//!
//! #[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
//! struct User {
//!     #[id]
//!     id: String,
//!     name: String,
//! }
//!
//! # fn main() -> shelf::Result<()> {
//! # let dir = tempfile::tempdir().unwrap();
//! let store = Store::builder(dir.path()).register::<User>().open()?;
//! let users = store.collection::<User>()?;
//! users.insert(User { id: "ada".into(), name: "Ada".into() })?;
//! users.update(&"ada".to_string(), |u| u.name = "Ada Lovelace".into())?;
//! assert_eq!(users.get(&"ada".to_string()).unwrap().name, "Ada Lovelace");
//! store.close()?; // flush, unlock; dropping the last handle does the same
//! # Ok(()) }
//! ```
//!
//! ## Attributes of `#[derive(Entity)]`
//!
//! | attribute | where | meaning |
//! |---|---|---|
//! | `#[id]` | field | the record's id: `String`, an integer, or any [`Key`] |
//! | `#[id(auto)]` | field | an integer id assigned by `insert`, counter kept across reopen |
//! | `#[entity(collection = "name")]` | struct | the collection name; default: the snake_case type name |
//! | `#[storage(per_record)]` | struct | one JSON file per record (the default); `shard = N` spreads them over subdirectories |
//! | `#[storage(collection_file)]` | struct | the whole collection in one JSON-lines file |
//! | `#[storage(memory)]` | struct | nothing on disk |
//! | `#[storage(.., wal)]`, `#[storage(.., compress)]` | struct | log commits before they return; zstd-compress files |
//! | `#[index]`, `#[index(unique)]`, `#[index(sorted)]`, `#[index(each)]` | field | a secondary index and its typed lookups |
//! | `#[index((a, b))]`, `#[index((a, b), unique)]` | struct | a composite index: `by_a_and_b(..)` |
//! | `#[belongs_to(Parent)]`, options `on_delete = restrict / cascade / detach / ignore`, `check = false` (then `ignore` by default) | field | a foreign key: indexed, checked, with an accessor |
//! | `#[has_many(items: Item, key = field)]` | struct | 1:N: `parent.items(&store)` |
//! | `#[has_many(items: Item, through = Join)]` | struct | M:N through a join entity: `items`, `link_items`, `unlink_items` |
//! | `#[has_one(item: Item, key = field)]` | struct | 1:1: `parent.item(&store)` returns the child, if any; on the child, `#[id] #[belongs_to(Parent)]` makes the id the key |
//!
//! The derive generates `<Type>Collection`, the typed handle that
//! [`Store::collection`] returns (it dereferences to [`Collection<T>`] and adds the
//! index lookups), and `<Type>Fields`, returned by `Type::fields()`, for typed
//! [queries](Query). Everything else it generates sits inside an anonymous
//! `const _: () = { ... }` block. A raw identifier is named without `r#`
//! (`#[index] r#type` gives `by_type`). The README has a tour of everything, and
//! the naming rules, as doctests.
//!
//! ### Names refined from the design
//!
//! - [`Store::collection`] returns a `Result` (an unregistered type is an error, not a panic).
//! - [`Collection::remove`] returns `Ok(None)` for a missing id; [`Store::close`] takes `&self`.
//! - Composite indices are written as a tuple, `#[index((a, b))]`: the flat form trips
//!   clippy's `duplicated_attributes` lint in user crates.
//! - `Option` fields are [`OptField`]s in queries: comparisons never match `None`.

//! ## Durability
//!
//! Writes change memory at once. The background flusher (every 2 s by default, see
//! [`StoreBuilder::flush_interval`]) writes changed records; [`Store::flush`] and
//! [`Store::close`] do it on demand. A crash loses at most the writes since the last
//! completed flush, and never leaves a torn file: every file is replaced by writing a
//! temp file, syncing it, renaming it over the target and syncing the directory.

pub use shelf_macros::Entity;
pub use shelf_runtime::*;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme {}
