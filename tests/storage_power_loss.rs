//! Simulated power loss ([`CrashFs`]) at every mutating operation of a workload of
//! flushes on `collection_file` collections, plain and compressed (issue 6, DESIGN
//! §5). A collection file is replaced whole, so after the power loss each collection
//! holds exactly the state of the last completed flush or of the flush in progress,
//! never a mix, and its auto-id counter never goes below what a completed flush made
//! durable. Each collection file is replaced on its own, so two collections of one
//! flush may differ in which state they hold. (`power_loss_flush.rs` does the same
//! for `per_record`.)

#[macro_use]
mod common_storage;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use common_storage::*;
use shelf::fs::CrashFs;
use shelf::{Store, StoreBuilder};

variant!(cf, collection_file);
variant!(cfz, collection_file, compress);

const DIR: &str = "/data";

fn open<V: Variant>(fs: &Arc<CrashFs>) -> StoreBuilder {
    builder::<V>(Path::new(DIR)).vfs(Arc::clone(fs))
}

/// The two collections' contents at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
struct Snapshot {
    items: BTreeMap<String, Rec>,
    logs: BTreeMap<u64, LogRec>,
    next_log: u64,
}

/// Rounds of writes, each ended by a flush. Returns the snapshot after each round
/// whose flush was attempted (`Ok` or not), and how many flushes completed.
fn run<V: Variant>(fs: &Arc<CrashFs>, rounds: &mut Vec<Snapshot>) -> usize {
    let Ok(store) = open::<V>(fs).open() else { return 0 };
    let items = store.collection::<V::Item>().unwrap();
    let logs = store.collection::<V::Log>().unwrap();
    let mut now = Snapshot::default();
    let mut completed = 0;
    for round in 0..5u32 {
        for n in 0..4u32 {
            let id = format!("i{}", (round * 3 + n) % 7);
            let r = rec(&id, ["red", "green"][(n % 2) as usize], round * 10 + n, &format!("round {round}"));
            if now.items.contains_key(&id) && n == 3 {
                items.remove(&id).unwrap();
                now.items.remove(&id);
            } else {
                items.upsert(V::Item::from_rec(&r)).unwrap();
                now.items.insert(id, r);
            }
        }
        let seq = logs.insert(V::Log::new(&format!("round {round}"))).unwrap();
        now.logs.insert(seq, LogRec { seq, msg: format!("round {round}") });
        if round % 2 == 1 {
            let first = *now.logs.keys().next().unwrap();
            logs.remove(&first).unwrap();
            now.logs.remove(&first);
        }
        now.next_log = seq + 1;
        rounds.push(now.clone());
        match store.flush() {
            Ok(_) => completed += 1,
            Err(_) => return completed,
        }
    }
    completed
}

fn crash_at_every_point<V: Variant>() {
    let started = Instant::now();
    let mut k = 0;
    loop {
        let fs = CrashFs::new();
        fs.crash_after(k);
        let mut rounds = Vec::new();
        let completed = run::<V>(&fs, &mut rounds);
        let finished = completed == 5 && !fs.is_dead();
        fs.crash();

        let store: Store = open::<V>(&fs).open().unwrap_or_else(|e| panic!("crash point {k}: reopen failed: {e}"));
        let found = Snapshot { items: items::<V>(&store), logs: logs::<V>(&store), next_log: 0 };
        // The last completed flush's state, or the one in flight when the power went.
        let durable = if completed == 0 { Snapshot::default() } else { rounds[completed - 1].clone() };
        let in_flight = rounds.get(completed).cloned();
        // Each collection file is atomic on its own: the two collections may differ
        // in which of the two states they hold.
        let items_ok = durable.items == found.items || in_flight.as_ref().is_some_and(|s| s.items == found.items);
        assert!(
            items_ok,
            "crash point {k}: after {completed} completed flushes `item` holds {:?}, neither {:?} nor {:?}",
            found.items,
            durable.items,
            in_flight.as_ref().map(|s| &s.items)
        );
        let logs_ok = durable.logs == found.logs || in_flight.as_ref().is_some_and(|s| s.logs == found.logs);
        assert!(
            logs_ok,
            "crash point {k}: after {completed} completed flushes `log` holds {:?}, neither {:?} nor {:?}",
            found.logs,
            durable.logs,
            in_flight.as_ref().map(|s| &s.logs)
        );
        check_indices::<V>(&store, &found.items, &format!("crash point {k}"));
        let next = store.collection::<V::Log>().unwrap().insert(V::Log::new("after")).unwrap();
        assert!(
            next >= durable.next_log && found.logs.keys().all(|&id| next > id),
            "crash point {k}: the next log id is {next}, but a completed flush had handed out ids below {}",
            durable.next_log
        );
        drop(store);

        if finished {
            eprintln!("{k} crash points of {:?} in {:?}", V::LAYOUT, started.elapsed());
            assert!(k > 30, "the workload should have many crash points, got {k}");
            return;
        }
        k += 1;
        assert!(k < 10_000, "the workload never completed");
    }
}

#[test]
fn power_loss_during_collection_file_flushes_keeps_one_whole_state() {
    crash_at_every_point::<cf::V>();
}

#[test]
fn power_loss_during_compressed_collection_file_flushes_keeps_one_whole_state() {
    crash_at_every_point::<cfz::V>();
}
