//! Secondary indices: typed maps from a field's value to record ids, kept in step
//! with every write and persisted as JSONL files that anyone can read.
//!
//! The derive builds one [`Index`] per `#[index]` (and per `#[belongs_to]`). The
//! collection holds them behind [`IndexMaint`], checks every index before a write
//! changes anything, and then applies the write to all of them.

use std::any::Any;
use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::hash::Hash;
use std::ops::Bound;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::entity::Entity;
use crate::key::Key;

mod composite;

pub use composite::{CompositeIndexProbe, CompositeInfo, CompositeKey, NotACompositeKey};

/// A type whose values can be index keys: totally ordered, hashable and serializable.
///
/// Implemented for every type with those traits (strings, integers, `bool`, `char`,
/// tuples and your own types that derive them). Floating-point numbers are not keys,
/// because `NaN` breaks both equality and order.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an index key",
    label = "index keys need `Eq + Ord + Hash + Clone + Serialize + Deserialize`",
    note = "derive `PartialEq, Eq, PartialOrd, Ord, Hash` (with `Clone, Debug, Serialize, Deserialize`) on your own key type; a float has no total order: store an integer instead (e.g. cents as i64)"
)]
pub trait IndexKey: Clone + Eq + Ord + Hash + Debug + Send + Sync + Serialize + DeserializeOwned + 'static {}

// Reported as "`K` cannot be an index key", once, rather than once per missing trait.
#[diagnostic::do_not_recommend]
impl<K: Clone + Eq + Ord + Hash + Debug + Send + Sync + Serialize + DeserializeOwned + 'static> IndexKey for K {}

/// What kind of index, as declared with `#[index(...)]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexKind {
    /// At most one record per key (`unique`).
    pub unique: bool,
    /// Keys kept in order, so ranges work (`sorted`).
    pub sorted: bool,
}

/// The type-erased face of an index, as the collection maintains it.
pub trait IndexMaint<T: Entity>: Send + Sync {
    /// The index name: the field name, or the field names joined by `_and_`.
    fn name(&self) -> &'static str;
    /// The declared kind.
    fn kind(&self) -> IndexKind;
    /// Whether writing `new` under `id` keeps every unique key unique. The error is
    /// the clashing key (as JSON) and the id (key text) of the record that has it.
    #[doc(hidden)]
    fn check(&self, id: &T::Id, new: &T) -> Result<(), (String, String)>;
    /// Keys held by more than one record in a unique index (possible only in files
    /// edited by hand), as `(key JSON, ids)`.
    #[doc(hidden)]
    fn duplicates(&self) -> Vec<(String, Vec<String>)>;
    /// Moves `id`'s entries from `old`'s keys to `new`'s. Returns whether anything changed.
    #[doc(hidden)]
    fn apply(&mut self, id: &T::Id, old: Option<&Arc<T>>, new: Option<&Arc<T>>) -> bool;
    /// The number of `(key, id)` entries.
    fn entries(&self) -> usize;
    /// An order-independent hash of the `(key, id)` entries, kept up to date by every
    /// write, that index file headers carry: a file whose header has the same value
    /// (and whose checksum holds) has these entries, without parsing it.
    #[doc(hidden)]
    fn content_hash(&self) -> u64;
    /// Writes the entries as JSONL lines `{"key":..,"id":..}`, sorted by key then id.
    #[doc(hidden)]
    fn write_lines(&self, out: &mut Vec<u8>) -> serde_json::Result<()>;
    /// Parses lines written by `write_lines` and compares them with the entries:
    /// how many distinct entries the lines hold, and whether they are exactly these.
    /// The error names the first unparsable line.
    #[doc(hidden)]
    fn compare_lines(&self, lines: &mut dyn Iterator<Item = &[u8]>) -> Result<(usize, bool), String>;
    /// Removes every entry.
    #[doc(hidden)]
    fn clear(&mut self);
    /// The ids under a key given as `&dyn Any` (it must be a `&K`).
    #[doc(hidden)]
    fn ids_for_any(&self, key: &dyn Any) -> Vec<T::Id>;
    /// The keys a record has under this index, each a `Box<K>`.
    #[doc(hidden)]
    fn keys_any(&self, value: &T) -> Vec<Box<dyn Any + Send>>;
    /// The record's first key under this index as JSON, for messages.
    #[doc(hidden)]
    fn key_json_any(&self, value: &T) -> String;
    /// Every key the record has under this index, as JSON (the PostgreSQL backend
    /// keeps unique keys as rows).
    #[doc(hidden)]
    fn keys_json(&self, value: &T) -> Vec<String>;
    /// The ids whose keys fall between bounds given as `&dyn Any` (each a `&K`),
    /// in key order; empty for an index that is not sorted.
    #[doc(hidden)]
    fn range_any(&self, lo: Bound<&dyn Any>, hi: Bound<&dyn Any>) -> Vec<T::Id>;
    /// Every id in key order (descending keys if `desc`), ids ascending within a
    /// key; empty for an index that is not sorted.
    #[doc(hidden)]
    fn walk(&self, desc: bool) -> Box<dyn Iterator<Item = T::Id> + '_>;
    #[doc(hidden)]
    fn as_any(&self) -> &dyn Any;
    /// The `TypeId` of the key type `K`, so queries use the index only for keys of
    /// the type they hold.
    #[doc(hidden)]
    fn key_type(&self) -> std::any::TypeId;
    /// How many records a key given as `&dyn Any` (a `&K`) has; 0 for another type.
    #[doc(hidden)]
    fn count_any(&self, key: &dyn Any) -> usize;
    /// How many entries have keys between the bounds (each a `&K`), without listing
    /// them; 0 for an index that is not sorted.
    #[doc(hidden)]
    fn range_count_any(&self, lo: Bound<&dyn Any>, hi: Bound<&dyn Any>) -> usize;
    /// Visits every key (as a `&K`) with its number of records: in key order for a
    /// sorted index, in no order otherwise.
    #[doc(hidden)]
    fn key_counts_any(&self, visit: &mut dyn FnMut(&dyn Any, usize));
    /// Visits every key (as a `&K`) with the records under it, in id order: the
    /// records grouped by key without a lookup per record. Keys come in key order
    /// for a sorted index, in no order otherwise.
    #[doc(hidden)]
    fn visit_groups(&self, visit: &mut GroupVisitor<'_, T>);
    /// The ids whose keys fall between the bounds (each a `&K`), in key order
    /// (descending keys if `desc`, ids ascending within a key), lazily; empty for an
    /// index that is not sorted.
    #[doc(hidden)]
    fn walk_range_any<'a>(
        &'a self,
        lo: Bound<&dyn Any>,
        hi: Bound<&dyn Any>,
        desc: bool,
    ) -> Box<dyn Iterator<Item = T::Id> + 'a>;
    /// For a composite index (`#[index((a, b, ..))]`): its field names and the types
    /// of its first two parts, so plans can use it for "a == x order by b".
    #[doc(hidden)]
    fn composite(&self) -> Option<CompositeInfo> {
        None
    }
    /// The records whose key starts with `head` (a `&A`, the first part's type), in
    /// key order (descending if `desc`, ids ascending within a key), lazily; empty
    /// for an index that is not a sorted composite, or for another head type.
    #[doc(hidden)]
    fn walk_prefix_any<'a>(&'a self, _head: &dyn Any, _desc: bool) -> Box<dyn Iterator<Item = &'a Arc<T>> + 'a> {
        Box::new(std::iter::empty())
    }
    /// Visits, for every distinct first part (a `&A`) of a sorted composite index,
    /// the record of its last key (`last`) or its first key, the smallest id under
    /// that key: one seek per first part. Heads come descending when `last`,
    /// ascending otherwise. Returns false (visiting nothing) for another index.
    #[doc(hidden)]
    fn prefix_tops(&self, _last: bool, _visit: &mut dyn FnMut(&dyn Any, &Arc<T>)) -> bool {
        false
    }
}

/// Visits one key (a `&K`) with the records under it, for [`IndexMaint::visit_groups`].
pub type GroupVisitor<'a, T> = dyn FnMut(&dyn Any, &mut dyn Iterator<Item = &Arc<T>>) + 'a;

/// A key given as `&dyn Any` as a `&K`. The query planner picks an index only
/// when its key type is the query's (`key_type`), so another type is a bug in
/// Shelf: it stops with a message instead of answering an empty lookup.
pub(crate) fn typed_key<K: 'static>(key: &dyn Any) -> &K {
    match key.downcast_ref::<K>() {
        Some(key) => key,
        None => unreachable!(
            "shelf internal error: an index of `{}` was given a key of another type",
            std::any::type_name::<K>()
        ),
    }
}

/// Bounds given as `&dyn Any` as bounds on `K` (see [`typed_key`]).
fn typed_bound<K: 'static>(bound: Bound<&dyn Any>) -> Bound<&K> {
    match bound {
        Bound::Included(k) => Bound::Included(typed_key(k)),
        Bound::Excluded(k) => Bound::Excluded(typed_key(k)),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// Whether `BTreeMap::range` would panic on these bounds (inverted, or equal and
/// both excluded): such a range is empty.
fn empty_bounds<Q: Ord + ?Sized>(bounds: (Bound<&Q>, Bound<&Q>)) -> bool {
    if let (Bound::Included(s) | Bound::Excluded(s), Bound::Included(e) | Bound::Excluded(e)) = bounds {
        let both_excluded = matches!(bounds, (Bound::Excluded(_), Bound::Excluded(_)));
        return s > e || (s == e && both_excluded);
    }
    false
}

/// The key map: a hash map, or a B-tree for sorted indices.
enum Map<K, V> {
    Hash(HashMap<K, V, foldhash::fast::RandomState>),
    Sorted(BTreeMap<K, V>),
}

impl<K: IndexKey, V> Map<K, V> {
    fn new(sorted: bool) -> Self {
        if sorted {
            Map::Sorted(BTreeMap::new())
        } else {
            Map::Hash(HashMap::default())
        }
    }
    #[inline]
    fn get<Q: Hash + Ord + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        match self {
            Map::Hash(m) => m.get(key),
            Map::Sorted(m) => m.get(key),
        }
    }
    fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        match self {
            Map::Hash(m) => m.get_mut(key),
            Map::Sorted(m) => m.get_mut(key),
        }
    }
    fn insert(&mut self, key: K, value: V) {
        match self {
            Map::Hash(m) => {
                m.insert(key, value);
            }
            Map::Sorted(m) => {
                m.insert(key, value);
            }
        }
    }
    fn remove(&mut self, key: &K) -> Option<V> {
        match self {
            Map::Hash(m) => m.remove(key),
            Map::Sorted(m) => m.remove(key),
        }
    }
    fn clear(&mut self) {
        match self {
            Map::Hash(m) => m.clear(),
            Map::Sorted(m) => m.clear(),
        }
    }
    /// Entries sorted by key.
    fn sorted_entries(&self) -> Vec<(&K, &V)> {
        match self {
            Map::Hash(m) => {
                let mut entries: Vec<(&K, &V)> = m.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                entries
            }
            Map::Sorted(m) => m.iter().collect(),
        }
    }
}

/// The records under one key, usually one, so no map is allocated for it. An entry
/// holds the record's `Arc` and no copy of its id: the id is the record's own.
enum Ids<T: Entity> {
    One(Arc<T>),
    // Boxed so that a slot is 16 bytes, not 32: most slots are `One`.
    #[allow(clippy::box_collection)]
    Many(Box<BTreeMap<T::Id, Arc<T>>>),
}

/// The `(id, record)` pairs under one key, in id order.
enum IdsIter<'a, T: Entity> {
    One(Option<&'a Arc<T>>),
    Many(std::collections::btree_map::Iter<'a, T::Id, Arc<T>>),
}

impl<'a, T: Entity> Iterator for IdsIter<'a, T> {
    type Item = (&'a T::Id, &'a Arc<T>);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            IdsIter::One(rec) => rec.take().map(|r| (r.id(), r)),
            IdsIter::Many(iter) => iter.next(),
        }
    }
}

impl<T: Entity> Ids<T> {
    fn entries(&self) -> IdsIter<'_, T> {
        match self {
            Ids::One(rec) => IdsIter::One(Some(rec)),
            Ids::Many(recs) => IdsIter::Many(recs.iter()),
        }
    }
    fn iter(&self) -> impl Iterator<Item = &T::Id> + '_ {
        self.entries().map(|(id, _)| id)
    }
    fn recs(&self) -> impl Iterator<Item = &Arc<T>> + '_ {
        self.entries().map(|(_, rec)| rec)
    }
    fn len(&self) -> usize {
        match self {
            Ids::One(..) => 1,
            Ids::Many(recs) => recs.len(),
        }
    }
    fn first(&self) -> Option<&Arc<T>> {
        match self {
            Ids::One(rec) => Some(rec),
            Ids::Many(recs) => recs.values().next(),
        }
    }
    fn contains(&self, id: &T::Id) -> bool {
        match self {
            Ids::One(rec) => rec.id() == id,
            Ids::Many(recs) => recs.contains_key(id),
        }
    }
    /// Adds the record (or replaces the one with its id); returns whether the id is new.
    fn insert(&mut self, rec: Arc<T>) -> bool {
        match self {
            Ids::One(existing) if existing.id() == rec.id() => {
                *existing = rec;
                false
            }
            Ids::One(existing) => {
                let mut recs = BTreeMap::new();
                recs.insert(existing.id().clone(), Arc::clone(existing));
                recs.insert(rec.id().clone(), rec);
                *self = Ids::Many(Box::new(recs));
                true
            }
            Ids::Many(recs) => recs.insert(rec.id().clone(), rec).is_none(),
        }
    }
    /// Removes `id`; returns whether the slot is now empty.
    fn remove(&mut self, id: &T::Id) -> bool {
        match self {
            Ids::One(existing) => existing.id() == id,
            Ids::Many(recs) => {
                recs.remove(id);
                if recs.len() == 1 {
                    if let Some((_, last)) = recs.pop_first() {
                        *self = Ids::One(last);
                    }
                }
                matches!(self, Ids::Many(recs) if recs.is_empty())
            }
        }
    }
}

/// Calls the visitor with each key a record has under one index: none for a `None`
/// option, one for a plain field, one per element for `#[index(each)]`.
pub type KeysOf<T, K> = fn(&T, &mut dyn FnMut(&K));

/// A typed secondary index over the records of `T`, keyed by `K`.
pub struct Index<T: Entity, K: IndexKey> {
    name: &'static str,
    kind: IndexKind,
    keys_of: KeysOf<T, K>,
    map: Map<K, Ids<T>>,
    entries: usize,
    /// The sum of [`entry_hash`] over the entries.
    content: u64,
    /// For a composite index: the prefix walks its key type allows.
    prefix: Option<composite::PrefixOps<T, K>>,
}

impl<T: Entity, K: IndexKey> Index<T, K> {
    /// A new, empty index.
    pub fn new(name: &'static str, kind: IndexKind, keys_of: KeysOf<T, K>) -> Self {
        Index { name, kind, keys_of, map: Map::new(kind.sorted), entries: 0, content: 0, prefix: None }
    }

    /// Boxes the index for `EntityInternals::__indices`.
    pub fn boxed(self) -> Box<dyn IndexMaint<T>> {
        Box::new(self)
    }

    fn keys(&self, value: &T) -> Vec<K> {
        let mut keys = Vec::new();
        (self.keys_of)(value, &mut |k| keys.push(k.clone()));
        keys.sort();
        keys.dedup();
        keys
    }

    /// Files `rec` under `key`; returns whether that is a new entry.
    fn add(&mut self, key: K, rec: Arc<T>) -> bool {
        let hash = entry_hash(&key, rec.id());
        let added = match self.map.get_mut(&key) {
            Some(ids) => ids.insert(rec),
            None => {
                self.map.insert(key, Ids::One(rec));
                true
            }
        };
        if added {
            self.entries += 1;
            self.content = self.content.wrapping_add(hash);
        }
        added
    }

    fn drop_entry(&mut self, key: &K, id: &T::Id) -> bool {
        let Some(ids) = self.map.get_mut(key) else { return false };
        let had = ids.contains(id);
        if had {
            self.entries -= 1;
            self.content = self.content.wrapping_sub(entry_hash(key, id));
            if ids.remove(id) {
                self.map.remove(key);
            }
        }
        had
    }

    /// The ids under `key`.
    pub fn get<Q: Hash + Ord + ?Sized>(&self, key: &Q) -> impl Iterator<Item = &T::Id>
    where
        K: Borrow<Q>,
    {
        self.map.get(key).into_iter().flat_map(Ids::iter)
    }

    /// The first id under `key` (the only one, for a unique index).
    pub fn get_one<Q: Hash + Ord + ?Sized>(&self, key: &Q) -> Option<&T::Id>
    where
        K: Borrow<Q>,
    {
        self.map.get(key).and_then(Ids::first).map(|rec| rec.id())
    }

    /// The record under `key` (the only one, for a unique index).
    pub fn get_one_rec<Q: Hash + Ord + ?Sized>(&self, key: &Q) -> Option<&Arc<T>>
    where
        K: Borrow<Q>,
    {
        self.map.get(key).and_then(Ids::first)
    }

    /// The records under `key`, in id order.
    pub fn get_recs<Q: Hash + Ord + ?Sized>(&self, key: &Q) -> impl Iterator<Item = &Arc<T>>
    where
        K: Borrow<Q>,
    {
        self.map.get(key).into_iter().flat_map(Ids::recs)
    }

    /// How many records have `key`.
    pub fn count<Q: Hash + Ord + ?Sized>(&self, key: &Q) -> usize
    where
        K: Borrow<Q>,
    {
        self.map.get(key).map_or(0, Ids::len)
    }

    /// The ids whose keys fall in the bounds, in key order (then id order). Empty for
    /// an index that is not sorted.
    pub fn range<Q: Ord + ?Sized>(&self, bounds: (Bound<&Q>, Bound<&Q>)) -> Vec<&T::Id>
    where
        K: Borrow<Q>,
    {
        match &self.map {
            Map::Sorted(m) => {
                // BTreeMap::range panics on inverted or equal-excluded bounds; answer empty.
                if let (Bound::Included(s) | Bound::Excluded(s), Bound::Included(e) | Bound::Excluded(e)) = bounds {
                    let both_excluded = matches!(bounds, (Bound::Excluded(_), Bound::Excluded(_)));
                    if s > e || (s == e && both_excluded) {
                        return Vec::new();
                    }
                }
                m.range::<Q, _>(bounds).flat_map(|(_, ids)| ids.iter()).collect()
            }
            Map::Hash(_) => Vec::new(),
        }
    }
}

/// One line of an index file.
#[derive(Serialize, Deserialize)]
struct Line<K, I> {
    key: K,
    id: I,
}

impl<T: Entity, K: IndexKey> IndexMaint<T> for Index<T, K> {
    fn name(&self) -> &'static str {
        self.name
    }

    fn kind(&self) -> IndexKind {
        self.kind
    }

    fn check(&self, id: &T::Id, new: &T) -> Result<(), (String, String)> {
        if !self.kind.unique {
            return Ok(());
        }
        for key in self.keys(new) {
            if let Some(existing) = self.map.get(&key).and_then(|ids| ids.iter().find(|other| *other != id)) {
                return Err((key_text(&key), existing.encode_key()));
            }
        }
        Ok(())
    }

    fn duplicates(&self) -> Vec<(String, Vec<String>)> {
        if !self.kind.unique {
            return Vec::new();
        }
        let mut shared: Vec<_> = match &self.map {
            Map::Hash(m) => m.iter().filter(|(_, ids)| ids.len() > 1).collect(),
            Map::Sorted(m) => m.iter().filter(|(_, ids)| ids.len() > 1).collect(),
        };
        shared.sort_by(|a, b| a.0.cmp(b.0));
        shared.into_iter().map(|(key, ids)| (key_text(key), ids.iter().map(Key::encode_key).collect())).collect()
    }

    fn apply(&mut self, id: &T::Id, old: Option<&Arc<T>>, new: Option<&Arc<T>>) -> bool {
        if let (None, Some(new)) = (old, new) {
            // A new record: each of its keys gets an entry (a key listed twice by an
            // `each` field is added once), with no key list built first.
            let keys_of = self.keys_of;
            let mut changed = false;
            keys_of(new, &mut |key| changed |= self.add(key.clone(), Arc::clone(new)));
            return changed;
        }
        let old_keys = old.map(|v| self.keys(v)).unwrap_or_default();
        let new_keys = new.map(|v| self.keys(v)).unwrap_or_default();
        let mut changed = false;
        for key in old_keys.iter().filter(|k| new_keys.binary_search(k).is_err()) {
            changed |= self.drop_entry(key, id);
        }
        if let Some(new) = new {
            for key in new_keys {
                // A kept key gets the new record, a new key a new entry.
                changed |= self.add(key, Arc::clone(new));
            }
        }
        changed
    }

    fn entries(&self) -> usize {
        self.entries
    }

    fn content_hash(&self) -> u64 {
        self.content
    }

    fn write_lines(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        for (key, ids) in self.map.sorted_entries() {
            for id in ids.iter() {
                serde_json::to_writer(&mut *out, &Line { key, id })?;
                out.push(b'\n');
            }
        }
        Ok(())
    }

    fn compare_lines(&self, lines: &mut dyn Iterator<Item = &[u8]>) -> Result<(usize, bool), String> {
        let mut stored: Vec<(K, T::Id)> = Vec::new();
        for (n, line) in lines.enumerate() {
            let line: Line<K, T::Id> = serde_json::from_slice(line).map_err(|e| format!("line {}: {e}", n + 2))?;
            stored.push((line.key, line.id));
        }
        stored.sort();
        stored.dedup();
        let mine = self.map.sorted_entries().into_iter().flat_map(|(key, ids)| ids.iter().map(move |id| (key, id)));
        let same = stored.len() == self.entries && stored.iter().zip(mine).all(|((k, i), (mk, mi))| k == mk && i == mi);
        Ok((stored.len(), same))
    }

    fn clear(&mut self) {
        self.map.clear();
        self.entries = 0;
        self.content = 0;
    }

    fn ids_for_any(&self, key: &dyn Any) -> Vec<T::Id> {
        self.get(typed_key::<K>(key)).cloned().collect()
    }

    fn keys_any(&self, value: &T) -> Vec<Box<dyn Any + Send>> {
        self.keys(value).into_iter().map(|k| Box::new(k) as Box<dyn Any + Send>).collect()
    }

    fn key_json_any(&self, value: &T) -> String {
        self.keys(value).first().map(key_text).unwrap_or_default()
    }

    fn keys_json(&self, value: &T) -> Vec<String> {
        self.keys(value).iter().map(key_text).collect()
    }

    fn range_any(&self, lo: Bound<&dyn Any>, hi: Bound<&dyn Any>) -> Vec<T::Id> {
        self.range::<K>((typed_bound::<K>(lo), typed_bound::<K>(hi))).into_iter().cloned().collect()
    }

    fn walk(&self, desc: bool) -> Box<dyn Iterator<Item = T::Id> + '_> {
        match &self.map {
            Map::Sorted(m) if desc => Box::new(m.values().rev().flat_map(|ids| ids.iter().cloned())),
            Map::Sorted(m) => Box::new(m.values().flat_map(|ids| ids.iter().cloned())),
            Map::Hash(_) => Box::new(std::iter::empty()),
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn key_type(&self) -> std::any::TypeId {
        std::any::TypeId::of::<K>()
    }

    fn count_any(&self, key: &dyn Any) -> usize {
        self.count(typed_key::<K>(key))
    }

    fn range_count_any(&self, lo: Bound<&dyn Any>, hi: Bound<&dyn Any>) -> usize {
        let (lo, hi) = (typed_bound::<K>(lo), typed_bound::<K>(hi));
        match &self.map {
            Map::Sorted(m) if !empty_bounds((lo, hi)) => m.range::<K, _>((lo, hi)).map(|(_, ids)| ids.len()).sum(),
            _ => 0,
        }
    }

    fn key_counts_any(&self, visit: &mut dyn FnMut(&dyn Any, usize)) {
        match &self.map {
            Map::Hash(m) => m.iter().for_each(|(k, ids)| visit(k, ids.len())),
            Map::Sorted(m) => m.iter().for_each(|(k, ids)| visit(k, ids.len())),
        }
    }

    fn visit_groups(&self, visit: &mut GroupVisitor<'_, T>) {
        match &self.map {
            Map::Hash(m) => m.iter().for_each(|(k, ids)| visit(k, &mut ids.recs())),
            Map::Sorted(m) => m.iter().for_each(|(k, ids)| visit(k, &mut ids.recs())),
        }
    }

    fn walk_range_any<'a>(
        &'a self,
        lo: Bound<&dyn Any>,
        hi: Bound<&dyn Any>,
        desc: bool,
    ) -> Box<dyn Iterator<Item = T::Id> + 'a> {
        let (lo, hi) = (typed_bound::<K>(lo), typed_bound::<K>(hi));
        match &self.map {
            Map::Sorted(m) if !empty_bounds((lo, hi)) => {
                let range = m.range::<K, _>((lo, hi));
                if desc {
                    Box::new(range.rev().flat_map(|(_, ids)| ids.iter().cloned()))
                } else {
                    Box::new(range.flat_map(|(_, ids)| ids.iter().cloned()))
                }
            }
            _ => Box::new(std::iter::empty()),
        }
    }

    fn composite(&self) -> Option<CompositeInfo> {
        self.prefix.as_ref().map(|ops| CompositeInfo { sorted: self.kind.sorted, ..ops.info })
    }

    fn walk_prefix_any<'a>(&'a self, head: &dyn Any, desc: bool) -> Box<dyn Iterator<Item = &'a Arc<T>> + 'a> {
        match (&self.map, &self.prefix) {
            (Map::Sorted(m), Some(ops)) => (ops.walk)(m, head, desc),
            _ => Box::new(std::iter::empty()),
        }
    }

    fn prefix_tops(&self, last: bool, visit: &mut dyn FnMut(&dyn Any, &Arc<T>)) -> bool {
        match (&self.map, &self.prefix) {
            (Map::Sorted(m), Some(ops)) => {
                (ops.tops)(m, last, visit);
                true
            }
            _ => false,
        }
    }
}

/// A key as JSON, for messages.
fn key_text<K: IndexKey>(key: &K) -> String {
    serde_json::to_string(key).unwrap_or_else(|_| format!("{key:?}"))
}

/// The hash of one `(key, id)` entry for [`IndexMaint::content_hash`]: FNV-1a over
/// what the values' `Hash` impls write, so it is the same in every run of a build
/// (a toolchain that hashes differently only makes index files look stale once).
fn entry_hash<K: Hash, I: Hash>(key: &K, id: &I) -> u64 {
    let mut hasher = Fnv(0xcbf2_9ce4_8422_2325);
    key.hash(&mut hasher);
    id.hash(&mut hasher);
    hasher.0
}

/// A streaming FNV-1a hasher.
struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// A 64-bit FNV-1a hash: stable across platforms and Rust versions, which is all the
/// index-file fingerprint needs.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_of_the_index_type_is_read_as_that_type() {
        let key: &dyn Any = &7u32;
        assert_eq!(*typed_key::<u32>(key), 7);
        assert_eq!(typed_bound::<u32>(Bound::Excluded(key)), Bound::Excluded(&7));
        assert_eq!(typed_bound::<u32>(Bound::Unbounded), Bound::Unbounded);
    }

    /// A key of another type is a bug in Shelf; the lookup must not answer as if
    /// the index held nothing under it.
    #[test]
    #[should_panic(expected = "shelf internal error: an index of `u32` was given a key of another type")]
    fn a_key_of_another_type_stops_with_a_message_never_an_empty_lookup() {
        let key: &dyn Any = &"7";
        let _ = typed_key::<u32>(key);
    }
}
