//! The [`Entity`] trait that `#[derive(Entity)]` implements.

use std::any::Any;
use std::ops::Deref;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::handle::Collection;
use crate::index::IndexMaint;
use crate::key::Key;
use crate::relation::ForeignKeySpec;

/// Where a collection is kept. Chosen with `#[storage(...)]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StorageKind {
    /// One JSON file per record: `<dir>/<collection>/<encoded-id>.json`. The default.
    PerRecord,
    /// The whole collection in one JSON-lines file, `<dir>/<collection>.jsonl`,
    /// rewritten atomically when it changed.
    CollectionFile,
    /// Nothing on disk: the collection lives and dies with the process.
    Memory,
}

/// The storage declared for an entity with `#[storage(...)]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StorageSpec {
    /// The strategy.
    pub kind: StorageKind,
    /// `wal`: every commit is logged and durable before it returns.
    pub wal: bool,
    /// `compress`: files are zstd-compressed (`.json.zst`, `.jsonl.zst`).
    pub compress: bool,
    /// `shard = N` (per_record only): files go to subdirectories named by the first
    /// `N` hex digits of a hash of the id (`N` from 1 to 3); 0 means none.
    pub shard: u8,
}

impl StorageSpec {
    /// Whether records of this collection are written to disk.
    pub fn is_persisted(&self) -> bool {
        self.kind != StorageKind::Memory
    }
}

/// A type stored by Shelf. Implement it with `#[derive(Entity)]`, never by hand:
/// the derive checks the schema at compile time and generates the typed handle.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use shelf::Entity;
///
/// #[derive(Entity, Serialize, Deserialize, Clone, Debug)]
/// struct Note {
///     #[id]
///     id: String,
///     text: String,
/// }
///
/// assert_eq!(<Note as Entity>::COLLECTION, "note");
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a Shelf entity",
    label = "this type does not derive `Entity`",
    note = "add `#[derive(Entity)]` (with `Serialize, Deserialize, Clone`) and an `#[id]` field to `{Self}`"
)]
pub trait Entity: EntityInternals + Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    /// The type of the `#[id]` field.
    type Id: Key;
    /// The typed handle `store.collection::<Self>()` returns. The derive generates
    /// `<Type>Collection`, which dereferences to [`Collection<Self>`] and adds the
    /// methods generated for this entity.
    type Handle: From<Collection<Self>> + Deref<Target = Collection<Self>>;
    /// The collection name: the snake_case type name, or `#[entity(collection = "...")]`.
    const COLLECTION: &'static str;
    /// The declared storage.
    const STORAGE: StorageSpec;
    /// Whether the id is assigned on insert (`#[id(auto)]`).
    const AUTO_ID: bool;
    /// The JSON key of the `#[id]` field: its name, unless `#[serde(rename)]` or
    /// `rename_all` changes it. `shelf.json` records it, so that tools such as
    /// `shelf verify` read ids where the records hold them, without guessing.
    const ID_FIELD: &'static str = "id";

    /// The record's id.
    fn id(&self) -> &Self::Id;
}

/// What `#[derive(Entity)]` generates for the runtime beside [`Entity`]: auto ids,
/// indices and foreign keys. Not a public API (it is reached only through
/// `shelf::__private` and may change in any release); implement it with the derive.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a Shelf entity",
    label = "this type does not derive `Entity`",
    note = "add `#[derive(Entity)]` (with `Serialize, Deserialize, Clone`) and an `#[id]` field to `{Self}`"
)]
pub trait EntityInternals: Sized + 'static {
    /// The `#[belongs_to]` fields as `(field, parent collection)`, for the
    /// compile-time check of `has_many(.., key = field)`.
    const BELONGS_TO: &'static [(&'static str, &'static str)] = &[];
    /// The message of that check when it fails: the `#[belongs_to]` fields there are.
    const BELONGS_TO_HELP: &'static str = "";
    /// `#[storage(memory, ttl = "..")]`: how long a record lives after its last write.
    const TTL: Option<std::time::Duration> = None;

    /// Sets the id from the auto-id counter. Returns `false` when the counter does not
    /// fit the id type (or the entity has no `#[id(auto)]`).
    fn __set_auto_id(&mut self, counter: u64) -> bool;

    /// The counter value of this record's id, for `#[id(auto)]` entities.
    fn __id_counter(&self) -> Option<u64>;

    /// The secondary indices declared with `#[index]`, empty and in declaration order.
    fn __indices() -> Vec<Box<dyn IndexMaint<Self>>>
    where
        Self: Entity,
    {
        Vec::new()
    }

    /// For `shelf.json`, by index name (of `__indices()`, including the implied
    /// unique index of a `through` pair): the fields its key is made of, in key
    /// order, and whether it has one key per element (`#[index(each)]`).
    fn __index_fields() -> &'static [(&'static str, &'static [&'static str], bool)] {
        &[]
    }

    /// For `shelf.json`: each field serde writes, in declaration order, with the
    /// JSON key it is written under.
    fn __record_fields() -> &'static [RecordField] {
        &[]
    }

    /// The `#[belongs_to]` fields.
    fn __foreign_keys() -> Vec<ForeignKeySpec> {
        Vec::new()
    }

    /// The `ForeignKey<Self, Parent>` of a `#[belongs_to]` field, boxed.
    fn __foreign_key_any(_field: &str) -> Option<Box<dyn Any>> {
        None
    }

    /// Sets an `Option` foreign key to `None` (`on_delete = detach`).
    fn __clear_foreign_key(&mut self, _field: &str) {}
}

/// A field of a record as the derive describes it for `shelf.json` (and for the
/// backends that read records by key). Fields serde skips are left out.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordField {
    /// The Rust field name (without `r#`).
    pub field: &'static str,
    /// The JSON key serde writes it under (`rename`, `rename_all`); empty for a
    /// `flatten`ed field, whose own keys are written into the record.
    pub key: &'static str,
    /// The field's type as written in the struct.
    pub ty: &'static str,
    /// `#[serde(flatten)]`.
    pub flatten: bool,
}

/// The JSON key of `T`'s field `field` (its Rust name when the derive does not
/// describe it).
pub(crate) fn key_of<T: EntityInternals>(field: &str) -> &str {
    T::__record_fields().iter().find(|f| f.field == field && !f.flatten).map_or(field, |f| f.key)
}
