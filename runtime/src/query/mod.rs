//! Typed queries: `collection.query().filter(..).order_by(..).limit(..).collect()`.

mod field;
mod order;
mod plan;
pub(crate) mod predicate;

use std::sync::Arc;

pub use field::{Field, IndexHint, Nullable, OptField, Orderable, Text, Value};
pub use order::OrderBy;
pub use plan::Plan;
pub use predicate::Predicate;

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
}

impl<E: Entity> Query<E> {
    pub(crate) fn over_collection(core: Arc<crate::collection::Core<E>>) -> Self {
        Query { source: Source::Collection(core), filters: Vec::new(), order: Vec::new(), offset: 0, limit: None }
    }

    pub(crate) fn over_snapshot(records: Vec<Arc<E>>) -> Self {
        Query { source: Source::Snapshot(records), filters: Vec::new(), order: Vec::new(), offset: 0, limit: None }
    }

    /// Keeps only records that match; several filters must all match.
    pub fn filter(mut self, predicate: Predicate<E>) -> Self {
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

    /// Returns at most `n` results.
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }

    /// The plan this query would run. It never changes the results, only the cost.
    pub fn explain(&self) -> Plan {
        let indexed = matches!(self.source, Source::Collection(_));
        plan::choose(indexed, &self.filters, &self.order, self.offset, self.limit)
    }

    /// The matching records.
    pub fn collect(&self) -> Vec<Arc<E>> {
        let plan = self.explain();
        match &self.source {
            Source::Collection(core) => core.with_records(|records, indices| self.run(&plan, records, indices)),
            Source::Snapshot(records) => {
                let map: crate::Records<E::Id, E> = records.iter().map(|r| (r.id().clone(), Arc::clone(r))).collect();
                self.run(&plan, &map, &[])
            }
        }
    }

    /// The first matching record.
    pub fn first(&self) -> Option<Arc<E>> {
        let mut query = Query { source: self.clone_source(), ..self.shallow() };
        query.limit = Some(self.limit.map_or(1, |limit| limit.min(1)));
        query.collect().into_iter().next()
    }

    /// How many records match (ignoring `offset` and `limit`).
    pub fn count(&self) -> usize {
        let query = Query { source: self.clone_source(), order: Vec::new(), offset: 0, limit: None, ..self.shallow() };
        query.collect().len()
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
    }

    fn sort(&self, results: &mut [Arc<E>]) {
        results.sort_by(|a, b| {
            self.order.iter().map(|o| (o.cmp)(a, b)).find(|o| o.is_ne()).unwrap_or_else(|| a.id().cmp(b.id()))
        });
    }

    fn page(&self, results: Vec<Arc<E>>) -> Vec<Arc<E>> {
        let taken = results.into_iter().skip(self.offset);
        match self.limit {
            Some(n) => taken.take(n).collect(),
            None => taken.collect(),
        }
    }

    /// Runs `plan` over the records and indices.
    fn run(&self, plan: &Plan, records: &crate::Records<E::Id, E>, indices: &[Box<dyn IndexMaint<E>>]) -> Vec<Arc<E>> {
        let fetch = |ids: Vec<E::Id>| -> Vec<Arc<E>> { ids.iter().filter_map(|id| records.get(id).cloned()).collect() };
        let mut results: Vec<Arc<E>> = match (&plan.access, plan.walk) {
            (Some(access), _) => match (access, indices.get(access_pos(access))) {
                (Access::Eq { key, .. }, Some(index)) => fetch(index.ids_for_any(key.as_ref())),
                (Access::In { keys, .. }, Some(index)) => {
                    let mut ids: Vec<E::Id> = keys.iter().flat_map(|k| index.ids_for_any(k.as_ref())).collect();
                    ids.sort();
                    ids.dedup();
                    fetch(ids)
                }
                (Access::Range { lo, hi, .. }, Some(index)) => {
                    let lo = lo.as_ref().map(|k| k.as_ref() as &dyn std::any::Any);
                    let hi = hi.as_ref().map(|k| k.as_ref() as &dyn std::any::Any);
                    fetch(index.range_any(lo, hi))
                }
                _ => records.values().cloned().collect(),
            },
            (None, Some((pos, desc))) => {
                // Walk the sorted index in order, stopping once the page is full.
                let want = self.limit.map_or(usize::MAX, |limit| self.offset.saturating_add(limit));
                let mut out = Vec::new();
                if let Some(index) = indices.get(pos) {
                    for id in index.walk(desc) {
                        if out.len() >= want {
                            break;
                        }
                        if let Some(record) = records.get(&id).filter(|r| self.matches(r)) {
                            out.push(Arc::clone(record));
                        }
                    }
                }
                // Records without a key in the index (none for a plain field) never
                // match an ordering walk; `walk` covers every record of the index.
                return self.page(out);
            }
            (None, None) => records.values().cloned().collect(),
        };
        results.retain(|r| self.matches(r));
        self.sort(&mut results);
        self.page(results)
    }
}

fn access_pos(access: &Access) -> usize {
    match access {
        Access::Eq { hint, .. } | Access::In { hint, .. } | Access::Range { hint, .. } => hint.pos,
        Access::None => usize::MAX,
    }
}
