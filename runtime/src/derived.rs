//! Support for the code `#[derive(Entity)]` generates for relationships, reached
//! through `shelf::__private`: the compile-time check of a `has_many` key and the
//! `has_many` / `has_one` accessors. Not a public API.

use std::sync::Arc;

use crate::entity::{Entity, EntityInternals};
use crate::error::{Error, Result};
use crate::index::IndexKey;
use crate::relation::{ForeignKey, Reader};

/// Whether `keys` (an entity's `(field, parent collection)` list) holds `field`
/// referencing `parent`. A `const fn`, so the derive checks a `has_many` key at
/// compile time.
pub const fn has_foreign_key(keys: &[(&str, &str)], field: &str, parent: &str) -> bool {
    let mut i = 0;
    while i < keys.len() {
        if str_eq(keys[i].0, field) && str_eq(keys[i].1, parent) {
            return true;
        }
        i += 1;
    }
    false
}

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The foreign key `field` of `C`, if it references `P`.
pub fn foreign_key<C: Entity, P: Entity>(field: &str) -> Option<ForeignKey<C, P>> {
    let any = <C as EntityInternals>::__foreign_key_any(field)?;
    any.downcast::<ForeignKey<C, P>>().ok().map(|key| *key)
}

fn key_or_error<C: Entity, P: Entity>(field: &str) -> Result<ForeignKey<C, P>> {
    foreign_key::<C, P>(field).ok_or_else(|| Error::InvalidLink {
        collection: C::COLLECTION.to_owned(),
        message: format!("`{field}` is not a #[belongs_to] field referencing `{}`", P::COLLECTION),
    })
}

/// `#[has_many(name: C, key = field)]` on `P`: the children of `parent`, in id order.
pub fn has_many<C: Entity, P: Entity>(reader: &impl Reader, field: &str, parent: &P::Id) -> Result<Vec<Arc<C>>>
where
    P::Id: IndexKey,
{
    key_or_error::<C, P>(field)?.children(reader, parent)
}

/// `#[has_one(name: C, key = field)]` on `P`: the child of `parent` (the lowest id
/// if several reference it).
pub fn has_one<C: Entity, P: Entity>(reader: &impl Reader, field: &str, parent: &P::Id) -> Result<Option<Arc<C>>>
where
    P::Id: IndexKey,
{
    Ok(has_many::<C, P>(reader, field, parent)?.into_iter().next())
}
