//! Change subscriptions: `collection.watch()` and friends.
//!
//! Events are sent in commit order: the events of one commit (a transaction's
//! included) arrive together and before those of any later commit, and sequence
//! numbers never go back. A failed commit sends nothing.
//!
//! An event means the commit is acknowledged. A commit to a `wal` collection under
//! [`WalSync::Always`](crate::WalSync) is published once its WAL record is durable
//! (by the writer or the sync that made it so), and every later commit's events wait
//! behind it; if that sync fails, the store is poisoned and the commits it did not
//! make durable are never published. Other commits are published when they are
//! applied in memory, under the writer lock; they reach the record files with the
//! next flush, which [`Store::watch_flushes`](crate::Store::watch_flushes) reports
//! with the sequence number it covered.
//!
//! Channels are unbounded (`std::sync::mpsc`): a slow subscriber never blocks a
//! writer; its events queue in memory until it reads them. Dropping the receiver
//! unsubscribes (the sender is removed at the next event).

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::entity::Entity;
use crate::query::predicate::Predicate;

/// What happened to a record.
#[derive(Debug)]
pub enum Change<T> {
    /// A new record.
    Insert(Arc<T>),
    /// A record replaced by a new version.
    Update {
        /// The version before.
        old: Arc<T>,
        /// The version after.
        new: Arc<T>,
    },
    /// A removed record.
    Remove(Arc<T>),
}

impl<T> Clone for Change<T> {
    fn clone(&self) -> Self {
        match self {
            Change::Insert(v) => Change::Insert(Arc::clone(v)),
            Change::Update { old, new } => Change::Update { old: Arc::clone(old), new: Arc::clone(new) },
            Change::Remove(v) => Change::Remove(Arc::clone(v)),
        }
    }
}

/// One change, with the sequence number of the commit that made it. Sequence numbers
/// increase with every commit of the store; all changes of one commit share one.
#[derive(Debug)]
pub struct Event<T> {
    /// The commit's sequence number.
    pub seq: u64,
    /// The change.
    pub change: Change<T>,
}

impl<T> Clone for Event<T> {
    fn clone(&self) -> Self {
        Event { seq: self.seq, change: self.change.clone() }
    }
}

impl<T> Event<T> {
    /// The record after the change, or the removed record.
    pub fn record(&self) -> &Arc<T> {
        match &self.change {
            Change::Insert(v) | Change::Remove(v) => v,
            Change::Update { new, .. } => new,
        }
    }
}

/// Which events a subscriber wants.
enum Filter<T: Entity> {
    All,
    Id(T::Id),
    Where(Predicate<T>),
}

impl<T: Entity> Filter<T> {
    fn wants(&self, change: &Change<T>) -> bool {
        let (old, new) = match change {
            Change::Insert(v) => (None, Some(v)),
            Change::Update { old, new } => (Some(old), Some(new)),
            Change::Remove(v) => (Some(v), None),
        };
        match self {
            Filter::All => true,
            Filter::Id(id) => old.or(new).is_some_and(|v| v.id() == id),
            Filter::Where(p) => old.is_some_and(|v| p.matches(v)) || new.is_some_and(|v| p.matches(v)),
        }
    }
}

/// The subscribers of one collection.
pub(crate) struct Watchers<T: Entity> {
    subscribers: Mutex<Vec<Subscriber<T>>>,
}

/// A subscriber: what it wants, and where to send it.
type Subscriber<T> = (Filter<T>, Sender<Event<T>>);

impl<T: Entity> Default for Watchers<T> {
    fn default() -> Self {
        Watchers { subscribers: Mutex::new(Vec::new()) }
    }
}

impl<T: Entity> Watchers<T> {
    fn add(&self, filter: Filter<T>) -> Receiver<Event<T>> {
        let (tx, rx) = channel();
        self.subscribers.lock().push((filter, tx));
        rx
    }

    pub fn all(&self) -> Receiver<Event<T>> {
        self.add(Filter::All)
    }

    pub fn id(&self, id: T::Id) -> Receiver<Event<T>> {
        self.add(Filter::Id(id))
    }

    pub fn matching(&self, predicate: Predicate<T>) -> Receiver<Event<T>> {
        self.add(Filter::Where(predicate))
    }

    pub fn is_empty(&self) -> bool {
        self.subscribers.lock().is_empty()
    }

    /// Sends one change to every subscriber that wants it, dropping those whose
    /// receiver is gone.
    pub fn send(&self, seq: u64, change: &Change<T>) {
        let mut subscribers = self.subscribers.lock();
        subscribers
            .retain(|(filter, tx)| !filter.wants(change) || tx.send(Event { seq, change: change.clone() }).is_ok());
    }
}
