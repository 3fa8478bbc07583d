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

use crate::error::{Error, Result};
use crate::store::Inner;
use crate::wal::{SyncStep, Undo, WalSync};

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
    fn in_transaction(&self) -> bool {
        IN_TRANSACTION.with(|c| c.get() == self as *const Inner as usize)
    }

    /// Takes the writer lock; an error instead of a deadlock when this thread is
    /// already inside a transaction of this store.
    pub(crate) fn lock_writer(&self) -> Result<WriterGuard<'_>> {
        if self.in_transaction() {
            return Err(Error::InTransaction { dir: self.dir.clone() });
        }
        Ok(self.writer.lock())
    }

    /// Runs `stage` under the writer lock, commits the ops it returns, and waits
    /// until they are durable as the WAL policy says.
    pub(crate) fn write<R>(&self, stage: impl FnOnce() -> Result<(Vec<Op>, R)>) -> Result<R> {
        let guard = self.lock_writer()?;
        let (ops, result) = stage()?;
        let lsn = self.commit_locked(&guard, ops)?;
        drop(guard);
        self.wait_durable(lsn)?;
        Ok(result)
    }

    /// Applies `ops` atomically. Returns the WAL sequence number to wait for, if the
    /// commit was logged.
    pub(crate) fn commit_locked(&self, _writer: &WriterGuard<'_>, ops: Vec<Op>) -> Result<Option<u64>> {
        if ops.is_empty() {
            return Ok(None);
        }
        let mut touched: Vec<usize> = ops.iter().map(|op| op.coll).collect();
        touched.sort_unstable();
        touched.dedup();
        let logged = self.wal.is_some() && touched.iter().any(|&c| self.collections[c].spec().wal);
        let mut locks: Vec<_> = touched.iter().map(|&c| (c, self.collections[c].lock_write())).collect();
        let mut undo: Undo = Vec::with_capacity(ops.len());
        let mut payload = Vec::new();
        for op in ops {
            let Some((_, lock)) = locks.iter_mut().find(|(c, _)| *c == op.coll) else { continue };
            match lock.apply(op.op, logged) {
                Ok((op_undo, entry)) => {
                    undo.push((op.coll, op_undo));
                    if let Some(entry) = entry {
                        payload.push(if payload.is_empty() { b'[' } else { b',' });
                        payload.extend_from_slice(&entry);
                    }
                }
                Err(e) => {
                    undo_all(&mut locks, undo);
                    return Err(e);
                }
            }
        }
        let (Some(wal), false) = (&self.wal, payload.is_empty()) else {
            return Ok(None);
        };
        payload.push(b']');
        match wal.append(&payload, undo) {
            Ok(lsn) => Ok(Some(lsn)),
            Err((e, undo)) => {
                undo_all(&mut locks, undo);
                Err(e)
            }
        }
    }

    /// Waits until the WAL record `lsn` is durable (policy `Always`); with
    /// `Every(..)` the background syncer does it and this returns at once.
    pub(crate) fn wait_durable(&self, lsn: Option<u64>) -> Result<()> {
        let (Some(lsn), Some(wal)) = (lsn, &self.wal) else { return Ok(()) };
        if wal.policy != WalSync::Always {
            return Ok(());
        }
        self.sync_wal_to(lsn)
    }

    /// Syncs the WAL up to `lsn`, running the rollback if this thread's sync fails.
    pub(crate) fn sync_wal_to(&self, lsn: u64) -> Result<()> {
        let Some(wal) = &self.wal else { return Ok(()) };
        loop {
            match wal.sync_to(lsn) {
                SyncStep::Durable => return Ok(()),
                SyncStep::Failed(e) => return Err(e),
                SyncStep::RollBack(e) => {
                    let guard = self.writer.lock();
                    self.roll_back_unsynced(&guard, e);
                }
            }
        }
    }

    /// Reverts, in memory, every commit whose WAL record is not durable, newest first,
    /// and makes their waiters fail with `error`.
    pub(crate) fn roll_back_unsynced(&self, _writer: &WriterGuard<'_>, error: Error) {
        let Some(wal) = &self.wal else { return };
        tracing::error!(%error, "WAL sync failed; rolling back commits that are not durable");
        for undo in wal.take_unsynced() {
            let mut touched: Vec<usize> = undo.iter().map(|(c, _)| *c).collect();
            touched.sort_unstable();
            touched.dedup();
            let mut locks: Vec<_> = touched.iter().map(|&c| (c, self.collections[c].lock_write())).collect();
            undo_all(&mut locks, undo);
        }
        wal.finish_rollback(error);
    }
}

/// Reverts applied ops, last first.
fn undo_all(locks: &mut [(usize, Box<dyn crate::collection::Locked + '_>)], undo: Undo) {
    for (coll, op_undo) in undo.into_iter().rev() {
        if let Some((_, lock)) = locks.iter_mut().find(|(c, _)| *c == coll) {
            lock.undo(op_undo);
        }
    }
}
