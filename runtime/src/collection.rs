//! Collections: the in-memory state of one entity type, and its typed handle.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::RwLock;

use crate::batch::WriteBatch;
use crate::encode;
use crate::entity::Entity;
use crate::error::{show_id, Error, Result};
use crate::key::Key;
use crate::recover::LoadCtx;
use crate::storage::{strategy_for, Change, RawRecord, Strategy};
use crate::store::Store;

/// The state behind a lock: records, auto-id counter and dirty marks.
struct State<T: Entity> {
    records: HashMap<T::Id, Arc<T>>,
    /// Ids changed since their last durable flush, with the write sequence number of
    /// the change. A mark is cleared only by a flush that wrote that very version.
    dirty: HashMap<T::Id, u64>,
    /// Sequence number of the last write.
    seq: u64,
    /// The next `#[id(auto)]` value.
    next_auto: u64,
}

impl<T: Entity> State<T> {
    fn mark(&mut self, id: T::Id, persisted: bool) {
        self.seq += 1;
        if persisted {
            self.dirty.insert(id, self.seq);
        }
    }
}

/// One collection's records and its storage strategy.
pub(crate) struct Core<T: Entity> {
    name: &'static str,
    strategy: Box<dyn Strategy>,
    state: RwLock<State<T>>,
}

/// What a flush of one collection took: `(id, version)` of each change it wrote.
type FlushTicket<T> = Vec<(<T as Entity>::Id, u64)>;

impl<T: Entity> Core<T> {
    pub fn new(dir: &std::path::Path) -> Self {
        Core {
            name: T::COLLECTION,
            strategy: strategy_for(T::STORAGE, dir, T::COLLECTION),
            state: RwLock::new(State { records: HashMap::new(), dirty: HashMap::new(), seq: 0, next_auto: 1 }),
        }
    }

    fn persisted(&self) -> bool {
        T::STORAGE.is_persisted()
    }

    /// The file-name stem of an id; an error when the id cannot be a file name.
    fn stem(&self, id: &T::Id) -> Result<String> {
        let text = id.encode_key();
        encode::encode(&text).map_err(|reason| Error::InvalidId {
            collection: self.name.to_owned(),
            id: show_id(&text),
            reason,
        })
    }

    fn check_id(&self, id: &T::Id) -> Result<()> {
        if self.persisted() {
            self.stem(id)?;
        }
        Ok(())
    }

    fn parse(&self, raw: &RawRecord) -> std::result::Result<T, String> {
        let value: T = serde_json::from_slice(&raw.bytes).map_err(|e| e.to_string())?;
        if let Some(stem) = &raw.stem {
            let actual = self.stem(value.id()).map_err(|e| e.to_string())?;
            if &actual != stem {
                return Err(format!(
                    "the file name says id `{}`, but the record inside has id `{}`",
                    stem,
                    value.id().encode_key()
                ));
            }
        }
        Ok(value)
    }
}

/// The type-erased face of a collection, for the store and the flusher.
pub(crate) trait ErasedCollection: Send + Sync {
    fn name(&self) -> &'static str;
    fn type_name(&self) -> &'static str;
    fn strategy(&self) -> &dyn Strategy;
    fn persisted(&self) -> bool;
    fn spec(&self) -> crate::entity::StorageSpec;
    fn as_any_arc(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
    /// Loads the stored records; returns the largest auto-id counter seen.
    fn load(&self, ctx: &LoadCtx) -> Result<()>;
    /// Stages every dirty record into the batch; returns what `finish_flush` needs.
    fn prepare_flush(&self, batch: &mut WriteBatch) -> Result<Option<Box<dyn Any + Send>>>;
    /// Clears the dirty marks of a flush that is now durable.
    fn finish_flush(&self, ticket: Box<dyn Any + Send>);
    fn next_auto(&self) -> Option<u64>;
    fn set_next_auto(&self, next: u64);
    fn dirty_count(&self) -> usize;
}

impl<T: Entity> ErasedCollection for Core<T> {
    fn name(&self) -> &'static str {
        self.name
    }
    fn type_name(&self) -> &'static str {
        std::any::type_name::<T>()
    }
    fn strategy(&self) -> &dyn Strategy {
        self.strategy.as_ref()
    }
    fn persisted(&self) -> bool {
        T::STORAGE.is_persisted()
    }
    fn spec(&self) -> crate::entity::StorageSpec {
        T::STORAGE
    }
    fn as_any_arc(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }

    fn load(&self, ctx: &LoadCtx) -> Result<()> {
        let mut records = HashMap::new();
        let mut max_counter = 0;
        self.strategy.load(ctx.fs(), &mut |raw| {
            match self.parse(&raw) {
                Ok(value) => {
                    if let Some(n) = value.__id_counter() {
                        max_counter = max_counter.max(n.saturating_add(1));
                    }
                    records.insert(value.id().clone(), Arc::new(value));
                }
                Err(message) => {
                    if !ctx.quarantine() || !self.strategy.quarantines_files() {
                        return Err(Error::CorruptRecord { collection: self.name.to_owned(), path: raw.path, message });
                    }
                    ctx.move_aside(self.name, &raw.path, message)?;
                }
            }
            Ok(())
        })?;
        let mut state = self.state.write();
        state.records = records;
        state.next_auto = state.next_auto.max(max_counter);
        Ok(())
    }

    fn prepare_flush(&self, batch: &mut WriteBatch) -> Result<Option<Box<dyn Any + Send>>> {
        let snapshot: Vec<(T::Id, u64, Option<Arc<T>>)> = {
            let state = self.state.read();
            if state.dirty.is_empty() {
                return Ok(None);
            }
            state.dirty.iter().map(|(id, &seq)| (id.clone(), seq, state.records.get(id).cloned())).collect()
        };
        let mut changes = Vec::with_capacity(snapshot.len());
        let mut ticket: FlushTicket<T> = Vec::with_capacity(snapshot.len());
        for (id, seq, value) in snapshot {
            let bytes = match value {
                Some(value) => Some(to_json(self.name, &id, &*value)?),
                None => None,
            };
            changes.push(Change { stem: self.stem(&id)?, bytes });
            ticket.push((id, seq));
        }
        self.strategy.stage(changes, batch);
        Ok(Some(Box::new(ticket)))
    }

    fn finish_flush(&self, ticket: Box<dyn Any + Send>) {
        let Ok(ticket) = ticket.downcast::<FlushTicket<T>>() else {
            return;
        };
        let mut state = self.state.write();
        for (id, seq) in *ticket {
            // A write that came in during the flush has a newer seq and stays dirty.
            if state.dirty.get(&id) == Some(&seq) {
                state.dirty.remove(&id);
            }
        }
    }

    fn next_auto(&self) -> Option<u64> {
        T::AUTO_ID.then(|| self.state.read().next_auto)
    }
    fn set_next_auto(&self, next: u64) {
        let mut state = self.state.write();
        state.next_auto = state.next_auto.max(next);
    }
    fn dirty_count(&self) -> usize {
        self.state.read().dirty.len()
    }
}

/// Serializes a record as the human-readable JSON of its file.
fn to_json<T: Entity>(collection: &str, id: &T::Id, value: &T) -> Result<Vec<u8>> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|source| Error::Serde {
        collection: collection.to_owned(),
        id: show_id(&id.encode_key()),
        source: Arc::new(source),
    })?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// A typed handle to one collection, from [`Store::collection`].
///
/// Cheap to clone. Reads are served from memory; writes change memory at once and
/// reach disk with the next flush. Generated handles (`<Type>Collection`) dereference
/// to this type, so every method here is available on them.
pub struct Collection<T: Entity> {
    core: Arc<Core<T>>,
    store: Store,
}

impl<T: Entity> Clone for Collection<T> {
    fn clone(&self) -> Self {
        Collection { core: Arc::clone(&self.core), store: self.store.clone() }
    }
}

impl<T: Entity> fmt::Debug for Collection<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Collection").field("name", &self.core.name).field("len", &self.len()).finish()
    }
}

impl<T: Entity> Collection<T> {
    pub(crate) fn new(core: Arc<Core<T>>, store: Store) -> Self {
        Collection { core, store }
    }

    /// The collection's name, as used for its directory and in `shelf.json`.
    pub fn name(&self) -> &'static str {
        self.core.name
    }

    /// The store this collection belongs to.
    pub fn store(&self) -> &Store {
        &self.store
    }

    fn not_found(&self, id: &T::Id) -> Error {
        Error::NotFound { collection: self.core.name.to_owned(), id: show_id(&id.encode_key()) }
    }

    /// Inserts a new record and returns its id. For `#[id(auto)]` entities the id is
    /// assigned here, whatever the field held.
    ///
    /// Errors with [`Error::DuplicateId`] when a record with this id exists, and
    /// changes nothing then.
    pub fn insert(&self, mut value: T) -> Result<T::Id> {
        self.store.check_open()?;
        let mut state = self.core.state.write();
        let next_auto = state.next_auto;
        if T::AUTO_ID && !value.__set_auto_id(next_auto) {
            return Err(Error::AutoIdExhausted { collection: self.core.name.to_owned() });
        }
        let id = value.id().clone();
        self.core.check_id(&id)?;
        if state.records.contains_key(&id) {
            return Err(Error::DuplicateId { collection: self.core.name.to_owned(), id: show_id(&id.encode_key()) });
        }
        if T::AUTO_ID {
            state.next_auto = next_auto + 1;
        }
        state.records.insert(id.clone(), Arc::new(value));
        state.mark(id.clone(), self.core.persisted());
        Ok(id)
    }

    /// Inserts or replaces the record with this value's id; returns the old one.
    /// For `#[id(auto)]` entities the given id is kept, and later inserts get
    /// larger ids.
    pub fn upsert(&self, value: T) -> Result<Option<Arc<T>>> {
        self.store.check_open()?;
        let id = value.id().clone();
        self.core.check_id(&id)?;
        let mut state = self.core.state.write();
        if let Some(n) = value.__id_counter() {
            state.next_auto = state.next_auto.max(n.saturating_add(1));
        }
        let old = state.records.insert(id.clone(), Arc::new(value));
        state.mark(id, self.core.persisted());
        Ok(old)
    }

    /// Changes the record with this id in place and returns the new version.
    ///
    /// The closure gets a copy; if it panics, or the call returns an error, the
    /// stored record is unchanged. Changing the id is an error ([`Error::IdChanged`]).
    pub fn update(&self, id: &T::Id, change: impl FnOnce(&mut T)) -> Result<Arc<T>> {
        self.store.check_open()?;
        let mut state = self.core.state.write();
        let mut value = T::clone(state.records.get(id).ok_or_else(|| self.not_found(id))?);
        change(&mut value);
        if value.id() != id {
            return Err(Error::IdChanged {
                collection: self.core.name.to_owned(),
                id: show_id(&id.encode_key()),
                new_id: show_id(&value.id().encode_key()),
            });
        }
        let value = Arc::new(value);
        state.records.insert(id.clone(), Arc::clone(&value));
        state.mark(id.clone(), self.core.persisted());
        Ok(value)
    }

    /// Removes the record with this id and returns it; `Ok(None)` when there was none.
    pub fn remove(&self, id: &T::Id) -> Result<Option<Arc<T>>> {
        self.store.check_open()?;
        let mut state = self.core.state.write();
        let old = state.records.remove(id);
        if old.is_some() {
            state.mark(id.clone(), self.core.persisted());
        }
        Ok(old)
    }

    /// The record with this id, from memory.
    pub fn get(&self, id: &T::Id) -> Option<Arc<T>> {
        self.core.state.read().records.get(id).cloned()
    }

    /// Whether a record with this id exists.
    pub fn contains(&self, id: &T::Id) -> bool {
        self.core.state.read().records.contains_key(id)
    }

    /// The number of records.
    pub fn len(&self) -> usize {
        self.core.state.read().records.len()
    }

    /// Whether the collection has no records.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A snapshot of every record, in no particular order. Later writes do not
    /// change an iterator already made.
    pub fn iter(&self) -> std::vec::IntoIter<Arc<T>> {
        let records: Vec<Arc<T>> = self.core.state.read().records.values().cloned().collect();
        records.into_iter()
    }

    /// Every record, sorted by id.
    pub fn all(&self) -> Vec<Arc<T>> {
        let mut records: Vec<Arc<T>> = self.iter().collect();
        records.sort_by(|a, b| a.id().cmp(b.id()));
        records
    }

    /// How many records changed since they were last made durable.
    pub fn dirty_count(&self) -> usize {
        self.core.state.read().dirty.len()
    }

    /// Where this collection's files are: `Some(dir)` for persisted collections.
    pub fn path(&self) -> Option<PathBuf> {
        self.core.strategy.dirs().into_iter().next()
    }
}
