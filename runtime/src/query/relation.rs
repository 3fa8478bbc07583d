//! Relationship queries: `parent.<children>_query(&store)`, a [`Query`] over the
//! children pre-filtered by the foreign key and served by its index.

use std::sync::Arc;

use super::field::IndexHint;
use super::predicate::{Access, Predicate};
use super::Query;
use crate::entity::Entity;
use crate::error::Result;
use crate::index::IndexKey;
use crate::relation::{ForeignKey, References};

/// The children of `parent` through `key`, as a query: filters, orderings and
/// limits apply to it as to any query, and its plan uses the key's index.
/// Generated as `parent.<name>_query(&store)` for every `#[has_many(.., key = ..)]`.
#[doc(hidden)]
pub fn children_query<C: Entity, P: Entity>(
    store: &crate::Store,
    key: ForeignKey<C, P>,
    parent: &P::Id,
) -> Result<Query<C>>
where
    P::Id: IndexKey,
{
    let core = store.collection_core::<C>()?.0;
    let pos = key.index_pos();
    let (name, kind) = core.with_records(|_, indices| {
        indices.get(pos).map_or(("?", Default::default()), |index| (index.name(), index.kind()))
    });
    let hint = IndexHint { pos, name, sorted: kind.sorted, unique: kind.unique };
    let key_of = key.key_of();
    let wanted = parent.clone();
    let text = format!("{name} == {parent:?}");
    let access = Access::Eq { hint, key: Arc::new(parent.clone()) };
    let filter = Predicate::leaf(text, access, move |c: &C| key_of(c) == Some(&wanted)).on_field(name);
    Ok(Query::over_collection(core).filter(filter))
}

/// The targets linked to `owner` through the join entity `J`, as a query over
/// `Target`: filters, orderings and limits apply to it as to any query. The links
/// are read when the query is built (one lookup in `J`'s index on its key to
/// `Owner`); the targets are then read by id each time it runs, so a target
/// changed since is seen as it is now, and a removed one is left out.
/// Generated as `owner.<name>_query(&store)` for every
/// `#[has_many(name: Target, through = J)]`.
#[doc(hidden)]
pub fn through_query<Owner, J, Target>(store: &crate::Store, owner: &Owner::Id) -> Result<Query<Target>>
where
    Owner: Entity,
    J: References<Owner> + References<Target>,
    Target: Entity,
    Owner::Id: IndexKey,
{
    let rows = <J as References<Owner>>::foreign_key().children(store, owner)?;
    let to_target = <J as References<Target>>::foreign_key();
    let mut ids: Vec<Target::Id> = rows.iter().filter_map(|row| to_target.parent_id(row).cloned()).collect();
    ids.sort();
    ids.dedup();
    let core = store.collection_core::<Target>()?.0;
    let count = ids.len();
    let text = format!("id in the {count} linked to {owner:?} through `{}`", J::COLLECTION);
    let ids = Arc::new(ids);
    let access = Access::Ids { ids: Arc::clone(&ids) as Arc<dyn std::any::Any + Send + Sync>, count };
    let mut filter = Predicate::leaf(text, access, move |t: &Target| ids.binary_search(t.id()).is_ok());
    // A target a link names may be missing, so the id list is not a count.
    filter.exact = false;
    Ok(Query::over_collection(core).filter(filter))
}
