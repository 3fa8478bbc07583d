//! SIGKILL during flushes of every persisted storage strategy (issue 6, DESIGN §5):
//! a kill leaves each file with its old or its new content, and loses nothing a
//! completed flush covered.
//!
//! The child is this test binary, re-executed with `SHELF_SKILL_DIR` set. It opens a
//! store with three collections without `wal`: `doc` (`collection_file, compress`),
//! `line` (`collection_file`) and `note` (`per_record`), with a 1-5 ms flush
//! interval, so that the background flusher is busy most of the time. It loops:
//! upserts (printing `w <collection> <id> <version>` before) and removes (printing
//! `rm <collection> <id>` before), and every few writes an explicit `store.flush()`,
//! printing `ack` when it returns `Ok`. Versions grow across the whole test, and
//! each record carries `check = "<id>@<version>"` and padding derived from both, so
//! a torn or mixed record is visible.
//!
//! After each kill the parent reads the files directly (zstd and serde_json):
//! every file decodes and parses, each record is consistent and holds a version that
//! was written, and every record the last acknowledged flush covered is there in that
//! version or a newer one (or was removed after the flush). Then it reopens the store,
//! which must load exactly what the files hold, and closes it cleanly; the next cycle
//! starts from there.
//!
//! Every [`STALL_EVERY`]th cycle the kill point is chosen rather than random: the
//! child's file system stalls the first rename of a temp file after a random number
//! of writes (the temp file is written and synced, the rename not done), the child
//! prints `stall`, and the parent kills it there. So mid-flush kills are reached in
//! any run of at least `STALL_EVERY` cycles, and the test asserts that some were.
//!
//! Knobs (environment variables):
//! - `SHELF_SKILL_CYCLES` (default 50): the number of cycles;
//! - `SHELF_SKILL_SEED`: the seed of the kill delays and the workloads.

mod common_wal;

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use common_wal::{env_u64, tell, ChildProc, Rng};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shelf::fs::{DirEntry, RealFs, Vfs, VfsAppend, VfsFile, VfsLock};
use shelf::{Entity, Store, StoreBuilder};

const TEST: &str = "flushes_survive_sigkill_in_every_storage_strategy";
const CHILD_DIR: &str = "SHELF_SKILL_DIR";
const CHILD_SEED: &str = "SHELF_SKILL_CHILD_SEED";
const CHILD_BASE: &str = "SHELF_SKILL_BASE";
/// Set in the child of a staged cycle: the number of writes after which its file
/// system stalls the next rename of a temp file.
const CHILD_STALL: &str = "SHELF_SKILL_STALL_AFTER";
/// Every this many cycles, the kill lands at a staged point inside a flush.
const STALL_EVERY: u64 = 5;
const KEYS: u64 = 12;

macro_rules! record_entity {
    ($name:ident, $collection:literal, $($storage:tt)*) => {
        #[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
        #[entity(collection = $collection)]
        #[storage($($storage)*)]
        struct $name {
            #[id]
            id: String,
            version: u64,
            check: String,
            pad: String,
        }

        impl $name {
            fn new(id: &str, version: u64) -> Self {
                $name { id: id.to_owned(), version, check: check(id, version), pad: pad(id, version) }
            }
        }
    };
}

record_entity!(Doc, "doc", collection_file, compress);
record_entity!(Line, "line", collection_file);
record_entity!(Note, "note", per_record);

const COLLECTIONS: [&str; 3] = ["doc", "line", "note"];

fn check(id: &str, version: u64) -> String {
    format!("{id}@{version}")
}

/// Padding that makes the files big enough for kills to land inside writes.
fn pad(id: &str, version: u64) -> String {
    format!("{id}-{version}-").repeat(12)
}

fn builder(dir: &Path) -> StoreBuilder {
    Store::builder(dir).register::<Doc>().register::<Line>().register::<Note>()
}

/// `(collection, id) -> version` of everything a store or a directory holds.
type State = BTreeMap<(String, String), u64>;

fn state_of(store: &Store) -> State {
    let mut state = State::new();
    for d in store.collection::<Doc>().unwrap().iter() {
        state.insert(("doc".into(), d.id.clone()), d.version);
    }
    for l in store.collection::<Line>().unwrap().iter() {
        state.insert(("line".into(), l.id.clone()), l.version);
    }
    for n in store.collection::<Note>().unwrap().iter() {
        state.insert(("note".into(), n.id.clone()), n.version);
    }
    state
}

// ---- The child ----------------------------------------------------------------------------

/// The real file system; once armed, the first rename of a Shelf temp file prints
/// `stall` and never returns (the parent kills the process there): a flush is then
/// in progress, with a complete temp file not yet renamed over its target.
#[derive(Debug, Clone, Default)]
struct StallFs {
    armed: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Vfs for StallFs {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        RealFs.read(path)
    }
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn VfsFile>> {
        RealFs.create_new(path)
    }
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn VfsAppend>> {
        RealFs.open_append(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let temp = from.file_name().is_some_and(|n| n.to_string_lossy().starts_with(".shelf-tmp-"));
        if temp && self.armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
            tell("stall");
            loop {
                std::thread::park();
            }
        }
        RealFs.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        RealFs.remove_file(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        RealFs.sync_dir(path)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        RealFs.create_dir_all(path)
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        RealFs.read_dir(path)
    }
    fn try_lock(&self, path: &Path) -> io::Result<Box<dyn VfsLock>> {
        RealFs.try_lock(path)
    }
}

fn child_main(dir: &Path, seed: u64, base: u64, stall_after: Option<u64>) {
    let mut rng = Rng::new(seed);
    let interval = Duration::from_millis(rng.range(1, 6));
    let fs = StallFs::default();
    let store = builder(dir).vfs(fs.clone()).flush_interval(interval).open().unwrap();
    let (docs, lines, notes) =
        (store.collection::<Doc>().unwrap(), store.collection::<Line>().unwrap(), store.collection::<Note>().unwrap());
    tell("start");
    let mut version = base;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut ops = 0;
    while Instant::now() < deadline {
        if stall_after == Some(ops) {
            fs.armed.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        ops += 1;
        let collection = COLLECTIONS[rng.below(3) as usize];
        let id = format!("k{:02}", rng.below(KEYS));
        let present = match collection {
            "doc" => docs.contains(&id),
            "line" => lines.contains(&id),
            _ => notes.contains(&id),
        };
        if present && rng.chance(20) {
            tell(&format!("rm {collection} {id}"));
            match collection {
                "doc" => docs.remove(&id).map(drop),
                "line" => lines.remove(&id).map(drop),
                _ => notes.remove(&id).map(drop),
            }
            .unwrap();
        } else {
            version += 1;
            tell(&format!("w {collection} {id} {version}"));
            match collection {
                "doc" => docs.upsert(Doc::new(&id, version)).map(drop),
                "line" => lines.upsert(Line::new(&id, version)).map(drop),
                _ => notes.upsert(Note::new(&id, version)).map(drop),
            }
            .unwrap();
        }
        if rng.chance(15) {
            store.flush().unwrap();
            tell("ack");
        }
    }
}

// ---- The parent ---------------------------------------------------------------------------

#[derive(Debug, Default)]
struct Stats {
    cycles: u64,
    writes: usize,
    acks: usize,
    /// Kills that left temp files: a flush was in progress.
    mid_flush: usize,
    /// Of those, kills at the staged point (a temp file written, not renamed).
    staged: usize,
    /// Cycles whose last acknowledged flush was followed by more writes that then
    /// turned out durable (the background flusher got them).
    newer_than_ack: usize,
}

/// One child's printed lines, applied to the durable state the cycle started from.
struct Run {
    /// The state at the last `ack` (or the starting state without one).
    floor: State,
    /// The highest version written per key before the last `ack` (or the start).
    written_before_floor: BTreeMap<(String, String), u64>,
    /// Keys removed after the last `ack`.
    removed_after_floor: BTreeSet<(String, String)>,
}

fn parse_run(
    cycle: u64,
    start: &State,
    lines: &[String],
    written: &mut BTreeMap<(String, String), BTreeSet<u64>>,
    stats: &mut Stats,
) -> Run {
    let mut state = start.clone();
    let mut max_written: BTreeMap<(String, String), u64> = BTreeMap::new();
    for (key, versions) in written.iter() {
        max_written.insert(key.clone(), *versions.iter().max().unwrap());
    }
    let mut run =
        Run { floor: state.clone(), written_before_floor: max_written.clone(), removed_after_floor: BTreeSet::new() };
    for line in lines {
        let parts: Vec<&str> = line.split(' ').collect();
        match parts[..] {
            ["start"] | ["stall"] => {}
            ["w", c, id, v] => {
                let key = (c.to_owned(), id.to_owned());
                let v: u64 = v.parse().unwrap();
                written.entry(key.clone()).or_default().insert(v);
                max_written.insert(key.clone(), v);
                state.insert(key, v);
                stats.writes += 1;
            }
            ["rm", c, id] => {
                let key = (c.to_owned(), id.to_owned());
                state.remove(&key);
                run.removed_after_floor.insert(key);
            }
            ["ack"] => {
                run.floor = state.clone();
                run.written_before_floor = max_written.clone();
                run.removed_after_floor.clear();
                stats.acks += 1;
            }
            _ => panic!("cycle {cycle}: unexpected line from the child: {line:?}"),
        }
    }
    run
}

/// Reads the three collections straight from the files, checking each file parses
/// and each record is consistent.
fn read_files(cycle: u64, dir: &Path) -> State {
    fn record(cycle: u64, collection: &str, where_: &str, value: &Value, state: &mut State) {
        let id = value["id"].as_str().unwrap_or_else(|| panic!("cycle {cycle}: {where_}: no id"));
        let version = value["version"].as_u64().unwrap();
        assert_eq!(value["check"], check(id, version), "cycle {cycle}: {where_}: a mixed record");
        assert_eq!(value["pad"], pad(id, version), "cycle {cycle}: {where_}: a mixed record");
        let old = state.insert((collection.to_owned(), id.to_owned()), version);
        assert!(old.is_none(), "cycle {cycle}: {where_}: `{collection}/{id}` is there twice");
    }
    let mut state = State::new();
    for (collection, file, compressed) in [("doc", "doc.jsonl.zst", true), ("line", "line.jsonl", false)] {
        let (other, _) = if compressed { ("doc.jsonl", ()) } else { ("line.jsonl.zst", ()) };
        assert!(!dir.join(other).exists(), "cycle {cycle}: {other} exists next to {file}");
        let path = dir.join(file);
        let Ok(bytes) = std::fs::read(&path) else { continue };
        let bytes = if compressed {
            zstd::decode_all(bytes.as_slice())
                .unwrap_or_else(|e| panic!("cycle {cycle}: {file} is not a whole zstd stream: {e}"))
        } else {
            bytes
        };
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.is_empty() || text.ends_with('\n'), "cycle {cycle}: {file} ends in a partial line");
        for (n, line) in text.lines().enumerate() {
            let value: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("cycle {cycle}: {file}:{} does not parse ({e}): {line}", n + 1));
            record(cycle, collection, &format!("{file}:{}", n + 1), &value, &mut state);
        }
    }
    if let Ok(entries) = std::fs::read_dir(dir.join("note")) {
        for entry in entries {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            if entry.file_type().unwrap().is_dir() || name.starts_with(".shelf-tmp-") {
                continue;
            }
            let stem = name.strip_suffix(".json").unwrap_or_else(|| panic!("cycle {cycle}: unexpected note/{name}"));
            let bytes = std::fs::read(entry.path()).unwrap();
            let value: Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                panic!("cycle {cycle}: note/{name} does not parse ({e}): {:?}", String::from_utf8_lossy(&bytes))
            });
            assert_eq!(value["id"], stem, "cycle {cycle}: note/{name} holds another record");
            record(cycle, "note", &format!("note/{name}"), &value, &mut state);
        }
    }
    state
}

fn temp_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut n = 0;
    for entry in entries {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            n += temp_files(&entry.path());
        } else if entry.file_name().to_string_lossy().starts_with(".shelf-tmp-") {
            n += 1;
        }
    }
    n
}

/// Checks the files a kill left against what the child wrote and acknowledged.
fn check_against_run(
    cycle: u64,
    found: &State,
    run: &Run,
    written: &BTreeMap<(String, String), BTreeSet<u64>>,
    stats: &mut Stats,
) {
    for (key, &version) in found {
        assert!(
            written.get(key).is_some_and(|vs| vs.contains(&version)),
            "cycle {cycle}: {key:?} holds version {version}, which was never written"
        );
        match run.floor.get(key) {
            Some(&floor) => {
                assert!(
                    version >= floor,
                    "cycle {cycle}: {key:?} went back to version {version} from {floor} of the last acknowledged flush"
                );
                if version > floor {
                    stats.newer_than_ack += 1;
                }
            }
            None => {
                let before = run.written_before_floor.get(key).copied().unwrap_or(0);
                assert!(
                    version > before,
                    "cycle {cycle}: {key:?} came back with version {version}, but the last acknowledged flush had it removed"
                );
            }
        }
    }
    for (key, floor) in &run.floor {
        if !found.contains_key(key) {
            assert!(
                run.removed_after_floor.contains(key),
                "cycle {cycle}: {key:?} (version {floor}) was covered by an acknowledged flush and is gone"
            );
        }
    }
}

#[test]
fn flushes_survive_sigkill_in_every_storage_strategy() {
    if let Ok(dir) = std::env::var(CHILD_DIR) {
        let stall_after = std::env::var(CHILD_STALL).ok().map(|_| env_u64(CHILD_STALL, 0));
        child_main(Path::new(&dir), env_u64(CHILD_SEED, 0), env_u64(CHILD_BASE, 0), stall_after);
        return;
    }
    let cycles = env_u64("SHELF_SKILL_CYCLES", 50);
    let seed = env_u64("SHELF_SKILL_SEED", 0x5EED_0006);
    let began = Instant::now();
    let mut rng = Rng::new(seed);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut durable = State::new();
    let mut written: BTreeMap<(String, String), BTreeSet<u64>> = BTreeMap::new();
    let mut stats = Stats::default();

    for cycle in 0..cycles {
        let staged = cycle % STALL_EVERY == STALL_EVERY - 1;
        let mut env = vec![
            (CHILD_DIR, dir.display().to_string()),
            (CHILD_SEED, seed.wrapping_mul(31).wrapping_add(cycle).to_string()),
            (CHILD_BASE, ((cycle + 1) * 1_000_000).to_string()),
        ];
        if staged {
            env.push((CHILD_STALL, rng.range(0, 30).to_string()));
        }
        let child = ChildProc::spawn(TEST, &env);
        let mut lines = Vec::new();
        let first = child.next_line(Duration::from_secs(20));
        assert_eq!(first.as_deref(), Some("start"), "cycle {cycle}: the child did not open the store");
        if staged {
            // Kill at the staged point: inside a flush, a temp file not yet renamed.
            loop {
                let line = child.next_line(Duration::from_secs(20)).unwrap_or_else(|| {
                    panic!("cycle {cycle}: the child never reached the rename of a temp file within 20 s")
                });
                let stalled = line == "stall";
                lines.push(line);
                if stalled {
                    break;
                }
            }
        } else {
            let until = Instant::now() + Duration::from_millis(rng.range(1, 80));
            while let Some(left) = until.checked_duration_since(Instant::now()) {
                if let Some(line) = child.next_line(left) {
                    lines.push(line);
                }
            }
        }
        lines.extend(child.kill());

        let run = parse_run(cycle, &durable, &lines, &mut written, &mut stats);
        if temp_files(&dir) > 0 {
            stats.mid_flush += 1;
            stats.staged += usize::from(staged);
        } else {
            assert!(!staged, "cycle {cycle}: killed while renaming a temp file, yet no temp file is left");
        }
        let found = read_files(cycle, &dir);
        check_against_run(cycle, &found, &run, &written, &mut stats);

        // Shelf loads exactly what the files hold, and sweeps the temp files.
        let store = builder(&dir).open().unwrap_or_else(|e| panic!("cycle {cycle}: open after the kill failed: {e}"));
        assert_eq!(state_of(&store), found, "cycle {cycle}: the store does not hold what the files hold");
        assert!(store.recovery_report().quarantined.is_empty(), "cycle {cycle}: {:?}", store.recovery_report());
        assert_eq!(temp_files(&dir), 0, "cycle {cycle}: temp files left after open");
        store.close().unwrap();
        durable = found;
        stats.cycles += 1;
    }
    eprintln!("storage kill test: {cycles} cycles in {:.1?}: {stats:?}", began.elapsed());
    assert!(stats.acks > 0, "no flush was ever acknowledged: {stats:?}");
    if cycles >= STALL_EVERY {
        assert!(stats.mid_flush > 0, "no kill landed mid-flush in {cycles} cycles: {stats:?}");
    }
}
