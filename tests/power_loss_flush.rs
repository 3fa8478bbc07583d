//! Simulated power loss through the file-system seam, for collections without a WAL
//! (DESIGN §5): a crash loses at most the writes since the last completed flush, and
//! never leaves a torn or invented record.
//!
//! A scripted workload runs on a [`CrashFs`] that dies after `k` mutating operations,
//! for every `k` until the workload completes. Each run then loses power (everything
//! not synced is dropped), reopens the store and checks the contract.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use shelf::fs::{CrashFs, Vfs};
use shelf::Store;

#[derive(shelf::Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Counter {
    #[id]
    id: String,
    counter: u64,
    note: String,
}

const DIR: &str = "/data";

/// The background flusher never runs: flushes are explicit.
const NEVER: Duration = Duration::from_secs(3600);

fn open(fs: &Arc<CrashFs>) -> shelf::Result<Store> {
    Store::builder(DIR).register::<Counter>().vfs(Arc::clone(fs)).flush_interval(NEVER).open()
}

/// One step of the workload.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// Insert when absent, update when present.
    Put(&'static str),
    Remove(&'static str),
    /// `Put` of ids `m00`, `m01`, ... up to this many: a flush of 64 files or more
    /// is made durable by one file-system sync where the file system offers it
    /// (`Vfs::barrier`; `CrashFs` does), not by one sync per file.
    PutMany(u8),
    /// `Remove` of the first this many of those ids.
    RemoveMany(u8),
}

use Step::{Put, PutMany, Remove, RemoveMany};

/// Rounds of steps; each round ends with a flush. Ids are updated, removed,
/// re-inserted after a removal, and updated several times within one round.
const SCRIPT: &[&[Step]] = &[
    &[Put("a"), Put("b"), Put("c"), Put("d")],
    &[Put("a"), Put("b"), Remove("c"), Put("e")],
    &[Put("a"), Put("a"), Remove("b"), Put("c"), Put("d")],
    &[Remove("a"), Put("e"), Put("f"), Put("g"), Put("h")],
    &[Put("c"), Put("f"), Put("a"), Remove("g"), Remove("h"), Put("b")],
    &[Remove("d"), Remove("e"), Put("f")],
    &[PutMany(70), Put("a")],
    &[PutMany(70), RemoveMany(5), Remove("a")],
];

/// The ids of `PutMany` and `RemoveMany`: `m00`, `m01`, ...
static MANY: std::sync::LazyLock<Vec<&'static str>> =
    std::sync::LazyLock::new(|| (0..100).map(|i| &*Box::leak(format!("m{i:02}").into_boxed_str())).collect());

/// Everything the workload did, as the test saw it.
#[derive(Default)]
struct Model {
    /// A global sequence number; every write and removal takes the next one.
    seq: u64,
    /// Every version ever written, per id, with its sequence number.
    versions: HashMap<String, Vec<(u64, Counter)>>,
    /// The sequence numbers of removals, per id.
    removals: HashMap<String, Vec<u64>>,
    /// The state the store holds in memory: id -> (sequence number, value).
    current: BTreeMap<String, (u64, Counter)>,
    /// The state at the end of the last flush that returned `Ok`, and the sequence
    /// number at that time. Initially nothing is promised.
    flushed: (u64, BTreeMap<String, (u64, Counter)>),
}

impl Model {
    fn next(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn written(&mut self, value: Counter) {
        let seq = value.counter;
        self.versions.entry(value.id.clone()).or_default().push((seq, value.clone()));
        self.current.insert(value.id.clone(), (seq, value));
    }

    fn removed(&mut self, id: &str, seq: u64) {
        self.removals.entry(id.to_owned()).or_default().push(seq);
        self.current.remove(id);
    }

    fn flush_completed(&mut self) {
        self.flushed = (self.seq, self.current.clone());
    }

    /// Checks what a reopened store holds against DESIGN §5. `k` names the crash point.
    fn check(&self, k: u64, found: &BTreeMap<String, Counter>) {
        let (flush_seq, flushed) = &self.flushed;
        for (id, value) in found {
            let Some(&(seq, _)) = self.versions.get(id).and_then(|vs| vs.iter().find(|(_, v)| v == value)) else {
                panic!("crash point {k}: `{id}` holds {value:?}, which was never written");
            };
            match flushed.get(id) {
                Some(&(flushed_seq, _)) => assert!(
                    seq >= flushed_seq,
                    "crash point {k}: `{id}` went back to version {seq}, older than version {flushed_seq} of the last completed flush"
                ),
                None => assert!(
                    seq > *flush_seq,
                    "crash point {k}: `{id}` came back with version {seq}, but the last completed flush (at {flush_seq}) had it absent"
                ),
            }
        }
        for (id, (seq, _)) in flushed {
            if !found.contains_key(id) {
                let removed_later = self.removals.get(id).is_some_and(|r| r.iter().any(|&r| r > *flush_seq));
                assert!(
                    removed_later,
                    "crash point {k}: `{id}` (version {seq}) was made durable by a completed flush and is missing"
                );
            }
        }
    }
}

/// Runs the workload on `fs` until it ends or the file system dies. Returns whether
/// it ran to the end without the file system refusing anything.
fn run_workload(fs: &Arc<CrashFs>, model: &mut Model) -> bool {
    let Ok(store) = open(fs) else { return false };
    let counters = store.collection::<Counter>().unwrap();
    for round in SCRIPT {
        let steps = round.iter().flat_map(|step| match *step {
            PutMany(n) => (0..n).map(|i| Put(MANY[usize::from(i)])).collect(),
            RemoveMany(n) => (0..n).map(|i| Remove(MANY[usize::from(i)])).collect(),
            one => vec![one],
        });
        for step in steps {
            match step {
                PutMany(_) | RemoveMany(_) => unreachable!("expanded above"),
                Put(id) => {
                    let seq = model.next();
                    let note = format!("{id} v{seq} {}", "x".repeat(seq as usize % 7));
                    let value = Counter { id: id.to_owned(), counter: seq, note: note.clone() };
                    if counters.contains(&id.to_owned()) {
                        let new = counters
                            .update(&id.to_owned(), |c| {
                                c.counter = seq;
                                c.note = note.clone();
                            })
                            .unwrap();
                        assert_eq!(*new, value);
                    } else {
                        counters.insert(value.clone()).unwrap();
                    }
                    model.written(value);
                }
                Remove(id) => {
                    let seq = model.next();
                    assert!(counters.remove(&id.to_owned()).unwrap().is_some(), "the script removes present ids");
                    model.removed(id, seq);
                }
            }
        }
        match store.flush() {
            Ok(_) => model.flush_completed(),
            // The machine died. Dropping the store tries one more flush, which fails
            // too (or, if it succeeded, only makes newer versions durable).
            Err(_) => return false,
        }
    }
    drop(counters);
    drop(store);
    !fs.is_dead()
}

fn contents(store: &Store) -> BTreeMap<String, Counter> {
    store.collection::<Counter>().unwrap().iter().map(|c| (c.id.clone(), (*c).clone())).collect()
}

/// After a crash: reopen, check the contract, check that the store works, and that
/// what it then flushes survives another power loss.
fn reopen_and_check(fs: &Arc<CrashFs>, model: &Model, k: u64) {
    fs.crash();
    let store = open(fs).unwrap_or_else(|e| panic!("crash point {k}: reopen failed: {e}"));
    let found = contents(&store);
    model.check(k, &found);
    let leftovers: Vec<String> = fs
        .read_dir(&Path::new(DIR).join("counter"))
        .unwrap_or_else(|e| panic!("crash point {k}: collection directory missing after open: {e}"))
        .into_iter()
        .map(|e| e.name)
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "crash point {k}: temp files left after open: {leftovers:?}");

    // The store keeps working: a new record, an update, a flush.
    let counters = store.collection::<Counter>().unwrap();
    let fresh = Counter { id: "after-crash".into(), counter: u64::MAX, note: "new".into() };
    counters.insert(fresh.clone()).unwrap();
    let mut expected = found.clone();
    expected.insert(fresh.id.clone(), fresh);
    if let Some(id) = found.keys().next() {
        let new = counters.update(id, |c| c.note.push_str(" touched")).unwrap();
        expected.insert(id.clone(), (*new).clone());
    }
    store.flush().unwrap_or_else(|e| panic!("crash point {k}: flush after reopen failed: {e}"));
    drop(counters);
    drop(store);

    // What that flush made durable survives a power loss right after it.
    fs.crash();
    let store = open(fs).unwrap_or_else(|e| panic!("crash point {k}: second reopen failed: {e}"));
    assert_eq!(contents(&store), expected, "crash point {k}: the flush after reopen did not survive a crash");
}

/// Crashes at every mutating operation of the workload. `prepare` sets up the file
/// system before the workload (its operations are not crash points).
fn crash_at_every_point(prepare: impl Fn(&Arc<CrashFs>)) {
    let started = Instant::now();
    let mut k = 0;
    let mut sync_points = 0;
    loop {
        let fs = CrashFs::new();
        prepare(&fs);
        fs.crash_after(k);
        let mut model = Model::default();
        let completed = run_workload(&fs, &mut model);
        if completed {
            sync_points = fs.sync_points();
            assert!(model.flushed.1 == model.current, "a completed workload flushed everything");
        }
        reopen_and_check(&fs, &model, k);
        if completed {
            break;
        }
        k += 1;
        assert!(k < 100_000, "the workload never completed");
    }
    eprintln!("{k} crash points ({sync_points} sync points) checked in {:?}", started.elapsed());
    assert!(k > 50, "the workload should have many crash points, got {k}");
}

/// The data directory exists and is durable before the store first opens it.
#[test]
fn power_loss_at_every_operation_of_flushes_loses_nothing_flushed() {
    crash_at_every_point(|fs| {
        fs.create_dir_all(Path::new(DIR)).unwrap();
        fs.sync_dir(Path::new("/")).unwrap();
    });
}

/// The store creates the data directory itself.
#[test]
fn power_loss_at_every_operation_from_a_missing_data_directory() {
    crash_at_every_point(|_| {});
}

/// A record file that cannot be parsed is moved aside on open; after a power loss it
/// must still be somewhere: in the collection or in the quarantine, never gone.
#[test]
fn a_quarantined_file_survives_power_loss() {
    let fs = CrashFs::new();
    let collection_dir = Path::new(DIR).join("counter");
    fs.create_dir_all(&collection_dir).unwrap();
    fs.sync_dir(Path::new("/")).unwrap();
    fs.sync_dir(Path::new(DIR)).unwrap();
    let bad = collection_dir.join("bad.json");
    let mut file = fs.create_new(&bad).unwrap();
    file.write_all(b"{not json").unwrap();
    file.sync_data().unwrap();
    drop(file);
    fs.sync_dir(&collection_dir).unwrap();

    let store = Store::builder(DIR)
        .register::<Counter>()
        .vfs(Arc::clone(&fs))
        .flush_interval(NEVER)
        .quarantine_corrupt(true)
        .open()
        .unwrap();
    let moved = store.recovery_report().quarantined.clone();
    assert_eq!(moved.len(), 1, "{moved:?}");
    drop(store);

    fs.crash();
    let in_place = fs.read(&bad).ok();
    let aside = fs.read(&moved[0].to).ok();
    assert!(
        in_place.is_some() || aside.is_some(),
        "after power loss the unreadable file is neither at {} nor at {}",
        bad.display(),
        moved[0].to.display()
    );
    assert_eq!(in_place.or(aside).unwrap(), b"{not json");
}
