//! Migration between storage layouts (issue 6, DESIGN §4): when a collection's
//! declaration changes between runs, `open` moves its records to the new layout.
//!
//! - every direction between `per_record`, `collection_file`, compress on and off,
//!   and sharding on and off (and another shard width): every record, the auto-id
//!   counter and the indices survive; afterwards only the new layout's files exist
//!   and `shelf.json` records it;
//! - persisted -> `memory` is refused without `allow_migration_to_memory(true)` and
//!   touches nothing; with it, the files go;
//! - a simulated power loss ([`CrashFs`]) at every mutating operation of a migration:
//!   the layout `shelf.json` records holds every record exactly once, and a reopen with
//!   the new or the old declaration finds them all, in one layout.
//!
//! `shelf.json` and the files are read directly (serde_json and zstd), not through Shelf.

#[macro_use]
mod common_storage;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use common_storage::*;
use shelf::fs::{CrashFs, Vfs};
use shelf::{Error, Store, StoreBuilder};

variant!(pr, per_record);
variant!(prz, per_record, compress);
variant!(prs1, per_record, shard = 1);
variant!(prs2z, per_record, shard = 2, compress);
variant!(cf, collection_file);
variant!(cfz, collection_file, compress);
variant!(mem, memory);

const IDS: &[&str] = &["a", "b", "c", "d", "e", "f", "Mixed.Case", "x/y", "ünï", "con"];
const COLORS: [&str; 3] = ["red", "green", "blue"];

/// What the first run stored.
struct Seeded {
    items: BTreeMap<String, Rec>,
    logs: BTreeMap<u64, LogRec>,
    /// The id the next `Log` insert must get: the two highest ids were removed, so
    /// it is not derivable from the records.
    next_log: u64,
}

/// Fills the collections through declaration `A` and closes the store.
fn seed<A: Variant>(builder: StoreBuilder) -> Seeded {
    seed_ids::<A>(builder, IDS)
}

/// Fewer records, for the crash tests that repeat the migration hundreds of times.
const FEW_IDS: &[&str] = &["a", "b", "Mixed.Case", "x/y", "con"];

fn seed_ids<A: Variant>(builder: StoreBuilder, ids: &[&str]) -> Seeded {
    let store = builder.open().unwrap();
    let items = store.collection::<A::Item>().unwrap();
    let logs = store.collection::<A::Log>().unwrap();
    let mut seeded = Seeded { items: BTreeMap::new(), logs: BTreeMap::new(), next_log: 0 };
    for (n, id) in ids.iter().enumerate() {
        let r = rec(id, COLORS[n % 3], n as u32, &format!("note {n}"));
        items.insert(A::Item::from_rec(&r)).unwrap();
        seeded.items.insert(id.to_string(), r);
    }
    for n in 0..5 {
        let id = logs.insert(A::Log::new(&format!("event {n}"))).unwrap();
        seeded.logs.insert(id, LogRec { seq: id, msg: format!("event {n}") });
    }
    let top = *seeded.logs.keys().max().unwrap();
    for id in [top, top - 1] {
        logs.remove(&id).unwrap();
        seeded.logs.remove(&id);
    }
    seeded.next_log = top + 1;
    store.close().unwrap();
    seeded
}

/// Checks an open store holds exactly what was seeded, indices included.
fn check_store<V: Variant>(store: &Store, seeded: &Seeded, context: &str) {
    assert_eq!(items::<V>(store), seeded.items, "{context}: items");
    assert_eq!(logs::<V>(store), seeded.logs, "{context}: logs");
    check_indices::<V>(store, &seeded.items, context);
}

fn check_disk(fs: &dyn Vfs, dir: &Path, layout: Layout, seeded: &Seeded, context: &str) {
    check_disk_tolerating(fs, dir, layout, seeded, &[], context);
}

fn check_disk_tolerating(
    fs: &dyn Vfs,
    dir: &Path,
    layout: Layout,
    seeded: &Seeded,
    tolerated: &[Layout],
    context: &str,
) {
    let items = as_values(&seeded.items);
    assert_on_disk_tolerating(fs, dir, "item", layout, "id", &items, tolerated, context);
    let logs = as_values(&seeded.logs);
    assert_on_disk_tolerating(fs, dir, "log", layout, "seq", &logs, tolerated, context);
}

// ---- Every direction ------------------------------------------------------------------

/// Where a migration case runs: the real file system, or (for layouts with many
/// directories, whose creation costs a directory sync each) an in-memory one.
enum Disk {
    Real(tempfile::TempDir),
    InMemory(Arc<CrashFs>),
}

impl Disk {
    fn dir(&self) -> std::path::PathBuf {
        match self {
            Disk::Real(tmp) => tmp.path().join("data"),
            Disk::InMemory(_) => Path::new(DIR).to_path_buf(),
        }
    }
    fn builder<V: Variant>(&self) -> StoreBuilder {
        match self {
            Disk::Real(_) => builder::<V>(&self.dir()),
            Disk::InMemory(fs) => crash_builder::<V>(fs),
        }
    }
    fn fs(&self) -> Arc<dyn Vfs> {
        match self {
            Disk::Real(_) => real(),
            Disk::InMemory(fs) => Arc::new(Arc::clone(fs)),
        }
    }
}

fn migrate_case<A: Variant, B: Variant>(disk: Disk) {
    let dir = disk.dir();
    let fs = disk.fs();
    let mut seeded = seed::<A>(disk.builder::<A>());
    check_disk(fs.as_ref(), &dir, A::LAYOUT, &seeded, "before the migration");

    let store = disk.builder::<B>().open().unwrap();
    check_store::<B>(&store, &seeded, "right after the migrating open");
    // The migration is complete on disk before the open returns.
    check_disk(fs.as_ref(), &dir, B::LAYOUT, &seeded, "right after the migrating open");
    let logs = store.collection::<B::Log>().unwrap();
    let id = logs.insert(B::Log::new("after migration")).unwrap();
    assert_eq!(id, seeded.next_log, "the auto-id counter survives the migration");
    seeded.logs.insert(id, LogRec { seq: id, msg: "after migration".into() });
    let items = store.collection::<B::Item>().unwrap();
    items.update(&"c".to_string(), |i| i.set_color("red")).unwrap();
    seeded.items.get_mut("c").unwrap().color = "red".into();
    store.close().unwrap();
    drop((logs, items, store));
    check_disk(fs.as_ref(), &dir, B::LAYOUT, &seeded, "after writes in the new layout");

    // A second open with the same declaration changes nothing.
    let before = all_files(fs.as_ref(), &dir);
    let store = disk.builder::<B>().open().unwrap();
    check_store::<B>(&store, &seeded, "second open");
    assert_eq!(store.flush().unwrap().records, 0);
    store.close().unwrap();
    assert_eq!(all_files(fs.as_ref(), &dir), before);
}

fn real_disk() -> Disk {
    Disk::Real(tempfile::tempdir().unwrap())
}

fn memory_disk() -> Disk {
    Disk::InMemory(CrashFs::new())
}

macro_rules! migration_tests {
    ($($name:ident: $from:ident -> $to:ident $(, $disk:ident)?;)*) => {$(
        #[test]
        fn $name() {
            #[allow(unused_variables)]
            let disk = real_disk();
            $(let disk = $disk();)?
            migrate_case::<$from::V, $to::V>(disk);
        }
    )*};
}

migration_tests! {
    per_record_to_per_record_compressed: pr -> prz;
    per_record_to_collection_file: pr -> cf;
    per_record_to_collection_file_compressed: pr -> cfz;
    per_record_compressed_to_per_record: prz -> pr;
    per_record_compressed_to_collection_file: prz -> cf;
    per_record_compressed_to_collection_file_compressed: prz -> cfz;
    collection_file_to_per_record: cf -> pr;
    collection_file_to_per_record_compressed: cf -> prz;
    collection_file_to_collection_file_compressed: cf -> cfz;
    collection_file_compressed_to_per_record: cfz -> pr;
    collection_file_compressed_to_per_record_compressed: cfz -> prz;
    collection_file_compressed_to_collection_file: cfz -> cf;
    per_record_to_sharded: pr -> prs1;
    sharded_to_per_record: prs1 -> pr;
    // Shard width 2 means 256 directories, each created with a directory sync: these
    // run on the in-memory file system.
    sharded_to_other_shard_width_compressed: prs1 -> prs2z, memory_disk;
    sharded_compressed_to_sharded_plain: prs2z -> prs1, memory_disk;
    sharded_to_collection_file: prs1 -> cf;
    collection_file_to_sharded: cf -> prs1;
    sharded_compressed_to_collection_file_compressed: prs2z -> cfz, memory_disk;
    collection_file_compressed_to_sharded: cfz -> prs1;
    per_record_compressed_to_sharded: prz -> prs1;
}

/// A chain through every persisted layout and back, in one directory.
#[test]
fn a_chain_through_every_layout_keeps_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let fs = real();
    let seeded = seed::<pr::V>(builder::<pr::V>(&dir));
    fn step<V: Variant>(fs: &dyn Vfs, dir: &Path, seeded: &Seeded) {
        let store = builder::<V>(dir).open().unwrap();
        check_store::<V>(&store, seeded, &format!("{:?}", V::LAYOUT));
        store.close().unwrap();
        check_disk(fs, dir, V::LAYOUT, seeded, &format!("{:?}", V::LAYOUT));
    }
    step::<cfz::V>(fs.as_ref(), &dir, &seeded);
    step::<prs1::V>(fs.as_ref(), &dir, &seeded);
    step::<cf::V>(fs.as_ref(), &dir, &seeded);
    step::<prz::V>(fs.as_ref(), &dir, &seeded);
    step::<pr::V>(fs.as_ref(), &dir, &seeded);
}

// ---- To and from memory -----------------------------------------------------------------

fn snapshot(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let fs = real();
    all_files(fs.as_ref(), dir).into_iter().map(|f| (f.clone(), std::fs::read(dir.join(&f)).unwrap())).collect()
}

fn to_memory_is_refused<A: Variant>() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let seeded = seed::<A>(builder::<A>(&dir));
    let before = snapshot(&dir);
    match builder::<mem::V>(&dir).open() {
        Err(Error::Meta { message, .. }) => {
            assert!(message.contains("allow_migration_to_memory"), "the error says how to opt in: {message}");
        }
        other => panic!("{:?} -> memory without the opt-in: expected Error::Meta, got {other:?}", A::LAYOUT),
    }
    assert_eq!(snapshot(&dir), before, "a refused migration changed files");
    // The refusal released the directory, and the old declaration still works.
    let store = builder::<A>(&dir).open().unwrap();
    check_store::<A>(&store, &seeded, "after the refusal");
}

#[test]
fn migration_to_memory_is_refused_without_the_opt_in() {
    to_memory_is_refused::<pr::V>();
    to_memory_is_refused::<prs1::V>();
    to_memory_is_refused::<cf::V>();
    to_memory_is_refused::<cfz::V>();
}

fn to_memory_with_opt_in<A: Variant>() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let fs = real();
    let seeded = seed::<A>(builder::<A>(&dir));
    let store = builder::<mem::V>(&dir).allow_migration_to_memory(true).open().unwrap();
    // The records moved to memory: this run still has them.
    check_store::<mem::V>(&store, &seeded, "after the migration to memory");
    store.close().unwrap();
    drop(store);
    for collection in ["item", "log"] {
        let data: Vec<_> = collection_files(fs.as_ref(), &dir, collection)
            .into_iter()
            .filter(|(_, kind)| *kind != FileKind::Index)
            .collect();
        assert!(data.is_empty(), "{:?} -> memory left `{collection}` data files: {data:?}", A::LAYOUT);
        let meta = meta_entry(fs.as_ref(), &dir, collection).unwrap();
        assert_eq!(meta.layout, Layout::Memory);
        assert_eq!(meta.cleanup, None);
    }
    let store = builder::<mem::V>(&dir).open().unwrap();
    assert!(items::<mem::V>(&store).is_empty(), "a memory collection is empty in the next run");
    store.close().unwrap();
    drop(store);
    // And back to a persisted layout: nothing to move, nothing refused.
    let store = builder::<A>(&dir).open().unwrap();
    assert!(items::<A>(&store).is_empty());
    let items = store.collection::<A::Item>().unwrap();
    items.insert(A::Item::from_rec(&rec("z", "red", 1, "new"))).unwrap();
    store.close().unwrap();
    drop((items, store));
    let expected = BTreeMap::from([("z".to_string(), rec("z", "red", 1, "new"))]);
    assert_on_disk(fs.as_ref(), &dir, "item", A::LAYOUT, "id", &as_values(&expected), "memory -> persisted");
}

#[test]
fn migration_to_memory_with_the_opt_in_deletes_the_record_files() {
    to_memory_with_opt_in::<pr::V>();
    to_memory_with_opt_in::<prs1::V>();
    to_memory_with_opt_in::<cf::V>();
    to_memory_with_opt_in::<cfz::V>();
}

/// Index files hold keys and ids of the records (e-mail addresses, names): after the
/// opted-in deletion of a collection's files they should be gone too.
#[test]
fn migration_to_memory_with_the_opt_in_deletes_the_index_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let fs = real();
    seed::<pr::V>(builder::<pr::V>(&dir));
    let files = collection_files(fs.as_ref(), &dir, "item");
    assert!(files.iter().any(|(_, kind)| *kind == FileKind::Index), "no index files to begin with: {files:?}");
    let store = builder::<mem::V>(&dir).allow_migration_to_memory(true).open().unwrap();
    store.close().unwrap();
    let left = collection_files(fs.as_ref(), &dir, "item");
    assert!(left.is_empty(), "files of `item` left after its migration to memory: {left:?}");
}

// ---- A power loss at every step of a migration ------------------------------------------

const DIR: &str = "/data";

fn crash_builder<V: Variant>(fs: &Arc<CrashFs>) -> StoreBuilder {
    builder::<V>(Path::new(DIR)).vfs(Arc::clone(fs))
}

/// After a power loss: `shelf.json` records `A`'s or `B`'s layout, and that layout's
/// files hold every record exactly once (the other layout may hold leftovers only
/// while the first is recorded as complete).
fn check_durable_state<A: Variant, B: Variant>(fs: &Arc<CrashFs>, seeded: &Seeded, k: u64) {
    let dir = Path::new(DIR);
    for (collection, id_field, expected) in
        [("item", "id", as_values(&seeded.items)), ("log", "seq", as_values(&seeded.logs))]
    {
        let meta = meta_entry(fs, dir, collection)
            .unwrap_or_else(|| panic!("crash point {k}: `{collection}` is not in shelf.json"));
        assert!(
            meta.layout == A::LAYOUT || meta.layout == B::LAYOUT,
            "crash point {k}: `{collection}` recorded as {:?}",
            meta.layout
        );
        let found = read_layout(fs, dir, collection, meta.layout, id_field);
        assert_eq!(found, expected, "crash point {k}: `{collection}` in its recorded layout {:?}", meta.layout);
        if meta.layout == B::LAYOUT && meta.cleanup.is_none() {
            let stray = stray_files(fs, dir, collection, B::LAYOUT);
            assert!(
                stray.iter().all(|(_, kind)| *kind == FileKind::Temp),
                "crash point {k}: `{collection}` migrated and cleaned up, but old files remain: {stray:?}"
            );
        }
        if let Some(cleanup) = meta.cleanup {
            assert_eq!(meta.layout, B::LAYOUT, "crash point {k}: a cleanup mark on the old layout");
            assert_eq!(cleanup, A::LAYOUT, "crash point {k}: the cleanup mark names another layout");
        }
    }
}

/// How strictly a reopen with the old declaration is checked.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Leftovers {
    /// Files of the abandoned new layout may remain (they do today; see
    /// `..._leaves_no_files_of_the_abandoned_layout`).
    Tolerated,
    /// Only the declared layout's files may remain.
    Forbidden,
}

/// Migrates `A` -> `B` on a file system that dies after `k` mutating operations, for
/// every `k` until the migrating open (and its close) completes. After each power
/// loss the durable state is checked, then the store is reopened with the new
/// declaration, or with the old one when `old_on_reopen(k)`, and must hold every
/// record, with the indices and the counter, in the declared layout.
fn crash_every_step<A: Variant, B: Variant>(old_on_reopen: fn(u64) -> bool, leftovers: Leftovers) {
    let started = Instant::now();
    let mut k = 0;
    loop {
        let fs = CrashFs::new();
        let mut seeded = seed_ids::<A>(crash_builder::<A>(&fs), FEW_IDS);
        fs.crash(); // what the seeding made durable, and nothing else
        let base = fs.ops();
        fs.crash_after(k);
        let completed = match crash_builder::<B>(&fs).open() {
            Ok(store) => {
                check_store::<B>(&store, &seeded, &format!("crash point {k}: the migrating open"));
                drop(store);
                !fs.is_dead()
            }
            Err(_) => {
                assert!(fs.is_dead(), "crash point {k}: the open failed though the file system did not");
                false
            }
        };
        let used = fs.ops() - base;
        fs.crash();
        check_durable_state::<A, B>(&fs, &seeded, k);

        let old = old_on_reopen(k);
        let (store, layout) =
            if old { (crash_builder::<A>(&fs).open(), A::LAYOUT) } else { (crash_builder::<B>(&fs).open(), B::LAYOUT) };
        let store = store.unwrap_or_else(|e| panic!("crash point {k}: reopen (old declaration: {old}) failed: {e}"));
        let context = format!("crash point {k}, reopened with the {} declaration", if old { "old" } else { "new" });
        if old {
            check_store::<A>(&store, &seeded, &context);
            let id = store.collection::<A::Log>().unwrap().insert(A::Log::new("after")).unwrap();
            assert_eq!(id, seeded.next_log, "{context}: the auto-id counter");
        } else {
            check_store::<B>(&store, &seeded, &context);
            let id = store.collection::<B::Log>().unwrap().insert(B::Log::new("after")).unwrap();
            assert_eq!(id, seeded.next_log, "{context}: the auto-id counter");
        }
        seeded.logs.insert(seeded.next_log, LogRec { seq: seeded.next_log, msg: "after".into() });
        drop(store);
        let tolerated = if old && leftovers == Leftovers::Tolerated { vec![B::LAYOUT] } else { Vec::new() };
        check_disk_tolerating(&fs, Path::new(DIR), layout, &seeded, &tolerated, &context);

        if completed {
            eprintln!(
                "{k} crash points of {:?} -> {:?} in {:?} ({used} operations)",
                A::LAYOUT,
                B::LAYOUT,
                started.elapsed()
            );
            assert!(k > 10, "a migration should have many crash points, got {k}");
            return;
        }
        k += 1;
        assert!(k < 20_000, "the migrating open never completed");
    }
}

const NEW: fn(u64) -> bool = |_| false;
const SOMETIMES_OLD: fn(u64) -> bool = |k| k % 3 == 1;

macro_rules! crash_tests {
    ($($(#[$attr:meta])* $name:ident: $from:ident -> $to:ident, $reopen:expr, $leftovers:expr;)*) => {$(
        #[test]
        $(#[$attr])*
        fn $name() {
            crash_every_step::<$from::V, $to::V>($reopen, $leftovers);
        }
    )*};
}

use Leftovers::{Forbidden, Tolerated};

crash_tests! {
    crash_per_record_compressed_to_collection_file_compressed: prz -> cfz, NEW, Forbidden;
    crash_collection_file_compressed_to_per_record_compressed: cfz -> prz, NEW, Forbidden;
    crash_per_record_to_per_record_compressed: pr -> prz, NEW, Forbidden;
    crash_collection_file_to_collection_file_compressed: cf -> cfz, NEW, Forbidden;
    crash_collection_file_compressed_to_collection_file: cfz -> cf, NEW, Forbidden;
    crash_per_record_to_sharded: pr -> prs1, NEW, Forbidden;
    crash_sharded_to_collection_file_compressed: prs1 -> cfz, NEW, Forbidden;
    crash_per_record_to_collection_file_reopen_old_sometimes: pr -> cf, SOMETIMES_OLD, Tolerated;
    crash_collection_file_to_per_record_reopen_old_sometimes: cf -> pr, SOMETIMES_OLD, Tolerated;
    crash_compressed_to_plain_reopen_old_sometimes: prz -> pr, SOMETIMES_OLD, Tolerated;
    crash_sharded_to_per_record_reopen_old_sometimes: prs1 -> pr, SOMETIMES_OLD, Tolerated;
    crash_collection_file_to_per_record_reopen_old_leaves_no_files_of_the_abandoned_layout: cf -> pr, SOMETIMES_OLD, Forbidden;
}

/// An interrupted migration to `per_record` leaves durable record files of the new
/// layout that `shelf.json` does not record. If the next run declares the old layout
/// again and removes a record, a later migration to `per_record` must not bring the
/// removed record back from that leftover file.
#[test]
fn leftovers_of_an_interrupted_migration_do_not_resurrect_removed_records() {
    // Find a crash point after the new files are durable but before shelf.json names them.
    let mut k = 0;
    let (fs, seeded) = loop {
        let fs = CrashFs::new();
        let seeded = seed::<cf::V>(crash_builder::<cf::V>(&fs));
        fs.crash();
        fs.crash_after(k);
        let _ = crash_builder::<pr::V>(&fs).open();
        fs.crash();
        let meta = meta_entry(&fs, Path::new(DIR), "item").unwrap();
        let leftovers = read_layout(&fs, Path::new(DIR), "item", pr::V::LAYOUT, "id");
        if meta.layout == cf::V::LAYOUT && leftovers.len() == seeded.items.len() {
            break (fs, seeded);
        }
        assert!(meta.layout == cf::V::LAYOUT, "no crash point left the new files unrecorded");
        k += 1;
    };
    // Back to the old declaration: remove a record, durably.
    let store = crash_builder::<cf::V>(&fs).open().unwrap();
    assert!(store.collection::<cf::Item>().unwrap().remove(&"b".to_string()).unwrap().is_some());
    store.close().unwrap();
    drop(store);
    // Now the migration to per_record, for real.
    let store = crash_builder::<pr::V>(&fs).open().unwrap();
    let mut expected = seeded.items.clone();
    expected.remove("b");
    assert_eq!(items::<pr::V>(&store), expected, "the migration brought back the removed record");
    drop(store);
    let store = crash_builder::<pr::V>(&fs).open().unwrap();
    assert_eq!(
        items::<pr::V>(&store),
        expected,
        "the removed record came back after the migration, from a leftover file"
    );
}
