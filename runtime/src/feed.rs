//! The resumable change feed: the recent events a collection keeps, so that a
//! subscriber can resume from a sequence number (`watch_from`).
//!
//! Each collection keeps the events it published (after durability, like every
//! subscriber sees them), within a bound of count and age set with
//! [`StoreBuilder::feed_retention`](crate::StoreBuilder::feed_retention). A commit's
//! events are kept or dropped together. The feed lives in memory: it does not
//! survive a reopen. An open with a feed numbers its commits above every earlier
//! open's (`Meta::start_feed_epoch`), and in a directory used before, its feed
//! starts after its first number: an earlier open's cursor gets `FeedExpired`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::watch::Event;

/// How many published events each collection keeps for
/// [`Collection::watch_from`](crate::Collection::watch_from).
///
/// Off by default (`max_events == 0`): then `watch_from` fails with
/// [`Error::FeedCursor`](crate::Error::FeedCursor). Both bounds apply: at most
/// `max_events` events, none older than `max_age`. Each kept event costs one
/// `Arc` clone of the record (and of the old version, for an update).
///
/// ```
/// use std::time::Duration;
/// use shelf::FeedRetention;
///
/// let retention = FeedRetention::events(10_000).max_age(Duration::from_secs(600));
/// assert_eq!(retention.max_events, 10_000);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FeedRetention {
    /// The most events kept per collection (whole commits are dropped, oldest first).
    pub max_events: usize,
    /// Events older than this are dropped; `None`: no age limit.
    pub max_age: Option<Duration>,
}

impl FeedRetention {
    /// Keeps at most `max_events` events per collection, of any age.
    pub fn events(max_events: usize) -> Self {
        FeedRetention { max_events, max_age: None }
    }

    /// Also drops events older than `age`.
    pub fn max_age(self, age: Duration) -> Self {
        FeedRetention { max_age: Some(age), ..self }
    }

    /// Whether a feed is kept at all.
    pub fn enabled(&self) -> bool {
        self.max_events > 0
    }
}

/// The events one collection keeps.
pub(crate) struct Retained<T> {
    pub retention: FeedRetention,
    events: VecDeque<(Instant, Event<T>)>,
    /// The largest sequence number of a dropped event: the feed holds every event
    /// after it.
    dropped_upto: u64,
}

/// Why the feed cannot resume from a cursor.
pub(crate) enum Refused {
    /// Events after the cursor were dropped; the feed holds those after this.
    Expired(u64),
    /// No retention is set.
    Disabled,
}

impl<T> Default for Retained<T> {
    fn default() -> Self {
        Retained { retention: FeedRetention::default(), events: VecDeque::new(), dropped_upto: 0 }
    }
}

impl<T> Retained<T> {
    /// Keeps one published event, then drops what the retention no longer covers.
    pub fn push(&mut self, event: Event<T>) {
        if !self.retention.enabled() {
            return;
        }
        let now = Instant::now();
        self.events.push_back((now, event));
        self.evict(now);
    }

    /// Drops the oldest commits beyond the count, and those older than the age.
    fn evict(&mut self, now: Instant) {
        let retention = self.retention;
        loop {
            let over = self.events.len() > retention.max_events;
            let Some(seq) = self
                .events
                .front()
                .filter(|(at, _)| over || retention.max_age.is_some_and(|age| now.duration_since(*at) > age))
                .map(|(_, e)| e.seq)
            else {
                return;
            };
            // The whole commit goes: a resumed subscriber never gets part of one.
            while self.events.front().is_some_and(|(_, e)| e.seq == seq) {
                self.events.pop_front();
            }
            self.dropped_upto = self.dropped_upto.max(seq);
        }
    }

    /// Holds nothing at or before `seq`: the events before it are gone (an earlier
    /// open's).
    pub fn start_after(&mut self, seq: u64) {
        self.dropped_upto = self.dropped_upto.max(seq);
    }

    /// The kept events after `cursor`, oldest first, or why they cannot be given.
    pub fn after(&mut self, cursor: u64) -> Result<impl Iterator<Item = &Event<T>>, Refused> {
        if !self.retention.enabled() {
            return Err(Refused::Disabled);
        }
        self.evict(Instant::now());
        if cursor < self.dropped_upto {
            return Err(Refused::Expired(self.dropped_upto));
        }
        Ok(self.events.iter().map(|(_, e)| e).filter(move |e| e.seq > cursor))
    }
}
