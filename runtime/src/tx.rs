//! Transactions: several writes, across collections, applied all together or not at
//! all.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

use crate::collection::TypedOp;
use crate::commit::{Holding, Op};
use crate::entity::Entity;
use crate::error::{show_id, Error, Result};
use crate::key::Key;
use crate::store::Store;

/// A transaction's view of the records it wrote in one collection.
type Overlay<T> = HashMap<<T as Entity>::Id, Option<Arc<T>>>;

/// A position's overlay of another type than its collection's: a bug in Shelf.
fn overlay_mismatch<T>(pos: usize) -> ! {
    unreachable!(
        "shelf internal error: the transaction overlay of collection {pos} is not of `{}`",
        std::any::type_name::<T>()
    )
}

/// The writes of a transaction in progress; see [`Store::transaction`].
///
/// Reads through the transaction ([`get`](Transaction::get)) see its own writes.
/// Writes are checked as far as possible when they are made (a duplicate id, a
/// missing record) and completely when the transaction commits (unique indices);
/// a failure at commit applies nothing.
pub struct Transaction<'s> {
    store: &'s Store,
    ops: Vec<Op>,
    /// Per collection position: `HashMap<T::Id, Option<Arc<T>>>`, the transaction's
    /// view of the records it wrote.
    overlays: HashMap<usize, Box<dyn Any + Send>>,
    /// On a shared backend: `(collection, id as JSON)` of every committed record
    /// the body read, whose versions the commit checks.
    reads: Option<parking_lot::Mutex<Vec<(usize, String)>>>,
}

impl<'s> Transaction<'s> {
    fn stage<T: Entity>(&mut self, pos: usize, id: T::Id, value: Option<Arc<T>>, op: TypedOp<T>) {
        let overlay = self.overlays.entry(pos).or_insert_with(|| Box::new(Overlay::<T>::new()));
        // A position's overlay is always made with that collection's type.
        let Some(overlay) = overlay.downcast_mut::<Overlay<T>>() else { overlay_mismatch::<T>(pos) };
        overlay.insert(id, value);
        self.ops.push(Op::new(pos, op));
    }

    /// The transaction's own writes to the collection at `pos`, if it made any.
    /// The overlay of a position is only ever made by [`stage`](Self::stage) with
    /// that collection's type, so another type is an internal error, never an
    /// empty overlay.
    fn overlay<T: Entity>(&self, pos: usize) -> Option<&Overlay<T>> {
        let overlay = self.overlays.get(&pos)?;
        let Some(overlay) = overlay.downcast_ref::<Overlay<T>>() else { overlay_mismatch::<T>(pos) };
        Some(overlay)
    }

    /// The record with this id as this transaction sees it: its own writes first,
    /// then the committed state.
    pub fn get<T: Entity>(&self, id: &T::Id) -> Option<Arc<T>> {
        let collection = self.store.collection_core::<T>().ok()?;
        match self.overlay::<T>(collection.1).and_then(|o| o.get(id)) {
            Some(seen) => seen.clone(),
            // A record of a TTL collection whose time is up is gone for the
            // transaction too (the handle removes it at its next use).
            None => {
                if let (Some(reads), Ok(json)) = (&self.reads, serde_json::to_string(id)) {
                    reads.lock().push((collection.1, json));
                }
                collection.0.get(id).filter(|r| !collection.0.is_expired(r.id(), std::time::Instant::now()))
            }
        }
    }

    /// A query over `T` as this transaction sees it (its own writes included). It
    /// scans: indices hold only committed records. The query works on a snapshot
    /// taken by this call: writes the transaction makes afterwards are not in it, so
    /// build the query after the writes it should see.
    pub fn query<T: Entity>(&self) -> Result<crate::query::Query<T>> {
        let (core, pos) = self.store.collection_core::<T>()?;
        let mut records: HashMap<T::Id, Arc<T>> = core.snapshot().into_iter().map(|r| (r.id().clone(), r)).collect();
        if let Some(overlay) = self.overlay::<T>(pos) {
            for (id, value) in overlay {
                match value {
                    Some(value) => records.insert(id.clone(), Arc::clone(value)),
                    None => records.remove(id),
                };
            }
        }
        Ok(crate::query::Query::over_snapshot(records.into_values().collect()))
    }

    /// Inserts a record; returns its id (assigned here for `#[id(auto)]`).
    pub fn insert<T: Entity>(&mut self, value: T) -> Result<T::Id> {
        let (core, pos) = self.store.collection_core::<T>()?;
        let value = core.prepare_insert(value)?;
        let id = value.id().clone();
        if self.get::<T>(&id).is_some() {
            return Err(Error::DuplicateId { collection: T::COLLECTION.to_owned(), id: show_id(&id.encode_key()) });
        }
        let value = Arc::new(value);
        self.stage(pos, id.clone(), Some(Arc::clone(&value)), TypedOp::Insert(value));
        Ok(id)
    }

    /// Inserts or replaces a record; returns the previous one.
    pub fn upsert<T: Entity>(&mut self, value: T) -> Result<Option<Arc<T>>> {
        let (_, pos) = self.store.collection_core::<T>()?;
        let id = value.id().clone();
        let old = self.get::<T>(&id);
        let value = Arc::new(value);
        self.stage(pos, id, Some(Arc::clone(&value)), TypedOp::Upsert(value));
        Ok(old)
    }

    /// Changes a record; returns the new version. Errors with
    /// [`Error::NotFound`] or [`Error::IdChanged`] like [`Collection::update`](crate::Collection::update).
    pub fn update<T: Entity>(&mut self, id: &T::Id, change: impl FnOnce(&mut T)) -> Result<Arc<T>> {
        let (core, pos) = self.store.collection_core::<T>()?;
        let current = self.get::<T>(id).ok_or_else(|| core.not_found(id))?;
        let value = Arc::new(core.changed(id, &current, change)?);
        self.stage(pos, id.clone(), Some(Arc::clone(&value)), TypedOp::Update(Arc::clone(&value)));
        Ok(value)
    }

    /// Removes a record; returns it, or `None` when there was none.
    pub fn remove<T: Entity>(&mut self, id: &T::Id) -> Result<Option<Arc<T>>> {
        let (_, pos) = self.store.collection_core::<T>()?;
        let old = self.get::<T>(id);
        if old.is_some() {
            self.stage(pos, id.clone(), None, TypedOp::<T>::Remove(id.clone()));
        }
        Ok(old)
    }
}

impl Store {
    /// Runs `body` as one transaction: all its writes are applied together, or none.
    ///
    /// - If `body` returns `Err` or panics, nothing is applied.
    /// - No other thread sees part of the transaction. Writers are serialized, so
    ///   `body` sees a state no one else changes while it runs (reads through other
    ///   handles see the committed state, without the transaction's own writes).
    /// - If the transaction touches a collection with `wal`, all its writes (to every
    ///   persisted collection) are one WAL record: after a crash they are all there
    ///   or none is, and `Ok` means durable (with [`WalSync::Always`](crate::WalSync)).
    /// - Without `wal`, the writes reach disk with the next flush; each record file is
    ///   replaced atomically, but a crash in the middle of a flush can persist some of
    ///   the transaction's records and not others.
    ///
    /// On a PostgreSQL store (see [`StoreBuilder::postgres`](crate::StoreBuilder))
    /// the transaction is one PostgreSQL transaction that checks the versions of
    /// the records it wrote and of those it read with [`Transaction::get`] (and the
    /// accessors built on it), and `body` may run more than once: again, against
    /// the newer state, when another instance changed one of them first. Keep side
    /// effects out of `body`.
    ///
    /// Writing through a collection handle inside `body` is an error
    /// ([`Error::InTransaction`]): use the [`Transaction`].
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # use shelf::{Entity, Store};
    /// #[derive(Entity, Serialize, Deserialize, Clone, Debug)]
    /// struct Account { #[id] id: String, cents: i64 }
    ///
    /// # fn main() -> shelf::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::builder(dir.path()).register::<Account>().open()?;
    /// store.transaction(|tx| {
    ///     tx.insert(Account { id: "a".into(), cents: 100 })?;
    ///     tx.insert(Account { id: "b".into(), cents: 0 })?;
    ///     Ok::<_, shelf::Error>(())
    /// })?;
    /// store.transaction(|tx| {
    ///     tx.update::<Account>(&"a".into(), |a| a.cents -= 30)?;
    ///     tx.update::<Account>(&"b".into(), |b| b.cents += 30)?;
    ///     Ok::<_, shelf::Error>(())
    /// })?;
    /// let accounts = store.collection::<Account>()?;
    /// assert_eq!(accounts.iter().map(|a| a.cents).sum::<i64>(), 100);
    /// # Ok(()) }
    /// ```
    pub fn transaction<R, E: From<Error>>(
        &self,
        body: impl FnMut(&mut Transaction<'_>) -> Result<R, E>,
    ) -> Result<R, E> {
        self.check_open()?;
        let inner = self.inner();
        let incoming = inner.announce();
        let (result, lsn) = self.run_transaction(body)?;
        inner.wait_durable(lsn, incoming)?;
        Ok(result)
    }

    /// Runs `body` and commits its writes under the writer lock; returns its result
    /// and the WAL record to wait for. Shared by `transaction` and
    /// `transaction_async`, which announce the writer first.
    pub(crate) fn run_transaction<R, E: From<Error>>(
        &self,
        mut body: impl FnMut(&mut Transaction<'_>) -> Result<R, E>,
    ) -> Result<(R, Option<u64>), E> {
        let inner = self.inner();
        #[cfg(feature = "postgres")]
        if let Some(pg) = inner.backend.shared() {
            let run = inner.write_shared(pg, |guard, reads| {
                let mut tx = Transaction {
                    store: self,
                    ops: Vec::new(),
                    overlays: HashMap::new(),
                    reads: Some(parking_lot::Mutex::new(Vec::new())),
                };
                guard.doing(Holding::Transaction);
                let result = body(&mut tx);
                guard.doing(Holding::Write);
                *reads = tx.reads.take().map(|r| r.into_inner()).unwrap_or_default();
                result.map(|r| (tx.ops, r))
            });
            return run.map(|r| (r, None));
        }
        let guard = inner.lock_writer()?;
        let mut tx = Transaction { store: self, ops: Vec::new(), overlays: HashMap::new(), reads: None };
        guard.doing(Holding::Transaction);
        let result = body(&mut tx);
        guard.doing(Holding::Write);
        let result = result?;
        let lsn = inner.commit_locked(&guard, tx.ops)?;
        Ok((result, lsn))
    }
}

impl crate::relation::Reader for Transaction<'_> {
    fn read<T: Entity>(&self, id: &T::Id) -> Result<Option<Arc<T>>> {
        self.store.collection_core::<T>()?;
        Ok(self.get::<T>(id))
    }

    fn __children<C: Entity, K: crate::index::IndexKey>(
        &self,
        index: usize,
        key: &K,
        key_of: fn(&C) -> Option<&K>,
    ) -> Result<Vec<Arc<C>>> {
        let (core, pos) = self.store.collection_core::<C>()?;
        let mut children = core.index_all::<K, K>(index, key);
        if let Some(overlay) = self.overlay::<C>(pos) {
            children.retain(|child| !overlay.contains_key(child.id()));
            children.extend(overlay.values().flatten().filter(|child| key_of(child) == Some(key)).cloned());
            children.sort_by(|a, b| a.id().cmp(b.id()));
        }
        Ok(children)
    }
}
