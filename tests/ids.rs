//! Id encoding through the store: hostile ids round-trip through insert, flush and
//! reopen, every file stays inside its collection directory, two ids never share a
//! file (not even case-insensitively), and ids of any length are stored (a long id's
//! file name is a prefix plus a hash; the id inside the record is authoritative).

mod common;

use std::collections::BTreeSet;
use std::path::{Component, Path};

use common::*;
use proptest::prelude::*;

/// Inserts a user for every id, flushes, closes, reopens, and checks that every id
/// comes back with its record and that the files are where they must be.
fn round_trip(ids: &[String]) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let users = store.collection::<User>().unwrap();
    for (n, id) in ids.iter().enumerate() {
        users.insert(user(id, &format!("user {n}"), n as u32)).unwrap_or_else(|e| panic!("insert {id:?}: {e}"));
    }
    store.flush().unwrap();
    check_files(dir.path(), ids.len());
    store.close().unwrap();
    drop((store, users));

    let store = open(dir.path());
    let users = store.collection::<User>().unwrap();
    assert_eq!(users.len(), ids.len());
    for (n, id) in ids.iter().enumerate() {
        let found = users.get(id).unwrap_or_else(|| panic!("id {id:?} is missing after reopen"));
        assert_eq!(*found, user(id, &format!("user {n}"), n as u32));
    }
    let mut sorted = ids.to_vec();
    sorted.sort();
    let all: Vec<String> = users.all().iter().map(|u| u.id.clone()).collect();
    assert_eq!(all, sorted);
}

/// The data directory holds only the store files and one file per record, directly
/// in the collection directory, with names that differ even ignoring case.
fn check_files(dir: &Path, records: usize) {
    let mut names = Vec::new();
    for file in files(dir) {
        let parts: Vec<Component> = file.components().collect();
        match parts.as_slice() {
            [Component::Normal(name)] => {
                assert!(*name == "LOCK" || *name == "shelf.json", "unexpected file {}", file.display())
            }
            [Component::Normal(collection), Component::Normal(name)] if *collection == "user" => {
                let name = name.to_str().expect("record file names are UTF-8");
                assert!(name.ends_with(".json"), "unexpected file {}", file.display());
                names.push(name.to_owned());
            }
            _ => panic!("file outside its collection directory: {}", file.display()),
        }
    }
    assert_eq!(dirs(dir), [Path::new("order"), Path::new("user")], "no directory besides the collections");
    assert_eq!(names.len(), records, "one file per record: {names:?}");
    let folded: BTreeSet<String> = names.iter().map(|n| n.to_lowercase()).collect();
    assert_eq!(folded.len(), names.len(), "two names differ only by case: {names:?}");
    let canonical = dir.join("user").canonicalize().unwrap();
    for name in &names {
        let path = dir.join("user").join(name).canonicalize().unwrap();
        assert_eq!(path.parent(), Some(canonical.as_path()), "{name} resolves outside the collection");
    }
}

#[test]
fn hostile_ids_round_trip_and_stay_inside_the_collection_directory() {
    let ids: Vec<String> = [
        "..",
        ".",
        "/",
        "a/b",
        "../../etc/passwd",
        "\\",
        "a\\..\\b",
        "\0",
        "nul\0byte",
        "CON",
        "con",
        "Nul",
        "lpt9",
        "",
        " ",
        "a.",
        "%",
        "%41",
        "a.json",
        "LOCK",
        "shelf.json",
        "_quarantine",
        ".shelf-tmp-1-1",
        "\n\t\r",
        "Ünïcödé ✓",
        "日本語",
        "🦀",
        "e\u{301}", // e + combining accent
        "\u{e9}",   // precomposed é: a different id
        "Ab",
        "ab",
        "AB",
        "aB",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    round_trip(&ids);
}

#[test]
fn ids_up_to_the_file_name_limit_round_trip() {
    let limit = shelf::encode::MAX_STEM_LEN;
    // Plain characters take one byte each, escaped ones three.
    round_trip(&["a".repeat(limit), "/".repeat(limit / 3), "é".repeat(limit / 6)]);
}

/// Long URLs and natural keys: several sharing a long prefix, and past the limit by
/// one byte.
fn long_ids() -> Vec<String> {
    let limit = shelf::encode::MAX_STEM_LEN;
    let base = format!("https://example.com/a/very/long/path/{}", "segment/".repeat(40));
    vec![
        format!("{base}?q=1"),
        format!("{base}?q=2"),
        format!("{base}?Q=1"),
        format!("{base}#frag"),
        "a".repeat(limit + 1),
        "/".repeat(limit / 3 + 1),
        "é".repeat(limit),
        "x".repeat(10 * 1024),
    ]
}

#[test]
fn long_ids_round_trip_with_hashed_file_names() {
    let ids = long_ids();
    round_trip(&ids);
    // Every one of them has a hashed name, within the limit.
    for id in &ids {
        let name = shelf::encode::encode(id);
        assert!(name.contains('~') && name.len() <= shelf::encode::MAX_STEM_LEN, "{name}");
    }
}

#[test]
fn the_first_id_past_the_limit_is_stored_under_a_hashed_name() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let users = store.collection::<User>().unwrap();
    let limit = shelf::encode::MAX_STEM_LEN;
    let (fits, over) = ("a".repeat(limit), "a".repeat(limit + 1));
    users.insert(user(&fits, "fits", 1)).unwrap();
    users.insert(user(&over, "over", 2)).unwrap();
    store.flush().unwrap();
    assert!(dir.path().join("user").join(format!("{fits}.json")).is_file());
    let hashed = record_path(dir.path(), "user", &over);
    assert!(hashed.is_file(), "{}", hashed.display());
    assert!(hashed.file_name().unwrap().to_str().unwrap().contains('~'));
    // The record holds the real id.
    let inside: User = read_record(&hashed).unwrap();
    assert_eq!(inside.id, over);
}

/// A hashed file name only locates the record: a record moved onto another long
/// id's name (or any id not its own) is refused at open, naming the file.
#[test]
fn a_record_under_another_long_ids_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ids = long_ids();
    {
        let store = open(dir.path());
        let users = store.collection::<User>().unwrap();
        users.insert(user(&ids[0], "zero", 0)).unwrap();
        store.close().unwrap();
    }
    let from = record_path(dir.path(), "user", &ids[0]);
    let to = record_path(dir.path(), "user", &ids[1]);
    std::fs::rename(&from, &to).unwrap();
    let err = builder(dir.path()).open().map(drop).expect_err("open loaded a record under another id's name");
    let text = err.to_string();
    assert!(text.contains(to.file_name().unwrap().to_str().unwrap()), "{text}");
}

/// Long ids in every persisted layout, through a flush and a reopen, and through a
/// crash image: WAL-logged writes that were never flushed, and a flush cut by power
/// loss at every point.
mod layouts {
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::sync::Arc;

    use serde::{Deserialize, Serialize};
    use shelf::fs::CrashFs;
    use shelf::{Entity, Store};

    use super::long_ids;

    macro_rules! entity {
        ($name:ident, $($storage:tt)*) => {
            #[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
            #[storage($($storage)*)]
            struct $name {
                #[id]
                url: String,
                n: u32,
            }
        };
    }
    entity!(PerRecord, per_record);
    entity!(Sharded, per_record, shard = 2);
    entity!(Compressed, per_record, compress);
    entity!(CollectionFile, collection_file);
    entity!(PerRecordWal, per_record, wal);
    entity!(CollectionFileWal, collection_file, wal);

    fn open(fs: &Arc<CrashFs>) -> Store {
        Store::builder(Path::new("/data"))
            .vfs(Arc::clone(fs))
            .register::<PerRecord>()
            .register::<Sharded>()
            .register::<Compressed>()
            .register::<CollectionFile>()
            .register::<PerRecordWal>()
            .register::<CollectionFileWal>()
            .flush_interval(common::NEVER)
            .open()
            .unwrap_or_else(|e| panic!("open: {e}"))
    }

    use super::common;

    /// The id to `n` map of every collection.
    type State = Vec<BTreeMap<String, u32>>;

    fn state(store: &Store) -> State {
        fn of<T: Entity<Id = String>>(store: &Store, n: impl Fn(&T) -> u32) -> BTreeMap<String, u32> {
            store.collection::<T>().unwrap().iter().map(|r| (r.id().clone(), n(&r))).collect()
        }
        vec![
            of::<PerRecord>(store, |r| r.n),
            of::<Sharded>(store, |r| r.n),
            of::<Compressed>(store, |r| r.n),
            of::<CollectionFile>(store, |r| r.n),
            of::<PerRecordWal>(store, |r| r.n),
            of::<CollectionFileWal>(store, |r| r.n),
        ]
    }

    macro_rules! write_all {
        ($store:expr, $id:expr, $n:expr) => {{
            let (id, n): (&String, u32) = ($id, $n);
            $store.collection::<PerRecord>().unwrap().upsert(PerRecord { url: id.clone(), n }).unwrap();
            $store.collection::<Sharded>().unwrap().upsert(Sharded { url: id.clone(), n }).unwrap();
            $store.collection::<Compressed>().unwrap().upsert(Compressed { url: id.clone(), n }).unwrap();
            $store.collection::<CollectionFile>().unwrap().upsert(CollectionFile { url: id.clone(), n }).unwrap();
            $store.collection::<PerRecordWal>().unwrap().upsert(PerRecordWal { url: id.clone(), n }).unwrap();
            $store.collection::<CollectionFileWal>().unwrap().upsert(CollectionFileWal { url: id.clone(), n }).unwrap();
        }};
    }

    fn expected(ids: &[String], n: impl Fn(usize) -> u32) -> BTreeMap<String, u32> {
        ids.iter().enumerate().map(|(i, id)| (id.clone(), n(i))).collect()
    }

    #[test]
    fn long_ids_survive_flush_reopen_and_a_wal_replay_in_every_layout() {
        let ids = long_ids();
        let fs = CrashFs::new();
        let store = open(&fs);
        for (i, id) in ids.iter().enumerate() {
            write_all!(store, id, i as u32);
        }
        store.flush().unwrap();
        store.close().unwrap();
        drop(store);
        let store = open(&fs);
        let want = expected(&ids, |i| i as u32);
        assert_eq!(state(&store), vec![want.clone(); 6], "after flush and reopen");

        // New values, never flushed: the WAL collections replay them after a power
        // loss; the others hold the flushed or the new values (their writes may ride
        // in the WAL records of the WAL collections' commits), each under its id.
        for (i, id) in ids.iter().enumerate() {
            write_all!(store, id, 100 + i as u32);
        }
        fs.crash();
        drop(store);
        let store = open(&fs);
        let replayed = expected(&ids, |i| 100 + i as u32);
        let found = state(&store);
        for (layout, found) in found[..4].iter().enumerate() {
            assert!(found.keys().eq(want.keys()), "layout {layout} holds other ids");
            for (id, n) in found {
                assert!(*n == want[id] || *n == replayed[id], "layout {layout}: {n}");
            }
        }
        assert_eq!(found[4..], vec![replayed.clone(); 2][..], "WAL layouts replayed the long ids");
        // The replayed records are written under their hashed names by the next flush.
        store.flush().unwrap();
        store.close().unwrap();
        drop(store);
        assert_eq!(state(&open(&fs))[4..], vec![replayed; 2][..]);
    }

    /// Power loss at every mutating operation of a flush of long ids: each record
    /// is, after reopen, its value before or after the flush, under its own id.
    #[test]
    fn a_flush_of_long_ids_cut_by_power_loss_leaves_each_record_old_or_new() {
        let ids = long_ids();
        let mut k = 0u64;
        loop {
            let fs = CrashFs::new();
            let store = open(&fs);
            for (i, id) in ids.iter().enumerate().take(4) {
                write_all!(store, id, i as u32);
            }
            store.flush().unwrap();
            for (i, id) in ids.iter().enumerate() {
                write_all!(store, id, 50 + i as u32);
            }
            fs.crash_after(k);
            let flushed = store.flush().is_ok() && !fs.is_dead();
            fs.crash();
            drop(store);
            let store = open(&fs);
            for (layout, found) in state(&store).into_iter().enumerate() {
                for (id, n) in &found {
                    let i = ids.iter().position(|x| x == id).unwrap_or_else(|| panic!("crash point {k}: unknown id"));
                    let old = (i < 4).then_some(i as u32);
                    assert!(
                        *n == 50 + i as u32 || Some(*n) == old,
                        "crash point {k}, layout {layout}: id {i} holds {n}"
                    );
                }
                // WAL layouts lose nothing; the others lose only what was not flushed.
                if layout >= 4 || flushed {
                    assert_eq!(found.len(), ids.len(), "crash point {k}, layout {layout}");
                }
                for (i, id) in ids.iter().enumerate().take(4) {
                    assert!(found.contains_key(id), "crash point {k}, layout {layout}: flushed id {i} is gone");
                }
            }
            drop(store);
            if flushed {
                assert!(k > 10, "the flush should have many crash points, got {k}");
                return;
            }
            k += 1;
            assert!(k < 10_000, "the flush never completed");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Any short strings (any Unicode, control characters included) round-trip
    /// through the store, one file each.
    #[test]
    fn random_ids_round_trip_through_the_store(ids in prop::collection::btree_set("(?s).{0,16}", 1..8)) {
        round_trip(&ids.into_iter().collect::<Vec<_>>());
    }
}
