//! The resumable change feed (issue 16): `watch_from(cursor)` gives exactly the
//! events after the cursor, retained ones then live ones, with no gap and no
//! duplicate; a cursor the retention no longer covers gets `FeedExpired`.

mod common_wal;

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shelf::{Change, Entity, Error, Event, FeedRetention, Store};

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[storage(per_record, wal)]
struct Doc {
    #[id]
    id: String,
    v: u64,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[storage(memory)]
struct Other {
    #[id]
    id: u64,
}

const NEVER: Duration = Duration::from_secs(3600);

fn open(dir: &std::path::Path, retention: FeedRetention) -> Store {
    Store::builder(dir)
        .register::<Doc>()
        .register::<Other>()
        .flush_interval(NEVER)
        .feed_retention(retention)
        .open()
        .unwrap()
}

/// An event as comparable data: (seq, kind, id, value after or removed value).
fn key(e: &Event<Doc>) -> (u64, &'static str, String, u64) {
    let kind = match &e.change {
        Change::Insert(_) => "insert",
        Change::Update { .. } => "update",
        Change::Remove(_) => "remove",
    };
    (e.seq, kind, e.record().id.clone(), e.record().v)
}

/// A scripted history: single writes, a multi-record transaction, a rolled-back
/// transaction, and commits to another collection between them (gaps in `seq`).
fn script(store: &Store) {
    let docs = store.collection::<Doc>().unwrap();
    let other = store.collection::<Other>().unwrap();
    docs.insert(Doc { id: "a".into(), v: 1 }).unwrap();
    docs.insert(Doc { id: "b".into(), v: 1 }).unwrap();
    other.insert(Other { id: 1 }).unwrap();
    docs.update(&"a".to_owned(), |d| d.v = 2).unwrap();
    store
        .transaction(|tx| {
            tx.insert(Doc { id: "c".into(), v: 1 })?;
            tx.update::<Doc>(&"b".to_owned(), |d| d.v = 2)?;
            tx.remove::<Doc>(&"a".to_owned())?;
            Ok::<_, Error>(())
        })
        .unwrap();
    let rolled_back: Result<(), Error> = store.transaction(|tx| {
        tx.insert(Doc { id: "never".into(), v: 0 })?;
        Err(Error::NotRegistered { type_name: "rollback" })
    });
    assert!(rolled_back.is_err());
    other.insert(Other { id: 2 }).unwrap();
    docs.upsert(Doc { id: "a".into(), v: 3 }).unwrap();
    docs.remove(&"c".to_owned()).unwrap();
}

#[test]
fn resuming_from_every_cursor_gives_exactly_the_missing_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), FeedRetention::events(1000));
    let docs = store.collection::<Doc>().unwrap();
    let all = docs.watch();
    script(&store);
    let history: Vec<_> = all.try_iter().collect();
    let history: Vec<_> = history.iter().map(key).collect();
    assert_eq!(history.len(), 8, "the script makes eight events: {history:?}");
    let last = history.last().unwrap().0;
    let mut resumed = Vec::new();
    for cursor in 0..=last {
        let feed = docs.watch_from(cursor).unwrap();
        let got: Vec<_> = feed.try_iter().collect();
        let got: Vec<_> = got.iter().map(key).collect();
        let want: Vec<_> = history.iter().filter(|e| e.0 > cursor).cloned().collect();
        assert_eq!(got, want, "resumed from cursor {cursor}");
        resumed.push(feed);
    }
    // Then live events, exactly once each, after the retained ones.
    docs.insert(Doc { id: "live".into(), v: 9 }).unwrap();
    for (cursor, feed) in resumed.iter().enumerate() {
        let got: Vec<_> = feed.try_iter().collect();
        let got: Vec<_> = got.iter().map(key).collect();
        assert_eq!(got.len(), 1, "cursor {cursor}: {got:?}");
        assert_eq!((got[0].1, got[0].2.as_str()), ("insert", "live"), "cursor {cursor}");
        assert!(got[0].0 > last);
    }
    // A cursor ahead of the last commit is refused.
    let ahead = docs.watch_from(last + 100).unwrap_err();
    assert!(matches!(ahead, Error::FeedCursor { .. }), "{ahead}");
}

#[test]
fn a_cursor_past_retention_gets_feed_expired_and_later_ones_resume() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), FeedRetention::events(4));
    let docs = store.collection::<Doc>().unwrap();
    let all = docs.watch();
    for k in 0..10u64 {
        docs.insert(Doc { id: format!("d{k}"), v: k }).unwrap();
    }
    let history: Vec<_> = all.try_iter().collect();
    let seqs: Vec<u64> = history.iter().map(|e| e.seq).collect();
    // Four events retained: those after the sixth.
    let retained_after = seqs[5];
    for cursor in 0..retained_after {
        match docs.watch_from(cursor) {
            Err(Error::FeedExpired { cursor: c, retained_after: r, collection }) => {
                assert_eq!((c, r, collection.as_str()), (cursor, retained_after, "doc"));
            }
            other => panic!("cursor {cursor}: expected FeedExpired, got {:?}", other.map(|_| ())),
        }
    }
    for cursor in retained_after..=*seqs.last().unwrap() {
        let got: Vec<u64> = docs.watch_from(cursor).unwrap().try_iter().map(|e| e.seq).collect();
        let want: Vec<u64> = seqs.iter().copied().filter(|&s| s > cursor).collect();
        assert_eq!(got, want, "cursor {cursor}");
    }
}

#[test]
fn a_commit_is_retained_or_dropped_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), FeedRetention::events(3));
    let docs = store.collection::<Doc>().unwrap();
    docs.insert(Doc { id: "x".into(), v: 0 }).unwrap();
    store
        .transaction(|tx| {
            tx.insert(Doc { id: "y".into(), v: 0 })?;
            tx.insert(Doc { id: "z".into(), v: 0 })?;
            Ok::<_, Error>(())
        })
        .unwrap();
    // Three events kept (x, y, z). One more drops x's commit only.
    docs.insert(Doc { id: "w".into(), v: 0 }).unwrap();
    let got: Vec<String> = docs.watch_from(1).unwrap().try_iter().map(|e| e.record().id.clone()).collect();
    assert_eq!(got, ["y", "z", "w"]);
    // One more: the transaction's two events go together.
    docs.insert(Doc { id: "v".into(), v: 0 }).unwrap();
    assert!(matches!(docs.watch_from(1), Err(Error::FeedExpired { retained_after: 2, .. })));
    let got: Vec<String> = docs.watch_from(2).unwrap().try_iter().map(|e| e.record().id.clone()).collect();
    assert_eq!(got, ["w", "v"]);
}

#[test]
fn events_older_than_the_age_limit_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), FeedRetention::events(100).max_age(Duration::from_millis(1)));
    let docs = store.collection::<Doc>().unwrap();
    docs.insert(Doc { id: "old".into(), v: 0 }).unwrap();
    // Lets the 1 ms age limit pass (wall time is what the limit is about); this
    // orders no threads.
    std::thread::sleep(Duration::from_millis(50));
    let expired = docs.watch_from(0).map(|_| ()).unwrap_err();
    assert!(matches!(expired, Error::FeedExpired { retained_after: 1, .. }), "{expired}");
    assert_eq!(docs.watch_from(1).unwrap().try_iter().count(), 0);
}

#[test]
fn without_retention_resuming_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), FeedRetention::default());
    let docs = store.collection::<Doc>().unwrap();
    docs.insert(Doc { id: "a".into(), v: 0 }).unwrap();
    let refused = docs.watch_from(0).map(|_| ()).unwrap_err();
    assert!(matches!(refused, Error::FeedCursor { .. }), "{refused}");
    assert!(refused.to_string().contains("feed_retention"), "{refused}");
}

#[test]
fn subscribing_while_writers_commit_has_no_gap_and_no_duplicate_at_the_seam() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), FeedRetention::events(100_000));
    let docs = store.collection::<Doc>().unwrap();
    let reference = docs.watch();
    const WRITES: u64 = 400;
    let writer = {
        let docs = docs.clone();
        std::thread::spawn(move || {
            for k in 0..WRITES {
                docs.upsert(Doc { id: format!("k{}", k % 17), v: k }).unwrap();
            }
        })
    };
    // Subscribe at many points while the writer runs, each from the last seq seen.
    let mut feeds = Vec::new();
    let mut seen = 0;
    while feeds.len() < 40 {
        if let Ok(event) = reference.recv_timeout(Duration::from_secs(60)) {
            seen = event.seq;
        }
        feeds.push((seen.saturating_sub(3), docs.watch_from(seen.saturating_sub(3)).unwrap()));
    }
    writer.join().unwrap();
    let history: Vec<u64> = docs.watch_from(0).unwrap().try_iter().map(|e| e.seq).collect();
    assert_eq!(history.len() as u64, WRITES);
    for (cursor, feed) in feeds {
        let got: Vec<u64> = feed.try_iter().map(|e| e.seq).collect();
        let want: Vec<u64> = history.iter().copied().filter(|&s| s > cursor).collect();
        assert_eq!(got, want, "feed resumed from {cursor}");
    }
}

/// The sequence numbers of the events `f` causes on `Doc`.
fn seqs_of(store: &Store, f: impl FnOnce(&shelf::Collection<Doc>)) -> Vec<u64> {
    let docs = store.collection::<Doc>().unwrap();
    let all = docs.watch();
    f(&docs);
    all.try_iter().map(|e| e.seq).collect()
}

fn insert_n(prefix: &str, n: u64) -> impl FnOnce(&shelf::Collection<Doc>) + '_ {
    move |docs| {
        for k in 0..n {
            docs.upsert(Doc { id: format!("{prefix}{k}"), v: k }).unwrap();
        }
    }
}

/// A copy of `dir` as a crash would leave it: the store is still open, so no
/// close wrote its feed file.
fn crash_copy(dir: &Path) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    common_wal::copy_dir(dir, copy.path());
    let _ = std::fs::remove_file(copy.path().join(shelf::LOCK_FILE));
    copy
}

#[test]
fn after_a_crash_a_cursor_from_before_gets_feed_expired_never_the_new_opens_events() {
    let dir = tempfile::tempdir().unwrap();
    let feed = FeedRetention::events(1000);
    // A subscriber follows the first open to its last event, then the process dies.
    let store = open(dir.path(), feed);
    let first = seqs_of(&store, insert_n("first", 3));
    assert_eq!(first, [1, 2, 3], "a new directory's first open counts from 1");
    let cursor = *first.last().unwrap();
    let crashed = crash_copy(dir.path());
    let store = open(crashed.path(), feed);
    let second = seqs_of(&store, insert_n("second", 5));
    assert!(second[0] > cursor, "numbers keep increasing across opens: {second:?} after {cursor}");
    let docs = store.collection::<Doc>().unwrap();
    // Every cursor before this open (0, the first open's, and numbers between)
    // would need events this feed does not hold: refused.
    for old in [0, 1, cursor, cursor + 1, second[0] - 2] {
        match docs.watch_from(old) {
            Err(Error::FeedExpired { cursor: c, retained_after, .. }) => {
                assert_eq!(c, old);
                assert_eq!(retained_after, second[0] - 1, "the feed holds this open's events only");
            }
            other => panic!("cursor {old} from the first open: expected FeedExpired, got {:?}", other.map(|_| ())),
        }
    }
    // From the start of this open, exactly this open's events.
    let got: Vec<u64> = docs.watch_from(second[0] - 1).unwrap().try_iter().map(|e| e.seq).collect();
    assert_eq!(got, second);
}

#[test]
fn after_a_clean_close_every_cursor_resumes_across_the_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let feed = FeedRetention::events(1000);
    let history: Vec<_> = {
        let store = open(dir.path(), feed);
        let all = store.collection::<Doc>().unwrap().watch();
        script(&store);
        store.close().unwrap();
        let events: Vec<_> = all.try_iter().collect();
        events.iter().map(key).collect()
    };
    assert!(dir.path().join("_feed").join("doc.jsonl").is_file(), "close keeps the feed");
    assert!(!dir.path().join("_feed").join("other.jsonl").exists(), "a memory collection's feed is not kept");
    let store = open(dir.path(), feed);
    assert!(!dir.path().join("_feed").join("doc.jsonl").exists(), "the open took the feed file");
    let docs = store.collection::<Doc>().unwrap();
    let live = docs.watch();
    docs.insert(Doc { id: "after".into(), v: 7 }).unwrap();
    store.transaction(|tx| tx.update::<Doc>(&"b".to_owned(), |d| d.v = 8)).unwrap();
    let events: Vec<_> = live.try_iter().collect();
    let after: Vec<_> = events.iter().map(key).collect();
    assert!(after[0].0 > history.last().unwrap().0);
    let whole: Vec<_> = history.iter().chain(&after).cloned().collect();
    // Every cursor of the first open, 0 included, and of this one.
    let cursors = std::iter::once(0).chain(whole.iter().map(|e| e.0));
    for cursor in cursors {
        let got: Vec<_> = docs.watch_from(cursor).unwrap().try_iter().collect();
        let got: Vec<_> = got.iter().map(key).collect();
        let want: Vec<_> = whole.iter().filter(|e| e.0 > cursor).cloned().collect();
        assert_eq!(got, want, "resumed from cursor {cursor}");
    }
    // The restored events carry the records: an update's old version too.
    let restored = docs.watch_from(0).unwrap();
    let update = restored.try_iter().find(|e| matches!(e.change, Change::Update { .. })).unwrap();
    let Change::Update { old, new } = &update.change else { unreachable!() };
    assert_eq!((old.as_ref(), new.as_ref()), (&Doc { id: "a".into(), v: 1 }, &Doc { id: "a".into(), v: 2 }));
    // A memory collection's records are gone with the close: so is its feed.
    let other = store.collection::<Other>().unwrap();
    assert!(matches!(other.watch_from(0), Err(Error::FeedExpired { .. })));
}

#[test]
fn whatever_changes_the_records_between_close_and_reopen_without_events_ends_the_kept_feed() {
    let feed = FeedRetention::events(1000);
    let closed = |dir: &Path| {
        let store = open(dir, feed);
        let seqs = seqs_of(&store, insert_n("a", 3));
        store.close().unwrap();
        seqs
    };
    let expired = |dir: &Path, cursor: u64, why: &str| {
        let store = open(dir, feed);
        let docs = store.collection::<Doc>().unwrap();
        let refused = docs.watch_from(cursor).map(|_| ());
        assert!(matches!(refused, Err(Error::FeedExpired { .. })), "{why}: {refused:?}");
    };
    // An open without a feed in between (it may commit without keeping events).
    let dir = tempfile::tempdir().unwrap();
    let seqs = closed(dir.path());
    drop(open(dir.path(), FeedRetention::default()));
    assert!(!dir.path().join("_feed").join("doc.jsonl").exists());
    expired(dir.path(), seqs[0], "an open without a feed");
    // `shelf compact` (it writes record files from the WAL).
    let dir = tempfile::tempdir().unwrap();
    let seqs = closed(dir.path());
    shelf::inspect::DataDir::open(dir.path()).unwrap().compact(&shelf::inspect::Quiet).unwrap();
    assert!(!dir.path().join("_feed").join("doc.jsonl").exists());
    expired(dir.path(), seqs[0], "shelf compact");
    // An open that crashed after taking the feed file (its copy, while open).
    let dir = tempfile::tempdir().unwrap();
    let seqs = closed(dir.path());
    let store = open(dir.path(), feed);
    assert!(store.collection::<Doc>().unwrap().watch_from(seqs[0]).is_ok(), "the clean close's feed resumes");
    let crashed = crash_copy(dir.path());
    drop(store);
    expired(crashed.path(), seqs[0], "an open that crashed");
}

#[test]
fn an_unreadable_feed_file_is_moved_aside_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let feed = FeedRetention::events(1000);
    let store = open(dir.path(), feed);
    let seqs = seqs_of(&store, insert_n("a", 2));
    store.close().unwrap();
    let file = dir.path().join("_feed").join("doc.jsonl");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replace("\"op\":\"insert\"", "\"op\":\"upsert\"")).unwrap();
    let store = open(dir.path(), feed);
    let report = store.recovery_report();
    assert_eq!(report.quarantined.len(), 1, "{report:?}");
    assert_eq!(report.quarantined[0].from, file);
    assert!(report.quarantined[0].to.starts_with(dir.path().join(shelf::QUARANTINE_DIR)));
    assert!(report.quarantined[0].reason.contains("line 2"), "{}", report.quarantined[0].reason);
    let docs = store.collection::<Doc>().unwrap();
    assert_eq!(docs.len(), 2, "the records are untouched");
    assert!(matches!(docs.watch_from(seqs[0]), Err(Error::FeedExpired { .. })));
}

#[test]
fn events_older_than_the_age_limit_are_not_restored() {
    let dir = tempfile::tempdir().unwrap();
    let feed = FeedRetention::events(1000).max_age(Duration::from_millis(200));
    let store = open(dir.path(), feed);
    let seqs = seqs_of(&store, insert_n("a", 2));
    store.close().unwrap();
    // Wall time is what the limit is about; this orders no threads.
    std::thread::sleep(Duration::from_millis(400));
    let store = open(dir.path(), feed);
    let docs = store.collection::<Doc>().unwrap();
    match docs.watch_from(seqs[0]) {
        Err(Error::FeedExpired { retained_after, .. }) => assert_eq!(retained_after, seqs[1]),
        other => panic!("expected FeedExpired, got {:?}", other.map(|_| ())),
    }
    assert_eq!(docs.watch_from(seqs[1]).unwrap().try_iter().count(), 0);
}

#[test]
fn an_open_without_a_feed_in_between_never_makes_numbers_reused() {
    let dir = tempfile::tempdir().unwrap();
    let feed = FeedRetention::events(1000);
    let with_feed = seqs_of(&open(dir.path(), feed), insert_n("a", 3));
    let without = seqs_of(&open(dir.path(), FeedRetention::default()), insert_n("b", 6));
    let store = open(dir.path(), feed);
    let again = seqs_of(&store, insert_n("c", 2));
    let before = with_feed.iter().chain(&without).max().copied().unwrap();
    assert!(again[0] > before, "{again:?} must be above {with_feed:?} and {without:?}");
    let docs = store.collection::<Doc>().unwrap();
    for old in with_feed.iter().chain(&without) {
        assert!(matches!(docs.watch_from(*old), Err(Error::FeedExpired { .. })), "cursor {old}");
    }
    // A directory used before without any feed: its first open with one skips their
    // numbers too.
    let dir = tempfile::tempdir().unwrap();
    let plain = seqs_of(&open(dir.path(), FeedRetention::default()), insert_n("d", 4));
    let store = open(dir.path(), feed);
    let first = seqs_of(&store, insert_n("e", 1));
    assert!(first[0] > *plain.last().unwrap(), "{first:?} after {plain:?}");
    let docs = store.collection::<Doc>().unwrap();
    assert!(matches!(docs.watch_from(plain[1]), Err(Error::FeedExpired { .. })));
}

/// `shelf import` only stages its lines: the next open applies them through the
/// commit path, with events, so a kept feed goes on across it.
#[test]
fn a_staged_import_is_applied_with_events_and_the_kept_feed_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let feed = FeedRetention::events(1000);
    let store = open(dir.path(), feed);
    let seqs = seqs_of(&store, insert_n("a", 3));
    store.close().unwrap();
    let mut input = std::io::Cursor::new(b"{\"id\":\"imported\",\"v\":1}\n{\"id\":\"a0\",\"v\":9}\n".to_vec());
    shelf::inspect::DataDir::open(dir.path())
        .unwrap()
        .import("doc", &mut input, &Default::default(), &shelf::inspect::Quiet)
        .unwrap();
    assert!(dir.path().join("_feed").join("doc.jsonl").exists(), "staging changes no record");
    let store = open(dir.path(), feed);
    let docs = store.collection::<Doc>().unwrap();
    let resumed: Vec<_> = docs.watch_from(seqs[0]).unwrap().try_iter().collect();
    let got: Vec<_> = resumed.iter().map(key).collect();
    let import_seq = got.last().unwrap().0;
    assert!(import_seq > seqs[2]);
    assert_eq!(
        got,
        [
            (seqs[1], "insert", "a1".to_owned(), 1),
            (seqs[2], "insert", "a2".to_owned(), 2),
            (import_seq, "insert", "imported".to_owned(), 1),
            (import_seq, "update", "a0".to_owned(), 9),
        ]
    );
}

/// A failed open changes nothing: the kept feed is still there for the next one.
#[test]
fn an_open_that_fails_keeps_the_kept_feed() {
    let dir = tempfile::tempdir().unwrap();
    let feed = FeedRetention::events(1000);
    let store = open(dir.path(), feed);
    let seqs = seqs_of(&store, insert_n("a", 2));
    store.close().unwrap();
    let record = dir.path().join("doc").join("a0.json");
    let good = std::fs::read(&record).unwrap();
    std::fs::write(&record, b"{ not json").unwrap();
    let failed = Store::builder(dir.path()).register::<Doc>().register::<Other>().feed_retention(feed).open();
    assert!(matches!(failed, Err(Error::CorruptRecord { .. })), "{:?}", failed.map(|_| ()));
    std::fs::write(&record, good).unwrap();
    let store = open(dir.path(), feed);
    let got: Vec<u64> =
        store.collection::<Doc>().unwrap().watch_from(seqs[0]).unwrap().try_iter().map(|e| e.seq).collect();
    assert_eq!(got, [seqs[1]]);
}
