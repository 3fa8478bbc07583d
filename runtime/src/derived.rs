//! Support for the code `#[derive(Entity)]` generates for relationships, reached
//! through `shelf::__private`: the compile-time check of a `has_many` key and the
//! `has_many` / `has_one` accessors, and the index probes. Not a public API.

use std::borrow::Borrow;
use std::hash::Hash;
use std::marker::PhantomData;
use std::ops::Bound;
use std::sync::Arc;

use crate::entity::{Entity, EntityInternals};
use crate::error::{Error, Result};
use crate::handle::{index_all, index_count, index_one, index_range, index_update, index_upsert, Collection};
use crate::index::{Index, IndexKey, IndexKind, IndexMaint, KeysOf};
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

/// `C`'s `#[belongs_to]` fields as `(field, parent collection)` and the message that
/// lists them, for the compile-time check of `has_many(.., key = field)`. A `const
/// fn` bounded by `Entity`, so a target that is no entity gets one error, here.
pub const fn belongs_to_of<C: Entity>() -> (&'static [(&'static str, &'static str)], &'static str) {
    (C::BELONGS_TO, C::BELONGS_TO_HELP)
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

/// `#[has_many(name: C, key = field)]` on `P`, as a query: `parent.<name>_query(&store)`,
/// pre-filtered by the key and served by its index.
pub fn has_many_query<C: Entity, P: Entity>(
    store: &crate::Store,
    field: &str,
    parent: &P::Id,
) -> Result<crate::query::Query<C>>
where
    P::Id: IndexKey,
{
    crate::query::children_query(store, key_or_error::<C, P>(field)?, parent)
}

/// `#[has_one(name: C, key = field)]` on `P`: the child of `parent` (the lowest id
/// if several reference it).
pub fn has_one<C: Entity, P: Entity>(reader: &impl Reader, field: &str, parent: &P::Id) -> Result<Option<Arc<C>>>
where
    P::Id: IndexKey,
{
    Ok(has_many::<C, P>(reader, field, parent)?.into_iter().next())
}

/// Chooses, at compile time, how generated code builds and probes an index whose
/// key type is `K` (probed with `&Q`): through [`IndexKeyProbe`] when `K` is an
/// index key, else through [`NotAnIndexKey`] (autoref specialization). So a key
/// type that is not an [`IndexKey`] is reported once, by the derive's assertion on
/// the field, and not again at every generated use.
pub struct KeyProbe<K, Q: ?Sized = K>(PhantomData<fn() -> K>, PhantomData<fn() -> PhantomData<Q>>);

impl<K, Q: ?Sized> KeyProbe<K, Q> {
    /// The probe.
    pub const fn new() -> Self {
        KeyProbe(PhantomData, PhantomData)
    }
}

impl<K, Q: ?Sized> Default for KeyProbe<K, Q> {
    fn default() -> Self {
        Self::new()
    }
}

/// What generated code does with an index whose key type is an [`IndexKey`].
pub trait IndexKeyProbe<T: Entity, K, Q: ?Sized> {
    /// The index, boxed for `EntityInternals::__indices`.
    fn index(&self, name: &'static str, kind: IndexKind, keys_of: KeysOf<T, K>) -> Box<dyn IndexMaint<T>>;
    /// `by_<field>` of a unique index.
    fn one(&self, collection: &Collection<T>, pos: usize, key: &Q) -> Option<Arc<T>>;
    /// `by_<field>` of a non-unique index.
    fn all(&self, collection: &Collection<T>, pos: usize, key: &Q) -> Vec<Arc<T>>;
    /// `count_by_<field>`.
    fn count(&self, collection: &Collection<T>, pos: usize, key: &Q) -> usize;
    /// `range_by_<field>`.
    fn range(&self, collection: &Collection<T>, pos: usize, bounds: (Bound<&Q>, Bound<&Q>)) -> Vec<Arc<T>>;
    /// `update_by_<field>` of a unique index.
    fn update_by(
        &self,
        collection: &Collection<T>,
        pos: usize,
        index: &'static str,
        key: &Q,
        change: impl FnMut(&mut T),
    ) -> Result<Arc<T>>;
    /// `upsert_by_<field>` of a unique index.
    fn upsert_by(&self, collection: &Collection<T>, pos: usize, key: &K, value: T) -> Result<(T::Id, Option<Arc<T>>)>;
}

impl<T: Entity, K: IndexKey + Borrow<Q>, Q: Hash + Ord + std::fmt::Debug + ?Sized> IndexKeyProbe<T, K, Q>
    for KeyProbe<K, Q>
{
    fn index(&self, name: &'static str, kind: IndexKind, keys_of: KeysOf<T, K>) -> Box<dyn IndexMaint<T>> {
        Index::<T, K>::new(name, kind, keys_of).boxed()
    }
    fn one(&self, collection: &Collection<T>, pos: usize, key: &Q) -> Option<Arc<T>> {
        index_one::<T, K, Q>(collection, pos, key)
    }
    fn all(&self, collection: &Collection<T>, pos: usize, key: &Q) -> Vec<Arc<T>> {
        index_all::<T, K, Q>(collection, pos, key)
    }
    fn count(&self, collection: &Collection<T>, pos: usize, key: &Q) -> usize {
        index_count::<T, K, Q>(collection, pos, key)
    }
    fn range(&self, collection: &Collection<T>, pos: usize, bounds: (Bound<&Q>, Bound<&Q>)) -> Vec<Arc<T>> {
        index_range::<T, K, Q>(collection, pos, bounds)
    }
    fn update_by(
        &self,
        collection: &Collection<T>,
        pos: usize,
        index: &'static str,
        key: &Q,
        change: impl FnMut(&mut T),
    ) -> Result<Arc<T>> {
        index_update::<T, K, Q>(collection, pos, index, key, change)
    }
    fn upsert_by(&self, collection: &Collection<T>, pos: usize, key: &K, value: T) -> Result<(T::Id, Option<Arc<T>>)> {
        index_upsert::<T, K>(collection, pos, key, value)
    }
}

/// The fallback of [`IndexKeyProbe`] for a key type that is not an [`IndexKey`].
/// A crate that selects it does not compile (the derive asserts `K: IndexKey` on
/// the field), so its methods are never run.
pub trait NotAnIndexKey<T: Entity, K, Q: ?Sized> {
    /// Never run: see the trait.
    fn index(&self, name: &'static str, kind: IndexKind, keys_of: KeysOf<T, K>) -> Box<dyn IndexMaint<T>>;
    /// Never run: see the trait.
    fn one(&self, collection: &Collection<T>, pos: usize, key: &Q) -> Option<Arc<T>>;
    /// Never run: see the trait.
    fn all(&self, collection: &Collection<T>, pos: usize, key: &Q) -> Vec<Arc<T>>;
    /// Never run: see the trait.
    fn count(&self, collection: &Collection<T>, pos: usize, key: &Q) -> usize;
    /// Never run: see the trait.
    fn range(&self, collection: &Collection<T>, pos: usize, bounds: (Bound<&Q>, Bound<&Q>)) -> Vec<Arc<T>>;
    /// Never run: see the trait.
    fn update_by(
        &self,
        collection: &Collection<T>,
        pos: usize,
        index: &'static str,
        key: &Q,
        change: impl FnMut(&mut T),
    ) -> Result<Arc<T>>;
    /// Never run: see the trait.
    fn upsert_by(&self, collection: &Collection<T>, pos: usize, key: &K, value: T) -> Result<(T::Id, Option<Arc<T>>)>;
}

const NEVER: &str =
    "a key type that is not an IndexKey fails the derive's assertion; this code is never compiled into a program";

impl<T: Entity, K, Q: ?Sized> NotAnIndexKey<T, K, Q> for &KeyProbe<K, Q> {
    fn index(&self, _: &'static str, _: IndexKind, _: KeysOf<T, K>) -> Box<dyn IndexMaint<T>> {
        unreachable!("{NEVER}")
    }
    fn one(&self, _: &Collection<T>, _: usize, _: &Q) -> Option<Arc<T>> {
        unreachable!("{NEVER}")
    }
    fn all(&self, _: &Collection<T>, _: usize, _: &Q) -> Vec<Arc<T>> {
        unreachable!("{NEVER}")
    }
    fn count(&self, _: &Collection<T>, _: usize, _: &Q) -> usize {
        unreachable!("{NEVER}")
    }
    fn range(&self, _: &Collection<T>, _: usize, _: (Bound<&Q>, Bound<&Q>)) -> Vec<Arc<T>> {
        unreachable!("{NEVER}")
    }
    fn update_by(&self, _: &Collection<T>, _: usize, _: &'static str, _: &Q, _: impl FnMut(&mut T)) -> Result<Arc<T>> {
        unreachable!("{NEVER}")
    }
    fn upsert_by(&self, _: &Collection<T>, _: usize, _: &K, _: T) -> Result<(T::Id, Option<Arc<T>>)> {
        unreachable!("{NEVER}")
    }
}

/// Implemented by the derive of `A` for `J` when `A` declares
/// `#[has_many(.., through = J)]` to `B`: `J`'s rows link an `A` and a `B`, so the
/// pair of its keys is unique (an implied unique index on `J`).
pub trait ThroughPair<A, B> {}

/// Tells, in `J`'s derive, whether `J` is the join entity of a `through`
/// relationship between `A` and `B`: [`IsThroughPair`] when `J: ThroughPair<A, B>`,
/// else [`NotThroughPair`] (autoref specialization).
pub struct PairProbe<J, A, B>(PhantomData<Types<J, A, B>>);

/// The probe's types, without owning any.
type Types<J, A, B> = fn() -> (J, A, B);

impl<J, A, B> PairProbe<J, A, B> {
    /// The probe.
    pub const fn new() -> Self {
        PairProbe(PhantomData)
    }
}

impl<J, A, B> Default for PairProbe<J, A, B> {
    fn default() -> Self {
        Self::new()
    }
}

/// The probe's answer when `J: ThroughPair<A, B>`.
pub trait IsThroughPair {
    /// `true`: the pair is a `through` pair.
    fn is_through(&self) -> bool {
        true
    }
}

impl<J: ThroughPair<A, B>, A, B> IsThroughPair for PairProbe<J, A, B> {}

/// The probe's answer otherwise.
pub trait NotThroughPair {
    /// `false`: no `through` relationship uses the pair.
    fn is_through(&self) -> bool {
        false
    }
}

impl<J, A, B> NotThroughPair for &PairProbe<J, A, B> {}
