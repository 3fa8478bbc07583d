//! `Store::stats()`: record and dirty counts, the last flush (per collection and
//! store-wide), the last flush error, and the WAL's counters.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use shelf::fs::{FaultFs, FaultKind};
use shelf::{CollectionStats, Entity, Error, Stats, StorageKind, Store, WalSync};

/// One file per record, and an index file.
#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Doc {
    #[id]
    id: String,
    #[index]
    kind: String,
    body: String,
}

/// The whole collection in one file.
#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[storage(collection_file)]
struct Tag {
    #[id]
    id: String,
    label: String,
}

/// Never written to disk.
#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[storage(memory)]
struct Session {
    #[id]
    token: String,
}

/// Logged in the WAL.
#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[storage(per_record, wal)]
struct Account {
    #[id]
    id: String,
    #[index(unique)]
    owner: String,
    cents: i64,
}

/// An auto id: its counter is kept in `shelf.json`.
#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Counter {
    #[id(auto)]
    id: u64,
    text: String,
}

/// Long enough that no background thread runs during a test.
const NEVER: Duration = Duration::from_secs(3600);

fn builder(dir: &Path) -> shelf::StoreBuilder {
    Store::builder(dir).register::<Doc>().register::<Tag>().register::<Session>().flush_interval(NEVER)
}

fn doc(id: &str, kind: &str, body: &str) -> Doc {
    Doc { id: id.to_owned(), kind: kind.to_owned(), body: body.to_owned() }
}

fn tag(id: &str, label: &str) -> Tag {
    Tag { id: id.to_owned(), label: label.to_owned() }
}

fn session(token: &str) -> Session {
    Session { token: token.to_owned() }
}

fn account(id: &str, cents: i64) -> Account {
    Account { id: id.to_owned(), owner: format!("owner-{id}"), cents }
}

fn s(id: &str) -> String {
    id.to_owned()
}

fn collection<'a>(stats: &'a Stats, name: &str) -> &'a CollectionStats {
    stats.collections.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no stats for {name}: {stats:?}"))
}

/// `(records, dirty)` of every collection, in registration order.
fn counts(stats: &Stats) -> Vec<(usize, usize)> {
    stats.collections.iter().map(|c| (c.records, c.dirty)).collect()
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).len()
}

fn total_size(dir: &Path) -> u64 {
    files_under(dir).iter().map(|p| size(p)).sum()
}

/// The store-wide last flush is the sum of the per-collection numbers.
fn assert_sums(stats: &Stats) {
    let report = stats.last_flush.expect("a flush happened");
    let files: usize = stats.collections.iter().map(|c| c.last_flush_files).sum();
    let bytes: u64 = stats.collections.iter().map(|c| c.last_flush_bytes).sum();
    assert_eq!((files, bytes), (report.files, report.bytes), "per-collection numbers do not add up: {stats:?}");
}

#[test]
fn counts_and_dirty_counts_follow_writes_and_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let store = builder(dir.path()).open().unwrap();
    let docs = store.collection::<Doc>().unwrap();
    let tags = store.collection::<Tag>().unwrap();
    let sessions = store.collection::<Session>().unwrap();

    let stats = store.stats();
    let names: Vec<&str> = stats.collections.iter().map(|c| c.name).collect();
    assert_eq!(names, ["doc", "tag", "session"], "registration order");
    let kinds: Vec<StorageKind> = stats.collections.iter().map(|c| c.storage.kind).collect();
    assert_eq!(kinds, [StorageKind::PerRecord, StorageKind::CollectionFile, StorageKind::Memory]);
    assert!(stats.collections.iter().all(|c| !c.storage.wal));
    assert_eq!(counts(&stats), [(0, 0), (0, 0), (0, 0)]);
    assert!(stats.last_error.is_none());
    assert!(stats.wal.is_none(), "no collection uses the WAL: {stats:?}");

    for id in ["d1", "d2", "d3"] {
        docs.insert(doc(id, "a", "text")).unwrap();
    }
    tags.insert(tag("t1", "one")).unwrap();
    tags.insert(tag("t2", "two")).unwrap();
    sessions.insert(session("s1")).unwrap();
    sessions.insert(session("s2")).unwrap();
    assert_eq!(counts(&store.stats()), [(3, 3), (2, 2), (2, 0)], "a memory collection is never dirty");

    docs.update(&s("d1"), |d| d.body = "changed".into()).unwrap();
    assert_eq!(counts(&store.stats()), [(3, 3), (2, 2), (2, 0)], "a record changed twice is dirty once");
    docs.remove(&s("d2")).unwrap();
    sessions.remove(&s("s2")).unwrap();
    assert_eq!(counts(&store.stats()), [(2, 3), (2, 2), (1, 0)], "a removal is dirty until flushed");

    // Writes that apply nothing change nothing.
    assert!(docs.insert(doc("d1", "a", "again")).is_err());
    assert!(docs.remove(&s("nope")).unwrap().is_none());
    let aborted: Result<(), Error> = store.transaction(|tx| {
        tx.insert(doc("d9", "a", "x"))?;
        tx.update::<Tag>(&s("t1"), |t| t.label = "x".into())?;
        tx.update::<Doc>(&s("missing"), |d| d.body = "x".into())?;
        Ok(())
    });
    assert!(aborted.is_err());
    assert_eq!(counts(&store.stats()), [(2, 3), (2, 2), (1, 0)]);

    store
        .transaction(|tx| {
            tx.insert(doc("d4", "b", "new"))?;
            tx.update::<Tag>(&s("t1"), |t| t.label = "uno".into())?;
            tx.insert(session("s3"))?;
            Ok::<_, Error>(())
        })
        .unwrap();
    let stats = store.stats();
    assert_eq!(counts(&stats), [(3, 4), (2, 2), (2, 0)]);
    // The same numbers as the collections' own and `health()`'s.
    assert_eq!((docs.len(), docs.dirty_count()), (3, 4));
    assert_eq!((tags.len(), tags.dirty_count()), (2, 2));
    assert_eq!(store.health().dirty, 6);

    store.flush().unwrap();
    assert_eq!(counts(&store.stats()), [(3, 0), (2, 0), (2, 0)]);
    assert_eq!(store.health().dirty, 0);

    docs.update(&s("d1"), |d| d.body = "again".into()).unwrap();
    tags.remove(&s("t2")).unwrap();
    assert_eq!(counts(&store.stats()), [(3, 1), (1, 1), (2, 0)]);
    store.flush().unwrap();
    assert_eq!(counts(&store.stats()), [(3, 0), (1, 0), (2, 0)]);

    // Counts survive a reopen; nothing is dirty after it.
    store.close().unwrap();
    drop((docs, tags, sessions, store));
    let store = builder(dir.path()).open().unwrap();
    assert_eq!(counts(&store.stats()), [(3, 0), (1, 0), (0, 0)]);
}

#[test]
fn last_flush_reports_the_files_and_bytes_it_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let store = builder(dir.path()).open().unwrap();
    let docs = store.collection::<Doc>().unwrap();
    let tags = store.collection::<Tag>().unwrap();
    let sessions = store.collection::<Session>().unwrap();
    for (id, kind) in [("d1", "a"), ("d2", "a"), ("d3", "b")] {
        docs.insert(doc(id, kind, &format!("the body of {id}"))).unwrap();
    }
    tags.insert(tag("t1", "one")).unwrap();
    tags.insert(tag("t2", "two")).unwrap();
    sessions.insert(session("s1")).unwrap();

    let before = SystemTime::now();
    let flushed = store.flush().unwrap();
    let after = SystemTime::now();
    let stats = store.stats();
    let report = stats.last_flush.expect("a flush happened");
    assert!(before <= report.at && report.at <= after, "{report:?} not between {before:?} and {after:?}");
    // (`duration` is measured on the monotonic clock: allow for the two clocks' drift.)
    assert!(report.duration <= after.duration_since(before).unwrap() + Duration::from_millis(1));
    assert_eq!((report.files, report.bytes, report.duration), (flushed.records, flushed.bytes, flushed.duration));

    // Every file of the per-record collection (three records) was written by this
    // flush. Index files are written by the clean close, not by flushes.
    let doc_files = files_under(&dir.path().join("doc"));
    assert_eq!(doc_files.len(), 3, "{doc_files:?}");
    let d = collection(&stats, "doc");
    assert_eq!((d.last_flush_files, d.last_flush_bytes), (3, total_size(&dir.path().join("doc"))));
    let t = collection(&stats, "tag");
    assert_eq!((t.last_flush_files, t.last_flush_bytes), (1, size(&dir.path().join("tag.jsonl"))));
    let m = collection(&stats, "session");
    assert_eq!((m.last_flush_files, m.last_flush_bytes), (0, 0));
    assert!(d.last_flush_bytes > 0 && t.last_flush_bytes > 0);
    assert_sums(&stats);

    // An update that leaves the index alone and a removal that changes it: two
    // record files (one written, one removed), and no index file.
    docs.update(&s("d1"), |d| d.body = "a longer body than before".into()).unwrap();
    docs.remove(&s("d2")).unwrap();
    store.flush().unwrap();
    let stats = store.stats();
    let index_files = files_under(&dir.path().join("doc").join("indices"));
    assert_eq!(index_files.len(), 0, "{index_files:?}");
    let d = collection(&stats, "doc");
    assert_eq!(d.last_flush_files, 2);
    assert_eq!(d.last_flush_bytes, size(&dir.path().join("doc").join("d1.json")));
    let t = collection(&stats, "tag");
    assert_eq!((t.last_flush_files, t.last_flush_bytes), (0, 0), "the last flush wrote nothing for tags");
    assert_sums(&stats);
    let second = stats.last_flush.unwrap();
    assert!(second.at >= report.at);

    // A flush with nothing to write is the last flush now, and wrote nothing.
    store.flush().unwrap();
    let stats = store.stats();
    let third = stats.last_flush.unwrap();
    assert!(third.at >= second.at);
    assert_eq!((third.files, third.bytes), (0, 0));
    assert!(stats.collections.iter().all(|c| c.last_flush_files == 0 && c.last_flush_bytes == 0), "{stats:?}");
}

/// A flush that rewrites `shelf.json` (an auto-id counter moved): the store-wide
/// numbers must still be the sum of the per-collection ones, and count files and
/// bytes alike.
#[test]
fn last_flush_numbers_add_up_when_shelf_json_is_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        Store::builder(dir.path()).register::<Counter>().register::<Tag>().flush_interval(NEVER).open().unwrap();
    let counters = store.collection::<Counter>().unwrap();
    counters.insert(Counter { id: 0, text: "one".into() }).unwrap();
    store.collection::<Tag>().unwrap().insert(tag("t1", "one")).unwrap();
    let flushed = store.flush().unwrap();
    let stats = store.stats();
    let c = collection(&stats, "counter");
    assert_eq!((c.last_flush_files, c.last_flush_bytes), (1, size(&dir.path().join("counter").join("1.json"))));
    let report = stats.last_flush.unwrap();
    assert_eq!((report.files, report.bytes), (flushed.records, flushed.bytes));
    assert_sums(&stats);
}

#[test]
fn last_error_is_set_by_a_failed_flush_and_cleared_by_the_next_success() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultFs::new();
    let store = builder(dir.path()).vfs(Arc::clone(&fs)).open().unwrap();
    let docs = store.collection::<Doc>().unwrap();
    docs.insert(doc("d1", "a", "x")).unwrap();
    store.flush().unwrap();
    let good = store.stats();
    assert!(good.last_error.is_none());
    let good_report = good.last_flush.unwrap();

    docs.insert(doc("d2", "a", "y")).unwrap();
    docs.update(&s("d1"), |d| d.body = "z".into()).unwrap();
    fs.fail_at(0, FaultKind::Eio);
    let err = store.flush().unwrap_err();
    assert!(!fs.pending(), "the fault fired");
    let stats = store.stats();
    let last_error = stats.last_error.as_ref().expect("the failed flush is reported");
    assert_eq!(last_error.to_string(), err.to_string());
    assert!(last_error.to_string().contains("injected"), "{last_error}");
    assert_eq!(stats.last_flush, Some(good_report), "the last successful flush is still the one before");
    assert_eq!(collection(&stats, "doc").last_flush_files, collection(&good, "doc").last_flush_files);
    assert_eq!(counts(&stats)[0], (2, 2), "the failed flush cleared no dirty mark");

    // Still failing state is kept until a flush succeeds (writes do not clear it).
    docs.insert(doc("d3", "b", "w")).unwrap();
    assert!(store.stats().last_error.is_some());

    store.flush().unwrap();
    let stats = store.stats();
    assert!(stats.last_error.is_none(), "cleared by the next successful flush: {stats:?}");
    let report = stats.last_flush.unwrap();
    assert_ne!(report, good_report);
    assert!(report.at >= good_report.at);
    assert_eq!(counts(&stats)[0], (3, 0));
    assert!(collection(&stats, "doc").last_flush_files >= 3);
    assert_sums(&stats);
}

#[test]
fn wal_stats_count_records_syncs_and_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        Store::builder(dir.path()).register::<Account>().register::<Doc>().flush_interval(NEVER).open().unwrap();
    let wal_dir = dir.path().join(shelf::WAL_DIR);
    let accounts = store.collection::<Account>().unwrap();
    let docs = store.collection::<Doc>().unwrap();
    let wal = store.stats().wal.expect("a wal collection is registered");
    assert_eq!((wal.records, wal.syncs, wal.bytes, wal.last_sync), (0, 0, 0, None));
    assert!(collection(&store.stats(), "account").storage.wal);

    for i in 0..5 {
        accounts.insert(account(&format!("a{i}"), i)).unwrap();
    }
    let wal = store.stats().wal.unwrap();
    assert_eq!((wal.records, wal.syncs), (5, 5), "one record and, from one thread, one sync per write");
    assert!(wal.last_sync.is_some());
    assert!(wal.bytes > 0);
    assert_eq!(wal.bytes, total_size(&wal_dir), "the bytes in the segments");

    // A transaction is one record, whatever it touches.
    store
        .transaction(|tx| {
            tx.update::<Account>(&s("a0"), |a| a.cents -= 1)?;
            tx.update::<Account>(&s("a1"), |a| a.cents += 1)?;
            tx.insert(account("a5", 0))?;
            Ok::<_, Error>(())
        })
        .unwrap();
    assert_eq!((store.stats().wal.unwrap().records, store.stats().wal.unwrap().syncs), (6, 6));
    // A write to a collection without the WAL is not logged ...
    docs.insert(doc("d1", "a", "x")).unwrap();
    assert_eq!(store.stats().wal.unwrap().records, 6);
    // ... unless it shares a transaction with a logged one.
    store
        .transaction(|tx| {
            tx.insert(doc("d2", "a", "y"))?;
            tx.update::<Account>(&s("a2"), |a| a.cents = 100)?;
            Ok::<_, Error>(())
        })
        .unwrap();
    let wal = store.stats().wal.unwrap();
    assert_eq!((wal.records, wal.syncs), (7, 7));
    assert_eq!(wal.bytes, total_size(&wal_dir));

    // Nothing committed, nothing logged: an aborted transaction, a unique violation
    // found at commit, a removal of nothing.
    let aborted: Result<(), Error> = store.transaction(|tx| {
        tx.update::<Account>(&s("a3"), |a| a.cents = 0)?;
        tx.update::<Account>(&s("missing"), |a| a.cents = 0)?;
        Ok(())
    });
    assert!(aborted.is_err());
    let violation: Result<(), Error> = store.transaction(|tx| {
        tx.update::<Account>(&s("a3"), |a| a.cents = 0)?;
        tx.insert(Account { id: s("a9"), owner: s("owner-a4"), cents: 0 })?;
        Ok(())
    });
    assert!(matches!(violation, Err(Error::UniqueViolation { .. })), "{violation:?}");
    assert!(accounts.remove(&s("nope")).unwrap().is_none());
    let wal = store.stats().wal.unwrap();
    assert_eq!((wal.records, wal.syncs), (7, 7));
    assert_eq!(wal.bytes, total_size(&wal_dir));

    // A flush checkpoints the log: no bytes left; the counters keep counting.
    store.flush().unwrap();
    let wal = store.stats().wal.unwrap();
    assert_eq!((wal.records, wal.syncs, wal.bytes), (7, 7, 0));
    assert_eq!(total_size(&wal_dir), 0);
    accounts.update(&s("a0"), |a| a.cents = 7).unwrap();
    let wal = store.stats().wal.unwrap();
    assert_eq!((wal.records, wal.syncs), (8, 8));
    assert_eq!(wal.bytes, total_size(&wal_dir));
    assert!(wal.bytes > 0);
}

#[test]
fn concurrent_commits_share_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path()).register::<Account>().flush_interval(NEVER).open().unwrap();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let accounts = store.collection::<Account>().unwrap();
            thread::spawn(move || {
                for i in 0..25 {
                    accounts.insert(account(&format!("w{w}-{i}"), i)).unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    let wal = store.stats().wal.unwrap();
    assert_eq!(wal.records, 100);
    assert!((1..=100).contains(&wal.syncs), "{wal:?}");
    assert_eq!(collection(&store.stats(), "account").records, 100);
}

/// With `WalSync::Every`, writes return before a sync; the flush syncs the log
/// (when it rotates the segment) before checkpointing it. That `fdatasync` is one
/// like any other: `syncs` counts "`fdatasync` calls so far".
#[test]
fn a_wal_sync_done_by_a_flush_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path())
        .register::<Account>()
        .flush_interval(NEVER)
        .wal_sync(WalSync::Every(NEVER))
        .open()
        .unwrap();
    let accounts = store.collection::<Account>().unwrap();
    for i in 0..3 {
        accounts.insert(account(&format!("a{i}"), i)).unwrap();
    }
    let wal = store.stats().wal.unwrap();
    assert_eq!((wal.records, wal.syncs, wal.last_sync), (3, 0, None), "nothing synced yet");
    store.flush().unwrap();
    let wal = store.stats().wal.unwrap();
    assert_eq!(wal.bytes, 0, "checkpointed");
    assert_eq!(wal.syncs, 1, "the flush synced the segment before rotating it: {wal:?}");
    assert!(wal.last_sync.is_some());
}
