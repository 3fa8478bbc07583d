//! Projections and aggregates: [`Query::select`], [`Query::distinct`],
//! [`Query::group_by`] ([`GroupBy`]) and whole-query `sum`/`min`/`max`.
//!
//! Aggregates read the query's filters and ignore its `order_by`, `offset` and
//! `limit` (those shape a list of records, not groups). Results come in key order.
//! With no filter, an index on the grouping field answers `count` per key and
//! `distinct` by listing its keys, without reading a record; `sum`, `min` and `max`
//! per key then read each key's records from the index (no lookup per record).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::column::{Column, Groupable, Numeric};
use super::plan::Plan;
use super::{Query, Source};
use crate::entity::Entity;
use crate::index::IndexMaint;

/// A query grouped by a column, from [`Query::group_by`]. Each method returns one
/// `(key, value)` pair per group, in key order.
pub struct GroupBy<E: Entity, C> {
    query: Query<E>,
    key: C,
}

impl<E: Entity> Query<E> {
    /// The values of `column` of the matching records, in result order (after
    /// `order_by`, `offset` and `limit`). Only the field values are cloned.
    pub fn select<C: Column<E>>(&self, column: C) -> Vec<C::Value> {
        self.collect().iter().map(|r| column.value(r)).collect()
    }

    /// The distinct values of `column` among the matching records, ascending. With
    /// no filter and an index on the field, the index's keys are listed.
    pub fn distinct<C: Column<E>>(&self, column: C) -> Vec<C::Value>
    where
        C::Value: Groupable,
    {
        if let Some(counts) = self.indexed_counts(&column) {
            return counts.into_iter().map(|(k, _)| k).collect();
        }
        let mut seen = std::collections::BTreeSet::new();
        self.visit_matches(&mut |r| {
            seen.insert(column.value(r));
        });
        seen.into_iter().collect()
    }

    /// Groups the matching records by `column`; see [`GroupBy`].
    pub fn group_by<C: Column<E>>(self, column: C) -> GroupBy<E, C>
    where
        C::Value: Groupable,
    {
        GroupBy { query: self, key: column }
    }

    /// The sum of `column` over the matching records (0 when none match).
    pub fn sum<C: Column<E>>(&self, column: C) -> <C::Value as Numeric>::Sum
    where
        C::Value: Numeric,
    {
        let mut sum = Default::default();
        self.visit_matches(&mut |r| column.value(r).add_to(&mut sum));
        sum
    }

    /// The smallest value of `column` among the matching records. For an `Option`
    /// field `None` is the smallest value; filter with `is_some()` to skip it.
    pub fn min<C: Column<E>>(&self, column: C) -> Option<C::Value>
    where
        C::Value: Groupable,
    {
        let mut min: Option<C::Value> = None;
        self.visit_matches(&mut |r| {
            let v = column.value(r);
            if min.as_ref().is_none_or(|m| v < *m) {
                min = Some(v);
            }
        });
        min
    }

    /// The largest value of `column` among the matching records.
    pub fn max<C: Column<E>>(&self, column: C) -> Option<C::Value>
    where
        C::Value: Groupable,
    {
        let mut max: Option<C::Value> = None;
        self.visit_matches(&mut |r| {
            let v = column.value(r);
            if max.as_ref().is_none_or(|m| v > *m) {
                max = Some(v);
            }
        });
        max
    }

    /// Per-key record counts from the column's index, in key order, when the query
    /// has no filter and the index holds keys of the column's type.
    fn indexed_counts<C: Column<E>>(&self, column: &C) -> Option<Vec<(C::Value, usize)>>
    where
        C::Value: Ord,
    {
        let Source::Collection(core) = &self.source else { return None };
        if !self.filters.is_empty() {
            return None;
        }
        let hint = column.index_hint()?;
        core.with_records(|records, indices| {
            let index: &dyn IndexMaint<E> = indices.get(hint.pos)?.as_ref();
            if Some(index.key_type()) != column.key_type() {
                return None;
            }
            let mut out = Vec::new();
            let mut typed = true;
            index.key_counts_any(&mut |key, n| match column.value_of_key(key) {
                Some(v) => out.push((v, n)),
                None => typed = false,
            });
            if !typed {
                return None;
            }
            // Records the index does not hold (an Option field's None): one entry
            // per indexed record, so the rest is the difference.
            let held: usize = out.iter().map(|(_, n)| n).sum();
            if let Some(absent) = column.unindexed_value() {
                if records.len() > held {
                    out.push((absent, records.len() - held));
                }
            }
            if !index.kind().sorted || column.unindexed_value().is_some() {
                out.sort_by(|a, b| a.0.cmp(&b.0));
            }
            Some(out)
        })
    }
}

impl<E: Entity, C: Column<E>> GroupBy<E, C>
where
    C::Value: Ord,
{
    /// How [`count`](GroupBy::count) runs: from the grouping field's index, or by a
    /// pass over the query's matches.
    pub fn explain(&self) -> Plan {
        let plan = self.query.explain_count();
        let indexed = matches!(self.query.source, Source::Collection(_))
            && self.query.filters.is_empty()
            && self.key.index_hint().is_some();
        match self.key.index_hint() {
            Some(hint) if indexed => plan.with_source(
                format!("group by {}: count entries per key of index `{}`", self.key.column_name(), hint.name),
                Some(hint.name),
            ),
            _ => {
                let text = format!("group by {}: pass over matches", self.key.column_name());
                let index = plan.index;
                plan.with_source(text, index)
            }
        }
    }

    /// The number of matching records per key. With no filter and an index on the
    /// grouping field, read from the index without touching a record.
    pub fn count(&self) -> Vec<(C::Value, usize)> {
        if let Some(counts) = self.query.indexed_counts(&self.key) {
            return counts;
        }
        self.fold(0usize, |n, _| *n += 1)
    }

    /// The sum of `field` per key.
    pub fn sum<S: Column<E>>(&self, field: S) -> Vec<(C::Value, <S::Value as Numeric>::Sum)>
    where
        S::Value: Numeric,
    {
        self.fold(Default::default(), |sum, r| field.value(r).add_to(sum))
    }

    /// The smallest value of `field` per key (see [`Query::min`] on `None`).
    pub fn min<S: Column<E>>(&self, field: S) -> Vec<(C::Value, S::Value)>
    where
        S::Value: Groupable,
    {
        self.best(field, false, |new, old| new < old)
    }

    /// The largest value of `field` per key: "the latest per group" with a time field.
    pub fn max<S: Column<E>>(&self, field: S) -> Vec<(C::Value, S::Value)>
    where
        S::Value: Groupable,
    {
        self.best(field, true, |new, old| new > old)
    }

    /// The record with the smallest `field` per key (ties: the smallest id): "the
    /// first child per parent". Like [`max_by`](GroupBy::max_by), one seek per key
    /// with a sorted composite index `(key, field)` and no filter.
    pub fn min_by<S: Column<E>>(&self, field: S) -> Vec<(C::Value, Arc<E>)>
    where
        S::Value: Groupable,
    {
        if let Some(tops) = self.composite_tops(&field, false, true) {
            return tops;
        }
        self.top_by(field, |new, old| new < old)
    }

    /// The record with the largest `field` per key (ties: the smallest id): "the
    /// latest version per crate" in one query.
    ///
    /// With a sorted composite index on `(key, field)` and no filter, it reads the
    /// index from its last key down, one seek per key to the last key of the one
    /// before: no record is visited but the results, and nothing is allocated per
    /// key but its result. [`explain_top`](GroupBy::explain_top) shows the plan.
    /// Otherwise it takes one pass over the matches.
    ///
    /// ```
    /// use serde::{Deserialize, Serialize};
    /// use shelf::{Entity, Store};
    ///
    /// #[derive(Entity, Serialize, Deserialize, Clone, Debug)]
    /// #[index((krate, published), sorted)]
    /// struct Version {
    ///     #[id] id: u32,
    ///     krate: String,
    ///     published: u64,
    /// }
    ///
    /// # fn main() -> shelf::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::builder(dir.path()).register::<Version>().open()?;
    /// let versions = store.collection::<Version>()?;
    /// for (id, krate, published) in [(1, "serde", 10), (2, "serde", 30), (3, "tokio", 20), (4, "serde", 20)] {
    ///     versions.insert(Version { id, krate: krate.into(), published })?;
    /// }
    /// let f = Version::fields();
    /// let latest = versions.query().group_by(f.krate).max_by(f.published);
    /// let ids: Vec<(String, u32)> = latest.iter().map(|(k, v)| (k.clone(), v.id)).collect();
    /// assert_eq!(ids, [("serde".to_owned(), 2), ("tokio".to_owned(), 3)]);
    /// assert_eq!(
    ///     versions.query().group_by(f.krate).explain_top(f.published).to_string(),
    ///     "group by krate: last of each key of sorted index `krate_and_published` (one seek per key)"
    /// );
    /// # Ok(()) }
    /// ```
    pub fn max_by<S: Column<E>>(&self, field: S) -> Vec<(C::Value, Arc<E>)>
    where
        S::Value: Groupable,
    {
        if let Some(tops) = self.composite_tops(&field, true, true) {
            return tops;
        }
        self.top_by(field, |new, old| new > old)
    }

    /// How [`min`](GroupBy::min), [`max`](GroupBy::max), [`min_by`](GroupBy::min_by)
    /// and [`max_by`](GroupBy::max_by) of `field` run: one seek per key in a sorted
    /// composite index `(key, field)` (with no filter), each key's records from
    /// the key's index, or a pass over the matches.
    pub fn explain_top<S: Column<E>>(&self, field: S) -> Plan {
        if let Some((_, name)) = self.composite_for(&field, true) {
            let text = format!(
                "group by {}: last of each key of sorted index `{name}` (one seek per key)",
                self.key.column_name()
            );
            return self.query.explain_count().with_source(text, Some(name));
        }
        let plan = self.query.explain_count();
        match self.key.index_hint() {
            Some(hint) if self.query.filters.is_empty() && self.key.unindexed_value().is_none() => plan.with_source(
                format!("group by {}: each key's records from index `{}`", self.key.column_name(), hint.name),
                Some(hint.name),
            ),
            _ => {
                let text = format!("group by {}: pass over matches", self.key.column_name());
                let index = plan.index;
                plan.with_source(text, index)
            }
        }
    }

    /// The sorted composite index `(key, field, ..)` that serves the top of each key
    /// of this query (no filter, a plain key field), as `(position, name)`; with
    /// `two_parts`, only a two-field one (whose ties on `field` are in id order).
    fn composite_for<S: Column<E>>(&self, field: &S, two_parts: bool) -> Option<(usize, &'static str)> {
        let Source::Collection(core) = &self.query.source else { return None };
        if !self.query.filters.is_empty() || self.key.unindexed_value().is_some() {
            return None;
        }
        let (key_name, key_type) = (self.key.column_name(), self.key.key_type()?);
        let (field_name, field_type) = (field.column_name(), field.key_type()?);
        core.with_records(|_, indices| {
            indices.iter().enumerate().find_map(|(pos, index)| {
                let c = index.composite()?;
                let fits = c.sorted
                    && c.parts.len() >= 2
                    && (!two_parts || c.parts.len() == 2)
                    && c.parts[0] == key_name
                    && c.parts[1] == field_name
                    && c.head == key_type
                    && c.next == field_type;
                fits.then_some((pos, c.name))
            })
        })
    }

    /// The record of the first (or `last`) key of each first part of the composite
    /// index found by [`composite_for`](GroupBy::composite_for), in key order.
    fn composite_tops<S: Column<E>>(&self, field: &S, last: bool, two_parts: bool) -> Option<Vec<(C::Value, Arc<E>)>> {
        let (pos, _) = self.composite_for(field, two_parts)?;
        let Source::Collection(core) = &self.query.source else { return None };
        core.with_records(|_, indices| {
            let index = indices.get(pos)?;
            let mut out = Vec::new();
            let mut typed = true;
            let served = index.prefix_tops(last, &mut |head, record| match self.key.value_of_key(head) {
                Some(key) => out.push((key, Arc::clone(record))),
                None => typed = false,
            });
            if !served || !typed {
                return None;
            }
            if last {
                out.reverse();
            }
            Some(out)
        })
    }

    /// The record with the best `field` per key (ties: the smallest id): from each
    /// key's records in the key's index, else by a pass.
    fn top_by<S: Column<E>>(&self, field: S, better: fn(&S::Value, &S::Value) -> bool) -> Vec<(C::Value, Arc<E>)>
    where
        S::Value: Groupable,
    {
        // A key's records come in id order, so the first best one has the smallest id.
        let indexed = self.indexed_groups(|records| {
            records
                .map(|r| (field.value(r), r))
                .reduce(|best, next| if better(&next.0, &best.0) { next } else { best })
                .map(|(_, r)| Arc::clone(r))
        });
        if let Some(groups) = indexed {
            return groups;
        }
        let mut groups: BTreeMap<C::Value, (S::Value, Arc<E>)> = BTreeMap::new();
        self.query.visit_matches(&mut |r| {
            let v = field.value(r);
            match groups.entry(self.key.value(r)) {
                std::collections::btree_map::Entry::Vacant(slot) => {
                    slot.insert((v, Arc::clone(r)));
                }
                std::collections::btree_map::Entry::Occupied(mut slot) => {
                    let (best, rec) = slot.get();
                    if better(&v, best) || (v == *best && r.id() < rec.id()) {
                        slot.insert((v, Arc::clone(r)));
                    }
                }
            }
        });
        groups.into_iter().map(|(k, (_, r))| (k, r)).collect()
    }

    /// With no filter and an index on a plain grouping field, the index's groups:
    /// `fold` runs over each key's records, with no lookup per record.
    fn indexed_groups<A>(
        &self,
        mut fold: impl FnMut(&mut dyn Iterator<Item = &Arc<E>>) -> Option<A>,
    ) -> Option<Vec<(C::Value, A)>> {
        let Source::Collection(core) = &self.query.source else { return None };
        if !self.query.filters.is_empty() || self.key.unindexed_value().is_some() {
            return None;
        }
        let hint = self.key.index_hint()?;
        core.with_records(|_, indices| {
            let index: &dyn IndexMaint<E> = indices.get(hint.pos)?.as_ref();
            if Some(index.key_type()) != self.key.key_type() {
                return None;
            }
            let mut out = Vec::new();
            let mut typed = true;
            index.visit_groups(&mut |key, records| match self.key.value_of_key(key) {
                Some(k) => out.extend(fold(records).map(|a| (k, a))),
                None => typed = false,
            });
            if !typed {
                return None;
            }
            if !index.kind().sorted {
                out.sort_by(|a, b| a.0.cmp(&b.0));
            }
            Some(out)
        })
    }

    /// The best `field` per key; `last` says whether the best is the largest.
    fn best<S: Column<E>>(
        &self,
        field: S,
        last: bool,
        better: fn(&S::Value, &S::Value) -> bool,
    ) -> Vec<(C::Value, S::Value)> {
        // The first or last key of each first part in a composite (key, field)
        // index holds the best value.
        if let Some(tops) = self.composite_tops(&field, last, false) {
            return tops.into_iter().map(|(k, r)| (k, field.value(&r))).collect();
        }
        let indexed = self.indexed_groups(|records| {
            records.map(|r| field.value(r)).reduce(|best, v| if better(&v, &best) { v } else { best })
        });
        if let Some(groups) = indexed {
            return groups;
        }
        let mut groups: BTreeMap<C::Value, S::Value> = BTreeMap::new();
        self.query.visit_matches(&mut |r| {
            let v = field.value(r);
            match groups.entry(self.key.value(r)) {
                std::collections::btree_map::Entry::Vacant(slot) => {
                    slot.insert(v);
                }
                std::collections::btree_map::Entry::Occupied(mut slot) => {
                    if better(&v, slot.get()) {
                        slot.insert(v);
                    }
                }
            }
        });
        groups.into_iter().collect()
    }

    fn fold<A: Clone>(&self, init: A, mut step: impl FnMut(&mut A, &E)) -> Vec<(C::Value, A)> {
        let indexed = self.indexed_groups(|records| {
            let mut acc = init.clone();
            records.for_each(|r| step(&mut acc, r));
            Some(acc)
        });
        if let Some(groups) = indexed {
            return groups;
        }
        let mut groups: BTreeMap<C::Value, A> = BTreeMap::new();
        self.query.visit_matches(&mut |r| step(groups.entry(self.key.value(r)).or_insert_with(|| init.clone()), r));
        groups.into_iter().collect()
    }
}
