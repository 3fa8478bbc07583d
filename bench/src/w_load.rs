//! W1, W7, W8: the life of a store of N users, per Shelf storage strategy and per peer,
//! and issue 6's figures (flush all-dirty and 1%-dirty, open, bytes on disk).
//!
//! 1. W1: insert N users into a fresh store, then one `store.flush()` (a peer: one
//!    transaction, one durable commit). The flush alone is W8's 100%-dirty row.
//! 2. W7: open the store W1 left (warm page cache): Shelf loads and indexes every
//!    record and verifies the index files; a peer opens lazily, so its row is open +
//!    the first get. Also Shelf's crash recovery: a child process commits N users to
//!    a `wal` collection in 1,000-user transactions and exits without a flush; the
//!    open replays them. With `SHELF_W7_COLD=1` (root only) the page cache is
//!    dropped before each open of a Shelf store.
//! 3. W8: change the `age` of 1%, then of 10% of the users, chosen at random, and
//!    flush (a peer: one transaction). Rows count the dirty records.
//!
//! The phases run in that order over all subjects, so that the files W8's flushes
//! replace (and so delete) are deleted after every other file was created.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use shelf::Store;

use crate::data::{
    self, disk_usage, fmt_bytes, CollectionFile, CollectionFileZ, PerRecord, PerRecordWal, PerRecordZ, Rng, ShelfKind,
    User,
};
use crate::line::SEQUENTIAL_RECORDS;
use crate::peers::{self, Peer, PeerKind};
use crate::physical;
use crate::report::{Report, Row};
use crate::{BoxError, Config};

pub const W1: &str = "W1 bulk insert";
pub const W7: &str = "W7 open";
pub const W8_ALL: &str = "W8 flush 100% dirty";
pub const W8_10: &str = "W8 flush 10% dirty";
pub const W8_1: &str = "W8 flush 1% dirty";
pub const WAL_RECOVERY: &str = "per_record+wal, recover all from the WAL";

/// Set in the child process of the WAL recovery measurement: the data directory.
const CHILD_DIR: &str = "SHELF_BENCH_WAL_CHILD_DIR";
/// ... and how many users it commits.
const CHILD_N: &str = "SHELF_BENCH_WAL_CHILD_N";
const BATCH: usize = 1_000;

/// Which of W1, W7, W8 to report.
type Which = [bool; 3];

pub fn run(config: &Config, report: &mut Report, which: Which) -> Result<(), BoxError> {
    let [w1, w7, w8] = which;
    if !(w1 || w7 || w8) {
        return Ok(());
    }
    let n = config.n;
    eprintln!("W1/W7/W8: stores of {n} users");
    let users = data::users(1, n);

    // Phase 1: build every store (W1, and W8's all-dirty flush).
    let dirs = [
        build::<PerRecord>(config, report, which, &users)?,
        build::<PerRecordZ>(config, report, which, &users)?,
        build::<CollectionFile>(config, report, which, &users)?,
        build::<CollectionFileZ>(config, report, which, &users)?,
    ];
    let mut peer_dirs = Vec::new();
    for kind in peers::DURABLE {
        report.peer_settings(kind.subject(), kind.settings());
        peer_dirs.push(build_peer(config, report, w1, kind, &users)?);
    }

    // Phase 2: open them (W7).
    let stores = [
        open::<PerRecord>(config, report, w7, &dirs[0])?,
        open::<PerRecordZ>(config, report, w7, &dirs[1])?,
        open::<CollectionFile>(config, report, w7, &dirs[2])?,
        open::<CollectionFileZ>(config, report, w7, &dirs[3])?,
    ];
    if w7 {
        wal_recovery(config, report)?;
    }
    let mut opened = Vec::new();
    for (kind, dir) in peers::DURABLE.into_iter().zip(&peer_dirs) {
        opened.push((kind, open_peer(config, report, w7, kind, dir)?));
    }

    // Phase 3: flush a few dirty records (W8).
    if w8 {
        let line_dir = line_files(config, &users)?;
        for (pct, workload) in [(1, W8_1), (10, W8_10)] {
            let ids = Rng::new(0x5eed_0800 + pct as u64).distinct_ids(n, (n * pct / 100).max(1));
            dirty::<PerRecord>(config, report, workload, &stores[0], &ids)?;
            dirty::<PerRecordZ>(config, report, workload, &stores[1], &ids)?;
            dirty::<CollectionFile>(config, report, workload, &stores[2], &ids)?;
            dirty::<CollectionFileZ>(config, report, workload, &stores[3], &ids)?;
            replace_line(config, report, workload, &line_dir, &users, &ids)?;
            for (kind, peer) in &opened {
                let samples = repeat(config.runs.max(5), || {
                    physical::settle();
                    let started = Instant::now();
                    peer.update(&ids)?;
                    Ok(started.elapsed())
                })?;
                report.add(
                    Row::new(workload, kind.subject(), kind.case(), ids.len(), "record", &samples)
                        .durability("fsync at commit")
                        .vs(SEQUENTIAL_RECORDS)
                        .note(format!("one transaction updating {} of {n}", ids.len())),
                );
            }
        }
    }
    for store in stores {
        store.close()?;
    }
    Ok(())
}

fn repeat(runs: usize, mut measure: impl FnMut() -> Result<Duration, BoxError>) -> Result<Vec<Duration>, BoxError> {
    (0..runs).map(|_| measure()).collect()
}

fn disk_note(dir: &Path) -> Result<(u64, String), BoxError> {
    let (apparent, allocated) = disk_usage(dir)?;
    Ok((apparent, format!("on disk {} ({} in blocks)", fmt_bytes(apparent), fmt_bytes(allocated))))
}

/// W1 for one strategy: returns the directory of the last run's store, closed.
fn build<K: ShelfKind>(
    config: &Config,
    report: &mut Report,
    which: Which,
    users: &[User],
) -> Result<PathBuf, BoxError> {
    let n = users.len();
    let mut totals = Vec::new();
    let mut flushes = Vec::new();
    let mut inserts = Vec::new();
    let mut dir = PathBuf::new();
    for _ in 0..config.runs {
        dir = config.fresh_dir(&format!("w1-{}", K::LABEL))?;
        let store = K::open_manual(&dir)?;
        let handle = store.collection::<K::U>()?;
        let values: Vec<K::U> = users.iter().map(K::user).collect();
        physical::settle();
        let started = Instant::now();
        for v in values {
            handle.insert(v)?;
        }
        let inserted = started.elapsed();
        let flushed = store.flush()?;
        let total = started.elapsed();
        if flushed.records == 0 || handle.dirty_count() != 0 {
            return Err(format!("{}: the flush left {} of {n} dirty", K::LABEL, handle.dirty_count()).into());
        }
        store.close()?;
        inserts.push(inserted);
        flushes.push(total - inserted);
        totals.push(total);
    }
    let ms = |d: &[Duration]| {
        let mut v: Vec<f64> = d.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (bytes, disk) = disk_note(&dir)?;
    if which[0] {
        report.add(
            Row::new(W1, "shelf", K::LABEL, n, "record", &totals)
                .durability("flush at end")
                .vs(SEQUENTIAL_RECORDS)
                .bytes_on_disk(bytes)
                .note(format!("insert {:.0} ms + flush {:.0} ms; {disk}", ms(&inserts), ms(&flushes))),
        );
    }
    if which[2] {
        report.add(
            Row::new(W8_ALL, "shelf", K::LABEL, n, "record", &flushes)
                .durability("whole flush")
                .vs(SEQUENTIAL_RECORDS)
                .bytes_on_disk(bytes)
                .note(format!("the flush of W1 alone, all {n} records dirty")),
        );
    }
    Ok(dir)
}

/// W1 for a peer: one transaction. Returns the directory of the last run's database.
fn build_peer(
    config: &Config,
    report: &mut Report,
    w1: bool,
    kind: PeerKind,
    users: &[User],
) -> Result<PathBuf, BoxError> {
    let mut dir = PathBuf::new();
    let samples = repeat(config.runs, || {
        dir = config.fresh_dir(&format!("w1-{}", kind.subject()))?;
        let peer = kind.open(&dir)?;
        physical::settle();
        let started = Instant::now();
        peer.load(users, &[])?;
        Ok(started.elapsed())
    })?;
    let (bytes, disk) = disk_note(&dir)?;
    if w1 {
        report.add(
            Row::new(W1, kind.subject(), kind.case(), users.len(), "record", &samples)
                .durability("fsync at commit")
                .vs(SEQUENTIAL_RECORDS)
                .bytes_on_disk(bytes)
                .note(format!("one transaction; {disk} after close")),
        );
    }
    Ok(dir)
}

/// W7 for one strategy: returns the store, open, for W8.
fn open<K: ShelfKind>(config: &Config, report: &mut Report, w7: bool, dir: &Path) -> Result<Store, BoxError> {
    let mut samples = Vec::new();
    let mut store = None;
    let cold = cold_cache();
    for _ in 0..config.runs {
        if let Some(store) = store.take() {
            Store::close(&store)?;
        }
        physical::settle();
        if cold {
            drop_page_cache()?;
        }
        let started = Instant::now();
        let opened = K::open_manual(dir)?;
        samples.push(started.elapsed());
        store = Some(opened);
    }
    let store = store.ok_or("no run")?;
    let n = store.collection::<K::U>()?.len();
    if w7 {
        report.add(Row::new(W7, "shelf", K::LABEL, n, "record", &samples).durability("-").note(if cold {
            "loads every record and its indices; cold page cache (dropped before each open)"
        } else {
            "loads every record and its indices; warm page cache"
        }));
    }
    Ok(store)
}

/// `SHELF_W7_COLD=1`: W7 opens Shelf's stores with a cold page cache (needs root).
fn cold_cache() -> bool {
    std::env::var("SHELF_W7_COLD").is_ok_and(|v| v == "1")
}

/// Writes dirty pages back, then drops the page cache, dentries and inodes
/// (`echo 3 > /proc/sys/vm/drop_caches`), so the next open reads from the disk.
fn drop_page_cache() -> Result<(), BoxError> {
    // SAFETY: `sync` takes no arguments and cannot fail.
    unsafe { libc::sync() };
    std::fs::write("/proc/sys/vm/drop_caches", "3")
        .map_err(|e| format!("SHELF_W7_COLD: could not drop the page cache (it needs root): {e}").into())
}

/// W7 for a peer: open and the first get. Returns the peer, open, for W8.
fn open_peer(
    config: &Config,
    report: &mut Report,
    w7: bool,
    kind: PeerKind,
    dir: &Path,
) -> Result<Box<dyn Peer>, BoxError> {
    let mut samples = Vec::new();
    let mut peer = None;
    for _ in 0..config.runs {
        drop(peer.take());
        physical::settle();
        let started = Instant::now();
        let opened = kind.open(dir)?;
        let first = opened.reader()?.get(1)?;
        samples.push(started.elapsed());
        if first.is_none() {
            return Err(format!("{}: user 1 is missing after reopen", kind.subject()).into());
        }
        peer = Some(opened);
    }
    if w7 {
        report.add(
            Row::new(W7, kind.subject(), kind.case(), config.n, "record", &samples)
                .durability("-")
                .note("open + first get: pages are read on demand, nothing is loaded"),
        );
    }
    peer.ok_or_else(|| "no run".into())
}

/// W8 for one strategy: `ids` made dirty, then one flush, on the open store.
fn dirty<K: ShelfKind>(
    config: &Config,
    report: &mut Report,
    workload: &str,
    store: &Store,
    ids: &[u64],
) -> Result<(), BoxError> {
    let handle = store.collection::<K::U>()?;
    let n = handle.len();
    let mut flushes = Vec::new();
    // The same store every time, so repeating is cheap: at least 5 rounds.
    let samples = repeat(config.runs.max(5), || {
        physical::settle();
        let started = Instant::now();
        for id in ids {
            handle.update(id, K::touch)?;
        }
        let updated = started.elapsed();
        let flushed = store.flush()?;
        let total = started.elapsed();
        if flushed.records == 0 || handle.dirty_count() != 0 {
            return Err(format!("{}: the flush left {} dirty", K::LABEL, handle.dirty_count()).into());
        }
        flushes.push(total - updated);
        Ok(total)
    })?;
    flushes.sort();
    let flush = flushes[flushes.len() / 2];
    report.add(
        Row::new(workload, "shelf", K::LABEL, ids.len(), "record", &samples)
            .durability("whole flush")
            .vs(SEQUENTIAL_RECORDS)
            .note(format!(
                "updates + flush; the flush alone {:.1} ms = {:.1} µs per dirty record, of {n}",
                flush.as_secs_f64() * 1e3,
                flush.as_secs_f64() * 1e6 / ids.len() as f64
            )),
    );
    Ok(())
}

/// The case of W8's physical line: what a per_record flush does, without Shelf.
pub const REPLACE_LINE: &str = "batched replace of existing files";
/// The sync threads of [`REPLACE_LINE`]: as many as Shelf's flush uses at most.
const LINE_THREADS: usize = 16;

/// One file per user, as a per_record store keeps them (pretty JSON), in a fresh
/// directory: what [`replace_line`] replaces.
fn line_files(config: &Config, users: &[User]) -> Result<PathBuf, BoxError> {
    let dir = config.fresh_dir("w8-line")?;
    for user in users {
        std::fs::write(line_path(&dir, user.id), line_bytes(user)?)?;
    }
    Ok(dir)
}

fn line_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id}.json"))
}

fn line_bytes(user: &User) -> Result<Vec<u8>, BoxError> {
    let mut bytes = serde_json::to_vec_pretty(user)?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// W8's physical line: the files of `ids` replaced the way a per_record flush
/// replaces them (temp files written and made durable, by fdatasync on 16 threads or
/// one `syncfs`, whichever is faster; renamed over the existing files; one directory
/// fsync), with plain std calls. Replacing an existing
/// file frees its old blocks, which costs more than creating one on some file systems
/// (on ext4 mounted with `discard`, each rename waits for a discard), so W8 is held
/// against this line, not against the flush that creates the files.
fn replace_line(
    config: &Config,
    report: &mut Report,
    workload: &str,
    dir: &Path,
    users: &[User],
    ids: &[u64],
) -> Result<(), BoxError> {
    let mut round = 0u32;
    let samples = repeat(config.runs.max(5), || {
        round += 1;
        let jobs = ids
            .iter()
            .map(|&id| {
                let mut user = users[id as usize - 1].clone();
                user.age += round;
                Ok((line_path(dir, id), line_bytes(&user)?))
            })
            .collect::<Result<Vec<_>, BoxError>>()?;
        // The faster of the two ways Shelf's batch makes temp files durable: one
        // fdatasync each on 16 threads, or one `syncfs` (Linux 5.8 and later).
        let mut best = Duration::MAX;
        for how in [physical::BatchSync::Threads(LINE_THREADS), physical::BatchSync::Syncfs(1)] {
            physical::settle();
            match physical::replace_batched(&jobs, how) {
                Ok(phases) => best = best.min(phases.total()),
                Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(best)
    })?;
    report.add(
        Row::new(workload, "physical", REPLACE_LINE, ids.len(), "file", &samples)
            .durability("whole batch")
            .vs(SEQUENTIAL_RECORDS)
            .note(format!(
                "plain std calls: temp written, made durable by fdatasync on {LINE_THREADS} threads or by one syncfs (the faster), rename over the existing file, dir fsync; {} of {}",
                ids.len(),
                users.len()
            )),
    );
    Ok(())
}

/// W7's crash recovery: N users only in the WAL, replayed by `open`.
fn wal_recovery(config: &Config, report: &mut Report) -> Result<(), BoxError> {
    let n = config.n;
    let mut samples = Vec::new();
    let mut replayed = 0;
    for _ in 0..config.runs {
        let dir = config.fresh_dir("w7-wal")?;
        let status =
            Command::new(std::env::current_exe()?).env(CHILD_DIR, &dir).env(CHILD_N, n.to_string()).status()?;
        if !status.success() {
            return Err(format!("the WAL writer child failed: {status}").into());
        }
        physical::settle();
        let started = Instant::now();
        let store = PerRecordWal::open_manual(&dir)?;
        samples.push(started.elapsed());
        let len = store.collection::<<PerRecordWal as ShelfKind>::U>()?.len();
        replayed = store.recovery_report().wal_records_replayed;
        if len != n {
            return Err(format!("WAL recovery found {len} users, expected {n}").into());
        }
        // Closing would flush N record files, which this measurement does not need; the
        // process ends soon, and the session directory is removed with the store in it.
        std::mem::forget(store);
    }
    report.add(
        Row::new(W7, "shelf", WAL_RECOVERY, n, "record", &samples)
            .durability("-")
            .note(format!("{replayed} WAL records (transactions of {BATCH}) replayed; no record files")),
    );
    Ok(())
}

/// In the child process of [`wal_recovery`]: commits the users to the WAL and exits
/// without flushing, as a crash would. `None` in the normal process.
pub fn wal_child() -> Option<ExitCode> {
    let dir = PathBuf::from(std::env::var_os(CHILD_DIR)?);
    let n: usize = std::env::var(CHILD_N).ok()?.parse().ok()?;
    let outcome = (|| -> Result<Store, BoxError> {
        let store = PerRecordWal::open_manual(&dir)?;
        for chunk in data::users(1, n).chunks(BATCH) {
            store.transaction(|tx| {
                for u in chunk {
                    tx.insert(PerRecordWal::user(u))?;
                }
                Ok::<_, shelf::Error>(())
            })?;
        }
        Ok(store)
    })();
    match outcome {
        Ok(store) => {
            // Every commit is durable in the WAL; skip the flush that closing would do.
            std::mem::forget(store);
            Some(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("shelf-bench WAL child: {e}");
            Some(ExitCode::FAILURE)
        }
    }
}
