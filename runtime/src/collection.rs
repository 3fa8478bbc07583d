//! Collections: the in-memory state of one entity type, and its typed handle.

use std::any::Any;
use std::borrow::Borrow;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::backend::{Quarantine, RawRecord, RecordChange, Source, Stage, StoredIndex};
use crate::encode;
use crate::entity::{Entity, EntityInternals};
use crate::error::{show_id, Error, Result};
use crate::index::{Index, IndexKey, IndexMaint};
use crate::index_file;
use crate::key::Key;
use crate::recover::{LoadCtx, UniqueConflict};
use crate::relation::{Dangling, ForeignKeySpec};
use crate::watch::{Change, Watchers};

mod counts;
mod flush;
mod lines;
mod load;
mod roundtrip;
#[cfg(feature = "postgres")]
mod shared;
pub(crate) use flush::FlushPart;
use load::Loader;
#[cfg(feature = "postgres")]
pub(crate) use shared::{enforced, SharedWrite};

/// Dirty marks: id to the write sequence number of its change. Hashed like
/// [`crate::Records`] (foldhash), not with SipHash: a writer inserts one per write.
type Marks<I> = HashMap<I, u64, foldhash::fast::RandomState>;
/// The values as of a flush's snapshot of the records written since.
type Preimages<T> = HashMap<<T as Entity>::Id, Option<Arc<T>>, foldhash::fast::RandomState>;

/// The state behind a lock: records, indices, auto-id counter and dirty marks.
struct State<T: Entity> {
    records: crate::Records<T::Id, T>,
    indices: Vec<Box<dyn IndexMaint<T>>>,
    /// Per index: the write sequence number of its last change, and of the change
    /// its file was last written for.
    index_versions: Vec<(u64, u64)>,
    /// Ids changed since their last durable flush, with the write sequence number of
    /// the change. A flush takes the marks it writes; if it fails, it puts back those
    /// that no later write replaced.
    dirty: Marks<T::Id>,
    /// Marks taken by the flush in progress, counted in `dirty_count`.
    in_flight: usize,
    /// While a flush reads the values of its snapshot: the value, as of the
    /// snapshot, of every record written since (`None`: it did not exist).
    preimages: Option<Preimages<T>>,
    /// Emptied maps of the last flush, kept for the next snapshot (see
    /// [`Spare`]).
    spare: Spare<T>,
    /// Sequence number of the last write.
    seq: u64,
    /// The next `#[id(auto)]` value.
    next_auto: u64,
    /// Order-independent hash of the set of ids, written into index file headers.
    fingerprint: u64,
    /// A whole-file collection must be rewritten though no record is dirty (a
    /// quarantined line was skipped on load): the write sequence number it was set at.
    rewrite: Option<u64>,
    /// The records' deadlines, for a collection with a TTL.
    expiry: Option<crate::expiry::Expiry<T::Id>>,
    /// What a flush let go of that writers allocated (ids of its marks and
    /// preimages, values it read), dropped a few at a time by writers; see
    /// [`Garbage`].
    garbage: Garbage<T::Id, T>,
}

/// Ids and values a flush is done with, freed by the writers that allocated them.
///
/// A flush takes tens of thousands of writer-allocated ids and values. Dropping them
/// on the flusher thread frees them into the writer's malloc arena: with glibc the
/// writer then waits for the arena lock, measured at up to 17 ms per write in W9
/// (it went down to 3.8 ms with `GLIBC_TUNABLES=glibc.malloc.mxfast=0`). So the flush
/// hands them back, and writers drop them a few at a time (see
/// [`Garbage::drop_some`]). What is left stays for later writes; only a flush that
/// finds no write since the last one drops the rest, on its thread.
struct Garbage<I, V> {
    ids: Vec<I>,
    values: Vec<Arc<V>>,
    /// Frees owed: writes that freed nothing themselves and have not yet freed a
    /// garbage value in their stead (see [`Garbage::drop_some`]).
    credit: usize,
    /// `State::seq` when the last flush began, to tell whether anything was written
    /// since.
    seq_at_flush: u64,
    /// Writes of the collection (each calls [`Garbage::drop_some`]), for
    /// [`Garbage::SPEND_EVERY`] and [`Garbage::SETTLE_EVERY`].
    writes: u64,
}

impl<I, V> Default for Garbage<I, V> {
    fn default() -> Self {
        Garbage { ids: Vec::new(), values: Vec::new(), credit: 0, seq_at_flush: 0, writes: 0 }
    }
}

impl<I, V> Garbage<I, V> {
    /// Values let go per write that are only a count to decrease (a record still
    /// holds them): cheap, and no memory changes hands.
    const SHARED_PER_WRITE: usize = 8;

    /// How often a write that freed a value itself also spends a banked credit.
    const SPEND_EVERY: u64 = 4;

    /// How many writes go between two calls of [`settle`].
    const SETTLE_EVERY: u64 = 16;

    /// One write's share: two ids (a write clones up to two: its mark and its
    /// preimage), values that are only counted down (up to
    /// [`Garbage::SHARED_PER_WRITE`]), and at most one value freed, if a free is owed.
    ///
    /// A write whose replaced value is still held (by a flush, a preimage or this
    /// garbage) frees nothing itself: it earns a credit (`owed`), and writes spend
    /// credits one free at a time. So frees keep pace with the writes that deferred
    /// them, and a write frees at most one garbage value, as it allocates one, which
    /// glibc's per-thread cache recycles. Freeing four per write (W9) filled the
    /// arena's fast bins with tens of thousands of blocks, which the writer's next
    /// consolidation walked, for up to 19 ms. A credit not spent at once (the
    /// garbage was empty, or its top was all still held) is kept, so the garbage of
    /// a collection written without pause does not grow. The emptied vectors keep
    /// their buffers: freeing one (hundreds of kilobytes) on the writer's thread
    /// would make glibc consolidate its fast bins there.
    fn drop_some(&mut self, owed: bool) {
        self.ids.pop();
        self.ids.pop();
        self.credit += usize::from(owed);
        self.writes = self.writes.wrapping_add(1);
        // A write that freed its own replaced value spends a banked credit only one
        // time in [`Garbage::SPEND_EVERY`], so banked frees trickle out.
        let spend = self.credit > 0 && (owed || self.writes.is_multiple_of(Self::SPEND_EVERY));
        if drop_values(&mut self.values, spend, Self::SHARED_PER_WRITE) {
            self.credit -= 1;
        }
        if self.writes.is_multiple_of(Self::SETTLE_EVERY) {
            settle();
        }
    }
}

/// Lets the allocator sort the small blocks freed lately into its free lists, while
/// they are few: allocates and frees a block too large for glibc's per-thread cache.
///
/// Paying the garbage back frees more small blocks than the writes allocate, and
/// during a flush the writer's arena also takes blocks freed elsewhere. glibc keeps
/// such blocks in the arena's fast bins, unsorted, until a large request (or the
/// free of a block next to a large free region) makes it consolidate them all, on
/// the thread that asked. Left alone, the fast bins held up to 67,000 blocks
/// (`malloc_info`) when a write's `serde_json` buffer grew and consolidated them:
/// updates of 2 to 15 ms (W9, `collection_file`, in `malloc_consolidate` under
/// `perf`). Settled every [`Garbage::SETTLE_EVERY`] frees of garbage, single runs
/// still saw 1.5 to 9 ms; every [`Garbage::SETTLE_EVERY`] writes, six single runs
/// saw no update over 300 µs that the scheduler had not preempted.
/// The request costs about 100 ns when there is little to sort. With another
/// allocator it is one allocation and one free.
fn settle() {
    /// Above glibc's largest per-thread cache size (1,032 bytes).
    const LARGE: usize = 2048;
    drop(std::hint::black_box(Vec::<u8>::with_capacity(LARGE)));
}

/// Pops values off the end of `values`: those something else still holds (only a
/// count goes down), up to `shared_max`, and, if `free`, the first one held by
/// nothing else, which is freed; it stops at such a value when not `free`.
/// Returns whether it freed one.
fn drop_values<V>(values: &mut Vec<Arc<V>>, free: bool, shared_max: usize) -> bool {
    let mut shared = 0;
    while shared < shared_max {
        let Some(value) = values.last() else { break };
        if Arc::strong_count(value) > 1 {
            values.pop();
            shared += 1;
        } else {
            if free {
                values.pop();
            }
            return free;
        }
    }
    false
}

/// The emptied mark and preimage maps of the last flush, for the next snapshot.
/// (Each flush allocates them before the writer lock when they are missing or too
/// small: `before_snapshot`.)
///
/// Each map has room for a mark per record (see [`State::marks_capacity`]), a
/// table of megabytes for a large collection. Allocating two per flush and freeing
/// two made glibc consolidate its fast bins in the arena they came from, for
/// milliseconds under that arena's lock; the first flush after open freed tables
/// the opening thread had allocated, in the arena writers use (W9 saw a 9.4 ms
/// update then). A flush empties its maps (which keeps their tables) and leaves
/// them here; the next snapshot takes them, so in a steady state no flush
/// allocates or frees a table. The cost: a persisted collection that has been
/// written keeps these two maps besides its dirty marks, about 42 bytes per record.
struct Spare<T: Entity> {
    marks: Option<Marks<T::Id>>,
    preimages: Option<Preimages<T>>,
}

impl<T: Entity> Default for Spare<T> {
    fn default() -> Self {
        Spare { marks: None, preimages: None }
    }
}

/// `spare` if it has room for `capacity` entries, else a new map with that room.
fn with_room<K: std::hash::Hash + Eq, V>(
    spare: Option<HashMap<K, V, foldhash::fast::RandomState>>,
    capacity: usize,
) -> HashMap<K, V, foldhash::fast::RandomState> {
    match spare {
        Some(map) if map.capacity() >= capacity => map,
        _ => HashMap::with_capacity_and_hasher(capacity, Default::default()),
    }
}

impl<T: Entity> State<T> {
    /// How many dirty marks a map has room for: one per record, or per mark if
    /// there are more (removed records), plus an eighth for the writes to come. A
    /// write then never grows the map under the writer lock: growing rehashes every
    /// mark and frees the old table on the writer's thread, where glibc's malloc
    /// consolidates its fast bins first (W9 measured single updates of 4 to 11 ms
    /// of CPU from that). The same rule sizes the maps at load and at every flush,
    /// so a spare map (see [`Spare`]) fits the next snapshot: a spare sized by
    /// another rule was freed by the flusher, in the arena of the thread that
    /// opened the store, stalling writers there for 10 to 14 ms (W9). The cost:
    /// about 17 bytes per record for the marks (and about 25 for the preimages);
    /// only the control bytes are written at allocation, the rest as writes come.
    fn marks_capacity(&self) -> usize {
        let n = self.dirty.len().max(self.records.len());
        n + n / 8
    }

    /// Checks every unique index for `new`, before anything changes.
    fn check(&self, collection: &str, id: &T::Id, new: &T) -> Result<()> {
        for index in &self.indices {
            if let Err((key, existing_id)) = index.check(id, new) {
                return Err(Error::UniqueViolation {
                    collection: collection.to_owned(),
                    index: index.name().to_owned(),
                    key,
                    existing_id: show_id(&existing_id),
                });
            }
        }
        Ok(())
    }

    /// Replaces (or removes, with `None`) the record `id`, keeping the indices, the
    /// fingerprint and the dirty set in step. Call [`State::check`] first.
    fn put(&mut self, id: &T::Id, new: Option<Arc<T>>, persisted: bool) -> Option<Arc<T>> {
        self.put_held(id, new, persisted, 0)
    }

    /// [`State::put`], when the caller holds `held` more references to the record
    /// it replaces (a commit's undo entry, taken before, so that a panic in the
    /// middle of the indices can still be undone): what `Garbage` counts as freed
    /// does not change.
    fn put_held(&mut self, id: &T::Id, new: Option<Arc<T>>, persisted: bool, held: usize) -> Option<Arc<T>> {
        self.seq += 1;
        let old = match &new {
            Some(value) => self.records.insert(id.clone(), Arc::clone(value)),
            None => self.records.remove(id),
        };
        if let Some(preimages) = &mut self.preimages {
            preimages.entry(id.clone()).or_insert_with(|| old.clone());
        }
        if let Some(expiry) = &mut self.expiry {
            match &new {
                Some(_) => expiry.touch(id, std::time::Instant::now()),
                None => expiry.forget(id),
            }
        }
        match (&old, &new) {
            (None, Some(_)) => self.fingerprint = self.fingerprint.wrapping_add(id_hash(id)),
            (Some(_), None) => self.fingerprint = self.fingerprint.wrapping_sub(id_hash(id)),
            _ => {}
        }
        let seq = self.seq;
        // An index file's header names the record set it was built from, so a record
        // added or removed makes every index file due, even one whose entries did not
        // change (a record with no key, e.g. `None` or an empty `each` list).
        let set_changed = old.is_none() != new.is_none();
        for (index, version) in self.indices.iter_mut().zip(&mut self.index_versions) {
            if index.apply(id, old.as_ref(), new.as_ref()) || set_changed {
                version.0 = seq;
            }
        }
        if persisted {
            self.dirty.insert(id.clone(), seq);
        }
        // The commit frees `old` when nothing else holds it now that the indices
        // let go of it (see `Garbage::drop_some`).
        let frees_old = old.as_ref().is_some_and(|old| Arc::strong_count(old) == 1 + held);
        self.garbage.drop_some(!frees_old);
        old
    }
}

fn id_hash<I: Key>(id: &I) -> u64 {
    index_file::id_hash(&id.encode_key())
}

/// One collection's records, indices and dirty marks. It names no file: what it
/// stages, its backend keeps.
pub(crate) struct Core<T: Entity> {
    name: &'static str,
    /// Whether the layout keeps the collection as one document of lines
    /// (`collection_file`): then the core keeps every record's line.
    whole_file: bool,
    /// Whether the backend keeps the indices too (persisted collections with
    /// indices).
    index_files: bool,
    state: RwLock<State<T>>,
    /// Counts published at each release of `state`'s write lock.
    counts: counts::Counts,
    /// Change subscribers.
    watchers: Watchers<T>,
    /// Changes of commits whose events wait for an earlier commit to be durable,
    /// by commit sequence number, oldest first (see `Inner::drain_events`).
    queued: Mutex<VecDeque<(u64, Vec<Change<T>>)>>,
    /// For a whole-file collection: the line of every record as the collection file
    /// holds it (or will, once the flush in progress is durable), by id. Only the
    /// flusher uses it (flushes never overlap), so a flush serializes just the
    /// records that changed, outside every lock.
    lines: Mutex<lines::Lines<T::Id>>,
}

/// One write of a commit, typed. Ids of `#[id(auto)]` inserts are assigned before.
pub(crate) enum TypedOp<T: Entity> {
    /// Fails if the id exists.
    Insert(Arc<T>),
    /// Inserts or replaces.
    Upsert(Arc<T>),
    /// Fails if the id does not exist.
    Update(Arc<T>),
    /// Removes the record if it exists.
    Remove(T::Id),
}

/// How to revert one applied op, and the change it made.
struct TypedUndo<T: Entity> {
    id: T::Id,
    /// The value before the op.
    old: Option<Arc<T>>,
    /// The value the op wrote.
    written: Option<Arc<T>>,
    /// The record's dirty mark before the op.
    dirty: Option<u64>,
    /// Each index's change version before the op.
    versions: Vec<u64>,
}

/// What applying one op gives back.
pub(crate) struct Applied {
    /// The WAL entry, when the commit is logged.
    pub entry: Option<Vec<u8>>,
    /// The id (`Box<T::Id>`) of the record written or removed.
    pub id: Box<dyn Any + Send>,
    /// Whether a record was removed (rather than written).
    pub removed: bool,
}

/// A collection locked for writing by a commit. Holding the write lock for the whole
/// commit is what keeps a commit invisible to readers until it is complete. The lock
/// remembers what the commit applied, to revert it or to publish its changes.
pub(crate) trait Locked {
    /// Validates and applies one op (a `TypedOp<T>` of this collection's type).
    /// Returns its WAL entry when `log` is set.
    fn apply(&mut self, op: Box<dyn Any + Send>, log: Log) -> Result<Applied>;
    /// Reverts every op this commit applied here, last first.
    fn revert(&mut self);
    /// Publishes the changes this commit made here under sequence number `seq`:
    /// sent to subscribers now, or queued until [`ErasedCollection::publish_queued`]
    /// when `now` is false. Nothing happens without subscribers.
    fn publish(&mut self, seq: u64, now: bool) -> bool;
    /// Whether a record with this id (a `&T::Id`) exists.
    fn contains(&self, id: &dyn Any) -> bool;
    /// The id as key text, for messages.
    fn id_text(&self, id: &dyn Any) -> String;
    /// The ids (`Box<T::Id>`) of the records whose index `index` holds `key`.
    fn ids_under(&self, index: usize, key: &dyn Any) -> Vec<Box<dyn Any + Send>>;
    /// The foreign keys of the record `id` that must name an existing parent:
    /// `(spec, parent id as Box<P::Id>, parent id as JSON)`.
    fn parent_refs(&self, id: &dyn Any) -> Vec<(ForeignKeySpec, Box<dyn Any + Send>, String)>;
    /// The WAL entry of the record `id` as it is now, if it may not be durable yet
    /// (changed since its last flush, or a flush is in progress): a logged commit
    /// whose child references it carries it, so no child outlives its parent after
    /// a crash (DESIGN §3).
    fn entry_unless_durable(&self, id: &dyn Any) -> Result<Option<Vec<u8>>>;
    /// Removes the record `id` (cascade).
    fn remove_id(&mut self, id: &dyn Any, log: Log) -> Result<Applied>;
    /// Sets the `Option` foreign key `field` of record `id` to `None` (detach).
    fn detach(&mut self, id: &dyn Any, field: &str, log: Log) -> Result<Applied>;

    /// The record `id` (a `&T::Id`) as this commit left it, for a shared backend.
    #[cfg(feature = "postgres")]
    fn shared_write(&self, id: &dyn Any) -> Result<SharedWrite>;
    /// Applies writes made by [`Locked::shared_write`], once committed.
    #[cfg(feature = "postgres")]
    fn put_typed(&mut self, writes: Vec<Box<dyn Any + Send>>);
    /// Applies writes given as JSON `(id, record or None)`: another instance's commit.
    #[cfg(feature = "postgres")]
    fn put_json(&mut self, writes: &[(&str, Option<&str>)]) -> std::result::Result<(), String>;
}

struct LockedCore<'a, T: Entity> {
    core: &'a Core<T>,
    state: counts::StateWrite<'a, T>,
    applied: Vec<TypedUndo<T>>,
    /// The last value this commit wrote and its checked JSON: a shared backend's
    /// write of that record takes the JSON from here instead of serializing the
    /// value a third time (see `shared::shared_write_of`).
    #[cfg(feature = "postgres")]
    last_json: Option<(Arc<T>, Vec<u8>)>,
}

/// A type mismatch on the commit path: a bug in Shelf, never a user error.
fn mismatch<T>(what: &str) -> ! {
    unreachable!("shelf internal error: {what} of another type reached collection of `{}`", std::any::type_name::<T>())
}

impl<T: Entity> Locked for LockedCore<'_, T> {
    fn apply(&mut self, op: Box<dyn Any + Send>, log: Log) -> Result<Applied> {
        let name = self.core.name;
        let Ok(op) = op.downcast::<TypedOp<T>>() else { mismatch::<T>("an operation") };
        let (id, new) = match *op {
            TypedOp::Remove(id) => (id, None),
            TypedOp::Insert(value) => {
                let id = value.id().clone();
                if self.state.records.contains_key(&id) {
                    return Err(Error::DuplicateId { collection: name.to_owned(), id: show_id(&id.encode_key()) });
                }
                (id, Some(value))
            }
            TypedOp::Upsert(value) => {
                let id = value.id().clone();
                (id, Some(value))
            }
            TypedOp::Update(value) => {
                let id = value.id().clone();
                if !self.state.records.contains_key(&id) {
                    return Err(Error::NotFound { collection: name.to_owned(), id: show_id(&id.encode_key()) });
                }
                (id, Some(value))
            }
        };
        if let Some(value) = &new {
            self.state.check(name, &id, value)?;
        }
        // Acknowledged means loadable: a persisted record is serialized now and must
        // load back to the same bytes, or the write is refused.
        let bytes = match &new {
            Some(value) if self.core.persisted() => Some(self.core.loadable(&id, value)?),
            _ => None,
        };
        let logged = match log {
            Log::All => true,
            Log::Removals => new.is_none(),
            Log::No => false,
        };
        let entry = match logged && self.core.persisted() {
            true => Some(wal_entry(name, &id, bytes.as_deref(), false)?),
            false => None,
        };
        if let Some(n) = new.as_ref().and_then(|value| value.__id_counter()) {
            self.state.next_auto = self.state.next_auto.max(n.saturating_add(1));
        }
        let removed = new.is_none();
        let dirty = self.state.dirty.get(&id).copied();
        let versions = self.state.index_versions.iter().map(|v| v.0).collect();
        // The undo entry goes first: the indices run the user's `Hash`, `Ord` and
        // `Clone` (and the garbage its `Drop`), and a panic there must find this
        // write in the undo list (`Inner::commit_locked` reverts it).
        let old = self.state.records.get(&id).cloned();
        #[cfg(feature = "postgres")]
        {
            self.last_json = new.clone().zip(bytes);
        }
        self.applied.push(TypedUndo::<T> { id: id.clone(), old, written: new.clone(), dirty, versions });
        self.state.put_held(&id, new, self.core.persisted(), 1);
        Ok(Applied { entry, id: Box::new(id), removed })
    }

    fn revert(&mut self) {
        while let Some(TypedUndo { id, old, dirty, versions, .. }) = self.applied.pop() {
            // The user's `Hash` or `Ord` that panicked while the write went in may
            // panic again on its way out: the record map is set back before the
            // indices, and the other writes are reverted all the same.
            let persisted = self.core.persisted();
            let state = &mut self.state;
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| state.put(&id, old, persisted)));
            // The record is back as it was, and so are its dirty mark and the index
            // versions: a reverted write leaves nothing to flush.
            match dirty {
                Some(seq) => self.state.dirty.insert(id, seq),
                None => self.state.dirty.remove(&id),
            };
            for (version, before) in self.state.index_versions.iter_mut().zip(versions) {
                version.0 = before;
            }
        }
    }

    fn publish(&mut self, seq: u64, now: bool) -> bool {
        if self.core.watchers.is_empty() {
            return false;
        }
        let changes: Vec<Change<T>> =
            self.applied.drain(..).filter_map(|undo| change_of(undo.old, undo.written)).collect();
        if changes.is_empty() {
            return false;
        }
        if now {
            for change in &changes {
                self.core.watchers.send(seq, change);
            }
        } else {
            self.core.queued.lock().push_back((seq, changes));
        }
        true
    }

    fn contains(&self, id: &dyn Any) -> bool {
        let Some(id) = id.downcast_ref::<T::Id>() else { mismatch::<T>("an id") };
        self.state.records.contains_key(id)
    }

    fn id_text(&self, id: &dyn Any) -> String {
        let Some(id) = id.downcast_ref::<T::Id>() else { mismatch::<T>("an id") };
        show_id(&id.encode_key())
    }

    fn ids_under(&self, index: usize, key: &dyn Any) -> Vec<Box<dyn Any + Send>> {
        let Some(index) = self.state.indices.get(index) else { mismatch::<T>("an index position") };
        index.ids_for_any(key).into_iter().map(|id| Box::new(id) as Box<dyn Any + Send>).collect()
    }

    fn parent_refs(&self, id: &dyn Any) -> Vec<(ForeignKeySpec, Box<dyn Any + Send>, String)> {
        let Some(id) = id.downcast_ref::<T::Id>() else { mismatch::<T>("an id") };
        // A record removed again later in the same commit references nothing.
        let Some(record) = self.state.records.get(id) else { return Vec::new() };
        let mut out = Vec::new();
        for spec in T::__foreign_keys().into_iter().filter(|spec| spec.check) {
            let Some(index) = self.state.indices.get(spec.index) else { mismatch::<T>("a foreign key index") };
            for key in index.keys_any(record) {
                out.push((spec, key, index.key_json_any(record)));
            }
        }
        out
    }

    fn entry_unless_durable(&self, id: &dyn Any) -> Result<Option<Vec<u8>>> {
        let Some(id) = id.downcast_ref::<T::Id>() else { mismatch::<T>("an id") };
        let Some(record) = self.state.records.get(id) else { return Ok(None) };
        if !self.core.persisted() || (self.state.in_flight == 0 && !self.state.dirty.contains_key(id)) {
            return Ok(None);
        }
        // Checked loadable when it was written; serialized again (compact, as every
        // logged value), not re-checked.
        let bytes = flush::compact::<T>(self.core.name, id, record)?;
        wal_entry(self.core.name, id, Some(&bytes), true).map(Some)
    }

    fn remove_id(&mut self, id: &dyn Any, log: Log) -> Result<Applied> {
        let Some(id) = id.downcast_ref::<T::Id>() else { mismatch::<T>("an id") };
        self.apply(Box::new(TypedOp::<T>::Remove(id.clone())), log)
    }

    fn detach(&mut self, id: &dyn Any, field: &str, log: Log) -> Result<Applied> {
        let Some(id) = id.downcast_ref::<T::Id>() else { mismatch::<T>("an id") };
        let Some(current) = self.state.records.get(id).cloned() else { mismatch::<T>("a child id") };
        let mut value = T::clone(&current);
        value.__clear_foreign_key(field);
        self.apply(Box::new(TypedOp::Update(Arc::new(value))), log)
    }

    #[cfg(feature = "postgres")]
    fn shared_write(&self, id: &dyn Any) -> Result<SharedWrite> {
        let Some(id) = id.downcast_ref::<T::Id>() else { mismatch::<T>("an id") };
        self.shared_write_typed(id)
    }

    #[cfg(feature = "postgres")]
    fn put_typed(&mut self, writes: Vec<Box<dyn Any + Send>>) {
        LockedCore::put_typed(self, writes)
    }

    #[cfg(feature = "postgres")]
    fn put_json(&mut self, writes: &[(&str, Option<&str>)]) -> std::result::Result<(), String> {
        LockedCore::put_json(self, writes)
    }
}

/// The change from `old` to `new`, if there is one.
fn change_of<T>(old: Option<Arc<T>>, new: Option<Arc<T>>) -> Option<Change<T>> {
    match (old, new) {
        (None, Some(new)) => Some(Change::Insert(new)),
        (Some(old), Some(new)) => Some(Change::Update { old, new }),
        (Some(old), None) => Some(Change::Remove(old)),
        (None, None) => None,
    }
}

/// Which writes of a commit to one collection its WAL record carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Log {
    /// None: the collection is not logged.
    No,
    /// Every write: a `wal` collection.
    All,
    /// Removals only: a collection without `wal` whose records `wal` children
    /// reference. With the parent entries a child's commit carries
    /// ([`Locked::entry_unless_durable`]), replay then never brings back a parent
    /// that was removed (DESIGN §3).
    Removals,
}

/// The WAL entry of one write: `{"c":collection,"id":id,"v":value-or-null}`, with
/// the value's compact JSON (checked by [`Core::loadable`]) spliced in. A `parent`
/// entry (`"p":true`) is the record a logged child references, as it was at the
/// commit; replay inserts it only where no record with its id was loaded.
fn wal_entry<I: Key>(collection: &str, id: &I, value: Option<&[u8]>, parent: bool) -> Result<Vec<u8>> {
    let error = |source| Error::Serde {
        collection: collection.to_owned(),
        id: show_id(&id.encode_key()),
        source: Arc::new(source),
    };
    crate::backend::log_entry(collection, id, value, parent).map_err(error)
}

impl<T: Entity> Core<T> {
    pub fn new() -> Self {
        let indices = T::__indices();
        Core {
            name: T::COLLECTION,
            whole_file: T::STORAGE.kind == crate::entity::StorageKind::CollectionFile,
            index_files: T::STORAGE.is_persisted() && !indices.is_empty(),
            state: RwLock::new(State {
                records: crate::Records::default(),
                index_versions: vec![(0, 0); indices.len()],
                indices,
                dirty: Marks::default(),
                in_flight: 0,
                preimages: None,
                spare: Spare::default(),
                seq: 0,
                next_auto: 1,
                fingerprint: 0,
                rewrite: None,
                expiry: T::TTL.map(crate::expiry::Expiry::new),
                garbage: Garbage::default(),
            }),
            counts: counts::Counts::default(),
            watchers: Watchers::default(),
            queued: Mutex::new(VecDeque::new()),
            lines: Mutex::new(lines::Lines::default()),
        }
    }

    /// The write lock of the state; releasing it publishes [`counts::Counts`].
    fn write_state(&self) -> counts::StateWrite<'_, T> {
        counts::StateWrite { guard: self.state.write(), counts: &self.counts }
    }

    /// The compact JSON of `value`, checked to load back exactly: it deserializes,
    /// and the loaded value serializes to the same bytes (floats bit for bit). A
    /// value that fails is refused before anything changes; see [`Error::Unloadable`].
    fn loadable(&self, id: &T::Id, value: &T) -> Result<Vec<u8>> {
        roundtrip::loadable(self.name, id, value)
    }

    fn persisted(&self) -> bool {
        T::STORAGE.is_persisted()
    }

    /// The file-name stem of an id (every id has one; a long id's is hashed).
    fn stem(&self, id: &T::Id) -> String {
        encode::encode(&id.encode_key())
    }

    /// Runs `f` on index number `pos` (declaration order) as its concrete type.
    /// The derive names each index by its position and key type, so an index that
    /// is missing or of another key type is a bug in Shelf: it stops with a
    /// message instead of answering an empty lookup.
    fn with_index<K: IndexKey, R>(&self, pos: usize, f: impl FnOnce(&Index<T, K>, &State<T>) -> R) -> R {
        let state = self.state.read();
        let index = state.indices.get(pos).and_then(|index| index.as_any().downcast_ref::<Index<T, K>>());
        let Some(index) = index else {
            unreachable!(
                "shelf internal error: collection `{}` has no index {pos} with keys of `{}`",
                self.name,
                std::any::type_name::<K>()
            )
        };
        f(index, &state)
    }

    /// The records under `key` in index `pos`, in id order.
    pub(crate) fn index_all<K: IndexKey + Borrow<Q>, Q: Hash + Ord + ?Sized>(
        &self,
        pos: usize,
        key: &Q,
    ) -> Vec<Arc<T>> {
        self.with_index::<K, _>(pos, |index, _| {
            let recs: Vec<&Arc<T>> = index.get_recs(key).collect();
            // Read every record's reference count first: plain loads, so their cache
            // misses overlap, where the atomic increments of `clone` would take them
            // one after the other. A large collection's records are far apart.
            std::hint::black_box(recs.iter().map(|rec| Arc::strong_count(rec)).sum::<usize>());
            recs.into_iter().cloned().collect()
        })
    }

    /// Whether a record of a collection with a TTL is due at `now`.
    pub(crate) fn any_expired(&self, now: std::time::Instant) -> bool {
        self.state.read().expiry.as_ref().is_some_and(|e| e.any_due(now))
    }

    /// The ids of the records due at `now`, earliest first.
    pub(crate) fn expired(&self, now: std::time::Instant) -> Vec<T::Id> {
        self.state.read().expiry.as_ref().map(|e| e.due(now)).unwrap_or_default()
    }

    /// Whether the record `id` is due at `now`.
    pub(crate) fn is_expired(&self, id: &T::Id, now: std::time::Instant) -> bool {
        self.state.read().expiry.as_ref().is_some_and(|e| e.is_due(id, now))
    }

    /// The record under `key` in the unique index `pos`.
    pub(crate) fn index_one<K: IndexKey + Borrow<Q>, Q: Hash + Ord + ?Sized>(
        &self,
        pos: usize,
        key: &Q,
    ) -> Option<Arc<T>> {
        self.with_index::<K, _>(pos, |index, _| index.get_one_rec(key).cloned())
    }

    /// How many records index `pos` holds under `key`.
    pub(crate) fn index_count<K: IndexKey + Borrow<Q>, Q: Hash + Ord + ?Sized>(&self, pos: usize, key: &Q) -> usize {
        self.with_index::<K, _>(pos, |index, _| index.count(key))
    }

    /// The records whose keys in the sorted index `pos` fall in `bounds`, in key order.
    pub(crate) fn index_range<K: IndexKey + Borrow<Q>, Q: Ord + ?Sized>(
        &self,
        pos: usize,
        bounds: (std::ops::Bound<&Q>, std::ops::Bound<&Q>),
    ) -> Vec<Arc<T>> {
        self.with_index::<K, _>(pos, |index, state| {
            index.range(bounds).into_iter().filter_map(|id| state.records.get(id).cloned()).collect()
        })
    }

    /// Runs `f` over the records and indices, under one read lock.
    pub(crate) fn with_records<R>(
        &self,
        f: impl FnOnce(&crate::Records<T::Id, T>, &[Box<dyn IndexMaint<T>>]) -> R,
    ) -> R {
        let state = self.state.read();
        f(&state.records, &state.indices)
    }

    /// The committed records, for a transaction's view.
    pub(crate) fn snapshot(&self) -> Vec<Arc<T>> {
        self.state.read().records.values().cloned().collect()
    }

    /// The collection's name.
    pub(crate) fn name(&self) -> &'static str {
        self.name
    }

    /// Whether a committed record has this id.
    pub(crate) fn contains<Q: std::hash::Hash + Eq + ?Sized>(&self, id: &Q) -> bool
    where
        T::Id: std::borrow::Borrow<Q>,
    {
        self.state.read().records.contains_key(id)
    }

    /// The number of committed records.
    pub(crate) fn len(&self) -> usize {
        self.counts.records()
    }

    /// The change subscribers.
    pub(crate) fn watchers(&self) -> &Watchers<T> {
        &self.watchers
    }

    /// Records changed since they were last made durable (a flush in progress
    /// included).
    pub(crate) fn dirty_count(&self) -> usize {
        self.counts.dirty()
    }

    /// The committed record with this id.
    pub(crate) fn get<Q: std::hash::Hash + Eq + ?Sized>(&self, id: &Q) -> Option<Arc<T>>
    where
        T::Id: std::borrow::Borrow<Q>,
    {
        self.state.read().records.get(id).cloned()
    }

    pub(crate) fn not_found(&self, id: &T::Id) -> Error {
        Error::NotFound { collection: self.name.to_owned(), id: show_id(&id.encode_key()) }
    }

    /// Assigns the next auto id to a value about to be inserted, if the entity has
    /// `#[id(auto)]`. Called under the writer lock.
    pub(crate) fn prepare_insert(&self, mut value: T) -> Result<T> {
        if T::AUTO_ID {
            let mut state = self.write_state();
            if !value.__set_auto_id(state.next_auto) {
                return Err(Error::AutoIdExhausted { collection: self.name.to_owned() });
            }
            state.next_auto += 1;
        }
        Ok(value)
    }

    /// `current` changed by `change`; an error if the change touched the id.
    pub(crate) fn changed(&self, id: &T::Id, current: &T, change: impl FnOnce(&mut T)) -> Result<T> {
        let mut value = T::clone(current);
        change(&mut value);
        if value.id() != id {
            return Err(Error::IdChanged {
                collection: self.name.to_owned(),
                id: show_id(&id.encode_key()),
                new_id: show_id(&value.id().encode_key()),
            });
        }
        Ok(value)
    }

    fn parse(&self, raw: &RawRecord) -> std::result::Result<T, String> {
        let value: T = serde_json::from_slice(raw.bytes).map_err(|e| e.to_string())?;
        if let Some(stem) = &raw.stem {
            // The name only locates the record (a long id's name is a hash): the id
            // inside must be the one with this name.
            let actual = self.stem(value.id());
            if &actual != stem {
                return Err(format!(
                    "the file name is stem {:?}, but the record inside has id {:?}, whose file name stem is {:?}; rename the file or fix the id",
                    stem,
                    value.id().encode_key(),
                    actual,
                ));
            }
        }
        Ok(value)
    }

    /// Compares each index file with the index rebuilt from the records. A file that
    /// is missing, unreadable or stale is marked for rewriting, with a warning.
    fn verify_index_files(&self, ctx: &LoadCtx, state: &mut State<T>, stored: &IndexReader<'_>) -> Result<()> {
        for (pos, index) in state.indices.iter().enumerate() {
            for (key, ids) in index.duplicates() {
                tracing::warn!(
                    collection = self.name,
                    index = index.name(),
                    key,
                    ?ids,
                    "unique index has a key held by several records"
                );
                ctx.note_unique_conflict(UniqueConflict {
                    collection: self.name.to_owned(),
                    index: index.name().to_owned(),
                    key,
                    ids,
                });
            }
            let problem = match stored(index.name())? {
                StoredIndex::NotKept => continue,
                StoredIndex::Unusable(problem) => Some(problem),
                StoredIndex::Found(bytes) => {
                    index_file::verify(&bytes, index.as_ref(), state.fingerprint, state.records.len()).err()
                }
            };
            match problem {
                None => state.index_versions[pos] = (0, 0),
                // `u64::MAX` is never a write's sequence number: the file is written
                // by the next flush whatever happens before it.
                Some(reason) => {
                    tracing::warn!(collection = self.name, index = index.name(), %reason, "rebuilding index file from the records");
                    state.index_versions[pos] = (state.seq, u64::MAX);
                }
            }
        }
        Ok(())
    }
}

/// Reads the stored form of an index by name; see [`Backend::read_index`](crate::backend::Backend::read_index).
pub(crate) type IndexReader<'a> = dyn Fn(&str) -> Result<StoredIndex> + 'a;

/// The type-erased face of a collection, for the store and the flusher.
pub(crate) trait ErasedCollection: Send + Sync {
    fn name(&self) -> &'static str;
    fn type_name(&self) -> &'static str;
    /// The name of the `#[id]` field.
    fn id_field(&self) -> &'static str;
    fn persisted(&self) -> bool;
    fn spec(&self) -> crate::entity::StorageSpec;
    fn as_any_arc(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
    /// Whether the collection has indices.
    fn has_indices(&self) -> bool;
    /// Loads the records of `from` (the declared layout, or the one of the last run
    /// when migrating), rebuilds the indices and checks them against their stored
    /// forms, read through `stored`.
    fn load(&self, ctx: &LoadCtx, from: &dyn Source, stored: &IndexReader<'_>) -> Result<()>;
    /// Stages every record (a migration's first step).
    fn stage_all_records(&self, out: &mut dyn Stage) -> Result<()>;
    /// Takes the snapshot of a flush: the dirty marks, as they are now. Called under
    /// the writer lock; costs no more than moving a map. `None` when there is
    /// nothing to write. With `index_files`, the index files that changed are
    /// written too (only the final flush of `close` asks, when no writer is left).
    fn snapshot(&self, index_files: bool) -> Option<Box<dyn FlushPart + '_>>;
    /// Gets ready for a snapshot, before the flush takes the writer lock: drops
    /// what the last flush handed back to the writers and they did not drop yet
    /// (see `Garbage`), and makes sure the maps the snapshot swaps in are there
    /// (see `Spare`), so that the snapshot allocates nothing under the lock.
    fn before_snapshot(&self);
    /// Locks the collection for a commit.
    fn lock_write(&self) -> Box<dyn Locked + '_>;
    /// Sends the queued changes of commit `seq` to subscribers.
    fn publish_queued(&self, seq: u64);
    /// Drops every queued change: their commits were never durable.
    fn discard_queued(&self);
    /// The `#[belongs_to]` fields.
    fn foreign_keys(&self) -> Vec<ForeignKeySpec>;
    /// The declared indices, as `shelf.json` records them.
    fn index_meta(&self) -> Vec<crate::meta::IndexMeta>;
    /// The fields serde writes, as the derive describes them.
    fn record_fields(&self) -> &'static [crate::entity::RecordField];
    /// The JSON key of the field `field` (a Rust field name), for `shelf.json`.
    /// (The PostgreSQL backend keeps Rust names: its foreign-key columns are
    /// filled from the typed records, never read from the JSON.)
    fn key_of(&self, field: &'static str) -> &'static str;
    /// Whether a record with this id (a `&T::Id`) exists.
    fn contains_id(&self, id: &dyn Any) -> bool;
    /// References (with `check`) to parents for which `exists` says no.
    /// With `unchecked`, the `check = false` keys are looked at too.
    fn dangling(&self, exists: &dyn Fn(&str, &dyn Any) -> bool, unchecked: bool) -> Vec<Dangling>;
    /// Applies one logged write during WAL replay: the record's JSON, or `None` for
    /// a removal. The record is marked dirty, for the next flush to write.
    /// With `parent` (a parent entry, see [`Log::Removals`]), the record is inserted
    /// only if none with its id exists.
    fn replay(&self, id: serde_json::Value, value: Option<&[u8]>, parent: bool) -> std::result::Result<(), String>;
    fn next_auto(&self) -> Option<u64>;
    fn set_next_auto(&self, next: u64);
    /// Makes the change feed refuse cursors before `seq` (see `Watchers`).
    fn start_feed_after(&self, seq: u64);
    /// A staged import's record (JSON texts of its id and value) as the upsert the
    /// commit path takes (a `TypedOp`), or why it cannot be stored: it does not
    /// parse as the type, holds another id, or gives a value the type would not
    /// store as given (see `import_file::first_difference`).
    fn import_upsert(&self, id: &str, record: &str) -> std::result::Result<Box<dyn Any + Send>, String>;
    /// The change feed as a feed file's `retained_after` and lines; `None` without
    /// a feed. An error names the record that cannot be written.
    fn feed_lines(&self) -> Option<std::result::Result<(u64, Vec<crate::feed_file::Line>), String>>;
    /// Puts back the change feed an earlier open saved.
    fn restore_feed(&self, retained_after: u64, lines: Vec<crate::feed_file::Line>) -> std::result::Result<(), String>;
    fn dirty_count(&self) -> usize;
    fn len(&self) -> usize;
    /// Every record, as a shared backend stores it.
    #[cfg(feature = "postgres")]
    fn shared_all(&self) -> Result<Vec<SharedWrite>>;
}

impl<T: Entity> ErasedCollection for Core<T> {
    fn name(&self) -> &'static str {
        self.name
    }
    fn type_name(&self) -> &'static str {
        std::any::type_name::<T>()
    }
    fn id_field(&self) -> &'static str {
        T::ID_FIELD
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
    fn has_indices(&self) -> bool {
        !self.state.read().indices.is_empty()
    }

    fn load(&self, ctx: &LoadCtx, from: &dyn Source, stored: &IndexReader<'_>) -> Result<()> {
        let mut max_counter = 0;
        let mut skipped = false;
        let mut state = self.write_state();
        let mut lines = self.lines.lock();
        let cache = self.whole_file;
        // Parsing (here) and indexing (`Loader`) overlap on two threads once the
        // collection proves large; records arrive in file order either way, so a
        // later line with the same id wins, as it always did.
        std::thread::scope(|scope| {
            let mut loader = Loader::new(scope, &mut state);
            let loaded = from.load(&mut |raw| {
                match self.parse(&raw) {
                    Ok(value) => {
                        if let Some(n) = value.__id_counter() {
                            max_counter = max_counter.max(n.saturating_add(1));
                        }
                        if cache {
                            flush::load_line(&mut lines, &value, &raw, from.whole())?;
                        }
                        loader.push(value);
                    }
                    Err(message) if !ctx.quarantine() => {
                        return Err(Error::CorruptRecord {
                            collection: self.name.to_owned(),
                            path: raw.location(),
                            message,
                        });
                    }
                    Err(message) => match from.quarantine() {
                        Quarantine::MoveFile => {
                            ctx.move_aside(self.name, &raw.location(), message)?;
                        }
                        Quarantine::CopyFileAndSkip => {
                            ctx.copy_aside(self.name, raw.file, &raw.location(), message)?;
                            skipped = true;
                        }
                    },
                }
                Ok(())
            });
            loader.finish();
            loaded
        })?;
        lines.loaded();
        state.next_auto = state.next_auto.max(max_counter);
        let room = state.marks_capacity().saturating_sub(state.dirty.len());
        state.dirty.reserve(room);
        if skipped {
            state.seq += 1;
            state.rewrite = Some(state.seq);
        }
        self.verify_index_files(ctx, &mut state, stored)
    }

    fn stage_all_records(&self, out: &mut dyn Stage) -> Result<()> {
        let records: Vec<(T::Id, Arc<T>)> = {
            let state = self.state.read();
            state.records.iter().map(|(id, v)| (id.clone(), Arc::clone(v))).collect()
        };
        if self.whole_file {
            return out.whole(self.lines.lock().jsonl());
        }
        let mut changes = Vec::with_capacity(records.len());
        for (id, value) in records {
            changes.push(RecordChange { stem: self.stem(&id), bytes: Some(to_json(self.name, &id, &*value)?) });
        }
        out.records(changes)
    }

    fn snapshot(&self, index_files: bool) -> Option<Box<dyn FlushPart + '_>> {
        flush::Snapshot::take(self, index_files).map(|part| Box::new(part) as Box<dyn FlushPart + '_>)
    }

    fn before_snapshot(&self) {
        let (garbage, spare, capacity) = {
            let mut state = self.write_state();
            let due = !state.dirty.is_empty() || state.rewrite.is_some();
            let spare = if due { Some(std::mem::take(&mut state.spare)) } else { None };
            // Writers go on dropping what is left; with no write since the last
            // flush began (a failed flush leaves its marks dirty, not written), it
            // is dropped here.
            let written = state.seq != state.garbage.seq_at_flush;
            state.garbage.seq_at_flush = state.seq;
            let garbage = if written {
                Garbage::default()
            } else {
                let seq_at_flush = state.seq;
                std::mem::replace(&mut state.garbage, Garbage { seq_at_flush, ..Garbage::default() })
            };
            (garbage, spare, state.marks_capacity())
        };
        drop(garbage);
        if let Some(spare) = spare {
            let spare = Spare {
                marks: Some(with_room(spare.marks, capacity)),
                preimages: Some(with_room(spare.preimages, capacity)),
            };
            self.write_state().spare = spare;
        }
    }

    fn lock_write(&self) -> Box<dyn Locked + '_> {
        Box::new(LockedCore {
            core: self,
            state: self.write_state(),
            applied: Vec::new(),
            #[cfg(feature = "postgres")]
            last_json: None,
        })
    }

    fn publish_queued(&self, seq: u64) {
        let mut queued = self.queued.lock();
        while queued.front().is_some_and(|(s, _)| *s <= seq) {
            if let Some((s, changes)) = queued.pop_front() {
                for change in &changes {
                    self.watchers.send(s, change);
                }
            }
        }
    }

    fn discard_queued(&self) {
        self.queued.lock().clear();
    }

    fn foreign_keys(&self) -> Vec<ForeignKeySpec> {
        T::__foreign_keys()
    }

    fn index_meta(&self) -> Vec<crate::meta::IndexMeta> {
        crate::meta::IndexMeta::of::<T>()
    }

    fn record_fields(&self) -> &'static [crate::entity::RecordField] {
        T::__record_fields()
    }

    fn key_of(&self, field: &'static str) -> &'static str {
        crate::entity::key_of::<T>(field)
    }

    fn contains_id(&self, id: &dyn Any) -> bool {
        let Some(id) = id.downcast_ref::<T::Id>() else { mismatch::<T>("an id") };
        self.state.read().records.contains_key(id)
    }

    fn dangling(&self, exists: &dyn Fn(&str, &dyn Any) -> bool, unchecked: bool) -> Vec<Dangling> {
        let specs: Vec<ForeignKeySpec> = T::__foreign_keys().into_iter().filter(|s| s.check || unchecked).collect();
        if specs.is_empty() {
            return Vec::new();
        }
        let state = self.state.read();
        let mut out = Vec::new();
        for (id, record) in &state.records {
            for spec in &specs {
                let Some(index) = state.indices.get(spec.index) else { continue };
                for key in index.keys_any(record) {
                    if !exists(spec.parent, &*key) {
                        out.push(Dangling {
                            collection: self.name.to_owned(),
                            id: id.encode_key(),
                            field: spec.field.to_owned(),
                            parent_collection: spec.parent.to_owned(),
                            parent_id: index.key_json_any(record),
                        });
                    }
                }
            }
        }
        out.sort_by(|a, b| (&a.id, &a.field).cmp(&(&b.id, &b.field)));
        out
    }

    fn replay(&self, id: serde_json::Value, value: Option<&[u8]>, parent: bool) -> std::result::Result<(), String> {
        let id: T::Id = serde_json::from_value(id).map_err(|e| format!("bad id: {e}"))?;
        let value: Option<T> = value.map(serde_json::from_slice).transpose().map_err(|e| format!("bad record: {e}"))?;
        // Indices file a record under its own id: a logged id must agree with it.
        if let Some(value) = value.as_ref().filter(|v| *v.id() != id) {
            return Err(crate::error::other_id(&id.encode_key(), &value.id().encode_key()));
        }
        let mut state = self.write_state();
        if parent && state.records.contains_key(&id) {
            return Ok(());
        }
        if let Some(n) = value.as_ref().and_then(EntityInternals::__id_counter) {
            state.next_auto = state.next_auto.max(n.saturating_add(1));
        }
        state.put(&id, value.map(Arc::new), self.persisted());
        Ok(())
    }

    fn next_auto(&self) -> Option<u64> {
        T::AUTO_ID.then(|| self.state.read().next_auto)
    }
    fn set_next_auto(&self, next: u64) {
        let mut state = self.write_state();
        state.next_auto = state.next_auto.max(next);
    }
    fn start_feed_after(&self, seq: u64) {
        self.watchers().start_feed_after(seq);
    }
    fn import_upsert(&self, id: &str, record: &str) -> std::result::Result<Box<dyn Any + Send>, String> {
        let id: T::Id = serde_json::from_str(id).map_err(|e| format!("bad id: {e}"))?;
        let value: T = serde_json::from_str(record).map_err(|e| e.to_string())?;
        if *value.id() != id {
            return Err(format!("the record holds id `{}`, not `{}`", value.id().encode_key(), id.encode_key()));
        }
        let given: serde_json::Value = serde_json::from_str(record).map_err(|e| e.to_string())?;
        // What a record file would hold: the bytes, read back (`to_value` would
        // widen an `f32` to the `f64` nearest it, `0.1` to `0.10000000149011612`).
        let bytes = serde_json::to_vec(&value).map_err(|e| format!("cannot be serialized: {e}"))?;
        let stored: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| format!("cannot be read back: {e}"))?;
        if let Some(field) = crate::import_file::first_difference(&given, &stored) {
            return Err(format!("{field} would not be stored as given"));
        }
        Ok(Box::new(TypedOp::Upsert(Arc::new(value))))
    }
    fn feed_lines(&self) -> Option<std::result::Result<(u64, Vec<crate::feed_file::Line>), String>> {
        self.watchers().feed_lines()
    }
    fn restore_feed(&self, retained_after: u64, lines: Vec<crate::feed_file::Line>) -> std::result::Result<(), String> {
        self.watchers().restore_feed(retained_after, lines)
    }
    fn dirty_count(&self) -> usize {
        self.counts.dirty()
    }
    fn len(&self) -> usize {
        self.counts.records()
    }
    #[cfg(feature = "postgres")]
    fn shared_all(&self) -> Result<Vec<SharedWrite>> {
        Core::shared_all(self)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_frees_at_most_one_value_and_only_when_asked() {
        let held = Arc::new(1);
        let mut values = vec![Arc::new(10), Arc::new(11), Arc::clone(&held), Arc::clone(&held)];
        // Not asked to free: the two shared ones go (a count each), 11 stays.
        assert!(!drop_values(&mut values, false, 8));
        assert_eq!(values.iter().map(|v| **v).collect::<Vec<_>>(), [10, 11]);
        assert_eq!(Arc::strong_count(&held), 1);
        // Asked: one value is freed, not two.
        assert!(drop_values(&mut values, true, 8));
        assert_eq!(values.iter().map(|v| **v).collect::<Vec<_>>(), [10]);
        // Shared ones are capped per write.
        let mut values: Vec<_> = (0..5).map(|_| Arc::clone(&held)).collect();
        drop_values(&mut values, false, 3);
        assert_eq!(values.len(), 2);
        drop_values(&mut values, true, 3);
        assert!(values.is_empty(), "the last shared one, then the first one held by nothing else");
    }

    /// A model of updates without pause: each round, a flush hands back the
    /// snapshot value of every record written (still held by the records) and the
    /// preimages it saved (replaced, held by nothing else); then every write
    /// replaces a record's value, deferring its free when the garbage holds it.
    /// The garbage must not grow from round to round.
    #[test]
    fn garbage_of_a_collection_written_without_pause_does_not_grow() {
        let records = 200usize;
        let mut current: Vec<Arc<u64>> = (0..records as u64).map(Arc::new).collect();
        let mut garbage = Garbage::<u64, u64>::default();
        let mut rng = 7u64;
        let mut sizes = Vec::new();
        for round in 0..300 {
            // The flush: snapshot values of the records written, then preimages of
            // the writes made while it ran (a quarter of the round's writes).
            let mut preimages = Vec::new();
            for (n, value) in current.iter().enumerate() {
                if n % 3 == round % 3 {
                    garbage.values.push(Arc::clone(value));
                }
            }
            for _ in 0..400 {
                rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let at = (rng >> 33) as usize % records;
                let old = std::mem::replace(&mut current[at], Arc::new(rng));
                if preimages.len() < 100 {
                    preimages.push(Arc::clone(&old));
                }
                let owed = Arc::strong_count(&old) > 1;
                garbage.drop_some(owed);
                drop(old);
            }
            garbage.values.append(&mut preimages);
            sizes.push(garbage.values.len());
        }
        let early = sizes[50];
        let late = *sizes.last().unwrap();
        assert!(late <= early + early / 4, "the garbage grew from {early} to {late} values");
    }

    #[test]
    fn a_spare_map_with_room_is_reused_and_one_without_is_replaced() {
        let mut spare: Marks<u64> = HashMap::with_capacity_and_hasher(100, Default::default());
        spare.insert(1, 1);
        spare.clear();
        let table = spare.capacity();
        let reused = with_room(Some(spare), 100);
        assert_eq!(reused.capacity(), table, "the same table");
        let bigger = with_room(Some(reused), table * 4);
        assert!(bigger.capacity() >= table * 4);
        assert!(with_room::<u64, u64>(None, 10).capacity() >= 10);
    }
}
