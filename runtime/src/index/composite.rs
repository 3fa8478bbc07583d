//! Composite keys `(a, b, ..)` walked by their first part: the records of one `a`
//! in key order ("a == x order by b", stopping early), and the first or last key
//! of every `a` with one seek each ("the latest child per parent").
//!
//! A sorted composite index is a `BTreeMap<(A, B, ..), _>`. Its keys with first
//! part `x` form one contiguous range, but `B` has no least or greatest value to
//! bound it with. So the tuple also borrows as `dyn HeadOf<A>`, which compares by
//! the first part only, and the range is bounded by [`Edge`] probes that sort just
//! before or just after every key with first part `x` (the `Borrow` contract
//! holds: tuples order by their first part first).

use std::any::{Any, TypeId};
use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::btree_map::Range;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use super::{Ids, Index, IndexKey, IndexKind, IndexMaint, KeysOf};
use crate::derived::KeyProbe;
use crate::entity::Entity;

/// A key seen through its first part: a stored tuple (`side` 0) or an [`Edge`]
/// probe (`side` -1 or 1: before or after every key with that first part).
#[doc(hidden)]
pub trait HeadOf<A> {
    /// The first part.
    fn head(&self) -> &A;
    /// 0 for a key; -1 or 1 for a probe before or after the keys with this head.
    fn side(&self) -> i8;
}

/// A probe just before (`side` -1) or just after (`side` 1) every key whose first
/// part is `head`.
struct Edge<'k, A> {
    head: &'k A,
    side: i8,
}

impl<A> HeadOf<A> for Edge<'_, A> {
    fn head(&self) -> &A {
        self.head
    }
    fn side(&self) -> i8 {
        self.side
    }
}

impl<A: Ord> Ord for dyn HeadOf<A> + '_ {
    fn cmp(&self, other: &Self) -> Ordering {
        self.head().cmp(other.head()).then(self.side().cmp(&other.side()))
    }
}
impl<A: Ord> PartialOrd for dyn HeadOf<A> + '_ {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<A: Ord> PartialEq for dyn HeadOf<A> + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}
impl<A: Ord> Eq for dyn HeadOf<A> + '_ {}

/// A composite index key: a tuple of two to twelve index keys.
#[doc(hidden)]
pub trait CompositeKey: IndexKey {
    /// The first part.
    type Head: IndexKey;
    /// The second part.
    type Next: 'static;
    /// The number of parts.
    const ARITY: usize;
    /// The first part of this key.
    fn head(&self) -> &Self::Head;
    /// The entries whose key's first part is `head`, in key order.
    fn range_of<'m, V>(map: &'m BTreeMap<Self, V>, head: &Self::Head) -> Range<'m, Self, V>;
    /// The last entry whose first part is less than `head`.
    fn before<'m, V>(map: &'m BTreeMap<Self, V>, head: &Self::Head) -> Option<(&'m Self, &'m V)>;
    /// The first entry whose first part is greater than `head`.
    fn after<'m, V>(map: &'m BTreeMap<Self, V>, head: &Self::Head) -> Option<(&'m Self, &'m V)>;
}

fn edge<A>(head: &A, side: i8) -> Edge<'_, A> {
    Edge { head, side }
}

fn range_of<'m, 'a, K, A, V>(map: &'m BTreeMap<K, V>, head: &'a A) -> Range<'m, K, V>
where
    K: Ord + Borrow<dyn HeadOf<A> + 'a>,
    A: Ord + 'a,
{
    let (lo, hi) = (edge(head, -1), edge(head, 1));
    map.range::<dyn HeadOf<A> + 'a, _>((Bound::Included(&lo as &(dyn HeadOf<A> + 'a)), Bound::Included(&hi as _)))
}

fn before<'m, 'a, K, A, V>(map: &'m BTreeMap<K, V>, head: &'a A) -> Option<(&'m K, &'m V)>
where
    K: Ord + Borrow<dyn HeadOf<A> + 'a>,
    A: Ord + 'a,
{
    let lo = edge(head, -1);
    map.range::<dyn HeadOf<A> + 'a, _>((Bound::Unbounded, Bound::Included(&lo as &(dyn HeadOf<A> + 'a)))).next_back()
}

fn after<'m, 'a, K, A, V>(map: &'m BTreeMap<K, V>, head: &'a A) -> Option<(&'m K, &'m V)>
where
    K: Ord + Borrow<dyn HeadOf<A> + 'a>,
    A: Ord + 'a,
{
    let hi = edge(head, 1);
    map.range::<dyn HeadOf<A> + 'a, _>((Bound::Included(&hi as &(dyn HeadOf<A> + 'a)), Bound::Unbounded)).next()
}

macro_rules! composite {
    ($n:literal; $a:ident, $b:ident $(, $rest:ident)*) => {
        impl<$a, $b $(, $rest)*> HeadOf<$a> for ($a, $b, $($rest,)*) {
            fn head(&self) -> &$a {
                &self.0
            }
            fn side(&self) -> i8 {
                0
            }
        }

        impl<'a, $a: 'a, $b: 'a $(, $rest: 'a)*> Borrow<dyn HeadOf<$a> + 'a> for ($a, $b, $($rest,)*) {
            fn borrow(&self) -> &(dyn HeadOf<$a> + 'a) {
                self
            }
        }

        impl<$a: IndexKey, $b: IndexKey $(, $rest: IndexKey)*> CompositeKey for ($a, $b, $($rest,)*) {
            type Head = $a;
            type Next = $b;
            const ARITY: usize = $n;
            fn head(&self) -> &$a {
                &self.0
            }
            fn range_of<'m, V>(map: &'m BTreeMap<Self, V>, head: &$a) -> Range<'m, Self, V> {
                range_of(map, head)
            }
            fn before<'m, V>(map: &'m BTreeMap<Self, V>, head: &$a) -> Option<(&'m Self, &'m V)> {
                before(map, head)
            }
            fn after<'m, V>(map: &'m BTreeMap<Self, V>, head: &$a) -> Option<(&'m Self, &'m V)> {
                after(map, head)
            }
        }
    };
}

composite!(2; A, B);
composite!(3; A, B, C);
composite!(4; A, B, C, D);
composite!(5; A, B, C, D, E);
composite!(6; A, B, C, D, E, F);
composite!(7; A, B, C, D, E, F, G);
composite!(8; A, B, C, D, E, F, G, H);
composite!(9; A, B, C, D, E, F, G, H, I);
composite!(10; A, B, C, D, E, F, G, H, I, J);
composite!(11; A, B, C, D, E, F, G, H, I, J, K);
composite!(12; A, B, C, D, E, F, G, H, I, J, K, L);

/// What a plan needs to know of a composite index.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompositeInfo {
    /// The index name.
    pub name: &'static str,
    /// The field names, in key order.
    pub parts: &'static [&'static str],
    /// The type of the first part.
    pub head: TypeId,
    /// The type of the second part.
    pub next: TypeId,
    /// Whether the index is sorted (only a sorted one can be walked).
    pub sorted: bool,
}

/// Walks the records of one first part, in key order.
type Walk<T, K> = for<'m> fn(&'m BTreeMap<K, Ids<T>>, &dyn Any, bool) -> Box<dyn Iterator<Item = &'m Arc<T>> + 'm>;

/// Visits the top record of each first part.
type Tops<T, K> = fn(&BTreeMap<K, Ids<T>>, bool, &mut dyn FnMut(&dyn Any, &Arc<T>));

/// The prefix operations of a composite index, monomorphized for its key type.
pub(super) struct PrefixOps<T: Entity, K> {
    pub(super) info: CompositeInfo,
    pub(super) walk: Walk<T, K>,
    pub(super) tops: Tops<T, K>,
}

fn walk<'m, T: Entity, K: CompositeKey>(
    map: &'m BTreeMap<K, Ids<T>>,
    head: &dyn Any,
    desc: bool,
) -> Box<dyn Iterator<Item = &'m Arc<T>> + 'm> {
    let head = super::typed_key::<K::Head>(head);
    let range = K::range_of(map, head);
    if desc {
        Box::new(range.rev().flat_map(|(_, ids)| ids.recs()))
    } else {
        Box::new(range.flat_map(|(_, ids)| ids.recs()))
    }
}

fn tops<T: Entity, K: CompositeKey>(map: &BTreeMap<K, Ids<T>>, last: bool, visit: &mut dyn FnMut(&dyn Any, &Arc<T>)) {
    let mut at = if last { map.iter().next_back() } else { map.iter().next() };
    while let Some((key, ids)) = at {
        if let Some(rec) = ids.first() {
            visit(key.head(), rec);
        }
        at = if last { K::before(map, key.head()) } else { K::after(map, key.head()) };
    }
}

impl<T: Entity, K: CompositeKey> Index<T, K> {
    /// A new, empty composite index over the fields `parts` (in key order), which
    /// plans can walk by its first part when it is sorted.
    pub fn new_composite(
        name: &'static str,
        kind: IndexKind,
        parts: &'static [&'static str],
        keys_of: KeysOf<T, K>,
    ) -> Self {
        let mut index = Index::new(name, kind, keys_of);
        let info = CompositeInfo {
            name,
            parts,
            head: TypeId::of::<K::Head>(),
            next: TypeId::of::<K::Next>(),
            sorted: kind.sorted,
        };
        index.prefix = Some(PrefixOps { info, walk: walk::<T, K>, tops: tops::<T, K> });
        index
    }
}

/// How generated code builds a composite index whose key type is a [`CompositeKey`]
/// (see [`KeyProbe`]).
#[doc(hidden)]
pub trait CompositeIndexProbe<T: Entity, K> {
    /// The index, boxed for `EntityInternals::__indices`.
    fn composite(
        &self,
        name: &'static str,
        kind: IndexKind,
        parts: &'static [&'static str],
        keys_of: KeysOf<T, K>,
    ) -> Box<dyn IndexMaint<T>>;
}

impl<T: Entity, K: CompositeKey> CompositeIndexProbe<T, K> for KeyProbe<K> {
    fn composite(
        &self,
        name: &'static str,
        kind: IndexKind,
        parts: &'static [&'static str],
        keys_of: KeysOf<T, K>,
    ) -> Box<dyn IndexMaint<T>> {
        Index::<T, K>::new_composite(name, kind, parts, keys_of).boxed()
    }
}

/// The fallback of [`CompositeIndexProbe`] for a key type that is not an index key
/// (every tuple of two to twelve index keys is a [`CompositeKey`]). A crate that
/// selects it does not compile: the derive asserts that each part is an index key.
#[doc(hidden)]
pub trait NotACompositeKey<T: Entity, K> {
    /// Never run: see the trait.
    fn composite(
        &self,
        name: &'static str,
        kind: IndexKind,
        parts: &'static [&'static str],
        keys_of: KeysOf<T, K>,
    ) -> Box<dyn IndexMaint<T>>;
}

impl<T: Entity, K> NotACompositeKey<T, K> for &KeyProbe<K> {
    fn composite(
        &self,
        _: &'static str,
        _: IndexKind,
        _: &'static [&'static str],
        _: KeysOf<T, K>,
    ) -> Box<dyn IndexMaint<T>> {
        unreachable!("a composite key whose parts are not index keys fails the derive's assertion; this code is never compiled into a program")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_range_holds_exactly_the_keys_with_that_first_part() {
        let mut map = BTreeMap::new();
        for a in 0..5u32 {
            for b in ["x", "y", "z"] {
                map.insert((a, b.to_owned()), ());
            }
        }
        let keys = |r: Range<'_, (u32, String), ()>| r.map(|(k, _)| k.clone()).collect::<Vec<_>>();
        assert_eq!(keys(<(u32, String)>::range_of(&map, &2)), [(2, "x".into()), (2, "y".into()), (2, "z".into())]);
        assert!(keys(<(u32, String)>::range_of(&map, &7)).is_empty());
        assert_eq!(<(u32, String)>::before(&map, &2).map(|(k, _)| k.clone()), Some((1, "z".into())));
        assert_eq!(<(u32, String)>::before(&map, &0), None);
        assert_eq!(<(u32, String)>::after(&map, &2).map(|(k, _)| k.clone()), Some((3, "x".into())));
        assert_eq!(<(u32, String)>::after(&map, &4), None);
        // A three-part key is walked by its first part too.
        let three: BTreeMap<(u8, u8, u8), ()> =
            [(1, 2, 3), (1, 9, 0), (2, 0, 0), (0, 5, 5)].into_iter().map(|k| (k, ())).collect();
        assert_eq!(<(u8, u8, u8)>::range_of(&three, &1).map(|(k, _)| *k).collect::<Vec<_>>(), [(1, 2, 3), (1, 9, 0)]);
    }
}
