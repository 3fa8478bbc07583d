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
//!
//! # Streams and the resumable feed
//!
//! Every subscription is also available as a [`Subscription`], which reads
//! blocking or as a `futures_core::Stream` from any executor, with the same
//! ordering and no-drop guarantees: `watch_stream`, `watch_id_stream`,
//! `watch_where_stream` on a collection, and
//! [`Store::watch_flushes_stream`](crate::Store::watch_flushes_stream).
//!
//! [`Collection::watch_from`](crate::Collection::watch_from) resumes from a
//! sequence number: it delivers every event after it that the feed retains (see
//! [`FeedRetention`](crate::FeedRetention)), then the live events, with no gap and
//! no duplicate between the two (both are handed over under the lock that
//! publishes). A cursor older than the retention fails with
//! [`Error::FeedExpired`](crate::Error::FeedExpired). The feed lives in memory; a
//! clean close keeps it for the next open, a crash does not (see
//! [`StoreBuilder::feed_retention`](crate::StoreBuilder::feed_retention)): then a
//! cursor from before gets `FeedExpired` too (sequence numbers keep increasing
//! across opens with a feed).

use std::sync::mpsc::Receiver;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::entity::Entity;
use crate::feed::{FeedRetention, Refused, Retained};
use crate::query::predicate::Predicate;
use crate::stream::{Notify, Subscription};

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

/// The subscribers of one collection, and its retained feed.
pub(crate) struct Watchers<T: Entity> {
    state: Mutex<Subscribers<T>>,
}

/// What [`Watchers`] guards with one lock: publishing, subscribing and resuming
/// are serialized, so a resumed subscriber's history and live events meet exactly.
struct Subscribers<T: Entity> {
    subscribers: Vec<Subscriber<T>>,
    feed: Retained<T>,
}

/// A subscriber: what it wants, and where to send it.
type Subscriber<T> = (Filter<T>, Notify<Event<T>>);

impl<T: Entity> Default for Watchers<T> {
    fn default() -> Self {
        Watchers { state: Mutex::new(Subscribers { subscribers: Vec::new(), feed: Retained::default() }) }
    }
}

impl<T: Entity> Watchers<T> {
    fn add(&self, filter: Filter<T>) -> Subscription<Event<T>> {
        let (tx, rx) = Notify::pair();
        self.state.lock().subscribers.push((filter, tx));
        rx
    }

    pub fn all(&self) -> Receiver<Event<T>> {
        self.add(Filter::All).into_receiver()
    }

    pub fn id(&self, id: T::Id) -> Receiver<Event<T>> {
        self.add(Filter::Id(id)).into_receiver()
    }

    pub fn matching(&self, predicate: Predicate<T>) -> Receiver<Event<T>> {
        self.add(Filter::Where(predicate)).into_receiver()
    }

    /// [`Watchers::all`] as a stream.
    pub fn all_stream(&self) -> Subscription<Event<T>> {
        self.add(Filter::All)
    }

    /// [`Watchers::id`] as a stream.
    pub fn id_stream(&self, id: T::Id) -> Subscription<Event<T>> {
        self.add(Filter::Id(id))
    }

    /// [`Watchers::matching`] as a stream.
    pub fn matching_stream(&self, predicate: Predicate<T>) -> Subscription<Event<T>> {
        self.add(Filter::Where(predicate))
    }

    /// Subscribes to every event after `cursor`: the retained ones first, then the
    /// live ones, handed over under the publishing lock.
    pub(crate) fn from(&self, cursor: u64) -> Result<Subscription<Event<T>>, Refused> {
        let mut state = self.state.lock();
        let (tx, rx) = Notify::pair();
        for event in state.feed.after(cursor)? {
            // The receiver is in hand: this send cannot fail.
            let _ = tx.send(event.clone());
        }
        state.subscribers.push((Filter::All, tx));
        Ok(rx)
    }

    /// Sets how many events the feed keeps (at open).
    pub(crate) fn set_retention(&self, retention: FeedRetention) {
        self.state.lock().feed.retention = retention;
    }

    /// The feed as a feed file's `retained_after` and lines; `None` without a feed.
    pub(crate) fn feed_lines(&self) -> Option<Result<(u64, Vec<crate::feed_file::Line>), String>> {
        let mut state = self.state.lock();
        state.feed.retention.enabled().then(|| state.feed.kept_lines())
    }

    /// Puts back the feed an earlier open saved (see [`Retained::restore`]).
    pub(crate) fn restore_feed(&self, retained_after: u64, lines: Vec<crate::feed_file::Line>) -> Result<(), String> {
        self.state.lock().feed.restore(retained_after, lines)
    }

    /// Makes the feed refuse cursors before `seq` (at open: an earlier open's).
    pub(crate) fn start_feed_after(&self, seq: u64) {
        self.state.lock().feed.start_after(seq);
    }

    /// Whether no one wants this collection's events: no subscriber, and no feed.
    pub fn is_empty(&self) -> bool {
        let state = self.state.lock();
        state.subscribers.is_empty() && !state.feed.retention.enabled()
    }

    /// Sends one change to every subscriber that wants it, dropping those whose
    /// receiver is gone, and keeps it in the feed.
    pub fn send(&self, seq: u64, change: &Change<T>) {
        let mut state = self.state.lock();
        state
            .subscribers
            .retain(|(filter, tx)| !filter.wants(change) || tx.send(Event { seq, change: change.clone() }).is_ok());
        state.feed.push(Event { seq, change: change.clone() });
    }
}
