//! `shelf-bench`: Shelf measured next to peer stores (SQLite, redb, native_db) and the
//! physical limits of this machine, in one run.
//!
//! ```text
//! cargo run --release -p shelf-bench -- [WORKLOAD] [--quick] [--n N] [--runs R] [--dir DIR] [--json PATH]
//! ```
//!
//! Workloads (issue 8), over the same generated users (about 200 B of JSON, unique
//! email, indexed country) and orders (3 per user, a foreign key to the user):
//!
//! - `w1` bulk insert of N users, then one flush/commit;
//! - `w2` durable single-user commits, 1 and 8 threads (issue 5's benchmark);
//! - `w2-parent` durable commits of a `wal` child whose parent is flushed, and whose
//!   parent is not durable yet and is logged with it (issue 17's cost of no orphans);
//! - `w3` 1,000-user batches, each durable at its end;
//! - `w4`, `w5`, `w6` get by id, by unique email, the orders of a user, with a
//!   `HashMap` baseline;
//! - `w7` open (and recover from the WAL) a store of N users;
//! - `w8` flush of 1% and 10% dirty records, and the all-dirty flush of W1;
//! - `w9` one writer updating random records while the background flusher runs
//!   every 500 ms, and while it does not (issue 14): latency per update and the age
//!   of the newest finished flush, over 100,000 users (10,000 with `--quick`).
//!
//! `w1`, `w7` and `w8` with `--n 100000` are issue 6's benchmark (flush all-dirty and
//! 1%-dirty, open, bytes on disk, per storage strategy). The physical line (fdatasync
//! latency, sequential bandwidth) is measured first in every run, and the targets of
//! the issues are checked against the rows at the end.
//!
//! Sync-bound numbers are only as good as the machine is quiet: other builds or tests
//! writing to the same file system make them noisy (the load average at start and end
//! is in the output). On ext4 without a journal, wait about 40 s between two runs: the
//! previous run's deleted files slow down creating new ones for that long.
//!
//! Each workload is one module with a `run(&Config, &mut Report)` function. The
//! physical line lives in [`line`] (measurements in [`physical`]), the peers behind
//! one interface in [`peers`], the generated data and Shelf's entity types in [`data`].

mod data;
mod flush;
mod line;
mod peers;
mod physical;
mod report;
// Shared with `src/bin/common`; the harness uses only a part of it.
#[allow(dead_code)]
mod rng;
mod targets;
mod w_async;
mod w_commit;
mod w_feed;
mod w_load;
mod w_parent;
mod w_query;
mod w_read;
mod w_stall;

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::report::Report;

/// The error of every workload: anything, from any thread.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Benchmarks of Shelf next to SQLite, redb and native_db, with the physical line of
/// this machine measured in the same run.
#[derive(Parser, Debug)]
#[command(name = "shelf-bench", version)]
struct Cli {
    /// Which workload to run.
    #[arg(value_enum, default_value_t = Workload::All)]
    workload: Workload,
    /// Small sizes for a smoke run (N = 1,000 unless --n is given); under 2 minutes.
    #[arg(long)]
    quick: bool,
    /// Users per run [default: 10,000, or 1,000 with --quick]. Issue 6's figures are
    /// stated for 100,000.
    #[arg(long)]
    n: Option<usize>,
    /// Repetitions of each measurement; the table shows the median.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Where the data directories are made: one fresh directory per measurement, all
    /// removed at the end. Default: the system temp dir, or ./target/bench-data when
    /// that is a tmpfs.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Also run the design-space prototypes of each workload (flush: sync threads, syncfs).
    #[arg(long)]
    explore: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Workload {
    /// Every workload below.
    All,
    /// Only the physical line (it also runs first in every other choice).
    Physical,
    /// Flush of N dirty per_record entities: batched syncs vs one fsync+rename+dir-fsync per file.
    Flush,
    /// Bulk insert of N users, then one flush/commit.
    W1,
    /// Durable single-user commits, 1 and 8 threads.
    W2,
    /// Durable commits of a `wal` child whose parent is flushed, and whose parent is not (logged with it).
    W2Parent,
    /// 1,000-user batches, durable at the end of each.
    W3,
    /// Get by id, random.
    W4,
    /// Lookup by unique email, random.
    W5,
    /// The orders of a random user (1:N).
    W6,
    /// Open (recover) a store of N users.
    W7,
    /// Flush of 1% and 10% dirty records of N.
    W8,
    /// Update latency with the background flusher on and off (100,000 users, or --n).
    W9,
    /// Query power (issues 20, 17): count per key, top 10 by an Option field, latest per parent, keyset pages.
    Query,
    /// Durable writes from 16 tokio tasks on 2 workers: the async API vs spawn_blocking.
    WAsync,
    /// The change feed kept across a clean close: close and open with a feed of N events vs none.
    WFeed,
}

/// What every workload gets: sizes and where to put its data.
#[derive(Debug)]
pub struct Config {
    /// Entities per run.
    pub n: usize,
    /// Entities of the `flush` workload: `n`, capped at 10,000 when it runs as part of
    /// `all` (its per-file case costs a millisecond per file).
    pub flush_n: usize,
    /// Whether `--quick` was given: the smaller counts of W2, W3 and the lookups.
    pub quick: bool,
    /// Repetitions of each measurement.
    pub runs: usize,
    /// The directory given by `--dir` (or its default).
    pub base: PathBuf,
    /// Whether to run the prototypes as well.
    pub explore: bool,
    /// Users of W9: `--n`, else 100,000 (10,000 with `--quick`).
    pub w9_n: usize,
    /// How long each phase of W9 runs (flushing on, flushing off).
    pub w9_phase: Duration,
    /// `<base>/shelf-bench-XXXX`: every measurement's directory is made in here, and
    /// all of it is removed only when the whole run is over. Deleting thousands of
    /// files between measurements would slow down the next one: ext4 without a
    /// journal, as on this project's machine, skips recently deleted inodes one by
    /// one when it allocates new ones, for 5 to 35 s after the delete.
    session: tempfile::TempDir,
    dirs_made: Cell<usize>,
}

impl Config {
    /// A fresh, empty directory for one measurement, kept until the end of the run.
    pub fn fresh_dir(&self, label: &str) -> std::io::Result<PathBuf> {
        let n = self.dirs_made.get();
        self.dirs_made.set(n + 1);
        let dir = self.session.path().join(format!("{n:03}-{}", label.replace('+', "-")));
        std::fs::create_dir(&dir)?;
        Ok(dir)
    }

    /// Durable single-user commits per subject and thread count in W2.
    pub fn commits(&self) -> usize {
        if self.quick {
            200
        } else {
            2_000
        }
    }

    /// Batches of 1,000 users per subject in W3.
    pub fn batches(&self) -> usize {
        if self.quick {
            3
        } else {
            10
        }
    }

    /// Random lookups per subject in W4, W5 and W6.
    pub fn lookups(&self) -> usize {
        if self.quick {
            50_000
        } else {
            200_000
        }
    }
}

fn main() -> ExitCode {
    if let Some(code) = w_load::wal_child() {
        return code;
    }
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shelf-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> Result<(), BoxError> {
    let base = match &cli.dir {
        Some(dir) => dir.clone(),
        None => default_base()?,
    };
    std::fs::create_dir_all(&base)?;
    let base = base.canonicalize()?;
    let n = cli.n.unwrap_or(if cli.quick { 1_000 } else { 10_000 });
    let all = cli.workload == Workload::All;
    let flush_n = if all { n.min(10_000) } else { n };
    let session = tempfile::Builder::new().prefix("shelf-bench-").tempdir_in(&base)?;
    let config = Config {
        n,
        flush_n,
        quick: cli.quick,
        runs: cli.runs.max(1),
        base,
        explore: cli.explore,
        w9_n: cli.n.unwrap_or(if cli.quick { 10_000 } else { 100_000 }),
        w9_phase: if cli.quick { Duration::from_millis(1_500) } else { Duration::from_secs(5) },
        session,
        dirs_made: Cell::new(0),
    };

    let mut report = Report::new(&config, std::env::args().collect());
    eprintln!("{}", report.machine_line());
    if report.machine.data_fs.as_deref() == Some("tmpfs") {
        eprintln!(
            "warning: {} is a tmpfs: fsync costs nothing there, so the numbers say little",
            config.base.display()
        );
    }
    let on = |w: Workload| all || cli.workload == w;
    // The order keeps file deletions late: W8's flushes replace (delete) files, and
    // creating files right after many deletions is slow on this machine's ext4.
    line::run(&config, &mut report)?;
    w_read::run(&config, &mut report, [on(Workload::W4), on(Workload::W5), on(Workload::W6)])?;
    if on(Workload::W2) {
        w_commit::run_w2(&config, &mut report)?;
    }
    if on(Workload::W2Parent) {
        w_parent::run(&config, &mut report)?;
    }
    if on(Workload::W3) {
        w_commit::run_w3(&config, &mut report)?;
    }
    if on(Workload::WAsync) {
        w_async::run(&config, &mut report)?;
    }
    if on(Workload::WFeed) {
        w_feed::run(&config, &mut report)?;
    }
    if on(Workload::Flush) {
        flush::run(&config, &mut report)?;
    }
    w_load::run(&config, &mut report, [on(Workload::W1), on(Workload::W7), on(Workload::W8)])?;
    if on(Workload::Query) {
        w_query::run(&config, &mut report)?;
    }
    // Last: its flushes replace many files.
    if on(Workload::W9) {
        w_stall::run(&config, &mut report)?;
    }

    targets::check(&config, &mut report);
    report.finish();
    report.print();
    if let Some(path) = &cli.json {
        report.write_json(path)?;
        eprintln!("wrote {}", path.display());
    }
    eprintln!("removing {}", config.session.path().display());
    config.session.close()?;
    Ok(())
}

/// The system temp dir, unless it is a tmpfs (where syncs are free): then `./target/bench-data`.
fn default_base() -> std::io::Result<PathBuf> {
    let temp = std::env::temp_dir();
    if report::fs_type(&temp).as_deref() == Some("tmpfs") {
        Ok(Path::new("target").join("bench-data"))
    } else {
        Ok(temp)
    }
}
