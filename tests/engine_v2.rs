//! The engine's promises that no other suite pins (issue 14): no deadlock when a
//! write or flush is called where the writer lock is held, and a flush that runs
//! beside writers loses no version.
//!
//! Each hang test runs its body on a thread and fails (never hangs) if the body has
//! not finished within a watchdog's bound.

mod common_wal;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shelf::{Entity, Error, Store, WalSync};

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[storage(per_record)]
struct Doc {
    #[id]
    id: String,
    version: u64,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[storage(collection_file)]
struct Line {
    #[id]
    id: String,
    version: u64,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[storage(per_record, wal)]
struct Logged {
    #[id]
    id: String,
    version: u64,
}

const WATCHDOG: Duration = Duration::from_secs(60);

/// Runs `body` on its own thread; fails the test if it does not finish in time.
fn watchdog<R: Send + 'static>(what: &str, body: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(body());
    });
    match rx.recv_timeout(WATCHDOG) {
        Ok(r) => r,
        Err(_) => panic!("{what}: hung for {WATCHDOG:?} (deadlock)"),
    }
}

fn open(dir: &std::path::Path) -> Store {
    Store::builder(dir)
        .register::<Doc>()
        .register::<Line>()
        .register::<Logged>()
        .flush_interval(Duration::from_secs(3600))
        .open()
        .unwrap()
}

#[test]
fn a_write_inside_an_update_closure_is_an_error_not_a_deadlock() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let docs = store.collection::<Doc>().unwrap();
    docs.insert(Doc { id: "a".into(), version: 0 }).unwrap();
    let (inner_write, inner_flush) = watchdog("write inside update", move || {
        let mut seen = (None, None);
        let handle = docs.clone();
        let store2 = docs.store().clone();
        docs.update(&"a".into(), |d| {
            d.version = 1;
            seen.0 = Some(handle.insert(Doc { id: "b".into(), version: 0 }));
            seen.1 = Some(store2.flush());
        })
        .unwrap();
        (seen.0.unwrap(), seen.1.unwrap())
    });
    assert!(matches!(inner_write, Err(Error::Reentrant { .. })), "{inner_write:?}");
    assert!(matches!(inner_flush, Err(Error::Reentrant { op: "flush", .. })), "{inner_flush:?}");
    let docs = store.collection::<Doc>().unwrap();
    assert_eq!(docs.get("a").unwrap().version, 1, "the update itself went through");
    assert!(!docs.contains("b"));
    // The writer lock is free again.
    docs.insert(Doc { id: "c".into(), version: 0 }).unwrap();
}

#[test]
fn flush_and_close_inside_a_transaction_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (flush, close) = watchdog("flush inside a transaction", move || {
        let result = store.transaction(|_tx| Ok::<_, Error>((store.flush().map(drop), store.close())));
        let (flush, close) = result.unwrap();
        store.collection::<Doc>().unwrap().insert(Doc { id: "after".into(), version: 0 }).unwrap();
        (flush, close)
    });
    assert!(matches!(flush, Err(Error::Reentrant { op: "flush", inside: "a transaction body", .. })), "{flush:?}");
    assert!(matches!(close, Err(Error::Reentrant { op: "close", .. })), "{close:?}");
    assert!(flush.unwrap_err().to_string().contains("`flush` cannot run inside a transaction body"));
}

#[test]
fn a_transaction_on_another_store_inside_a_transaction_then_a_write_does_not_hang() {
    let a_dir = tempfile::tempdir().unwrap();
    let b_dir = tempfile::tempdir().unwrap();
    let a = open(a_dir.path());
    let b = open(b_dir.path());
    let (a2, b2) = (a.clone(), b.clone());
    let handle_write = watchdog("nested transactions on two stores", move || {
        a2.transaction(|tx| {
            tx.insert(Doc { id: "in-a".into(), version: 0 })?;
            b2.transaction(|tb| tb.insert(Doc { id: "in-b".into(), version: 0 }).map(drop))?;
            // Back in A's transaction: a handle write to A must still be refused.
            Ok::<_, Error>(a2.collection::<Doc>()?.insert(Doc { id: "handle".into(), version: 0 }))
        })
        .unwrap()
    });
    assert!(matches!(handle_write, Err(Error::InTransaction { .. })), "{handle_write:?}");
    assert!(a.collection::<Doc>().unwrap().contains("in-a"));
    assert!(b.collection::<Doc>().unwrap().contains("in-b"));
    // And after both, writes on either store go through.
    watchdog("writes after nested transactions", move || {
        a.collection::<Doc>().unwrap().insert(Doc { id: "later".into(), version: 0 }).unwrap();
        a.flush().unwrap();
        b.collection::<Doc>().unwrap().insert(Doc { id: "later".into(), version: 0 }).unwrap();
    });
}

/// 8 writers update records while flushes run: after a last flush, every record
/// file holds the newest acknowledged version, for each layout.
#[test]
fn a_flush_beside_eight_writers_loses_no_version() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        Store::builder(dir.path()).register::<Doc>().register::<Line>().register::<Logged>().wal_sync(WalSync::Always);
    let store = store.flush_interval(Duration::from_millis(5)).open().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // Flushes completed so far: each writer, halfway, waits until a whole flush has
    // run while it writes, so flushes and writes provably overlap.
    let completed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let rounds = if std::env::var_os("CI").is_some() { 300 } else { 1000 };
    let newest: Vec<HashMap<String, u64>> = std::thread::scope(|s| {
        let flusher = {
            let (store, stop, completed) = (store.clone(), Arc::clone(&stop), Arc::clone(&completed));
            s.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    store.flush().unwrap();
                    completed.fetch_add(1, Ordering::SeqCst);
                }
            })
        };
        let writers: Vec<_> = (0..8)
            .map(|t| {
                let (store, completed) = (store.clone(), Arc::clone(&completed));
                s.spawn(move || {
                    let mut newest = HashMap::new();
                    for i in 0..rounds {
                        if i == rounds / 2 {
                            // Two more than seen: a whole flush ran after this point.
                            let seen = completed.load(Ordering::SeqCst);
                            let deadline = std::time::Instant::now() + WATCHDOG;
                            while completed.load(Ordering::SeqCst) < seen + 2 {
                                assert!(std::time::Instant::now() < deadline, "no flush ran beside the writers");
                                std::thread::yield_now();
                            }
                        }
                        // Writer t owns its ids, so its last write of each is the newest.
                        let id = format!("t{t}-{}", i % 7);
                        let version = i as u64;
                        match i % 3 {
                            0 => store.collection::<Doc>().unwrap().upsert(Doc { id: id.clone(), version }).map(drop),
                            1 => store.collection::<Line>().unwrap().upsert(Line { id: id.clone(), version }).map(drop),
                            _ => store
                                .collection::<Logged>()
                                .unwrap()
                                .upsert(Logged { id: id.clone(), version })
                                .map(drop),
                        }
                        .unwrap();
                        newest.insert(format!("{}:{id}", i % 3), version);
                    }
                    newest
                })
            })
            .collect();
        let newest = writers.into_iter().map(|w| w.join().unwrap()).collect();
        stop.store(true, Ordering::Relaxed);
        flusher.join().unwrap();
        newest
    });
    store.flush().unwrap();
    assert_eq!(store.health().dirty, 0);
    // What is on disk, read back by a fresh open of a copy without its WAL: the
    // record files alone must hold every newest version.
    let copy = tempfile::tempdir().unwrap();
    common_wal::copy_dir(dir.path(), copy.path());
    let _ = std::fs::remove_dir_all(copy.path().join(shelf::WAL_DIR));
    let _ = std::fs::remove_file(copy.path().join(shelf::LOCK_FILE));
    let reopened = open(copy.path());
    for map in &newest {
        for (key, version) in map {
            let (kind, id) = key.split_once(':').unwrap();
            let found = match kind {
                "0" => reopened.collection::<Doc>().unwrap().get(id).map(|d| d.version),
                "1" => reopened.collection::<Line>().unwrap().get(id).map(|d| d.version),
                _ => reopened.collection::<Logged>().unwrap().get(id).map(|d| d.version),
            };
            assert_eq!(found, Some(*version), "{key}: the record files do not hold the newest version");
        }
    }
}

/// A flush hands the values it read back to the writers, to be freed on their
/// thread (issue 14, W9); nothing of them may leak. Each write frees at most one;
/// what is left when writes stop, the first flush that finds no write since the
/// last one frees.
#[test]
fn the_values_a_flush_hands_back_are_freed() {
    type Weak = std::sync::Weak<dyn std::any::Any + Send + Sync>;
    fn weak<T: Send + Sync + 'static>(arc: Arc<T>) -> Weak {
        let arc: Arc<dyn std::any::Any + Send + Sync> = arc;
        Arc::downgrade(&arc)
    }
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let docs = store.collection::<Doc>().unwrap();
    let lines = store.collection::<Line>().unwrap();
    let write = |i: u64, version: u64| -> [Weak; 2] {
        let id = format!("r{i:03}");
        docs.upsert(Doc { id: id.clone(), version }).unwrap();
        lines.upsert(Line { id: id.clone(), version }).unwrap();
        [weak(docs.get(&id).unwrap()), weak(lines.get(&id).unwrap())]
    };
    for i in 0..100 {
        write(i, 1);
    }
    let first: Vec<[Weak; 2]> = (0..100)
        .map(|i| [weak(docs.get(&format!("r{i:03}")).unwrap()), weak(lines.get(&format!("r{i:03}")).unwrap())])
        .collect();
    // The flush reads all 100 versions of each collection and hands them back.
    store.flush().unwrap();
    // Ten writes replace ten of them, and each frees at most one handed-back value:
    // some of the replaced versions may still be held.
    for i in 0..10 {
        write(i, 2);
    }
    // This flush writes them; writers would go on freeing what is left.
    store.flush().unwrap();
    // No write since: this flush frees the rest.
    store.flush().unwrap();
    for (i, [doc, line]) in first.iter().enumerate().take(10) {
        assert!(doc.upgrade().is_none(), "per_record r{i:03}: a replaced version is never freed");
        assert!(line.upgrade().is_none(), "collection_file r{i:03}: a replaced version is never freed");
    }
    for (i, [doc, line]) in first.iter().enumerate().skip(10) {
        assert!(doc.upgrade().is_some() && line.upgrade().is_some(), "r{i:03} is current and held by the store");
    }
    store.close().unwrap();
}
