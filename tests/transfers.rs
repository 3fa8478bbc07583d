//! Concurrency (issue 5): 8 threads run transfer transactions between accounts of
//! a `wal` collection while 2 threads read. The sum over all accounts is the same
//! in every read (`iter()` is one consistent read), after a clean reopen, and after
//! a SIGKILL in the middle of the same workload plus reopen.
//!
//! Knobs (environment variables):
//! - `SHELF_TRANSFER_CRASH_CYCLES` (default 10): the number of kill-and-reopen cycles
//!   of the crash test;
//! - `SHELF_TRANSFERS_SEED` is set by the parent for each child (the child's workload).

mod common_wal;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common_wal::*;
use shelf::{Error, Store};

const WRITERS: usize = 8;
const READERS: usize = 2;
const TRANSFERS_PER_WRITER: u64 = 500;

fn progress_id(writer: usize) -> String {
    format!("w{writer}")
}

/// One transfer of a random amount between two random accounts, plus the writer's
/// progress counter, in one transaction. Balances never go negative: the amount is
/// read inside the transaction. Returns the writer's new count.
fn transfer(store: &Store, writer: usize, rng: &mut Rng) -> shelf::Result<u64> {
    let from = account_id(rng.below(ACCOUNTS as u64) as usize);
    let to = account_id((rng.below(ACCOUNTS as u64 - 1) as usize + 1 + from[1..].parse::<usize>().unwrap()) % ACCOUNTS);
    let want = rng.range(1, 100) as i64;
    store.transaction(|tx| {
        let available = tx.get::<Account>(&from).expect("account").balance;
        let amount = want.min(available);
        tx.update::<Account>(&from, |a| {
            a.balance -= amount;
            a.version += 1;
        })?;
        tx.update::<Account>(&to, |a| {
            a.balance += amount;
            a.version += 1;
        })?;
        let id = progress_id(writer);
        let done = tx.get::<Progress>(&id).map_or(0, |p| p.done) + 1;
        tx.upsert(Progress { id, done })?;
        Ok::<_, Error>(done)
    })
}

/// Reads until `stop`, at least once (so the count does not depend on how the
/// threads are scheduled): every `iter()` snapshot has all accounts, none negative,
/// and the constant sum. Returns the number of reads.
fn reader(store: &Store, stop: &AtomicBool) -> u64 {
    let accounts = store.collection::<Account>().unwrap();
    let mut reads = 0;
    loop {
        let snapshot: Vec<_> = accounts.iter().collect();
        assert_eq!(snapshot.len(), ACCOUNTS);
        let sum: i64 = snapshot.iter().map(|a| a.balance).sum();
        assert_eq!(sum, TOTAL, "a read saw part of a transfer: {snapshot:?}");
        assert!(snapshot.iter().all(|a| a.balance >= 0), "{snapshot:?}");
        reads += 1;
        if stop.load(Ordering::Relaxed) {
            break;
        }
        std::thread::yield_now();
    }
    reads
}

/// Runs the workload: `WRITERS` writers doing `per_writer` transfers each (or until
/// killed, when `None`), each acknowledged with `ack`, and `READERS` readers.
/// Returns the number of reads.
fn workload(store: &Store, seed: u64, per_writer: Option<u64>, ack: impl Fn(usize, u64) + Sync) -> u64 {
    let stop = AtomicBool::new(false);
    let writers_left = AtomicU64::new(WRITERS as u64);
    std::thread::scope(|s| {
        let readers: Vec<_> = (0..READERS).map(|_| s.spawn(|| reader(store, &stop))).collect();
        for writer in 0..WRITERS {
            let (stop, writers_left, ack) = (&stop, &writers_left, &ack);
            s.spawn(move || {
                let mut rng = Rng::new(seed ^ ((writer as u64) << 32));
                let mut n = 0;
                while per_writer.is_none_or(|max| n < max) {
                    let done = transfer(store, writer, &mut rng).unwrap();
                    ack(writer, done);
                    n += 1;
                }
                if writers_left.fetch_sub(1, Ordering::SeqCst) == 1 {
                    stop.store(true, Ordering::SeqCst);
                }
            });
        }
        readers.into_iter().map(|r| r.join().unwrap()).sum()
    })
}

fn open(dir: &Path) -> Store {
    // A short flush interval: flushes (rotations, checkpoints) run during the workload.
    builder(dir).flush_interval(Duration::from_millis(20)).open().unwrap()
}

#[test]
fn the_sum_is_constant_in_every_read_and_after_reopen() {
    let began = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    create_bank(&store);
    let reads = workload(&store, 42, Some(TRANSFERS_PER_WRITER), |_, _| {});
    assert!(reads >= READERS as u64, "every reader reads at least once: {reads} reads");
    assert_eq!(balance_sum(&store), TOTAL);
    let progress: BTreeMap<String, Progress> = all(&store);
    for writer in 0..WRITERS {
        assert_eq!(progress[&progress_id(writer)].done, TRANSFERS_PER_WRITER);
    }
    let versions: u64 = store.collection::<Account>().unwrap().iter().map(|a| a.version).sum();
    assert_eq!(versions, 2 * WRITERS as u64 * TRANSFERS_PER_WRITER, "each transfer writes two accounts");
    let before = Logged::of(&store);
    store.close().unwrap();

    let store = open(dir.path());
    assert_eq!(Logged::of(&store), before);
    assert_eq!(all::<Progress>(&store), progress);
    println!(
        "{} transfers on {WRITERS} threads, {reads} reads on {READERS} threads, in {:.1?}",
        WRITERS as u64 * TRANSFERS_PER_WRITER,
        began.elapsed()
    );
}

const CHILD_DIR: &str = "SHELF_TRANSFERS_CHILD_DIR";
const CRASH_TEST: &str = "the_sum_is_constant_after_a_sigkill_during_concurrent_transfers";
/// The default number of crash cycles: bounded, for CI; raise it with
/// `SHELF_TRANSFER_CRASH_CYCLES` for a soak.
const CRASH_CYCLES: u64 = 10;

#[test]
fn the_sum_is_constant_after_a_sigkill_during_concurrent_transfers() {
    if let Ok(dir) = std::env::var(CHILD_DIR) {
        let store = open(Path::new(&dir));
        tell("start");
        workload(&store, env_u64("SHELF_TRANSFERS_SEED", 0), None, |writer, done| {
            tell(&format!("ack {writer} {done}"))
        });
        return;
    }
    let cycles = env_u64("SHELF_TRANSFER_CRASH_CYCLES", CRASH_CYCLES);
    let began = Instant::now();
    let mut rng = Rng::new(7);
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    create_bank(&store);
    store.close().unwrap();
    let mut committed = [0u64; WRITERS];
    for cycle in 0..cycles {
        let mut child = ChildProc::spawn(
            CRASH_TEST,
            &[(CHILD_DIR, dir.path().display().to_string()), ("SHELF_TRANSFERS_SEED", cycle.to_string())],
        );
        let mut lines = vec![child.next_line(Duration::from_secs(20)).expect("the child did not start")];
        assert_eq!(lines[0], "start");
        let until = Instant::now() + Duration::from_millis(rng.range(100, 600));
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            lines.extend(child.next_line(left));
        }
        let exited = child.exited();
        lines.extend(child.kill());
        assert!(exited.is_none(), "cycle {cycle}: the child exited on its own ({exited:?}): {:?}", lines.last());

        // The highest acknowledged count per writer.
        let mut acked = committed;
        for line in &lines[1..] {
            let mut words = line.strip_prefix("ack ").expect("an ack line").split(' ');
            let writer: usize = words.next().unwrap().parse().unwrap();
            let done: u64 = words.next().unwrap().parse().unwrap();
            acked[writer] = acked[writer].max(done);
        }
        assert!(
            acked.iter().sum::<u64>() > committed.iter().sum::<u64>(),
            "cycle {cycle}: no transfer was acknowledged"
        );

        let store = open(dir.path());
        assert_eq!(balance_sum(&store), TOTAL, "cycle {cycle}: a transfer is partial after the crash");
        let progress: BTreeMap<String, Progress> = all(&store);
        let mut transfers = 0;
        for (writer, acked) in acked.iter().enumerate() {
            let done = progress.get(&progress_id(writer)).map_or(0, |p| p.done);
            // Each writer has at most one transfer in flight.
            assert!(
                (*acked..=acked + 1).contains(&done),
                "cycle {cycle}: writer {writer} acknowledged {acked} transfers, the store has {done}"
            );
            committed[writer] = done;
            transfers += done;
        }
        let versions: u64 = store.collection::<Account>().unwrap().iter().map(|a| a.version).sum();
        assert_eq!(versions, 2 * transfers, "cycle {cycle}: account writes do not match the transfers");
        // The store keeps working.
        let mut rng = Rng::new(cycle);
        committed[0] = transfer(&store, 0, &mut rng).unwrap();
        store.close().unwrap();
    }
    let store = open(dir.path());
    assert_eq!(balance_sum(&store), TOTAL);
    println!(
        "{cycles} crash cycles, {} transfers committed, in {:.1?}",
        committed.iter().sum::<u64>(),
        began.elapsed()
    );
}
