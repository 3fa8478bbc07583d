//! Typed queries: `collection.query().filter(..).order_by(..).limit(..).collect()`.

mod aggregate;
mod column;
mod field;
mod order;
mod plan;
pub(crate) mod predicate;
mod relation;
mod text;

use std::ops::Bound;
use std::sync::Arc;

pub use aggregate::GroupBy;
pub use column::{Column, Groupable, Numeric};
pub use field::{Field, IndexHint, Nullable, OptField, Orderable, Text, Value};
pub use order::OrderBy;
pub use plan::Plan;
pub use predicate::Predicate;
#[doc(hidden)]
pub use relation::{children_query, through_query};

use crate::entity::Entity;
use crate::index::IndexMaint;
use predicate::Access;

/// Where a query reads: a collection (indices available) or a transaction's view.
enum Source<E: Entity> {
    Collection(Arc<crate::collection::Core<E>>),
    Snapshot(Vec<Arc<E>>),
}

/// A query being built; nothing runs until [`collect`](Query::collect),
/// [`first`](Query::first), [`count`](Query::count) or [`ids`](Query::ids).
///
/// Results are ordered by the `order_by`/`then_by` keys and then by id, so the same
/// query always returns the same records in the same order, whichever plan runs.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use shelf::{Entity, Store};
///
/// #[derive(Entity, Serialize, Deserialize, Clone, Debug)]
/// struct User {
///     #[id] id: String,
///     #[index] country: String,
///     #[index(sorted)] age: u32,
///     name: String,
/// }
///
/// # fn main() -> shelf::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// let store = Store::builder(dir.path()).register::<User>().open()?;
/// let users = store.collection::<User>()?;
/// for (id, country, age) in [("a", "DE", 30), ("b", "DE", 17), ("c", "FR", 40)] {
///     users.insert(User { id: id.into(), country: country.into(), age, name: id.to_uppercase() })?;
/// }
/// let f = User::fields();
/// let query = users.query().filter(f.country.eq("DE")).filter(f.age.gt(17)).order_by(f.name.asc()).limit(20);
/// assert_eq!(query.collect().iter().map(|u| u.id.as_str()).collect::<Vec<_>>(), ["a"]);
/// // The plan names the index it uses:
/// assert_eq!(
///     query.explain().to_string(),
///     "index `country`: country == \"DE\"\nfilter: country == \"DE\"\nfilter: age > 17\nsort: name asc, then id\nlimit: 20"
/// );
/// // Top 2 by age walks the sorted index instead of sorting the collection:
/// let oldest = users.query().order_by(f.age.desc()).limit(2);
/// assert_eq!(oldest.explain().index(), Some("age"));
/// assert_eq!(oldest.collect().iter().map(|u| u.age).collect::<Vec<_>>(), [40, 30]);
/// # Ok(()) }
/// ```
///
/// `explain()` prints the plan; for the first query above:
///
/// ```text
/// index `country`: country == "DE"
/// filter: country == "DE"
/// filter: age > 17
/// sort: name asc, then id
/// limit: 20
/// ```
///
/// and for the second, `walk sorted index `age` descending` then `limit: 2`.
/// `User::fields().age.gt("x")` does not compile: values must have the field's type.
pub struct Query<E: Entity> {
    source: Source<E>,
    filters: Vec<Predicate<E>>,
    order: Vec<OrderBy<E>>,
    offset: usize,
    limit: Option<usize>,
    /// A keyset page's start: only records after this one in result order.
    after: Option<Arc<E>>,
}

impl<E: Entity> Query<E> {
    pub(crate) fn over_collection(core: Arc<crate::collection::Core<E>>) -> Self {
        Query {
            source: Source::Collection(core),
            filters: Vec::new(),
            order: Vec::new(),
            offset: 0,
            limit: None,
            after: None,
        }
    }

    pub(crate) fn over_snapshot(records: Vec<Arc<E>>) -> Self {
        Query {
            source: Source::Snapshot(records),
            filters: Vec::new(),
            order: Vec::new(),
            offset: 0,
            limit: None,
            after: None,
        }
    }

    /// Keeps only records that match; several filters must all match.
    pub fn filter(mut self, mut predicate: Predicate<E>) -> Self {
        if let (Access::Element { field, key, key_type }, Source::Collection(core)) = (&predicate.access, &self.source)
        {
            // `includes` on a Vec field: served by the field's `each` index, found by
            // name and key type (an index on the whole Vec has another key type).
            let found = core.with_records(|_, indices| {
                indices.iter().enumerate().find_map(|(pos, index)| {
                    (index.name() == *field && index.key_type() == *key_type).then(|| IndexHint {
                        pos,
                        name: index.name(),
                        sorted: index.kind().sorted,
                        unique: index.kind().unique,
                    })
                })
            });
            predicate.access = match found {
                Some(hint) => Access::Eq { hint, key: Arc::clone(key) },
                None => Access::None,
            };
        }
        self.filters.push(predicate);
        self
    }

    /// Orders the results by a field (replacing earlier orderings).
    pub fn order_by(mut self, order: OrderBy<E>) -> Self {
        self.order = vec![order];
        self
    }

    /// Orders records that tie on the earlier keys by another field.
    pub fn then_by(mut self, order: OrderBy<E>) -> Self {
        self.order.push(order);
        self
    }

    /// Skips the first `n` results.
    pub fn offset(mut self, n: usize) -> Self {
        self.offset = n;
        self
    }

    /// Keyset pagination: only records that come after `last` in result order (the
    /// `order_by` keys, then the id). Pass the last record of the previous page;
    /// unlike [`offset`](Query::offset), a page costs the same however deep it is
    /// (an ordered walk of a sorted index starts at `last`'s key), and writes between
    /// pages neither repeat nor skip a record that stays in place.
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # use shelf::{Entity, Store};
    /// #[derive(Entity, Serialize, Deserialize, Clone, Debug)]
    /// struct Event { #[id] id: u32, #[index(sorted)] at: u64 }
    /// # fn main() -> shelf::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::builder(dir.path()).register::<Event>().open()?;
    /// let events = store.collection::<Event>()?;
    /// for id in 0..10 { events.insert(Event { id, at: u64::from(id % 4) })?; }
    /// let f = Event::fields();
    /// let page = |after: Option<&std::sync::Arc<Event>>| {
    ///     let q = events.query().order_by(f.at.desc()).limit(4);
    ///     match after { Some(last) => q.after(last), None => q }.collect()
    /// };
    /// let first = page(None);
    /// let second = page(first.last());
    /// assert_eq!(first.iter().chain(&second).map(|e| e.id).collect::<Vec<_>>(), [3, 7, 2, 6, 1, 5, 9, 0]);
    /// # Ok(()) }
    /// ```
    pub fn after(mut self, last: &Arc<E>) -> Self {
        self.after = Some(Arc::clone(last));
        self
    }

    /// Returns at most `n` results.
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }

    /// The plan this query would run. It never changes the results, only the cost.
    pub fn explain(&self) -> Plan {
        let indexed = matches!(self.source, Source::Collection(_));
        let composites = self.composites();
        plan::choose(indexed, &self.filters, &self.order, self.offset, self.limit, &composites)
            .with_after(self.after.as_ref().map(|last| crate::Key::encode_key(last.id())))
    }

    /// The collection's composite indices with their positions, when the query
    /// could use one (an ordering and an equality on a field); else none.
    fn composites(&self) -> Vec<(usize, crate::index::CompositeInfo)> {
        let Source::Collection(core) = &self.source else { return Vec::new() };
        if self.order.is_empty() || self.filters.iter().all(|f| f.eq_field.is_none()) {
            return Vec::new();
        }
        core.with_records(|_, indices| {
            indices.iter().enumerate().filter_map(|(pos, index)| index.composite().map(|c| (pos, c))).collect()
        })
    }

    /// The matching records.
    pub fn collect(&self) -> Vec<Arc<E>> {
        let plan = self.explain();
        match &self.source {
            Source::Collection(core) => core.with_records(|records, indices| self.run(&plan, records, indices)),
            Source::Snapshot(records) => {
                let mut results: Vec<Arc<E>> = records.iter().filter(|r| self.matches(r)).cloned().collect();
                self.sort(&mut results);
                self.page(results)
            }
        }
    }

    /// The first matching record.
    pub fn first(&self) -> Option<Arc<E>> {
        let mut query = Query { source: self.clone_source(), ..self.shallow() };
        query.limit = Some(self.limit.map_or(1, |limit| limit.min(1)));
        query.collect().into_iter().next()
    }

    /// How many records match (ignoring `offset` and `limit`), without building a
    /// result list: with no filter, the collection's length; with one filter that an
    /// index answers exactly (an equality or a range on an indexed field), the index's
    /// count; otherwise a pass over the candidates that counts matches.
    /// [`explain_count`](Query::explain_count) shows which.
    pub fn count(&self) -> usize {
        match &self.source {
            Source::Collection(core) => core.with_records(|records, indices| {
                if self.filters.is_empty() {
                    return records.len();
                }
                if let Some(n) = self.index_count(indices) {
                    return n;
                }
                let mut n = 0;
                self.visit_in(records, indices, &mut |_| n += 1);
                n
            }),
            Source::Snapshot(records) => records.iter().filter(|r| self.matches(r)).count(),
        }
    }

    /// How [`count`](Query::count) runs: `count: records` (the collection's
    /// length), `count: index `x`` (an index count) or the plan of the streaming pass.
    pub fn explain_count(&self) -> Plan {
        let indexed = matches!(self.source, Source::Collection(_));
        let plan = plan::choose(indexed, &self.filters, &[], 0, None, &[]);
        if !indexed {
            return plan;
        }
        if self.filters.is_empty() {
            return plan.with_source("count: records".to_owned(), None);
        }
        match (&self.filters[..], &plan.access) {
            ([only], Some(access)) if only.exact => {
                let name = plan.index().unwrap_or_default().to_owned();
                let how = match access {
                    Access::In { .. } => "ids",
                    _ => "entries",
                };
                plan.clone().with_source(format!("count {how} of index `{name}`: {}", only.text), plan.index)
            }
            _ => plan,
        }
    }

    /// The count from an index alone, when one filter is answered exactly by it.
    fn index_count(&self, indices: &[Box<dyn IndexMaint<E>>]) -> Option<usize> {
        let [only] = &self.filters[..] else { return None };
        if !only.exact {
            return None;
        }
        let index = indices.get(access_pos(&only.access))?;
        match &only.access {
            Access::Eq { key, .. } => Some(index.count_any(key.as_ref())),
            Access::In { keys, .. } => {
                let mut ids: Vec<E::Id> = keys.iter().flat_map(|k| index.ids_for_any(k.as_ref())).collect();
                ids.sort();
                ids.dedup();
                Some(ids.len())
            }
            Access::Range { lo, hi, .. } => {
                let lo = lo.as_ref().map(|k| k.as_ref() as &dyn std::any::Any);
                let hi = hi.as_ref().map(|k| k.as_ref() as &dyn std::any::Any);
                Some(index.range_count_any(lo, hi))
            }
            Access::None | Access::Element { .. } | Access::Ids { .. } => None,
        }
    }

    /// The ids of the matching records, in result order.
    pub fn ids(&self) -> Vec<E::Id> {
        self.collect().iter().map(|r| r.id().clone()).collect()
    }

    fn shallow(&self) -> Query<E> {
        Query {
            source: Source::Snapshot(Vec::new()),
            filters: self.filters.clone(),
            order: self.order.clone(),
            offset: self.offset,
            limit: self.limit,
            after: self.after.clone(),
        }
    }

    fn clone_source(&self) -> Source<E> {
        match &self.source {
            Source::Collection(core) => Source::Collection(Arc::clone(core)),
            Source::Snapshot(records) => Source::Snapshot(records.clone()),
        }
    }

    fn matches(&self, record: &E) -> bool {
        self.filters.iter().all(|f| f.matches(record))
            && self.after.as_ref().is_none_or(|last| self.compare(record, last).is_gt())
    }

    fn sort(&self, results: &mut [Arc<E>]) {
        results.sort_by(|a, b| self.compare(a, b));
    }

    /// The result order: the order keys, then the id.
    fn compare(&self, a: &E, b: &E) -> std::cmp::Ordering {
        self.order.iter().map(|o| (o.cmp)(a, b)).find(|o| o.is_ne()).unwrap_or_else(|| a.id().cmp(b.id()))
    }

    fn page(&self, results: Vec<Arc<E>>) -> Vec<Arc<E>> {
        let taken = results.into_iter().skip(self.offset);
        match self.limit {
            Some(n) => taken.take(n).collect(),
            None => taken.collect(),
        }
    }

    /// Visits every matching record once, in no particular order, under one read
    /// lock: through the index that serves a filter, else over every record.
    fn visit_matches(&self, f: &mut dyn FnMut(&Arc<E>)) {
        match &self.source {
            Source::Collection(core) => core.with_records(|records, indices| self.visit_in(records, indices, f)),
            Source::Snapshot(records) => records.iter().filter(|r| self.matches(r)).for_each(f),
        }
    }

    fn visit_in(
        &self,
        records: &crate::Records<E::Id, E>,
        indices: &[Box<dyn IndexMaint<E>>],
        f: &mut dyn FnMut(&Arc<E>),
    ) {
        let plan = plan::choose(true, &self.filters, &[], 0, None, &[]);
        candidates(&plan, records, indices, &mut |r| {
            if self.matches(r) {
                f(r)
            }
        });
    }

    /// Runs `plan` over the records and indices.
    fn run(&self, plan: &Plan, records: &crate::Records<E::Id, E>, indices: &[Box<dyn IndexMaint<E>>]) -> Vec<Arc<E>> {
        if let Some(walk) = plan.prefix {
            return self.run_prefix(walk, indices);
        }
        if let (None, Some((pos, desc))) = (&plan.access, plan.walk) {
            // Walk the sorted index in order, stopping once the page is full.
            let want = self.limit.map_or(usize::MAX, |limit| self.offset.saturating_add(limit));
            let mut out = Vec::new();
            let Some(index) = indices.get(pos) else { return out };
            // An Option field's records with `None` are not in its index: they come
            // first ascending and last descending, in id order. They exist only if
            // the index holds fewer entries than there are records.
            let absent = self.order.first().and_then(|o| o.absent.clone());
            let add_absent = |out: &mut Vec<Arc<E>>| {
                if let Some(absent) = &absent {
                    if index.entries() < records.len() && out.len() < want {
                        let mut missing: Vec<Arc<E>> =
                            records.values().filter(|r| absent(r) && self.matches(r)).cloned().collect();
                        missing.sort_by(|a, b| a.id().cmp(b.id()));
                        out.extend(missing);
                    }
                }
            };
            if !desc {
                add_absent(&mut out);
            }
            // A keyset page starts its walk at the last record's key.
            let start = self.after.as_ref().zip(self.order.first()).and_then(|(last, order)| (order.seek)(last));
            let walk = match &start {
                Some(key) if desc => index.walk_range_any(Bound::Unbounded, Bound::Included(key.as_ref()), true),
                Some(key) => index.walk_range_any(Bound::Included(key.as_ref()), Bound::Unbounded, false),
                None => index.walk(desc),
            };
            for id in walk {
                if out.len() >= want {
                    break;
                }
                if let Some(record) = records.get(&id).filter(|r| self.matches(r)) {
                    out.push(Arc::clone(record));
                }
            }
            if desc {
                add_absent(&mut out);
            }
            return self.page(out);
        }
        let mut results = Vec::new();
        candidates(plan, records, indices, &mut |r| {
            if self.matches(r) {
                results.push(Arc::clone(r))
            }
        });
        self.sort(&mut results);
        self.page(results)
    }
}

impl<E: Entity> Query<E> {
    /// Walks a composite index `(a, b, ..)` within `a == x` in `b` order, stopping
    /// once the page is full and the records tying with its last one on `b` are in;
    /// then orders those by the whole result order (ties on `b` by the later keys
    /// and the id).
    fn run_prefix(&self, walk: plan::PrefixWalk, indices: &[Box<dyn IndexMaint<E>>]) -> Vec<Arc<E>> {
        let (Some(index), Some(filter), Some(first)) =
            (indices.get(walk.pos), self.filters.get(walk.filter), self.order.first())
        else {
            return Vec::new();
        };
        let Access::Eq { key, .. } = &filter.access else { return Vec::new() };
        let want = self.limit.map_or(usize::MAX, |limit| self.offset.saturating_add(limit));
        let mut out: Vec<Arc<E>> = Vec::new();
        for record in index.walk_prefix_any(key.as_ref(), walk.desc) {
            if !self.matches(record) {
                continue;
            }
            if out.len() >= want && out.last().is_none_or(|last| (first.cmp)(record, last).is_ne()) {
                break;
            }
            out.push(Arc::clone(record));
        }
        // Stable and linear when already in order (a two-field index, one ordering).
        self.sort(&mut out);
        self.page(out)
    }
}

/// Visits the candidates of a plan's index access (a superset of the matches), or
/// every record when it has none.
fn candidates<E: Entity>(
    plan: &Plan,
    records: &crate::Records<E::Id, E>,
    indices: &[Box<dyn IndexMaint<E>>],
    f: &mut dyn FnMut(&Arc<E>),
) {
    if let Some(Access::Ids { ids, .. }) = &plan.access {
        if let Some(ids) = ids.downcast_ref::<Vec<E::Id>>() {
            ids.iter().filter_map(|id| records.get(id)).for_each(f);
            return;
        }
    }
    let access = plan.access.as_ref().and_then(|a| indices.get(access_pos(a)).map(|index| (a, index)));
    let mut by_id = |id: E::Id| {
        if let Some(r) = records.get(&id) {
            f(r)
        }
    };
    match access {
        Some((Access::Eq { key, .. }, index)) => index.ids_for_any(key.as_ref()).into_iter().for_each(&mut by_id),
        Some((Access::In { keys, .. }, index)) => {
            let mut ids: Vec<E::Id> = keys.iter().flat_map(|k| index.ids_for_any(k.as_ref())).collect();
            ids.sort();
            ids.dedup();
            ids.into_iter().for_each(&mut by_id)
        }
        Some((Access::Range { lo, hi, .. }, index)) => {
            let lo = lo.as_ref().map(|k| k.as_ref() as &dyn std::any::Any);
            let hi = hi.as_ref().map(|k| k.as_ref() as &dyn std::any::Any);
            index.walk_range_any(lo, hi, false).for_each(&mut by_id)
        }
        _ => records.values().for_each(f),
    }
}

fn access_pos(access: &Access) -> usize {
    match access {
        Access::Eq { hint, .. } | Access::In { hint, .. } | Access::Range { hint, .. } => hint.pos,
        Access::None | Access::Element { .. } | Access::Ids { .. } => usize::MAX,
    }
}
