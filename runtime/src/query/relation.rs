//! Relationship queries: `parent.<children>_query(&store)`, a [`Query`] over the
//! children pre-filtered by the foreign key and served by its index.

use std::sync::Arc;

use super::field::IndexHint;
use super::predicate::{Access, Predicate};
use super::Query;
use crate::entity::Entity;
use crate::error::Result;
use crate::index::IndexKey;
use crate::relation::ForeignKey;

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
    let filter = Predicate::leaf(text, access, move |c: &C| key_of(c) == Some(&wanted));
    Ok(Query::over_collection(core).filter(filter))
}
