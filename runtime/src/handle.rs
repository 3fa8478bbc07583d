//! [`Collection`]: the typed handle to one collection, with its writes (through the
//! store's commit path) and its reads (from the collection core, in memory).

use std::borrow::Borrow;
use std::fmt;
use std::hash::Hash;
use std::ops::Bound;
use std::path::PathBuf;
use std::sync::mpsc::Receiver;
use std::sync::Arc;

use crate::collection::{Core, TypedOp};
use crate::commit::{Op, Reusable};
use crate::entity::Entity;
use crate::error::{Error, Result};
use crate::index::IndexKey;
use crate::store::Store;
use crate::watch::Event;

/// A typed handle to one collection, from [`Store::collection`].
///
/// Cheap to clone. Reads are served from memory; writes change memory at once and
/// reach disk with the next flush. Generated handles (`<Type>Collection`) dereference
/// to this type, so every method here is available on them.
pub struct Collection<T: Entity> {
    core: Arc<Core<T>>,
    /// Position of the collection in the store, for commits.
    pos: usize,
    store: Store,
}

impl<T: Entity> Clone for Collection<T> {
    fn clone(&self) -> Self {
        Collection { core: Arc::clone(&self.core), pos: self.pos, store: self.store.clone() }
    }
}

impl<T: Entity> fmt::Debug for Collection<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Collection").field("name", &self.core.name()).field("len", &self.len()).finish()
    }
}

impl<T: Entity> Collection<T> {
    pub(crate) fn new(core: Arc<Core<T>>, pos: usize, store: Store) -> Self {
        Collection { core, pos, store }
    }

    /// The collection core (for the async writes and streams in `handle_async`).
    pub(crate) fn core(&self) -> &Arc<Core<T>> {
        &self.core
    }

    /// The collection's position in the store, for commits.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// The collection's name, as used for its directory and in `shelf.json`.
    pub fn name(&self) -> &'static str {
        self.core.name()
    }

    /// The store this collection belongs to.
    pub fn store(&self) -> &Store {
        &self.store
    }

    fn not_found(&self, id: &T::Id) -> Error {
        self.core.not_found(id)
    }

    /// Removes the records of a `#[storage(memory, ttl = "..")]` collection whose
    /// time is up (their last write was longer than the TTL ago), as one commit: they
    /// leave the indices, and watchers get a `Remove` event for each. Returns how
    /// many. Every read and write through the handle does this first, so an expired
    /// record is never returned by it; call `expire` to have the removals (and
    /// their events) happen without other use, e.g. from a timer. A record whose
    /// removal is refused (a `restrict` child references it) stays until it can go.
    /// Nothing to do (`Ok(0)`) for a collection without a TTL.
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # use shelf::{Entity, Store};
    /// #[derive(Entity, Serialize, Deserialize, Clone, Debug)]
    /// #[storage(memory, ttl = "50ms")]
    /// struct Session { #[id] token: String, user: String }
    ///
    /// # fn main() -> shelf::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::builder(dir.path()).register::<Session>().open()?;
    /// let sessions = store.collection::<Session>()?;
    /// sessions.insert(Session { token: "t1".into(), user: "ada".into() })?;
    /// assert!(sessions.get("t1").is_some());
    /// std::thread::sleep(std::time::Duration::from_millis(60));
    /// assert!(sessions.get("t1").is_none()); // expired: removed by this read
    /// assert_eq!(sessions.expire()?, 0);      // nothing left to remove
    /// # Ok(()) }
    /// ```
    pub fn expire(&self) -> Result<usize> {
        if T::TTL.is_none() {
            return Ok(0);
        }
        let now = std::time::Instant::now();
        if !self.core.any_expired(now) {
            return Ok(0);
        }
        let remove = |ids: Vec<T::Id>| {
            self.store.inner_checked()?.write(|| {
                let n = ids.len();
                Ok((ids.iter().map(|id| Op::new(self.pos, TypedOp::<T>::Remove(id.clone()))).collect(), n))
            })
        };
        match remove(self.core.expired(now)) {
            Ok(n) => Ok(n),
            // One removal refused (restrict): the others go one by one.
            Err(Error::ForeignKey { .. }) => {
                Ok(self.core.expired(now).into_iter().filter(|id| remove(vec![id.clone()]).is_ok()).count())
            }
            Err(e) => Err(e),
        }
    }

    /// [`expire`](Self::expire) before a read or write, for a collection with a TTL.
    /// Best effort: inside a transaction (where the handle cannot write) or on a
    /// closed store it does nothing, and reads by id still hide expired records.
    fn sweep(&self) {
        if T::TTL.is_some() {
            // Best effort by design: the read or write that follows reports a
            // closed or poisoned store itself.
            let _ = self.expire();
        }
    }

    /// `record`, unless its time is up (a collection with a TTL, not yet swept).
    fn live(&self, record: Option<Arc<T>>) -> Option<Arc<T>> {
        match record {
            Some(r) if T::TTL.is_some() && self.core.is_expired(r.id(), std::time::Instant::now()) => None,
            other => other,
        }
    }

    /// Inserts a new record and returns its id. For `#[id(auto)]` entities the id is
    /// assigned here, whatever the field held (ids of failed inserts are not reused).
    ///
    /// Errors with [`Error::DuplicateId`] when a record with this id exists and with
    /// [`Error::UniqueViolation`] when a unique index already has one of its keys;
    /// nothing changes then.
    ///
    /// **Blocking:** in memory only, except in a `wal` collection under
    /// [`WalSync::Always`](crate::WalSync) (the default), where the call waits for the
    /// group `fdatasync` that covers the commit (one sync; about 0.2 ms on a quiet
    /// disk here, tens of ms under load). From async code use the `_async` form, whose
    /// future is woken by that sync instead.
    pub fn insert(&self, value: T) -> Result<T::Id> {
        self.sweep();
        let inner = self.store.inner_checked()?;
        let mut value = Reusable::new(value, inner);
        inner.write(|| {
            let value = self.core.prepare_insert(value.get())?;
            let id = value.id().clone();
            Ok((vec![Op::new(self.pos, TypedOp::Insert(Arc::new(value)))], id))
        })
    }

    /// Inserts or replaces the record with this value's id; returns the old one.
    /// For `#[id(auto)]` entities the given id is kept, and later inserts get
    /// larger ids. Errors with [`Error::UniqueViolation`] like `insert`.
    ///
    /// **Blocking:** in memory only, except in a `wal` collection under
    /// [`WalSync::Always`](crate::WalSync) (the default), where the call waits for the
    /// group `fdatasync` that covers the commit (one sync; about 0.2 ms on a quiet
    /// disk here, tens of ms under load). From async code use the `_async` form, whose
    /// future is woken by that sync instead.
    pub fn upsert(&self, value: T) -> Result<Option<Arc<T>>> {
        self.sweep();
        let inner = self.store.inner_checked()?;
        let mut value = Reusable::new(value, inner);
        inner.write(|| {
            let value = value.get();
            let old = self.get(value.id());
            Ok((vec![Op::new(self.pos, TypedOp::Upsert(Arc::new(value)))], old))
        })
    }

    /// Changes the record with this id in place and returns the new version.
    ///
    /// The closure gets a copy. On a PostgreSQL store it may run more than once:
    /// again after another instance changed the record first (see
    /// [`StoreBuilder::postgres`](crate::StoreBuilder)). If it panics, or the change is refused (a changed id:
    /// [`Error::IdChanged`]; a taken unique key: [`Error::UniqueViolation`]), the
    /// stored record, its index entries and its dirty mark are unchanged.
    ///
    /// **Blocking:** in memory only, except in a `wal` collection under
    /// [`WalSync::Always`](crate::WalSync) (the default), where the call waits for the
    /// group `fdatasync` that covers the commit (one sync; about 0.2 ms on a quiet
    /// disk here, tens of ms under load). From async code use the `_async` form, whose
    /// future is woken by that sync instead.
    pub fn update(&self, id: &T::Id, mut change: impl FnMut(&mut T)) -> Result<Arc<T>> {
        self.sweep();
        self.store.inner_checked()?.write(|| {
            let current = self.get(id).ok_or_else(|| self.not_found(id))?;
            let value = Arc::new(self.core.changed(id, &current, &mut change)?);
            Ok((vec![Op::new(self.pos, TypedOp::Update(Arc::clone(&value)))], value))
        })
    }

    /// Removes the record with this id and returns it; `Ok(None)` when there was none.
    /// Takes borrowed forms like [`get`](Self::get). Blocks like
    /// [`insert`](Self::insert): only for the `WalSync::Always` sync of a `wal`
    /// collection.
    pub fn remove<Q>(&self, id: &Q) -> Result<Option<Arc<T>>>
    where
        T::Id: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.sweep();
        self.store.inner_checked()?.write(|| {
            let old = self.get(id);
            let ops = match &old {
                Some(old) => vec![Op::new(self.pos, TypedOp::<T>::Remove(old.id().clone()))],
                None => Vec::new(),
            };
            Ok((ops, old))
        })
    }

    /// The record with this id, from memory. Takes any borrowed form of the id:
    /// `&str` for a `String` id.
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # use shelf::{Entity, Store};
    /// # #[derive(Entity, Serialize, Deserialize, Clone, Debug)]
    /// # struct User { #[id] id: String }
    /// # fn main() -> shelf::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = Store::builder(dir.path()).register::<User>().open()?;
    /// let users = store.collection::<User>()?;
    /// users.insert(User { id: "ada".into() })?;
    /// assert!(users.get("ada").is_some());
    /// assert!(users.contains("ada"));
    /// # Ok(()) }
    /// ```
    pub fn get<Q>(&self, id: &Q) -> Option<Arc<T>>
    where
        T::Id: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.sweep();
        self.live(self.core.get(id))
    }

    /// The records with these ids, in the order given: `None` for an id with no
    /// record. Takes borrowed forms like [`get`](Self::get).
    pub fn get_many<'q, Q>(&self, ids: impl IntoIterator<Item = &'q Q>) -> Vec<Option<Arc<T>>>
    where
        T::Id: Borrow<Q>,
        Q: Hash + Eq + ?Sized + 'q,
    {
        self.sweep();
        ids.into_iter().map(|id| self.live(self.core.get(id))).collect()
    }

    /// Whether a record with this id exists. Takes borrowed forms like [`get`](Self::get).
    pub fn contains<Q>(&self, id: &Q) -> bool
    where
        T::Id: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if T::TTL.is_some() {
            return self.get(id).is_some();
        }
        self.core.contains(id)
    }

    /// The number of records.
    pub fn len(&self) -> usize {
        self.sweep();
        self.core.len()
    }

    /// Whether the collection has no records.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A snapshot of every record, in no particular order. Later writes do not
    /// change an iterator already made.
    pub fn iter(&self) -> std::vec::IntoIter<Arc<T>> {
        self.sweep();
        let records: Vec<Arc<T>> = self.core.snapshot();
        records.into_iter()
    }

    /// Every record, sorted by id.
    pub fn all(&self) -> Vec<Arc<T>> {
        self.sweep();
        let mut records: Vec<Arc<T>> = self.iter().collect();
        records.sort_by(|a, b| a.id().cmp(b.id()));
        records
    }

    /// Subscribes to every change of this collection; see [`watch`](crate::watch)
    /// for ordering, channel and durability semantics.
    pub fn watch(&self) -> Receiver<Event<T>> {
        self.core.watchers().all()
    }

    /// Subscribes to the changes of the record with this id.
    pub fn watch_id(&self, id: &T::Id) -> Receiver<Event<T>> {
        self.core.watchers().id(id.clone())
    }

    /// Subscribes to changes whose old or new version matches `predicate`.
    pub fn watch_where(&self, predicate: crate::query::Predicate<T>) -> Receiver<Event<T>> {
        self.core.watchers().matching(predicate)
    }

    /// A typed query over this collection; see [`Query`](crate::Query).
    pub fn query(&self) -> crate::query::Query<T> {
        self.sweep();
        crate::query::Query::over_collection(Arc::clone(&self.core))
    }

    /// How many records changed since they were last made durable.
    pub fn dirty_count(&self) -> usize {
        self.core.dirty_count()
    }

    /// Where this collection's files are: `Some(dir)` for persisted collections.
    pub fn path(&self) -> Option<PathBuf> {
        self.store.inner().backend.path(self.pos)
    }
}

/// Generated `by_<field>` of a unique index.
#[doc(hidden)]
pub fn index_one<T: Entity, K: IndexKey + Borrow<Q>, Q: Hash + Ord + ?Sized>(
    collection: &Collection<T>,
    pos: usize,
    key: &Q,
) -> Option<Arc<T>> {
    collection.sweep();
    collection.core.index_one::<K, Q>(pos, key)
}

/// Generated `by_<field>` of a non-unique index, in id order.
#[doc(hidden)]
pub fn index_all<T: Entity, K: IndexKey + Borrow<Q>, Q: Hash + Ord + ?Sized>(
    collection: &Collection<T>,
    pos: usize,
    key: &Q,
) -> Vec<Arc<T>> {
    collection.sweep();
    collection.core.index_all::<K, Q>(pos, key)
}

/// Generated `count_by_<field>`.
#[doc(hidden)]
pub fn index_count<T: Entity, K: IndexKey + Borrow<Q>, Q: Hash + Ord + ?Sized>(
    collection: &Collection<T>,
    pos: usize,
    key: &Q,
) -> usize {
    collection.sweep();
    collection.core.index_count::<K, Q>(pos, key)
}

/// Generated `range_by_<field>` of a sorted index, in key order.
#[doc(hidden)]
pub fn index_range<T: Entity, K: IndexKey + Borrow<Q>, Q: Ord + ?Sized>(
    collection: &Collection<T>,
    pos: usize,
    bounds: (Bound<&Q>, Bound<&Q>),
) -> Vec<Arc<T>> {
    collection.sweep();
    collection.core.index_range::<K, Q>(pos, bounds)
}

/// Generated `update_by_<field>` of a unique index: changes the record whose key in
/// index `pos` (named `index`) is `key`, as [`Collection::update`] does, under the
/// writer lock, so the lookup and the change are one step. Errors with
/// [`Error::KeyNotFound`] when no record has the key.
#[doc(hidden)]
pub fn index_update<T: Entity, K: IndexKey + Borrow<Q>, Q: Hash + Ord + fmt::Debug + ?Sized>(
    collection: &Collection<T>,
    pos: usize,
    index: &'static str,
    key: &Q,
    mut change: impl FnMut(&mut T),
) -> Result<Arc<T>> {
    collection.sweep();
    collection.store.inner_checked()?.write(|| {
        let current = collection.core.index_one::<K, Q>(pos, key).ok_or_else(|| Error::KeyNotFound {
            collection: T::COLLECTION.to_owned(),
            index: index.to_owned(),
            key: format!("{key:?}"),
        })?;
        let id = current.id().clone();
        let value = Arc::new(collection.core.changed(&id, &current, &mut change)?);
        Ok((vec![Op::new(collection.pos, TypedOp::Update(Arc::clone(&value)))], value))
    })
}

/// Generated `upsert_by_<field>` of a unique index: `value` replaces the record that
/// has its key in index `pos`, or is inserted when none has. Returns the id the
/// record has and the record replaced. A replacement keeps the stored record's id:
/// an `#[id(auto)]` value takes it, any other value must have it already
/// ([`Error::IdChanged`] otherwise). An insert is a plain insert (auto id assigned,
/// [`Error::DuplicateId`] when another record has the value's id).
#[doc(hidden)]
pub fn index_upsert<T: Entity, K: IndexKey>(
    collection: &Collection<T>,
    pos: usize,
    key: &K,
    value: T,
) -> Result<(T::Id, Option<Arc<T>>)> {
    collection.sweep();
    let inner = collection.store.inner_checked()?;
    let mut value = crate::commit::Reusable::new(value, inner);
    inner.write(|| match collection.core.index_one::<K, K>(pos, key) {
        Some(current) => {
            let mut value = value.get();
            if T::AUTO_ID {
                if let Some(counter) = current.__id_counter() {
                    value.__set_auto_id(counter);
                }
            }
            if value.id() != current.id() {
                return Err(Error::IdChanged {
                    collection: T::COLLECTION.to_owned(),
                    id: crate::error::show_id(&crate::Key::encode_key(current.id())),
                    new_id: crate::error::show_id(&crate::Key::encode_key(value.id())),
                });
            }
            let id = value.id().clone();
            Ok((vec![Op::new(collection.pos, TypedOp::Upsert(Arc::new(value)))], (id, Some(current))))
        }
        None => {
            let value = collection.core.prepare_insert(value.get())?;
            let id = value.id().clone();
            Ok((vec![Op::new(collection.pos, TypedOp::Insert(Arc::new(value)))], (id, None)))
        }
    })
}
