//! A collection's record and dirty counts, published at each release of its write
//! lock, so that [`Store::health`](crate::Store::health) and
//! [`Store::stats`](crate::Store::stats) read them without the lock.
//!
//! Why: a reader that has waited long for the lock is handed it by the writer that
//! releases it (parking_lot's eventual fairness). When the scheduler does not run
//! that reader at once, every writer waits for it. W9 traced a monitoring thread
//! polling `health()` holding a writer up for 1.4 ms that way while flush threads
//! kept the other core busy.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::RwLockWriteGuard;

use super::State;
use crate::entity::Entity;

/// The counts as of the last release of the write lock.
#[derive(Debug, Default)]
pub(super) struct Counts {
    records: AtomicUsize,
    dirty: AtomicUsize,
}

impl Counts {
    /// Records in the collection.
    pub fn records(&self) -> usize {
        self.records.load(Ordering::Acquire)
    }

    /// Dirty marks, those a running flush took included.
    pub fn dirty(&self) -> usize {
        self.dirty.load(Ordering::Acquire)
    }
}

/// The collection's write lock; releasing it publishes the counts.
pub(super) struct StateWrite<'a, T: Entity> {
    pub(super) guard: RwLockWriteGuard<'a, State<T>>,
    pub(super) counts: &'a Counts,
}

impl<T: Entity> Deref for StateWrite<'_, T> {
    type Target = State<T>;
    fn deref(&self) -> &State<T> {
        &self.guard
    }
}

impl<T: Entity> DerefMut for StateWrite<'_, T> {
    fn deref_mut(&mut self) -> &mut State<T> {
        &mut self.guard
    }
}

impl<T: Entity> Drop for StateWrite<'_, T> {
    fn drop(&mut self) {
        self.counts.records.store(self.guard.records.len(), Ordering::Release);
        self.counts.dirty.store(self.guard.dirty.len() + self.guard.in_flight, Ordering::Release);
    }
}
