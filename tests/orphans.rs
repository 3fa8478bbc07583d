//! No child outlives its parent after a crash (issue 17, item 7; DESIGN §3).
//!
//! A `wal` child (`Bookmark`) references a parent in a collection without `wal`
//! (`Owner`). The parent's insert is acknowledged without touching the disk; the
//! child's commit is durable when it returns. Before the fix, a crash between the
//! two left a bookmark whose owner was gone. Now the child's WAL record carries
//! every parent it references that may not be durable yet, and the removals of such
//! parents are logged, so replay never brings back a removed parent either.
//!
//! - `a_crash_after_a_child_commit_keeps_its_parent`: the finding, reproduced
//!   with a crash image (a copy of the directory while the store runs).
//! - `a_parent_removed_after_its_child_stays_removed`: the removal side.
//! - `sigkill_at_random_points_never_leaves_an_orphan`: a child process inserts
//!   owners and bookmarks, updates and removes them, and is SIGKILLed at random;
//!   every reopen finds no orphan, and every acknowledged bookmark. Cycles:
//!   `SHELF_ORPHAN_CYCLES` (default 20).

mod common_wal;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common_wal::{copy_dir, env_u64, tell, ChildProc, Rng};
use serde::{Deserialize, Serialize};
use shelf::{Entity, Store, StoreBuilder};

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Owner {
    #[id]
    id: String,
    name: String,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[storage(per_record, wal)]
struct Bookmark {
    #[id]
    id: String,
    #[belongs_to(Owner, on_delete = cascade)]
    owner_id: String,
    url: String,
}

/// A child without `wal`: durable through a flush, or through the WAL record of a
/// transaction that also writes a `wal` collection.
#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Note {
    #[id]
    id: String,
    #[belongs_to(Owner, on_delete = cascade)]
    owner_id: String,
}

/// A `wal` collection with no relationships.
#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[storage(per_record, wal)]
struct Visit {
    #[id]
    id: String,
}

fn builder(dir: &Path) -> StoreBuilder {
    Store::builder(dir).register::<Owner>().register::<Bookmark>().register::<Note>().register::<Visit>()
}

/// A store that never flushes on its own: only the WAL makes anything durable.
fn open_unflushed(dir: &Path) -> Store {
    builder(dir).flush_interval(Duration::from_secs(3600)).open().unwrap()
}

fn owner(id: &str) -> Owner {
    Owner { id: id.into(), name: format!("name of {id}") }
}

fn bookmark(id: &str, owner: &str) -> Bookmark {
    Bookmark { id: id.into(), owner_id: owner.into(), url: format!("https://example.com/{id}") }
}

/// The bookmarks whose owner does not exist.
fn orphans(store: &Store) -> Vec<String> {
    let owners = store.collection::<Owner>().unwrap();
    let bookmarks = store.collection::<Bookmark>().unwrap();
    let mut out: Vec<String> = bookmarks
        .query()
        .collect()
        .into_iter()
        .filter(|b| !owners.contains(&b.owner_id))
        .map(|b| format!("{} -> {}", b.id, b.owner_id))
        .collect();
    out.sort();
    out
}

#[test]
fn a_crash_after_a_child_commit_keeps_its_parent() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, image) = (tmp.path().join("live"), tmp.path().join("crash"));
    let store = open_unflushed(&dir);
    store.collection::<Owner>().unwrap().insert(owner("ada")).unwrap();
    store.collection::<Bookmark>().unwrap().insert(bookmark("b1", "ada")).unwrap();
    // The crash: what the running process wrote is all there is.
    copy_dir(&dir, &image);
    let reopened = open_unflushed(&image);
    assert_eq!(
        reopened.collection::<Bookmark>().unwrap().get(&"b1".to_owned()).as_deref(),
        Some(&bookmark("b1", "ada"))
    );
    assert_eq!(orphans(&reopened), Vec::<String>::new(), "a bookmark outlived its owner");
    assert_eq!(reopened.collection::<Owner>().unwrap().get(&"ada".to_owned()).as_deref(), Some(&owner("ada")));
    // Replayed parents are written by the next flush like any replayed record.
    reopened.close().unwrap();
    let again = open_unflushed(&image);
    assert_eq!(orphans(&again), Vec::<String>::new());
    assert!(again.collection::<Owner>().unwrap().contains(&"ada".to_owned()));
}

/// A transaction that writes a `wal` collection is logged whole (it replays all or
/// nothing), children without `wal` included: the record carries their parents too.
#[test]
fn a_crash_after_a_logged_transaction_keeps_the_parent_of_a_child_without_wal() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, image) = (tmp.path().join("live"), tmp.path().join("crash"));
    let store = open_unflushed(&dir);
    store.collection::<Owner>().unwrap().insert(owner("ada")).unwrap();
    store
        .transaction(|tx| {
            tx.insert(Note { id: "n1".into(), owner_id: "ada".into() })?;
            tx.insert(Visit { id: "v1".into() })?;
            Ok::<_, shelf::Error>(())
        })
        .unwrap();
    copy_dir(&dir, &image);
    let reopened = open_unflushed(&image);
    // Acknowledged with a `wal` write: the whole transaction is durable.
    assert!(reopened.collection::<Visit>().unwrap().contains(&"v1".to_owned()));
    assert!(reopened.collection::<Note>().unwrap().contains(&"n1".to_owned()), "the transaction came back in part");
    assert!(reopened.collection::<Owner>().unwrap().contains(&"ada".to_owned()), "a note outlived its owner");
}

/// One commit whose children reference two parents of one collection, neither
/// durable: the WAL record carries both.
#[test]
fn a_crash_after_a_commit_with_two_new_parents_keeps_both() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, image) = (tmp.path().join("live"), tmp.path().join("crash"));
    let store = open_unflushed(&dir);
    let owners = store.collection::<Owner>().unwrap();
    owners.insert(owner("ada")).unwrap();
    owners.insert(owner("bob")).unwrap();
    store
        .transaction(|tx| {
            tx.insert(bookmark("b1", "ada"))?;
            tx.insert(bookmark("b2", "bob"))?;
            Ok::<_, shelf::Error>(())
        })
        .unwrap();
    copy_dir(&dir, &image);
    let reopened = open_unflushed(&image);
    assert_eq!(reopened.collection::<Bookmark>().unwrap().len(), 2);
    assert_eq!(orphans(&reopened), Vec::<String>::new(), "a bookmark outlived its owner");
}

#[test]
fn a_newer_parent_on_disk_wins_over_the_version_a_child_logged() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, image) = (tmp.path().join("live"), tmp.path().join("crash"));
    let store = open_unflushed(&dir);
    let owners = store.collection::<Owner>().unwrap();
    owners.insert(owner("ada")).unwrap();
    store.collection::<Bookmark>().unwrap().insert(bookmark("b1", "ada")).unwrap();
    // The owner is renamed and flushed after the bookmark logged its first version.
    // The crash comes after that flush was durable and before its checkpoint: the
    // WAL as before the flush, the record files as after it.
    owners.update(&"ada".to_owned(), |o| o.name = "renamed".into()).unwrap();
    copy_dir(&dir, &image);
    store.flush().unwrap();
    copy_dir(&dir.join("owner"), &image.join("owner"));
    let reopened = open_unflushed(&image);
    assert_eq!(reopened.collection::<Owner>().unwrap().get(&"ada".to_owned()).unwrap().name, "renamed");
}

#[test]
fn a_parent_removed_after_its_child_stays_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, image) = (tmp.path().join("live"), tmp.path().join("crash"));
    let store = open_unflushed(&dir);
    let (owners, bookmarks) = (store.collection::<Owner>().unwrap(), store.collection::<Bookmark>().unwrap());
    owners.insert(owner("ada")).unwrap();
    bookmarks.insert(bookmark("b1", "ada")).unwrap();
    // Removing the owner cascades to the bookmark (logged); the owner's removal is
    // logged too, or replay would bring the owner back from the bookmark's record.
    owners.remove(&"ada".to_owned()).unwrap();
    // A later durable commit syncs everything before it.
    owners.insert(owner("bob")).unwrap();
    bookmarks.insert(bookmark("b2", "bob")).unwrap();
    copy_dir(&dir, &image);
    let reopened = open_unflushed(&image);
    assert!(!reopened.collection::<Owner>().unwrap().contains(&"ada".to_owned()), "a removed owner came back");
    assert!(!reopened.collection::<Bookmark>().unwrap().contains(&"b1".to_owned()));
    assert_eq!(orphans(&reopened), Vec::<String>::new());
    assert!(reopened.collection::<Bookmark>().unwrap().contains(&"b2".to_owned()));
}

const TEST: &str = "sigkill_at_random_points_never_leaves_an_orphan";
const CHILD_DIR: &str = "SHELF_ORPHAN_CHILD_DIR";
const CHILD_SEED: &str = "SHELF_ORPHAN_CHILD_SEED";

/// The child: owners and their bookmarks, inserted, renamed and removed, with a
/// 5 ms flush interval so kills land mid-flush too. It prints `ack b<n>` once a
/// bookmark's insert returned, and `gone b<n>` once its removal (or its owner's)
/// returned.
fn child_main(dir: &Path, seed: u64) {
    let store = builder(dir).flush_interval(Duration::from_millis(5)).open().unwrap();
    tell("start");
    let (owners, bookmarks) = (store.collection::<Owner>().unwrap(), store.collection::<Bookmark>().unwrap());
    let mut rng = Rng::new(seed);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut n = seed % 1_000_000 * 1_000;
    while Instant::now() < deadline {
        n += 1;
        let o = format!("o{}", rng.below(16));
        match rng.below(10) {
            0..6 => {
                if !owners.contains(&o) {
                    owners.insert(owner(&o)).unwrap();
                }
                bookmarks.insert(bookmark(&format!("b{n}"), &o)).unwrap();
                tell(&format!("ack b{n}"));
            }
            6..8 => {
                let _ = owners.update(&o, |x| x.name = format!("v{n}"));
            }
            _ => {
                let gone: Vec<String> = bookmarks.by_owner_id(&o).into_iter().map(|b| b.id.clone()).collect();
                if owners.remove(&o).unwrap().is_some() {
                    for id in gone {
                        tell(&format!("gone {id}"));
                    }
                }
            }
        }
    }
}

#[test]
fn sigkill_at_random_points_never_leaves_an_orphan() {
    if let Ok(dir) = std::env::var(CHILD_DIR) {
        child_main(Path::new(&dir), env_u64(CHILD_SEED, 0));
        return;
    }
    let cycles = env_u64("SHELF_ORPHAN_CYCLES", 20);
    let mut rng = Rng::new(env_u64("SHELF_ORPHAN_SEED", 0x0FF5_0017));
    println!("orphan kill test: {cycles} cycles");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut acked = BTreeSet::new();
    let mut bookmarks_checked = 0;
    for cycle in 0..cycles {
        let mut child =
            ChildProc::spawn(TEST, &[(CHILD_DIR, dir.display().to_string()), (CHILD_SEED, (cycle + 1).to_string())]);
        let first = child.next_line(Duration::from_secs(20));
        assert_eq!(first.as_deref(), Some("start"), "cycle {cycle}: the child did not open");
        // A random kill moment; this orders no threads.
        std::thread::sleep(Duration::from_millis(rng.range(1, 150)));
        let exited = child.exited();
        let lines = child.kill();
        assert!(exited.is_none(), "cycle {cycle}: the child exited on its own: {exited:?}");
        for line in lines {
            if let Some(id) = line.strip_prefix("ack ") {
                acked.insert(id.to_owned());
            } else if let Some(id) = line.strip_prefix("gone ") {
                acked.remove(id);
            }
        }
        let store = builder(&dir).open().unwrap();
        assert_eq!(orphans(&store), Vec::<String>::new(), "cycle {cycle}: bookmarks outlived their owners");
        let bookmarks = store.collection::<Bookmark>().unwrap();
        let lost: Vec<&String> = acked.iter().filter(|id| !bookmarks.contains(*id)).collect();
        assert!(lost.is_empty(), "cycle {cycle}: acknowledged bookmarks are gone: {lost:?}");
        bookmarks_checked = acked.len();
        store.close().unwrap();
    }
    assert!(bookmarks_checked > 0, "no bookmark was ever acknowledged: the test checked nothing");
    println!("orphan kill test: {cycles} cycles, {bookmarks_checked} acknowledged bookmarks live at the end");
}
