//! The commit path shared by single writes and transactions.
//!
//! Writers are serialized by one writer lock per store (like SQLite's or redb's
//! single writer); readers never take it. A commit locks the collections it touches
//! for writing, in registration order, validates and applies its ops one by one
//! (undoing them all if one fails), appends one WAL record if it touches a `wal`
//! collection, and unlocks. No reader sees part of a commit: each collection a
//! commit touches changes in one step under its write lock. The caller then waits,
//! outside the writer lock, until the WAL record is durable (group commit).

use std::any::Any;
use std::cell::Cell;

use parking_lot::MutexGuard;

use crate::collection::{Applied, Locked};
use crate::error::{Error, Result};
use crate::relation::OnDelete;
use crate::store::Inner;
use crate::wal::{Incoming, SyncStep, Undo, WalSync};

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

/// Proof that the writer lock is held.
pub(crate) type WriterGuard<'a> = MutexGuard<'a, ()>;

thread_local! {
    /// The store whose transaction this thread is running, as an address.
    static IN_TRANSACTION: Cell<usize> = const { Cell::new(0) };
}

/// Marks this thread as inside a transaction of `inner` until dropped.
pub(crate) struct TxMarker;

impl TxMarker {
    pub fn enter(inner: &Inner) -> Self {
        IN_TRANSACTION.with(|c| c.set(inner as *const Inner as usize));
        TxMarker
    }
}

impl Drop for TxMarker {
    fn drop(&mut self) {
        IN_TRANSACTION.with(|c| c.set(0));
    }
}

impl Inner {
    pub(crate) fn in_transaction(&self) -> bool {
        IN_TRANSACTION.with(|c| c.get() == self as *const Inner as usize)
    }

    /// Takes the writer lock; an error instead of a deadlock when this thread is
    /// already inside a transaction of this store.
    /// Also fails with [`Error::Closed`] once `close` has begun its final flush.
    pub(crate) fn lock_writer(&self) -> Result<WriterGuard<'_>> {
        if self.in_transaction() {
            return Err(Error::InTransaction { dir: self.dir.clone() });
        }
        let guard = self.writer.lock();
        if self.is_closed() {
            return Err(Error::Closed { dir: self.dir.clone() });
        }
        Ok(guard)
    }

    /// Runs `stage` under the writer lock, commits the ops it returns, and waits
    /// until they are durable as the WAL policy says.
    pub(crate) fn write<R>(&self, stage: impl FnOnce() -> Result<(Vec<Op>, R)>) -> Result<R> {
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
        let logged = self.wal.is_some() && touched.iter().any(|&c| self.collections[c].spec().wal);
        let mut to_lock: Vec<usize> = touched.iter().flat_map(|&c| self.related[c].iter().copied()).collect();
        to_lock.extend(&touched);
        to_lock.sort_unstable();
        to_lock.dedup();
        let mut run = Run {
            locks: to_lock.iter().map(|&c| (c, self.collections[c].lock_write())).collect(),
            undo: Vec::with_capacity(ops.len()),
            payload: Vec::new(),
            changed: Vec::new(),
            logged,
        };
        if let Err(e) = self.apply_all(&mut run, ops) {
            run.undo_all();
            return Err(e);
        }
        let lsn = match (&self.wal, run.payload.is_empty()) {
            (Some(wal), false) => {
                run.payload.push(b']');
                match wal.append(&run.payload) {
                    Ok(lsn) => Some(lsn),
                    Err(e) => {
                        run.undo_all();
                        return Err(e);
                    }
                }
            }
            _ => None,
        };
        // Committed: the commit's events, in order, before the writer lock is let go.
        let seq = self.commit_seq.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        for (coll, undo) in &run.undo {
            if let Some((_, lock)) = run.locks.iter().find(|(c, _)| c == coll).filter(|(_, l)| l.watched()) {
                lock.notify(undo.as_ref(), seq);
            }
        }
        if let (Some(lsn), Some(wal)) = (lsn, &self.wal) {
            wal.attach_undo(lsn, std::mem::take(&mut run.undo), seq);
        }
        Ok(lsn)
    }

    /// The user's ops, then cascades and detaches, then the foreign key checks.
    fn apply_all(&self, run: &mut Run<'_>, ops: Vec<Op>) -> Result<()> {
        for op in ops {
            run.apply(op.coll, |lock, log| lock.apply(op.op, log))?;
        }
        let mut i = 0;
        while i < run.changed.len() {
            let (coll, removed) = (run.changed[i].0, run.changed[i].2);
            if removed {
                for &(child, spec) in &self.fk_children[coll] {
                    if spec.on_delete == OnDelete::Restrict {
                        continue;
                    }
                    let id = std::mem::replace(&mut run.changed[i].1, Box::new(()));
                    let children = run.lock(child).map(|l| l.ids_under(spec.index, &*id)).unwrap_or_default();
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
        for (coll, id, removed) in &run.changed {
            let Some(lock) = run.locks.iter().find(|(c, _)| c == coll).map(|(_, l)| l) else { continue };
            if *removed {
                if lock.contains(&**id) {
                    continue; // removed and written again in this commit
                }
                for &(child, spec) in self.fk_children[*coll].iter().filter(|(_, s)| s.on_delete == OnDelete::Restrict)
                {
                    let Some((_, child_lock)) = run.locks.iter().find(|(c, _)| *c == child) else { continue };
                    let children = child_lock.ids_under(spec.index, &**id).len();
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
                }
            }
        }
        Ok(())
    }

    /// Announces a writer to the WAL's group commit (policy `Always` only); keep the
    /// guard until the commit is appended. See [`Wal::incoming`](crate::wal::Wal::incoming).
    pub(crate) fn announce(&self) -> Option<Incoming<'_>> {
        self.wal.as_ref().filter(|wal| wal.policy == WalSync::Always).map(|wal| wal.incoming())
    }

    /// Waits until the WAL record `lsn` is durable (policy `Always`); with
    /// `Every(..)` the background syncer does it and this returns at once.
    ///
    /// `incoming` is the writer's announcement ([`Inner::announce`]); it ends here.
    pub(crate) fn wait_durable(&self, lsn: Option<u64>, incoming: Option<Incoming<'_>>) -> Result<()> {
        let (Some(lsn), Some(wal)) = (lsn, &self.wal) else { return Ok(()) };
        if wal.policy != WalSync::Always {
            return Ok(());
        }
        self.sync_wal_to(lsn, incoming)
    }

    /// Syncs the WAL up to `lsn`, running the rollback if this thread's sync fails.
    pub(crate) fn sync_wal_to(&self, lsn: u64, mut incoming: Option<Incoming<'_>>) -> Result<()> {
        let Some(wal) = &self.wal else { return Ok(()) };
        loop {
            match wal.sync_to(lsn, incoming.take()) {
                SyncStep::Durable => return Ok(()),
                SyncStep::Failed(e) => return Err(e),
                SyncStep::RollBack(e) => {
                    let guard = self.writer.lock();
                    self.roll_back_unsynced(&guard, e.clone());
                    if wal.policy != WalSync::Always {
                        return Err(e);
                    }
                }
            }
        }
    }

    /// After a failed WAL write or sync (`error`): reverts, in memory, every commit
    /// whose WAL record is not durable, newest first, and makes their waiters fail
    /// with the error. Nothing happens when that failure was rolled back already.
    ///
    /// Under `WalSync::Every` the commits were acknowledged already: they are kept
    /// instead, the failure is reported in [`Health`](crate::Health), and the next
    /// sync (background, flush or close) retries.
    pub(crate) fn roll_back_unsynced(&self, _writer: &WriterGuard<'_>, error: Error) {
        let Some(wal) = &self.wal else { return };
        if wal.policy != WalSync::Always {
            tracing::error!(%error, "WAL sync failed; keeping the acknowledged writes and retrying");
            self.flush_state.record_failure(error);
            wal.keep_unsynced();
            return;
        }
        // The rollback of this failure may have been run by another thread already.
        let Some((unsynced, error)) = wal.take_unsynced() else { return };
        tracing::error!(%error, "WAL sync failed; rolling back commits that are not durable");
        for (undo, _) in unsynced {
            // The reverse changes are a new commit, after every commit applied so far.
            let seq = self.commit_seq.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            let mut touched: Vec<usize> = undo.iter().map(|(c, _)| *c).collect();
            touched.sort_unstable();
            touched.dedup();
            let mut locks: Vec<_> = touched.iter().map(|&c| (c, self.collections[c].lock_write())).collect();
            for (coll, op_undo) in undo.into_iter().rev() {
                if let Some((_, lock)) = locks.iter_mut().find(|(c, _)| *c == coll) {
                    lock.undo(op_undo, Some(seq));
                }
            }
        }
        wal.finish_rollback(error);
    }
}

/// The state of one commit in progress.
struct Run<'a> {
    locks: Vec<(usize, Box<dyn Locked + 'a>)>,
    undo: Undo,
    payload: Vec<u8>,
    /// `(collection, Box<T::Id>, removed)` of every record the commit changed.
    changed: Vec<(usize, Box<dyn Any + Send>, bool)>,
    logged: bool,
}

impl<'a> Run<'a> {
    fn lock(&mut self, coll: usize) -> Option<&mut Box<dyn Locked + 'a>> {
        self.locks.iter_mut().find(|(c, _)| *c == coll).map(|(_, l)| l)
    }

    /// Applies one op on a locked collection and records what it did.
    fn apply(
        &mut self,
        coll: usize,
        op: impl FnOnce(&mut Box<dyn Locked + 'a>, bool) -> Result<Applied>,
    ) -> Result<()> {
        let logged = self.logged;
        let Some(lock) = self.lock(coll) else { return Ok(()) };
        let applied = op(lock, logged)?;
        self.undo.push((coll, applied.undo));
        if let Some(entry) = applied.entry {
            self.payload.push(if self.payload.is_empty() { b'[' } else { b',' });
            self.payload.extend_from_slice(&entry);
        }
        self.changed.push((coll, applied.id, applied.removed));
        Ok(())
    }

    fn undo_all(&mut self) {
        let undo = std::mem::take(&mut self.undo);
        undo_all(&mut self.locks, undo);
    }
}

/// Reverts applied ops, last first.
fn undo_all(locks: &mut [(usize, Box<dyn Locked + '_>)], undo: Undo) {
    for (coll, op_undo) in undo.into_iter().rev() {
        if let Some((_, lock)) = locks.iter_mut().find(|(c, _)| *c == coll) {
            lock.undo(op_undo, None);
        }
    }
}
