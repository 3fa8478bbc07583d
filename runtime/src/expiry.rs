//! Time to live for `#[storage(memory, ttl = "..")]` collections: when each record
//! expires. A record's deadline is its last write plus the TTL. No thread watches
//! the deadlines: the collection handle removes what is due, through the normal
//! commit path (Remove events, index maintenance), when it is next used, and
//! [`Collection::expire`](crate::Collection::expire) does it on demand.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::time::{Duration, Instant};

/// The deadlines of one collection's records.
#[derive(Debug)]
pub(crate) struct Expiry<Id> {
    ttl: Duration,
    /// Deadline and a tie-breaking sequence number, to id.
    by_deadline: BTreeMap<(Instant, u64), Id>,
    /// Id to its key in `by_deadline`.
    of: HashMap<Id, (Instant, u64)>,
    seq: u64,
}

impl<Id: Clone + Eq + Hash> Expiry<Id> {
    pub fn new(ttl: Duration) -> Self {
        Expiry { ttl, by_deadline: BTreeMap::new(), of: HashMap::new(), seq: 0 }
    }

    /// A record was written at `now`: its deadline moves to `now + ttl`.
    pub fn touch(&mut self, id: &Id, now: Instant) {
        self.forget(id);
        self.seq += 1;
        let key = (now.checked_add(self.ttl).unwrap_or(now), self.seq);
        self.by_deadline.insert(key, id.clone());
        self.of.insert(id.clone(), key);
    }

    /// A record was removed.
    pub fn forget(&mut self, id: &Id) {
        if let Some(key) = self.of.remove(id) {
            self.by_deadline.remove(&key);
        }
    }

    /// Whether any record is due at `now`.
    pub fn any_due(&self, now: Instant) -> bool {
        self.by_deadline.keys().next().is_some_and(|(deadline, _)| *deadline <= now)
    }

    /// The records due at `now`, earliest first.
    pub fn due(&self, now: Instant) -> Vec<Id> {
        self.by_deadline.iter().take_while(|((deadline, _), _)| *deadline <= now).map(|(_, id)| id.clone()).collect()
    }

    /// Whether `id` is due at `now`.
    pub fn is_due(&self, id: &Id, now: Instant) -> bool {
        self.of.get(id).is_some_and(|(deadline, _)| *deadline <= now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_follow_the_last_write() {
        let start = Instant::now();
        let mut e = Expiry::new(Duration::from_secs(10));
        e.touch(&"a", start);
        e.touch(&"b", start + Duration::from_secs(5));
        assert!(!e.any_due(start + Duration::from_secs(9)));
        assert_eq!(e.due(start + Duration::from_secs(10)), ["a"]);
        // A write moves the deadline.
        e.touch(&"a", start + Duration::from_secs(8));
        assert_eq!(e.due(start + Duration::from_secs(15)), ["b"]);
        assert!(e.is_due(&"a", start + Duration::from_secs(18)));
        e.forget(&"b");
        assert_eq!(e.due(start + Duration::from_secs(100)), ["a"]);
        e.forget(&"a");
        assert!(!e.any_due(start + Duration::from_secs(100)));
    }
}
