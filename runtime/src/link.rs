//! `link_*` / `unlink_*` of `#[has_many(.., through = J)]`: writing join rows, through
//! a [`Store`](crate::Store) or a transaction in progress ([`Writer`]). Above the
//! transaction layer, unlike the relationship definitions in `relation`.

use crate::entity::Entity;
use crate::error::Result;
use crate::index::IndexKey;
use crate::relation::References;

/// Where generated `link_*` / `unlink_*` methods write: a [`Store`](crate::Store)
/// (`&store`: the change is a transaction of its own) or a transaction in progress
/// (`&mut *tx`, or `tx` when it is not used afterwards: the change is part of it,
/// and is applied with it or not at all). Implemented for those two only.
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// # use shelf::{Entity, Store};
/// #[derive(Entity, Serialize, Deserialize, Clone, Debug)]
/// #[has_many(tags: Tag, through = PostTag)]
/// struct Post { #[id] id: u64 }
///
/// #[derive(Entity, Serialize, Deserialize, Clone, Debug)]
/// struct Tag { #[id] id: String }
///
/// #[derive(Entity, Serialize, Deserialize, Clone, Debug)]
/// struct PostTag {
///     #[id(auto)] id: u64,
///     #[belongs_to(Post, on_delete = cascade)] post_id: u64,
///     #[belongs_to(Tag)] tag_id: String,
/// }
///
/// # fn main() -> shelf::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// let store = Store::builder(dir.path())
///     .register::<Post>().register::<Tag>().register::<PostTag>().open()?;
/// // A post, its tag and the link between them: one transaction.
/// store.transaction(|tx| {
///     tx.insert(Post { id: 1 })?;
///     tx.insert(Tag { id: "rust".into() })?;
///     let post = tx.get::<Post>(&1).unwrap();
///     assert!(post.link_tags(&mut *tx, PostTag { id: 0, post_id: 1, tag_id: "rust".into() })?);
///     assert_eq!(post.tags(&*tx)?.len(), 1); // the transaction sees its link
///     Ok::<_, shelf::Error>(())
/// })?;
/// let post = store.collection::<Post>()?.get(&1).unwrap();
/// assert_eq!(post.tags(&store)?[0].id, "rust");
/// assert_eq!(post.unlink_tags(&store, &"rust".into())?, 1);
/// # Ok(()) }
/// ```
pub trait Writer: sealed::Sealed {}

mod sealed {
    use crate::error::Result;
    use crate::Transaction;

    /// Runs a write as, or inside, a transaction.
    pub trait Sealed {
        fn within<R>(self, body: impl FnMut(&mut Transaction<'_>) -> Result<R>) -> Result<R>;
    }

    impl Sealed for &crate::Store {
        fn within<R>(self, body: impl FnMut(&mut Transaction<'_>) -> Result<R>) -> Result<R> {
            self.transaction(body)
        }
    }

    impl Sealed for &mut Transaction<'_> {
        fn within<R>(self, mut body: impl FnMut(&mut Transaction<'_>) -> Result<R>) -> Result<R> {
            body(self)
        }
    }
}

impl Writer for &crate::Store {}
impl Writer for &mut crate::Transaction<'_> {}

/// Links `owner` to the target named by `row` (a join entity), unless that pair is
/// linked already; returns whether a row was inserted. Generated as
/// `owner.link_<name>(&store, row)` or `owner.link_<name>(&mut *tx, row)`.
#[doc(hidden)]
pub fn link<Owner, J, Target>(to: impl Writer, owner: &Owner::Id, row: J) -> Result<bool>
where
    Owner: Entity,
    J: References<Owner> + References<Target>,
    Target: Entity,
    Owner::Id: IndexKey,
{
    let to_owner = <J as References<Owner>>::foreign_key();
    let to_target = <J as References<Target>>::foreign_key();
    let invalid = |message: String| crate::Error::InvalidLink { collection: J::COLLECTION.to_owned(), message };
    if to_owner.parent_id(&row) != Some(owner) {
        return Err(invalid(format!(
            "the row does not reference `{}` `{}`",
            Owner::COLLECTION,
            crate::Key::encode_key(owner)
        )));
    }
    let Some(target) = to_target.parent_id(&row).cloned() else {
        return Err(invalid(format!("the row references no `{}`", Target::COLLECTION)));
    };
    to.within(|tx| {
        let rows = to_owner.children(&*tx, owner)?;
        if rows.iter().any(|r| to_target.parent_id(r) == Some(&target)) {
            return Ok(false);
        }
        tx.insert(row.clone())?;
        Ok(true)
    })
}

/// Removes every join row between `owner` and `target`; returns how many.
/// Generated as `owner.unlink_<name>(&store, &target_id)` (or `&mut *tx`).
#[doc(hidden)]
pub fn unlink<Owner, J, Target>(to: impl Writer, owner: &Owner::Id, target: &Target::Id) -> Result<usize>
where
    Owner: Entity,
    J: References<Owner> + References<Target>,
    Target: Entity,
    Owner::Id: IndexKey,
{
    let to_owner = <J as References<Owner>>::foreign_key();
    let to_target = <J as References<Target>>::foreign_key();
    to.within(|tx| {
        let rows = to_owner.children(&*tx, owner)?;
        let mut removed = 0;
        for row in rows.iter().filter(|r| to_target.parent_id(r) == Some(target)) {
            tx.remove::<J>(row.id())?;
            removed += 1;
        }
        Ok(removed)
    })
}
