//! The background flusher runs below the writers' CPU priority
//! (`StoreBuilder::flush_nice`, Linux): nice 10 by default, the value asked for
//! otherwise, and 0 keeps the opener's priority. The WAL sync thread of
//! `WalSync::Every` and the threads that write stay at normal priority.
//!
//! One test, in a binary of its own: it tells the store's threads apart by name, so
//! no other store may run in this process meanwhile.

#![cfg(target_os = "linux")]

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use shelf::{Entity, Store, WalSync};

#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
#[storage(per_record, wal)]
struct Note {
    #[id]
    id: u32,
    text: String,
}

/// The nice value of every thread of this process named `name`.
fn nice_of(name: &str) -> Vec<i32> {
    let mut found = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let task = task.unwrap().path();
        let Ok(comm) = std::fs::read_to_string(task.join("comm")) else { continue };
        if comm.trim_end() != name {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(task.join("stat")) else { continue };
        // The fields after the parenthesized command name; nice is field 19 of the
        // whole line, so the 17th after the name.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        found.push(rest.split(' ').nth(16).unwrap().parse().unwrap());
    }
    found
}

/// Waits (watchdog: 30 s) until the background flusher has run a flush: by then it
/// has set its priority, which happens before its first flush.
fn wait_for_background_flush(store: &Store) {
    store.collection::<Note>().unwrap().upsert(Note { id: 1, text: "hello".into() }).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.health().flushes == 0 {
        assert!(Instant::now() < deadline, "the background flusher did not flush within 30 s");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn the_flusher_runs_at_the_nice_value_asked_for_and_nothing_else_changes() {
    let me = std::fs::read_to_string("/proc/thread-self/comm").unwrap();
    let own = nice_of(me.trim_end());
    for (asked, expected) in [(None, shelf::DEFAULT_FLUSH_NICE), (Some(0), 0), (Some(3), 3), (Some(40), 19)] {
        let dir = tempfile::tempdir().unwrap();
        let mut b = Store::builder(dir.path())
            .register::<Note>()
            .flush_interval(Duration::from_millis(10))
            .wal_sync(WalSync::Every(Duration::from_millis(10)));
        if let Some(nice) = asked {
            b = b.flush_nice(nice);
        }
        let store = b.open().unwrap();
        wait_for_background_flush(&store);
        assert_eq!(nice_of("shelf-flusher"), [expected], "flush_nice({asked:?})");
        // Under `WalSync::Every` the WAL sync thread keeps normal priority, and so
        // does the thread that opened the store.
        assert_eq!(nice_of("shelf-wal-sync"), [0], "flush_nice({asked:?})");
        store.close().unwrap();
        drop(store);
    }
    let now = nice_of(me.trim_end());
    assert_eq!(own, now, "the test threads' priorities changed");
    assert!(now.iter().all(|&n| n == 0), "{now:?}");
}
