//! The commit path shared by single writes and transactions.
//!
//! Writers are serialized by one writer lock per store (like SQLite's or redb's
//! single writer); readers never take it. A commit locks the collections it touches
//! for writing, in registration order, validates and applies its ops one by one
//! (reverting them all if one fails), appends one WAL record if it touches a `wal`
//! collection, publishes its changes, and unlocks. No reader sees part of a commit:
//! each collection a commit touches changes in one step under its write lock. The
//! caller then waits, outside the writer lock, until the WAL record is durable
//! (group commit). Nothing under the writer lock does I/O.
//!
//! If the WAL cannot make a commit durable, nothing is undone: the store is
//! poisoned ([`Error::Poisoned`]), the commits that were not durable fail for their
//! callers, their changes are never published, and every later write fails. Close
//! and open recovers exactly what is durable.

use std::any::Any;
use std::cell::RefCell;
use std::collections::VecDeque;

use parking_lot::MutexGuard;

use crate::backend::Announcement;
use crate::collection::{Applied, Locked, Log};
use crate::error::{Error, Result};
use crate::relation::OnDelete;
use crate::store::Inner;

/// One write of a commit: the collection's position and its `TypedOp<T>`.
pub(crate) struct Op {
    pub coll: usize,
    pub op: Box<dyn Any + Send>,
}

impl Op {
    pub fn new<O: Any + Send>(coll: usize, op: O) -> Self {
        Op { coll, op: Box::new(op) }
    }
}

/// A value a write's stage consumes: moved out the first time; cloned each time
/// where the stage may run again (a shared backend re-runs it on a conflict).
pub(crate) struct Reusable<T: Clone> {
    value: Option<T>,
    keep: bool,
}

impl<T: Clone> Reusable<T> {
    pub fn new(value: T, inner: &Inner) -> Self {
        Reusable { value: Some(value), keep: inner.retries() }
    }

    /// The value, for one run of the stage.
    pub fn get(&mut self) -> T {
        let value = if self.keep { self.value.clone() } else { self.value.take() };
        value.unwrap_or_else(|| unreachable!("a stage runs more than once only where its inputs are kept"))
    }
}

/// What a thread is doing while it holds a store's writer lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Holding {
    /// Running the body of a transaction.
    Transaction,
    /// Running the closure of `update` (or preparing another single write).
    Write,
}

thread_local! {
    /// The stores whose writer lock this thread holds, innermost last, by address.
    static HOLDING: RefCell<Vec<(usize, Holding)>> = const { RefCell::new(Vec::new()) };
}

/// Proof that the writer lock is held; while it lives, this thread is known to hold
/// it, so a nested write or flush on the same store fails instead of deadlocking.
pub(crate) struct WriterGuard<'a> {
    _guard: MutexGuard<'a, ()>,
    inner: usize,
}

impl WriterGuard<'_> {
    /// Marks what this thread does under the lock (see [`Holding`]).
    pub fn doing(&self, what: Holding) {
        HOLDING.with(|h| {
            if let Some(entry) = h.borrow_mut().iter_mut().rev().find(|(addr, _)| *addr == self.inner) {
                entry.1 = what;
            }
        });
    }
}

impl Drop for WriterGuard<'_> {
    fn drop(&mut self) {
        HOLDING.with(|h| {
            let mut h = h.borrow_mut();
            if let Some(pos) = h.iter().rposition(|(addr, _)| *addr == self.inner) {
                h.remove(pos);
            }
        });
    }
}

/// A commit whose changes wait to be published: its sequence number, the WAL
/// record it waits for (none: only for earlier commits), and the collections with
/// queued changes.
pub(crate) struct Queued {
    seq: u64,
    lsn: Option<u64>,
    colls: Vec<usize>,
}

/// Published changes wait here, in commit order, while an earlier commit's WAL
/// record is not durable.
pub(crate) type Outbox = parking_lot::Mutex<VecDeque<Queued>>;

impl Inner {
    /// What this thread does under this store's writer lock, if it holds it.
    pub(crate) fn holding(&self) -> Option<Holding> {
        let me = self as *const Inner as usize;
        HOLDING.with(|h| h.borrow().iter().rev().find(|(addr, _)| *addr == me).map(|(_, what)| *what))
    }

    /// An error for `op` when this thread holds the writer lock (inside a
    /// transaction body or an `update` closure of this store), where waiting for the
    /// lock would deadlock.
    pub(crate) fn refuse_reentry(&self, op: &'static str) -> Result<()> {
        match self.holding() {
            None => Ok(()),
            Some(Holding::Transaction) if op == "write" => Err(Error::InTransaction { dir: self.dir.clone() }),
            Some(Holding::Transaction) => {
                Err(Error::Reentrant { dir: self.dir.clone(), op, inside: "a transaction body" })
            }
            Some(Holding::Write) => Err(Error::Reentrant { dir: self.dir.clone(), op, inside: "an `update` closure" }),
        }
    }

    /// Takes the writer lock; an error instead of a deadlock when this thread holds
    /// it already. Fails with [`Error::Closed`] once `close` has begun its final
    /// flush, and with [`Error::Poisoned`] once a WAL sync failed.
    pub(crate) fn lock_writer(&self) -> Result<WriterGuard<'_>> {
        self.refuse_reentry("write")?;
        let guard = self.writer.lock();
        if self.is_closed() {
            return Err(Error::Closed { dir: self.dir.clone() });
        }
        self.check_poisoned()?;
        let inner = self as *const Inner as usize;
        HOLDING.with(|h| h.borrow_mut().push((inner, Holding::Write)));
        Ok(WriterGuard { _guard: guard, inner })
    }

    /// Whether a write's stage may run more than once (a shared backend re-runs it
    /// on a conflict).
    pub(crate) fn retries(&self) -> bool {
        #[cfg(feature = "postgres")]
        if self.backend.shared().is_some() {
            return true;
        }
        false
    }

    /// [`Error::Poisoned`] once a WAL write or sync has failed.
    pub(crate) fn check_poisoned(&self) -> Result<()> {
        match self.backend.poisoned() {
            Some(cause) => Err(Error::Poisoned { dir: self.dir.clone(), cause: Box::new(cause) }),
            None => Ok(()),
        }
    }

    /// Runs `stage` under the writer lock, commits the ops it returns, and waits
    /// until they are durable as the WAL policy says.
    pub(crate) fn write<R>(&self, mut stage: impl FnMut() -> Result<(Vec<Op>, R)>) -> Result<R> {
        #[cfg(feature = "postgres")]
        if let Some(pg) = self.backend.shared() {
            return self.write_shared(pg, |_, _| stage());
        }
        let incoming = self.announce();
        let guard = self.lock_writer()?;
        let (ops, result) = stage()?;
        let lsn = self.commit_locked(&guard, ops)?;
        drop(guard);
        self.wait_durable(lsn, incoming)?;
        Ok(result)
    }

    /// Applies `ops` atomically. Returns the WAL sequence number to wait for, if the
    /// commit was logged.
    ///
    /// Besides the touched collections, the commit locks every collection related to
    /// them by `#[belongs_to]`: removals cascade or detach into children, and then
    /// every foreign key the commit leaves behind is checked — a removed parent with
    /// `restrict` children, or a written child whose parent does not exist, fails the
    /// whole commit.
    pub(crate) fn commit_locked(&self, _writer: &WriterGuard<'_>, ops: Vec<Op>) -> Result<Option<u64>> {
        if ops.is_empty() {
            return Ok(None);
        }
        let mut touched: Vec<usize> = ops.iter().map(|op| op.coll).collect();
        touched.sort_unstable();
        touched.dedup();
        let logged = self.backend.logs() && touched.iter().any(|&c| self.collections[c].spec().wal);

        let mut to_lock: Vec<usize> = touched.iter().flat_map(|&c| self.related[c].iter().copied()).collect();
        to_lock.extend(&touched);
        to_lock.sort_unstable();
        to_lock.dedup();
        let mut run = Run {
            locks: to_lock.iter().map(|&c| (c, self.collections[c].lock_write())).collect(),
            payload: Vec::new(),
            changed: Vec::new(),
            logged,
            log: &self.log,
        };
        // A panic while applying (a user's `Serialize`, `Deserialize`, `Hash` or
        // `Ord` runs here) must not leave half a commit in memory, for the flusher
        // to write: what was applied goes back, then the panic goes on.
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.apply_all(&mut run, ops))) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                run.revert();
                return Err(e);
            }
            Err(panic) => {
                run.revert();
                std::panic::resume_unwind(panic);
            }
        }
        let lsn = match run.payload.is_empty() {
            false => {
                run.payload.push(b']');
                match self.backend.log(&run.payload) {
                    Ok(lsn) => Some(lsn),
                    Err(e) => {
                        // Nothing was acknowledged or published: memory goes back.
                        run.revert();
                        return Err(self.poisoned_or(e));
                    }
                }
            }
            true => None,
        };
        // Only a commit to a `wal` collection waits for its record; one that logs
        // only a parent collection's removals does not (the flush that persists
        // them syncs the WAL first).
        let lsn = lsn.filter(|_| run.logged);
        // Committed. The changes are published in commit order: now, unless they
        // must wait for this commit's WAL record (`Always`) or for an earlier
        // commit's, still queued.
        let seq = self.commit_seq.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        let wait_for = lsn.filter(|_| self.backend.waits());
        let mut outbox = self.outbox.lock();
        let now = wait_for.is_none() && outbox.is_empty();
        let colls: Vec<usize> =
            run.locks.iter_mut().filter_map(|(c, lock)| lock.publish(seq, now).then_some(*c)).collect();
        if !now && !colls.is_empty() {
            outbox.push_back(Queued { seq, lsn: wait_for, colls });
        }
        Ok(lsn)
    }

    /// Publishes the queued changes whose commits are durable, in commit order. Once
    /// the store is poisoned, the queued changes that were never durable are dropped.
    pub(crate) fn drain_events(&self) {
        if !self.backend.logs() {
            return;
        }
        let mut outbox = self.outbox.lock();
        let durable = self.backend.durable_lsn();
        while let Some(front) = outbox.front() {
            if front.lsn.is_some_and(|lsn| lsn > durable) {
                if self.backend.poisoned().is_some() {
                    outbox.clear();
                    for collection in &self.collections {
                        collection.discard_queued();
                    }
                }
                return;
            }
            if let Some(queued) = outbox.pop_front() {
                for &coll in &queued.colls {
                    self.collections[coll].publish_queued(queued.seq);
                }
            }
        }
    }

    /// The user's ops, then cascades and detaches, then the foreign key checks.
    pub(crate) fn apply_all(&self, run: &mut Run<'_>, ops: Vec<Op>) -> Result<()> {
        for op in ops {
            run.apply(op.coll, |lock, log| lock.apply(op.op, log))?;
        }
        let mut i = 0;
        while i < run.changed.len() {
            let (coll, removed) = (run.changed[i].0, run.changed[i].2);
            if removed {
                for &(child, spec) in &self.fk_children[coll] {
                    if matches!(spec.on_delete, OnDelete::Restrict | OnDelete::Ignore) {
                        continue;
                    }
                    let id = std::mem::replace(&mut run.changed[i].1, Box::new(()));
                    let children = run.lock(child).ids_under(spec.index, &*id);
                    run.changed[i].1 = id;
                    for child_id in children {
                        match spec.on_delete {
                            OnDelete::Cascade => run.apply(child, |lock, log| lock.remove_id(&*child_id, log))?,
                            _ => run.apply(child, |lock, log| lock.detach(&*child_id, spec.field, log))?,
                        }
                    }
                }
            }
            i += 1;
        }
        // Parents that a logged child references and that may not be durable yet:
        // their entries go into the same WAL record (DESIGN §3).
        let mut parents: Vec<(usize, String, Vec<u8>)> = Vec::new();
        for (coll, id, removed) in &run.changed {
            let lock = run.locked(*coll);
            // A logged commit logs every write (`Log::All`), children without `wal`
            // included: their parents go into the record too.
            let logged_child = run.logged;
            if *removed {
                if lock.contains(&**id) {
                    continue; // removed and written again in this commit
                }
                for &(child, spec) in self.fk_children[*coll].iter().filter(|(_, s)| s.on_delete == OnDelete::Restrict)
                {
                    let children = run.locked(child).ids_under(spec.index, &**id).len();
                    if children > 0 {
                        return Err(Error::ForeignKey {
                            collection: self.collections[*coll].name().to_owned(),
                            id: lock.id_text(&**id),
                            child_collection: self.collections[child].name().to_owned(),
                            field: spec.field.to_owned(),
                            children,
                        });
                    }
                }
            } else {
                for (spec, parent_id, parent_json) in lock.parent_refs(&**id) {
                    let parent = self.by_name.get(spec.parent).copied();
                    let exists = parent
                        .and_then(|p| run.locks.iter().find(|(c, _)| *c == p))
                        .is_some_and(|(_, parent_lock)| parent_lock.contains(&*parent_id));
                    if !exists {
                        return Err(Error::MissingParent {
                            collection: self.collections[*coll].name().to_owned(),
                            id: lock.id_text(&**id),
                            field: spec.field.to_owned(),
                            parent_collection: spec.parent.to_owned(),
                            parent_id: parent_json,
                        });
                    }
                    let Some(p) = parent.filter(|&p| logged_child && !self.collections[p].spec().wal) else { continue };
                    if parents.iter().any(|(q, json, _)| *q == p && *json == parent_json) {
                        continue;
                    }
                    if let Some(entry) = run.locked(p).entry_unless_durable(&*parent_id)? {
                        parents.push((p, parent_json, entry));
                    }
                }
            }
        }
        for (_, _, entry) in parents {
            run.payload.push(if run.payload.is_empty() { b'[' } else { b',' });
            run.payload.extend_from_slice(&entry);
        }
        Ok(())
    }

    /// Announces a writer to the WAL's group commit (policy `Always` only); keep the
    /// guard until the commit is appended. See [`Backend::announce`](crate::backend::Backend::announce).
    pub(crate) fn announce(&self) -> Option<Announcement<'_>> {
        self.backend.announce()
    }

    /// Waits until the WAL record `lsn` is durable (policy `Always`), then publishes
    /// the changes that waited for it; with `Every(..)` the background syncer makes
    /// it durable and this returns at once.
    ///
    /// `incoming` is the writer's announcement ([`Inner::announce`]); it ends here.
    pub(crate) fn wait_durable(&self, lsn: Option<u64>, incoming: Option<Announcement<'_>>) -> Result<()> {
        let Some(lsn) = lsn.filter(|_| self.backend.waits()) else { return Ok(()) };
        let outcome = self.backend.wait_logged(lsn, incoming).map_err(|e| self.poisoned_or(e));
        self.drain_events();
        outcome
    }

    /// `error` as the caller of a failed WAL write or sync sees it: the store is
    /// poisoned by it.
    pub(crate) fn poisoned_or(&self, error: Error) -> Error {
        match self.check_poisoned() {
            Err(poisoned) => poisoned,
            Ok(()) => error,
        }
    }
}

/// The state of one commit in progress.
pub(crate) struct Run<'a> {
    pub(crate) locks: Vec<(usize, Box<dyn Locked + 'a>)>,
    pub(crate) payload: Vec<u8>,
    /// `(collection, Box<T::Id>, removed)` of every record the commit changed.
    pub(crate) changed: Vec<(usize, Box<dyn Any + Send>, bool)>,
    /// Whether the commit touches a `wal` collection: then it waits for its WAL
    /// record.
    pub(crate) logged: bool,
    /// Per collection: which of its writes the WAL record carries.
    pub(crate) log: &'a [Log],
}

impl<'a> Run<'a> {
    /// The lock on collection `coll`. A commit locks every collection it touches
    /// and every one related to them by a foreign key, so one that is not locked
    /// is a bug in Shelf: it stops with a message, never skips the write.
    fn lock(&mut self, coll: usize) -> &mut Box<dyn Locked + 'a> {
        match self.locks.iter_mut().find(|(c, _)| *c == coll) {
            Some((_, lock)) => lock,
            None => not_locked(coll),
        }
    }

    /// The lock on collection `coll`, to read (see [`lock`](Self::lock)).
    fn locked(&self, coll: usize) -> &(dyn Locked + 'a) {
        match self.locks.iter().find(|(c, _)| *c == coll) {
            Some((_, lock)) => &**lock,
            None => not_locked(coll),
        }
    }

    /// Applies one op on a locked collection and records what it did.
    fn apply(&mut self, coll: usize, op: impl FnOnce(&mut Box<dyn Locked + 'a>, Log) -> Result<Applied>) -> Result<()> {
        // A commit to a `wal` collection logs all its writes, so a transaction
        // across collections replays whole; otherwise each collection's own mode.
        let log = if self.logged { Log::All } else { self.log[coll] };
        let applied = op(self.lock(coll), log)?;
        if let Some(entry) = applied.entry {
            self.payload.push(if self.payload.is_empty() { b'[' } else { b',' });
            self.payload.extend_from_slice(&entry);
        }
        self.changed.push((coll, applied.id, applied.removed));
        Ok(())
    }

    /// Reverts every applied op: the commit failed before it was acknowledged.
    pub(crate) fn revert(&mut self) {
        for (_, lock) in &mut self.locks {
            lock.revert();
        }
    }
}

/// A collection a commit reached without locking it: a bug in Shelf.
fn not_locked(coll: usize) -> ! {
    unreachable!("shelf internal error: collection {coll} is reached by a commit that did not lock it")
}
