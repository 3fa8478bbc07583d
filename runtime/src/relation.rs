//! Relationships: `#[belongs_to]`, `#[has_many]` (1:N and M:N through a join
//! entity), and the referential integrity kept inside every commit.

use std::marker::PhantomData;
use std::sync::Arc;

use crate::entity::Entity;
use crate::error::Result;
use crate::index::IndexKey;

/// What removing a parent does to the children that reference it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnDelete {
    /// Refuse the removal while children reference the parent (the default):
    /// [`Error::ForeignKey`](crate::Error::ForeignKey).
    #[default]
    Restrict,
    /// Remove the children in the same commit, recursively.
    Cascade,
    /// Set the children's `Option` key to `None`.
    Detach,
    /// No action: the children keep referencing a parent that is gone. The default
    /// for `check = false` keys, which may name a missing parent anyway.
    Ignore,
}

/// A `#[belongs_to]` field as the runtime sees it.
#[derive(Clone, Copy, Debug)]
pub struct ForeignKeySpec {
    /// The field name.
    pub field: &'static str,
    /// The referenced entity's collection.
    pub parent: &'static str,
    /// The position of the field's index among the entity's indices.
    pub index: usize,
    /// What removing the parent does.
    pub on_delete: OnDelete,
    /// Whether writes check that the parent exists (`check = false` opts out).
    pub check: bool,
}

/// Where reads come from: a [`Store`](crate::Store) (committed state) or a
/// [`Transaction`](crate::Transaction) (its own writes included). Generated
/// relationship accessors take either.
pub trait Reader {
    /// The record of type `T` with this id.
    fn read<T: Entity>(&self, id: &T::Id) -> Result<Option<Arc<T>>>;

    /// The records of `C` whose index `index` holds `key`, in id order; `key_of`
    /// reads the key from a record (for records written in a transaction).
    #[doc(hidden)]
    fn __children<C: Entity, K: IndexKey>(
        &self,
        index: usize,
        key: &K,
        key_of: fn(&C) -> Option<&K>,
    ) -> Result<Vec<Arc<C>>>;
}

/// The link from a child entity `C` to a parent `P`, made by `#[belongs_to(P)]`.
/// Generated code uses it; users meet it in compile errors at most.
pub struct ForeignKey<C: Entity, P: Entity> {
    index: usize,
    key_of: fn(&C) -> Option<&P::Id>,
    _types: PhantomData<fn() -> (C, P)>,
}

impl<C: Entity, P: Entity> ForeignKey<C, P> {
    #[doc(hidden)]
    pub const fn new(index: usize, key_of: fn(&C) -> Option<&P::Id>) -> Self {
        ForeignKey { index, key_of, _types: PhantomData }
    }

    /// The position of the key's index among the child's indices.
    pub(crate) fn index_pos(&self) -> usize {
        self.index
    }

    /// Reads the key from a child.
    pub(crate) fn key_of(&self) -> fn(&C) -> Option<&P::Id> {
        self.key_of
    }

    /// The parent id a child holds, if any.
    pub fn parent_id<'c>(&self, child: &'c C) -> Option<&'c P::Id> {
        (self.key_of)(child)
    }

    /// The children of `parent`, in id order, served by the key's index.
    pub fn children(&self, reader: &impl Reader, parent: &P::Id) -> Result<Vec<Arc<C>>>
    where
        P::Id: IndexKey,
    {
        reader.__children::<C, P::Id>(self.index, parent, self.key_of)
    }

    /// The parent a child references.
    pub fn parent(&self, reader: &impl Reader, child: &C) -> Result<Option<Arc<P>>> {
        match self.parent_id(child) {
            Some(id) => reader.read::<P>(id),
            None => Ok(None),
        }
    }
}

/// Implemented by `#[derive(Entity)]` for a child with exactly one
/// `#[belongs_to(P)]` field: the key a `through` relationship follows.
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no #[belongs_to({P})] field, so it cannot join to `{P}`",
    label = "a `through` entity needs one #[belongs_to] field for each side",
    note = "add a field like `#[belongs_to({P})] ..._id: <{P}'s id type>` to `{Self}`"
)]
pub trait References<P: Entity>: Entity {
    /// The foreign key to `P`.
    fn foreign_key() -> ForeignKey<Self, P>;
}

/// The many records of `Target` linked to `parent` through join rows `J`, in id
/// order and without duplicates.
#[doc(hidden)]
pub fn through<Owner, J, Target>(reader: &impl Reader, parent: &Owner::Id) -> Result<Vec<Arc<Target>>>
where
    Owner: Entity,
    J: References<Owner> + References<Target>,
    Target: Entity,
    Owner::Id: IndexKey,
{
    let rows = <J as References<Owner>>::foreign_key().children(reader, parent)?;
    let to_target = <J as References<Target>>::foreign_key();
    let mut ids: Vec<&Target::Id> = rows.iter().filter_map(|row| to_target.parent_id(row)).collect();
    ids.sort();
    ids.dedup();
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.extend(reader.read::<Target>(id)?);
    }
    Ok(out)
}

/// Asserts at compile time that a foreign key field has the parent's id type.
#[diagnostic::on_unimplemented(
    message = "a #[belongs_to] field must have the id type of the entity it references: this field is `{Self}`, the id is `{T}`",
    label = "expected the referenced entity's id type (or an Option of it)"
)]
pub trait SameType<T> {
    /// The value as the other type (it is the same type).
    fn same(&self) -> &T;
}

impl<T> SameType<T> for T {
    fn same(&self) -> &T {
        self
    }
}

/// Used by generated code to say "`T` is not an entity" where a relationship names
/// one: in a `const`, spanned on the type, the one error about it (the generated
/// methods that use the type assume it with a `where` clause instead).
#[doc(hidden)]
pub const fn assert_entity<T: Entity>() {}

/// Used by generated code to say "`J` cannot join `Owner` to `Target`" once, spanned
/// on `through = J` (the generated methods assume it with a `where` clause).
#[doc(hidden)]
pub const fn assert_through<Owner: Entity, J: References<Owner> + References<Target>, Target: Entity>() {}

/// A reference to a parent that does not exist, found by [`Store::verify`](crate::Store::verify).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dangling {
    /// The child's collection.
    pub collection: String,
    /// The child's id (key text).
    pub id: String,
    /// The foreign key field.
    pub field: String,
    /// The referenced collection.
    pub parent_collection: String,
    /// The referenced id that is missing (as JSON).
    pub parent_id: String,
}

impl Reader for crate::Store {
    fn read<T: Entity>(&self, id: &T::Id) -> Result<Option<Arc<T>>> {
        let core = self.collection_core::<T>()?.0;
        // A record of a TTL collection whose time is up is not returned.
        Ok(core.get(id).filter(|r| T::TTL.is_none() || !core.is_expired(r.id(), std::time::Instant::now())))
    }

    fn __children<C: Entity, K: IndexKey>(
        &self,
        index: usize,
        key: &K,
        _key_of: fn(&C) -> Option<&K>,
    ) -> Result<Vec<Arc<C>>> {
        let core = self.collection_core::<C>()?.0;
        let mut children = core.index_all::<K, K>(index, key);
        if C::TTL.is_some() {
            let now = std::time::Instant::now();
            children.retain(|c| !core.is_expired(c.id(), now));
        }
        Ok(children)
    }
}
