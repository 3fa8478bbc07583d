//! The kill test (issue 5): a child process writes and acknowledges, and is
//! SIGKILLed at a random moment; the parent reopens and checks the contract of
//! DESIGN §5.
//!
//! The child is this test binary, re-executed with `SHELF_KILL_CHILD_DIR` set. It
//! opens the store with a 5 ms flush interval (so kills land mid-flush and
//! mid-checkpoint often) and loops: transfer transactions between accounts (two
//! account updates and a receipt in a collection without `wal`, one WAL record),
//! single inserts/updates/removes of `wal` entries, and single upserts of notes
//! (no `wal`). Before each operation it prints `do <op>`, after it returns `Ok` it
//! prints `ack`; after open it prints `start <state>`, the logged state it
//! recovered.
//!
//! The parent keeps the set of states the WAL-protected collections may be in
//! (one, or two when the last operation was in flight), and checks:
//! - the state the child recovered (`start`) and the state after the parent's own
//!   reopen are in that set: every acknowledged write and transaction is there,
//!   exactly, and no transaction is partial (the sum of balances is also checked
//!   on its own);
//! - every note file parses, is consistent, and holds a version that was written,
//!   not older than what the last clean close made durable;
//! - the store takes writes after reopen.
//!
//! All cycles share one directory, so state and leftovers accumulate. In about a
//! quarter of the cycles the parent does not reopen: the next child recovers the
//! crashed directory itself, and is sometimes killed during that recovery.
//!
//! Knobs (environment variables):
//! - `SHELF_KILL_CYCLES` (default 200): the number of cycles. The checks that kills
//!   landed mid-flush, mid-checkpoint and during open run only from 100 cycles on
//!   (those kill points are random, and fewer cycles may miss one);
//! - `SHELF_KILL_SEED`: the seed of delays and workloads.

mod common_wal;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common_wal::*;

const TEST: &str = "acknowledged_writes_survive_sigkill";
const CHILD_DIR: &str = "SHELF_KILL_CHILD_DIR";
const CHILD_SEED: &str = "SHELF_KILL_CHILD_SEED";
/// The child's flush interval: short, so that it is flushing most of the time.
const FLUSH_MS: u64 = 5;
const ENTRY_KEYS: u64 = 64;
const NOTE_KEYS: u64 = 8;

fn child_main(dir: &Path, seed: u64) {
    let store = builder(dir).flush_interval(Duration::from_millis(FLUSH_MS)).open().unwrap();
    let start = Logged::of(&store);
    tell(&format!("start {}", serde_json::to_string(&start).unwrap()));
    let entries = store.collection::<Entry>().unwrap();
    let notes = store.collection::<Note>().unwrap();
    let mut rng = Rng::new(seed);
    let mut next_tx = start.receipts.values().map(|r| r.tx + 1).max().unwrap_or(1);
    // A guard against an orphan: the parent kills the child long before this.
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let op = match rng.below(100) {
            0..45 => {
                let from = rng.below(ACCOUNTS as u64);
                let to = (from + 1 + rng.below(ACCOUNTS as u64 - 1)) % ACCOUNTS as u64;
                next_tx += 1;
                Op::Transfer {
                    tx: next_tx - 1,
                    from: account_id(from as usize),
                    to: account_id(to as usize),
                    amount: rng.range(1, 50) as i64,
                }
            }
            45..85 => {
                let id = format!("k{:02}", rng.below(ENTRY_KEYS));
                match (entries.contains(&id), rng.chance(15)) {
                    (false, _) => Op::Insert { id },
                    (true, false) => Op::Update { id },
                    (true, true) => Op::Remove { id },
                }
            }
            _ => {
                let id = format!("n{}", rng.below(NOTE_KEYS));
                let version = notes.get(&id).map_or(1, |n| n.version + 1);
                Op::Note { id, version }
            }
        };
        tell(&format!("do {}", serde_json::to_string(&op).unwrap()));
        op.run(&store).unwrap_or_else(|e| panic!("{op:?} failed: {e:?}"));
        tell("ack");
    }
}

#[derive(Debug, Default)]
struct Stats {
    ops: usize,
    acked: usize,
    /// Killed before the child printed `start` (before or during its open).
    killed_before_start: usize,
    /// Temp files of a flush were left behind: killed mid-flush.
    mid_flush: usize,
    /// More than one WAL segment was left: killed between rotation and checkpoint.
    mid_checkpoint: usize,
    /// The parent did not reopen; the next child recovered.
    unverified: usize,
    /// The operation in flight at the kill was found applied.
    in_flight_applied: usize,
    /// The operation in flight at the kill was a logged one.
    in_flight_logged: usize,
    wal_records_replayed: usize,
    wal_bytes_truncated: u64,
}

/// What the parent read from one child.
struct Run {
    start: Option<Logged>,
    ops: Vec<Op>,
    acked: usize,
}

fn parse_lines(cycle: u64, lines: &[String]) -> Run {
    let mut run = Run { start: None, ops: Vec::new(), acked: 0 };
    for line in lines {
        if let Some(json) = line.strip_prefix("start ") {
            run.start = Some(serde_json::from_str(json).unwrap());
        } else if let Some(json) = line.strip_prefix("do ") {
            run.ops.push(serde_json::from_str(json).unwrap());
        } else if line == "ack" {
            run.acked += 1;
        } else {
            panic!("cycle {cycle}: unexpected line from the child: {line:?}");
        }
    }
    assert!(
        run.acked == run.ops.len() || run.acked + 1 == run.ops.len(),
        "cycle {cycle}: {} operations started, {} acknowledged",
        run.ops.len(),
        run.acked
    );
    assert!(run.start.is_some() || run.ops.is_empty(), "cycle {cycle}: operations before `start`");
    run
}

/// Checks the files the kill left, before anything reopens the directory: every
/// record file parses; every note is a version that was written (`<= max`) and not
/// older than the last durable one (`>= floor`).
fn check_files(cycle: u64, dir: &Path, floor: &BTreeMap<String, u64>, max: &BTreeMap<String, u64>) {
    fn parse<T: serde::de::DeserializeOwned>(cycle: u64, path: &Path) -> T {
        let bytes = std::fs::read(path).unwrap();
        serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!("cycle {cycle}: {} does not parse ({e}): {:?}", path.display(), String::from_utf8_lossy(&bytes))
        })
    }
    for path in files_with_ext(&dir.join("account"), ".json") {
        parse::<Account>(cycle, &path);
    }
    for path in files_with_ext(&dir.join("entry"), ".json") {
        parse::<Entry>(cycle, &path);
    }
    for path in files_with_ext(&dir.join("receipt"), ".json") {
        parse::<Receipt>(cycle, &path);
    }
    let mut seen = BTreeMap::new();
    for path in files_with_ext(&dir.join("note"), ".json") {
        let note: Note = parse(cycle, &path);
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        assert_eq!(stem, note.id, "cycle {cycle}: {} holds another record", path.display());
        assert_eq!(note.check, note_check(&note.id, note.version), "cycle {cycle}: {} is a mix", path.display());
        let written = max.get(&note.id).copied().unwrap_or(0);
        assert!(
            note.version <= written,
            "cycle {cycle}: note {} has version {}, never written (highest written: {written})",
            note.id,
            note.version
        );
        let durable = floor.get(&note.id).copied().unwrap_or(0);
        assert!(
            note.version >= durable,
            "cycle {cycle}: note {} went back to version {} from the durable {durable}",
            note.id,
            note.version
        );
        seen.insert(note.id, note.version);
    }
    for id in floor.keys() {
        assert!(seen.contains_key(id), "cycle {cycle}: the durable note {id} is gone");
    }
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    if let Ok(dir) = std::env::var(CHILD_DIR) {
        let seed = env_u64(CHILD_SEED, 0);
        child_main(Path::new(&dir), seed);
        return;
    }
    let cycles = env_u64("SHELF_KILL_CYCLES", 200);
    let seed = env_u64("SHELF_KILL_SEED", 0x5EED_0005);
    println!("kill test: {cycles} cycles, SHELF_KILL_SEED={seed}");
    let began = Instant::now();
    let mut rng = Rng::new(seed);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");

    let store = open_plain(&dir);
    create_bank(&store);
    // The states the logged collections may be in; one of them is the truth.
    let mut candidates = vec![Logged::of(&store)];
    store.close().unwrap();
    // Per note: the version made durable by the last clean close, and the highest
    // version ever written.
    let mut note_floor: BTreeMap<String, u64> = BTreeMap::new();
    let mut note_max: BTreeMap<String, u64> = BTreeMap::new();
    let mut stats = Stats::default();

    for cycle in 0..cycles {
        let child_seed = seed.wrapping_mul(1_000_003).wrapping_add(cycle);
        let mut child =
            ChildProc::spawn(TEST, &[(CHILD_DIR, dir.display().to_string()), (CHILD_SEED, child_seed.to_string())]);
        let mut lines = Vec::new();
        if rng.chance(15) {
            // Early: before or during the child's open (and its recovery). This sleep
            // picks a random kill moment; it orders no threads.
            std::thread::sleep(Duration::from_millis(rng.range(0, 25)));
        } else {
            loop {
                let line = child.next_line(Duration::from_secs(20)).unwrap_or_else(|| {
                    panic!("cycle {cycle}: the child did not open the store within 20 s");
                });
                let started = line.starts_with("start ");
                lines.push(line);
                if started {
                    break;
                }
            }
            let until = Instant::now() + Duration::from_millis(rng.range(0, 120));
            while let Some(left) = until.checked_duration_since(Instant::now()) {
                if let Some(line) = child.next_line(left) {
                    lines.push(line);
                }
            }
        }
        let exited = child.exited();
        lines.extend(child.kill());
        if let Some(status) = exited {
            let tail = &lines[lines.len().saturating_sub(5)..];
            panic!("cycle {cycle}: the child exited on its own ({status}); its last lines: {tail:?}");
        }

        let run = parse_lines(cycle, &lines);
        stats.ops += run.ops.len();
        stats.acked += run.acked;
        for op in &run.ops {
            if let Op::Note { id, version } = op {
                let max = note_max.entry(id.clone()).or_insert(0);
                *max = (*max).max(*version);
            }
        }
        match run.start {
            None => stats.killed_before_start += 1,
            Some(start) => {
                assert_eq!(start.sum(), TOTAL, "cycle {cycle}: the child recovered a partial transfer");
                assert!(
                    candidates.contains(&start),
                    "cycle {cycle}: the child recovered a state that is not one of the {} possible: {}",
                    candidates.len(),
                    candidates.iter().map(|c| c.diff(&start)).collect::<Vec<_>>().join(" | OR | ")
                );
                let mut state = start;
                for op in &run.ops[..run.acked] {
                    state.apply(op);
                }
                candidates = vec![state.clone()];
                if let Some(op) = run.ops.get(run.acked) {
                    state.apply(op);
                    if state != candidates[0] {
                        candidates.push(state);
                        stats.in_flight_logged += 1;
                    }
                }
            }
        }

        // What the kill left, before anything reopens the directory.
        if temp_files(&dir) > 0 {
            stats.mid_flush += 1;
        }
        if files_with_ext(&dir.join("wal"), ".wal").len() > 1 {
            stats.mid_checkpoint += 1;
        }
        if cycle + 1 < cycles && rng.chance(25) {
            stats.unverified += 1;
            continue;
        }
        check_files(cycle, &dir, &note_floor, &note_max);

        let store = builder(&dir)
            .flush_interval(NEVER)
            .open()
            .unwrap_or_else(|e| panic!("cycle {cycle}: open after the kill failed: {e:?}"));
        stats.wal_records_replayed += store.recovery_report().wal_records_replayed;
        stats.wal_bytes_truncated += store.recovery_report().wal_bytes_truncated;
        let actual = Logged::of(&store);
        assert_eq!(actual.sum(), TOTAL, "cycle {cycle}: a transfer is partial after reopen");
        assert!(
            candidates.contains(&actual),
            "cycle {cycle}: after reopen the state is not one of the {} possible: {}",
            candidates.len(),
            candidates.iter().map(|c| c.diff(&actual)).collect::<Vec<_>>().join(" | OR | ")
        );
        if candidates.len() == 2 && actual == candidates[1] {
            stats.in_flight_applied += 1;
        }
        assert!(store.health().is_ok(), "cycle {cycle}: {:?}", store.health());

        // The store keeps working: a transfer and a note, then a clean close.
        let mut expected = actual.clone();
        let tx = actual.receipts.values().map(|r| r.tx + 1).max().unwrap_or(1);
        let op = Op::Transfer { tx, from: account_id(0), to: account_id(1), amount: 1 };
        op.run(&store).unwrap();
        expected.apply(&op);
        let notes = store.collection::<Note>().unwrap();
        let version = notes.get(&"n0".to_owned()).map_or(1, |n| n.version + 1);
        Op::Note { id: "n0".into(), version }.run(&store).unwrap();
        note_max.insert("n0".into(), note_max.get("n0").copied().unwrap_or(0).max(version));
        let after = Logged::of(&store);
        assert_eq!(after, expected, "cycle {cycle}: the write after reopen");
        note_floor = notes.iter().map(|n| (n.id.clone(), n.version)).collect();
        store.close().unwrap();
        candidates = vec![after];
    }

    // A last clean reopen.
    let store = open_plain(&dir);
    assert_eq!(store.recovery_report().wal_records_replayed, 0);
    assert_eq!(vec![Logged::of(&store)], candidates);
    store.close().unwrap();

    let elapsed = began.elapsed();
    println!("kill test: {cycles} cycles in {elapsed:.1?}: {stats:#?}");
    if cycles >= 100 {
        assert!(stats.mid_flush > 0, "no kill landed mid-flush: {stats:?}");
        assert!(stats.mid_checkpoint > 0, "no kill landed between rotation and checkpoint: {stats:?}");
        assert!(stats.killed_before_start > 0, "no kill landed during the child's open: {stats:?}");
    }
}
