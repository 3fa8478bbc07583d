//! The resumable change feed: the recent events a collection keeps, so that a
//! subscriber can resume from a sequence number (`watch_from`).
//!
//! Each collection keeps the events it published (after durability, like every
//! subscriber sees them), within a bound of count and age set with
//! [`StoreBuilder::feed_retention`](crate::StoreBuilder::feed_retention). A commit's
//! events are kept or dropped together. The feed lives in memory; a clean close
//! keeps it in a feed file for the next open (`feed_file`, `store::feed`). An open
//! with a feed numbers its commits above every earlier open's
//! (`Meta::start_feed_epoch`), and where it finds no feed to put back (in a
//! directory used before), its feed starts after its first number: an earlier
//! open's cursor gets `FeedExpired`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::value::RawValue;

use crate::entity::Entity;
use crate::feed_file::{Line, Op};
use crate::watch::{Change, Event};

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

/// Milliseconds since the Unix epoch, now.
fn unix_ms() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn raw<T: Entity>(value: &T) -> Result<Box<RawValue>, String> {
    serde_json::to_string(value).and_then(RawValue::from_string).map_err(|e| e.to_string())
}

fn parse<T: Entity>(raw: &RawValue) -> Result<Arc<T>, String> {
    serde_json::from_str(raw.get()).map(Arc::new).map_err(|e| e.to_string())
}

impl<T: Entity> Retained<T> {
    /// The kept events as feed-file lines, and the sequence number they follow (see
    /// `feed_file`), or why a record cannot be written.
    pub fn kept_lines(&mut self) -> Result<(u64, Vec<Line>), String> {
        let now = Instant::now();
        self.evict(now);
        let now_ms = unix_ms();
        let mut lines = Vec::with_capacity(self.events.len());
        for (at, event) in &self.events {
            let (op, record, old) = match &event.change {
                Change::Insert(v) => (Op::Insert, raw(&**v)?, None),
                Change::Update { old, new } => (Op::Update, raw(&**new)?, Some(raw(&**old)?)),
                Change::Remove(v) => (Op::Remove, raw(&**v)?, None),
            };
            let age = now.duration_since(*at).as_millis() as u64;
            lines.push(Line { seq: event.seq, at_ms: now_ms.saturating_sub(age), op, record, old });
        }
        Ok((self.dropped_upto, lines))
    }

    /// Puts back the events an earlier open kept (its feed file), after which the
    /// feed holds every event following `retained_after`. Events older than the
    /// age limit are dropped. On an error, the feed is left as it was.
    pub fn restore(&mut self, retained_after: u64, lines: Vec<Line>) -> Result<(), String> {
        let (now, now_ms) = (Instant::now(), unix_ms());
        let mut events = VecDeque::with_capacity(lines.len());
        let mut dropped_upto = retained_after;
        for line in lines {
            let age = Duration::from_millis(now_ms.saturating_sub(line.at_ms));
            // Older than the clock can say (a machine up for less than the event's
            // age): past an age limit if there is one; without one, age is moot.
            let at = match now.checked_sub(age) {
                Some(at) => at,
                None if self.retention.max_age.is_some() => {
                    dropped_upto = dropped_upto.max(line.seq);
                    continue;
                }
                None => now,
            };
            let record = parse::<T>(&line.record).map_err(|e| format!("sequence number {}: {e}", line.seq))?;
            let change = match (line.op, line.old) {
                (Op::Insert, _) => Change::Insert(record),
                (Op::Remove, _) => Change::Remove(record),
                (Op::Update, Some(old)) => Change::Update {
                    old: parse::<T>(&old).map_err(|e| format!("sequence number {}: {e}", line.seq))?,
                    new: record,
                },
                (Op::Update, None) => return Err(format!("sequence number {}: an update without `old`", line.seq)),
            };
            events.push_back((at, Event { seq: line.seq, change }));
        }
        // Whole commits only: an event older than the limit took its commit along.
        while events.front().is_some_and(|(_, e)| e.seq == dropped_upto) {
            events.pop_front();
        }
        self.events = events;
        self.dropped_upto = dropped_upto;
        self.evict(now);
        Ok(())
    }
}
