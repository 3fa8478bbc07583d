//! W2 and W3: durable writes that each return only once they are on disk.
//!
//! - W2, one user per commit, from 1 thread and from 8 threads (issue 5's benchmark):
//!   Shelf inserts into a `#[storage(per_record, wal)]` collection with the default
//!   `WalSync::Always` (group commit: concurrent commits share one fdatasync) and the
//!   default 2 s background flusher; SQLite commits one row per transaction with
//!   `synchronous=FULL`; redb and native_db one insert per write transaction.
//! - W3, batches of 1,000 users, each durable at its end: Shelf as one transaction per
//!   batch on the `wal` collection (one WAL record, one fdatasync), and as insert +
//!   `store.flush()` on per_record and collection_file collections without WAL; each
//!   peer one transaction per batch.

use std::time::{Duration, Instant};

use crate::data::{self, CollectionFile, PerRecord, PerRecordWal, ShelfKind, User};
use crate::line::{self, FSYNC, SEQUENTIAL_RECORDS};
use crate::peers::{self, PeerKind};
use crate::physical;
use crate::report::{fmt_rate, Report, Row};
use crate::{BoxError, Config};

pub const W2_1: &str = "W2 1 thread";
pub const W2_8: &str = "W2 8 threads";
pub const W3: &str = "W3 1k batches";
pub const SHELF_WAL: &str = "per_record+wal, WalSync::Always";
pub const SHELF_WAL_QUIET: &str = "per_record+wal, WalSync::Always, no flush";
const BATCH: usize = 1_000;

pub fn run_w2(config: &Config, report: &mut Report) -> Result<(), BoxError> {
    let commits = config.commits();
    // Sync latency drifts with whatever else the machine does: every subject, and the
    // fdatasync line, is measured once per round, the rounds one after the other, and
    // the table shows each one's median round.
    let rounds = config.runs.max(3);
    for (workload, threads) in [(W2_1, 1), (W2_8, 8)] {
        // 8 threads make 4x the commits of 1 thread, so both take about as long at the target.
        let per_thread = if threads == 1 { commits } else { commits / 2 };
        let total = per_thread * threads;
        eprintln!("{workload}: {total} durable single-user commits per subject, {rounds} rounds");
        let parts: Vec<Vec<User>> =
            (0..threads).map(|t| data::users(1 + (t * per_thread) as u64, per_thread)).collect();
        let mut fsyncs = Vec::new();
        let mut shelf = [Vec::new(), Vec::new()];
        let mut syncs = [0, 0];
        let mut peer_samples = vec![Vec::new(); peers::DURABLE.len()];
        for _ in 0..rounds {
            fsyncs.push(line::fsync_sample(config)?);
            for (quiet, (samples, syncs)) in [false, true].into_iter().zip(shelf.iter_mut().zip(&mut syncs)) {
                let (elapsed, synced) = shelf_commits(config, &parts, quiet)?;
                samples.push(elapsed);
                *syncs = synced;
            }
            for (kind, samples) in peers::DURABLE.into_iter().zip(&mut peer_samples) {
                samples.push(peer_commits(config, kind, &parts)?);
            }
        }
        line::add_fsync_row(report, workload, fsyncs);
        let [default, quiet] = shelf;
        report.add(
            Row::new(workload, "shelf", SHELF_WAL, total, "commit", &default)
                .durability("WAL fdatasync per commit (group)")
                .vs(FSYNC)
                .note(format!(
                    "{} WAL syncs for {total} commits (last round); default background flusher (2 s) running",
                    syncs[0]
                )),
        );
        report.add(
            Row::new(workload, "shelf", SHELF_WAL_QUIET, total, "commit", &quiet)
                .durability("WAL fdatasync per commit (group)")
                .vs(FSYNC)
                .note(format!(
                    "{} WAL syncs for {total} commits (last round); the WAL alone: no flush during the run",
                    syncs[1]
                )),
        );
        for (kind, samples) in peers::DURABLE.into_iter().zip(peer_samples) {
            report.peer_settings(kind.subject(), kind.settings());
            let note = if kind == PeerKind::SqliteFull && threads > 1 {
                "threads share one connection: one writer, no group commit"
            } else {
                ""
            };
            report.add(
                Row::new(workload, kind.subject(), kind.case(), total, "commit", &samples)
                    .durability("fsync per commit")
                    .vs(FSYNC)
                    .note(note),
            );
        }
    }
    let one = report.rate(W2_1, &format!("shelf/{SHELF_WAL}"));
    let eight = report.rate(W2_8, &format!("shelf/{SHELF_WAL}"));
    let fsync = report.rate(W2_1, FSYNC);
    if let (Some(one), Some(eight), Some(fsync)) = (one, eight, fsync) {
        report.note(format!(
            "W2 (issue 5): Shelf durable commits/s: 1 thread {}, 8 threads {} ({:.2}x); one fdatasync {} /s ({:.2}x of it at 1 thread)",
            fmt_rate(one),
            fmt_rate(eight),
            eight / one,
            fmt_rate(fsync),
            one / fsync
        ));
    }
    Ok(())
}

/// One round of W2 on Shelf: the time of the commits and the WAL syncs they made.
/// `quiet`: no background flush during the run (the flush interval is a day).
fn shelf_commits(config: &Config, parts: &[Vec<User>], quiet: bool) -> Result<(Duration, u64), BoxError> {
    let dir = config.fresh_dir("w2-shelf")?;
    let mut builder = PerRecordWal::builder(&dir);
    if quiet {
        builder = builder.flush_interval(Duration::from_secs(24 * 3600));
    }
    let store = builder.open()?;
    let handle = store.collection::<<PerRecordWal as ShelfKind>::U>()?;
    let values: Vec<Vec<_>> = parts.iter().map(|part| part.iter().map(PerRecordWal::user).collect()).collect();
    let before = store.stats().wal.map_or(0, |w| w.syncs);
    physical::settle();
    let started = Instant::now();
    on_threads(values, |part| {
        for v in part {
            handle.insert(v)?;
        }
        Ok(())
    })?;
    let elapsed = started.elapsed();
    let syncs = store.stats().wal.map_or(0, |w| w.syncs) - before;
    store.close()?;
    Ok((elapsed, syncs))
}

/// One round of W2 on a peer.
fn peer_commits(config: &Config, kind: PeerKind, parts: &[Vec<User>]) -> Result<Duration, BoxError> {
    let dir = config.fresh_dir(&format!("w2-{}", kind.subject()))?;
    let peer = kind.open(&dir)?;
    physical::settle();
    let started = Instant::now();
    on_threads(parts.iter().collect(), |part| {
        for u in part {
            peer.insert_one(u)?;
        }
        Ok(())
    })?;
    Ok(started.elapsed())
}

/// Runs `work` on one thread per part and waits for all; the first error wins.
fn on_threads<P: Send>(parts: Vec<P>, work: impl Fn(P) -> Result<(), BoxError> + Sync) -> Result<(), BoxError> {
    let work = &work;
    std::thread::scope(|scope| {
        let handles: Vec<_> = parts.into_iter().map(|part| scope.spawn(move || work(part))).collect();
        let mut result = Ok(());
        for handle in handles {
            let outcome = handle.join().unwrap_or_else(|_| Err("a writer thread panicked".into()));
            if result.is_ok() {
                result = outcome;
            }
        }
        result
    })
}

/// How Shelf makes each W3 batch durable.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Durable {
    /// One `store.transaction` per batch on a `wal` collection.
    Transaction,
    /// Inserts, then `store.flush()`.
    Flush,
}

pub fn run_w3(config: &Config, report: &mut Report) -> Result<(), BoxError> {
    let batches: Vec<Vec<User>> = (0..config.batches()).map(|b| data::users(1 + (b * BATCH) as u64, BATCH)).collect();
    let total = batches.len() * BATCH;
    eprintln!("{W3}: {} batches of {BATCH} users per subject", batches.len());

    shelf_batches::<PerRecordWal>(config, report, &batches, Durable::Transaction)?;
    shelf_batches::<PerRecord>(config, report, &batches, Durable::Flush)?;
    shelf_batches::<CollectionFile>(config, report, &batches, Durable::Flush)?;

    for kind in [PeerKind::SqliteFull, PeerKind::SqliteNormal, PeerKind::Redb, PeerKind::NativeDb] {
        report.peer_settings(kind.subject(), kind.settings());
        let mut samples = Vec::new();
        for _ in 0..config.runs {
            let dir = config.fresh_dir(&format!("w3-{}", kind.subject()))?;
            let peer = kind.open(&dir)?;
            physical::settle();
            let started = Instant::now();
            for batch in &batches {
                peer.load(batch, &[])?;
            }
            samples.push(started.elapsed());
        }
        let mut row = Row::new(W3, kind.subject(), kind.case(), total, "record", &samples).vs(SEQUENTIAL_RECORDS);
        row = if kind.durable() {
            row.durability("fsync per batch")
        } else {
            row.durability("NOT synced at commit").not_durable().note("WAL synced only at checkpoints")
        };
        report.add(row);
    }
    Ok(())
}

fn shelf_batches<K: ShelfKind>(
    config: &Config,
    report: &mut Report,
    batches: &[Vec<User>],
    how: Durable,
) -> Result<(), BoxError> {
    let total = batches.len() * BATCH;
    let mut samples = Vec::new();
    for _ in 0..config.runs {
        let dir = config.fresh_dir(&format!("w3-{}", K::LABEL))?;
        // The wal collection keeps the default background flusher; the others flush by hand.
        let store = if how == Durable::Transaction { K::builder(&dir).open()? } else { K::open_manual(&dir)? };
        let handle = store.collection::<K::U>()?;
        let values: Vec<Vec<K::U>> = batches.iter().map(|b| b.iter().map(K::user).collect()).collect();
        physical::settle();
        let started = Instant::now();
        for mut batch in values {
            match how {
                // The body runs once on a file store: taking the batch moves it.
                Durable::Transaction => store.transaction(|tx| {
                    for v in std::mem::take(&mut batch) {
                        tx.insert(v)?;
                    }
                    Ok::<_, shelf::Error>(())
                })?,
                Durable::Flush => {
                    for v in batch {
                        handle.insert(v)?;
                    }
                    store.flush()?;
                }
            }
        }
        samples.push(started.elapsed());
        store.close()?;
    }
    let (case, durability, note) = match how {
        Durable::Transaction => {
            (format!("{}, a transaction per batch", K::LABEL), "WAL fdatasync per batch", "one WAL record per batch")
        }
        Durable::Flush if K::LABEL.starts_with("collection_file") => {
            (format!("{}, insert + flush", K::LABEL), "flush per batch", "each flush rewrites the whole (growing) file")
        }
        Durable::Flush => (format!("{}, insert + flush", K::LABEL), "flush per batch", "a file per record"),
    };
    report.add(
        Row::new(W3, "shelf", &case, total, "record", &samples)
            .durability(durability)
            .vs(SEQUENTIAL_RECORDS)
            .note(format!("{note}; {} batches/s", fmt_rate(batches.len() as f64 / median(&samples)))),
    );
    Ok(())
}

fn median(samples: &[Duration]) -> f64 {
    let mut secs: Vec<f64> = samples.iter().map(Duration::as_secs_f64).collect();
    secs.sort_by(f64::total_cmp);
    secs[secs.len() / 2]
}
