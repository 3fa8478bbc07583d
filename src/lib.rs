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
//! | `#[storage(per_record)]` | struct | one JSON file per record (the default) |
//! | `#[storage(memory)]` | struct | nothing on disk |
//!
//! The derive also generates `<Type>Collection`, the typed handle that
//! [`Store::collection`] returns; it dereferences to [`Collection<T>`].
//!
//! ## Durability
//!
//! Writes change memory at once. The background flusher (every 2 s by default, see
//! [`StoreBuilder::flush_interval`]) writes changed records; [`Store::flush`] and
//! [`Store::close`] do it on demand. A crash loses at most the writes since the last
//! completed flush, and never leaves a torn file: every file is replaced by writing a
//! temp file, syncing it, renaming it over the target and syncing the directory.

pub use shelf_macros::Entity;
pub use shelf_runtime::*;
