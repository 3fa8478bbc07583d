//! Async writes (issue 16): the commit is applied at the call, the future resolves
//! once the write is durable, under tokio's multi-thread runtime and under the
//! minimal executor of the `futures` crate. Durability is checked by reopening a
//! copy of the directory taken right after the future resolved (the WAL record is
//! written only by the sync that makes it durable), and by a simulated power loss
//! (`CrashFs`, which keeps only what was synced).

#[path = "common_wal/mod.rs"]
mod common_wal;

use std::sync::Arc;
use std::time::Duration;

use common_wal::copy_dir;
use serde::{Deserialize, Serialize};
use shelf::fs::{CrashFs, FaultFs, FaultKind};
use shelf::{Entity, Error, Store};

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[storage(per_record, wal)]
struct Item {
    #[id]
    id: String,
    n: u64,
}

/// A background flush would make writes durable by another road: never here.
const NEVER: Duration = Duration::from_secs(3600);

fn open(dir: &std::path::Path) -> Store {
    Store::builder(dir).register::<Item>().flush_interval(NEVER).open().unwrap()
}

/// Reopens a copy of `dir` as it is now and returns the item `id` it holds.
fn in_copy(dir: &std::path::Path, id: &str) -> Option<Item> {
    let copy = tempfile::tempdir().unwrap();
    copy_dir(dir, copy.path());
    let _ = std::fs::remove_file(copy.path().join(shelf::LOCK_FILE));
    let store = open(copy.path());
    let found = store.collection::<Item>().unwrap().get(&id.to_owned()).map(|i| (*i).clone());
    drop(store);
    found
}

/// Fails the test instead of hanging when `f` does not finish in time.
fn watchdog<R: Send + 'static>(what: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(120)).unwrap_or_else(|_| panic!("{what}: no result within 120 s (hang)"))
}

#[test]
fn sixty_four_tokio_tasks_on_two_workers_each_write_durable_when_resolved() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let store = open(&path);
    let items = store.collection::<Item>().unwrap();
    let checked = watchdog("64 tasks", move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async move {
            let mut tasks = Vec::new();
            for t in 0..64u64 {
                let items = items.clone();
                let path = path.clone();
                tasks.push(tokio::spawn(async move {
                    let mut copies = 0;
                    for k in 0..8u64 {
                        let id = format!("t{t:02}-{k}");
                        let got = items.insert_async(Item { id: id.clone(), n: t * 100 + k }).await.unwrap();
                        assert_eq!(got, id);
                        // The first write of every task, and one more of some, are
                        // checked in a copy taken right now.
                        if k == 0 || (k == 5 && t % 8 == 0) {
                            let found = in_copy(&path, &id);
                            assert_eq!(found, Some(Item { id: id.clone(), n: t * 100 + k }), "{id} not durable");
                            copies += 1;
                        }
                    }
                    copies
                }));
            }
            let mut copies = 0;
            for task in tasks {
                copies += task.await.unwrap();
            }
            copies
        })
    });
    assert_eq!(checked, 64 + 8);
    assert_eq!(store.collection::<Item>().unwrap().len(), 64 * 8);
    // All of them in a copy, too (no flush ran: the WAL holds them).
    assert_eq!(store.health().flushes, 0, "a flush ran: the test would not show the WAL's durability");
    let copy = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), copy.path());
    let _ = std::fs::remove_file(copy.path().join(shelf::LOCK_FILE));
    assert_eq!(open(copy.path()).collection::<Item>().unwrap().len(), 64 * 8);
}

#[test]
fn every_async_write_form_works_under_the_futures_executor() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let items = store.collection::<Item>().unwrap();
    let (path, store2) = (dir.path().to_path_buf(), store.clone());
    watchdog("futures executor", move || {
        futures::executor::block_on(async {
            let items = store2.collection::<Item>().unwrap();
            let id = items.insert_async(Item { id: "a".into(), n: 1 }).await.unwrap();
            assert_eq!(in_copy(&path, &id).map(|i| i.n), Some(1), "insert_async");
            let old = items.upsert_async(Item { id: "a".into(), n: 2 }).await.unwrap();
            assert_eq!(old.map(|o| o.n), Some(1));
            assert_eq!(in_copy(&path, "a").map(|i| i.n), Some(2), "upsert_async");
            let new = items.update_async(&"a".to_owned(), |i| i.n = 3).await.unwrap();
            assert_eq!(new.n, 3);
            assert_eq!(in_copy(&path, "a").map(|i| i.n), Some(3), "update_async");
            let n = store2
                .transaction_async(|tx| {
                    tx.insert(Item { id: "b".into(), n: 10 })?;
                    tx.insert(Item { id: "c".into(), n: 20 })?;
                    Ok::<_, Error>(2)
                })
                .await
                .unwrap();
            assert_eq!(n, 2);
            assert_eq!(in_copy(&path, "c").map(|i| i.n), Some(20), "transaction_async");
            let removed = items.remove_async(&"a".to_owned()).await.unwrap();
            assert_eq!(removed.map(|o| o.n), Some(3));
            assert_eq!(in_copy(&path, "a"), None, "remove_async");
            // Refusals resolve at once, with the blocking form's error, changing nothing.
            let dup = items.insert_async(Item { id: "b".into(), n: 99 }).await;
            assert!(matches!(dup, Err(Error::DuplicateId { .. })), "{dup:?}");
            let missing = items.update_async(&"zz".to_owned(), |i| i.n = 0).await;
            assert!(matches!(missing, Err(Error::NotFound { .. })), "{missing:?}");
            let stats = store2.flush_async().await.unwrap();
            assert!(stats.records >= 2, "the flush wrote the records: {stats:?}");
        })
    });
    assert_eq!(items.get(&"b".to_owned()).map(|i| i.n), Some(10));
    assert_eq!(store.health().dirty, 0, "flush_async made everything durable in the record files");
}

#[test]
fn a_dropped_write_future_leaves_the_write_applied_and_it_becomes_durable() {
    let fs = CrashFs::new();
    let dir = std::path::PathBuf::from("/data");
    let store = Store::builder(&dir).vfs(Arc::clone(&fs)).register::<Item>().flush_interval(NEVER).open().unwrap();
    let items = store.collection::<Item>().unwrap();
    let events = items.watch();
    // Applied at the call; the future is dropped without ever being polled.
    drop(items.insert_async(Item { id: "dropped".into(), n: 7 }));
    assert_eq!(items.get(&"dropped".to_owned()).map(|i| i.n), Some(7), "applied at the call");
    // Events are published once the commit is durable: the background sync does it
    // without anyone polling.
    let event = events.recv_timeout(Duration::from_secs(60)).expect("the dropped write never became durable");
    assert_eq!(event.record().id, "dropped");
    assert_eq!(store.health().flushes, 0);
    // Power loss now: the machine dies (the drop's final flush fails), and only
    // what was synced survives.
    fs.crash_after(0);
    drop((items, events));
    drop(store);
    fs.crash();
    let store = Store::builder(&dir).vfs(Arc::clone(&fs)).register::<Item>().open().unwrap();
    assert_eq!(store.collection::<Item>().unwrap().get(&"dropped".to_owned()).map(|i| i.n), Some(7));
}

#[test]
fn a_resolved_future_survives_power_loss() {
    let fs = CrashFs::new();
    let dir = std::path::PathBuf::from("/data");
    let store = Store::builder(&dir).vfs(Arc::clone(&fs)).register::<Item>().flush_interval(NEVER).open().unwrap();
    let items = store.collection::<Item>().unwrap();
    for k in 0..20u64 {
        futures::executor::block_on(items.insert_async(Item { id: format!("k{k}"), n: k })).unwrap();
    }
    fs.crash_after(0);
    drop(items);
    drop(store);
    fs.crash();
    let store = Store::builder(&dir).vfs(Arc::clone(&fs)).register::<Item>().open().unwrap();
    assert_eq!(store.collection::<Item>().unwrap().len(), 20);
}

#[test]
fn a_failed_sync_fails_the_future_with_the_blocking_error() {
    fn poisoned_cause(e: &Error) -> String {
        match e {
            Error::Poisoned { cause, .. } => match &**cause {
                Error::Io { op, .. } => (*op).to_owned(),
                other => format!("not I/O: {other}"),
            },
            other => format!("not poisoned: {other}"),
        }
    }
    let run = |asynchronous: bool| {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultFs::new();
        let store =
            Store::builder(dir.path()).vfs(Arc::clone(&fs)).register::<Item>().flush_interval(NEVER).open().unwrap();
        let items = store.collection::<Item>().unwrap();
        items.insert(Item { id: "before".into(), n: 0 }).unwrap();
        // The sync's write of the buffered records is op 0, its fdatasync op 1.
        fs.fail_at(1, FaultKind::Eio);
        let item = Item { id: "x".into(), n: 1 };
        let outcome = if asynchronous {
            watchdog("failing sync", move || futures::executor::block_on(items.insert_async(item)))
        } else {
            items.insert(item)
        };
        let error = outcome.expect_err("the sync failed: the write must fail");
        let later = store.collection::<Item>().unwrap().insert_async(Item { id: "y".into(), n: 2 });
        let later = futures::executor::block_on(later).expect_err("a poisoned store takes no writes");
        (poisoned_cause(&error), matches!(later, Error::Poisoned { .. }))
    };
    let blocking = run(false);
    let nonblocking = run(true);
    assert_eq!(blocking.0, "sync WAL segment");
    assert_eq!(nonblocking, blocking);
}
