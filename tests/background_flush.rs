//! The background flusher makes writes durable after the flush interval, with no
//! explicit `flush()`, `close()` or drop. Tests poll the file system until the data
//! is there (up to a generous deadline); they never assert how long it took.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const INTERVAL: Duration = Duration::from_millis(50);

#[test]
fn writes_reach_disk_after_the_interval_without_an_explicit_flush() {
    let dir = tempfile::tempdir().unwrap();
    let store = builder(dir.path()).flush_interval(INTERVAL).open().unwrap();
    let users = store.collection::<User>().unwrap();
    let ada = record_path(dir.path(), "user", "ada");

    users.insert(user("ada", "Ada", 36)).unwrap();
    wait_until("the inserted record is on disk", || read_record::<User>(&ada) == Some(user("ada", "Ada", 36)));
    wait_until("the record is clean", || users.dirty_count() == 0);
    let health = store.health();
    assert!(health.is_ok() && health.flushes >= 1 && health.last_flush.is_some(), "{health:?}");

    users.update(&"ada".to_string(), |u| u.name = "Ada Lovelace".into()).unwrap();
    wait_until("the update is on disk", || read_record::<User>(&ada) == Some(user("ada", "Ada Lovelace", 36)));

    users.remove(&"ada".to_string()).unwrap();
    wait_until("the removed record's file is gone", || !ada.exists());
    wait_until("nothing is dirty", || store.health().dirty == 0);
    assert!(temp_files(dir.path()).is_empty());
}

#[test]
fn auto_id_counter_reaches_disk_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let store = builder(dir.path()).flush_interval(INTERVAL).open().unwrap();
    let orders = store.collection::<Order>().unwrap();
    for item in ["a", "b", "c"] {
        orders.insert(order(item)).unwrap();
    }
    orders.remove(&3).unwrap();
    wait_until("orders 1 and 2 are on disk and 3 is not", || {
        read_record::<Order>(&record_path(dir.path(), "order", "2")).is_some()
            && read_record::<Order>(&record_path(dir.path(), "order", "1")).is_some()
            && store.health().dirty == 0
    });
    assert!(!record_path(dir.path(), "order", "3").exists());
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("shelf.json")).unwrap()).unwrap();
    assert_eq!(meta["collections"]["order"]["next_id"], 4, "{meta}");
}

/// Set in the child: the data directory to write into.
const CRASH_ENV: &str = "SHELF_TEST_CRASH_DIR";
/// Set in the child: whether to wait for the background flusher before exiting.
const WAIT_ENV: &str = "SHELF_TEST_CRASH_WAIT";

/// The child's side: insert a record, optionally wait until the background flusher
/// made it durable, then exit the process at once, as a crash would: no `close`,
/// no flush on drop.
fn write_and_crash(dir: &str) -> ! {
    let wait = std::env::var(WAIT_ENV).as_deref() == Ok("1");
    let interval = if wait { INTERVAL } else { NEVER };
    let store = builder(Path::new(dir)).flush_interval(interval).open().unwrap();
    let users = store.collection::<User>().unwrap();
    users.insert(user("survivor", "S", 1)).unwrap();
    if wait {
        wait_until("the background flusher made the record durable", || users.dirty_count() == 0);
    }
    std::process::exit(0);
}

fn run_crashing_child(test_name: &str, dir: &Path, wait: bool) {
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test_name, "--nocapture", "--test-threads=1"])
        .env(CRASH_ENV, dir)
        .env(WAIT_ENV, if wait { "1" } else { "0" })
        .stdout(Stdio::null())
        .status()
        .expect("run the child test process");
    assert!(status.success(), "the child failed: {status}");
}

#[test]
fn a_background_flush_survives_a_process_exit_without_close_or_drop() {
    const NAME: &str = "a_background_flush_survives_a_process_exit_without_close_or_drop";
    if let Ok(dir) = std::env::var(CRASH_ENV) {
        write_and_crash(&dir);
    }
    // With the background flusher: the write survives.
    let dir = tempfile::tempdir().unwrap();
    run_crashing_child(NAME, dir.path(), true);
    let store = open(dir.path());
    assert_eq!(values(&store.collection::<User>().unwrap()), [user("survivor", "S", 1)]);
    drop(store);

    // The control: without a flush the same exit loses the write, so the exit above
    // really skipped every flush but the background one.
    let dir = tempfile::tempdir().unwrap();
    run_crashing_child(NAME, dir.path(), false);
    let store = open(dir.path());
    assert!(store.collection::<User>().unwrap().is_empty());
}
