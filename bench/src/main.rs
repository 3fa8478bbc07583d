//! `shelf-bench`: Shelf measured next to the physical limits of this machine, in one run.
//!
//! ```text
//! cargo run --release -p shelf-bench -- [WORKLOAD] [--quick] [--n N] [--runs R] [--dir DIR] [--json PATH]
//! ```
//!
//! Sync-bound numbers are only as good as the machine is quiet: other builds or tests
//! writing to the same file system make them noisy (the load average at start and end
//! is in the output). On ext4 without a journal, wait about 40 s between two runs: the
//! previous run's deleted files slow down creating new ones for that long.
//!
//! Each workload is one module with a `run(&Config, &mut Report)` function. The
//! physical line (fsync latency, raw atomic replace) lives in [`physical`] so that
//! every workload can put its numbers next to what the disk allows. Peer stores come
//! later, as more subjects in the same rows.

mod flush;
mod physical;
mod report;

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, ValueEnum};

use crate::report::Report;

/// Benchmarks of Shelf, with the physical line of this machine measured in the same run.
#[derive(Parser, Debug)]
#[command(name = "shelf-bench", version)]
struct Cli {
    /// Which workload to run.
    #[arg(value_enum, default_value_t = Workload::All)]
    workload: Workload,
    /// Small sizes for a smoke run (N = 1,000 unless --n is given).
    #[arg(long)]
    quick: bool,
    /// Entities per run [default: 10,000, or 1,000 with --quick].
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
    /// Flush of N dirty per_record entities: batched syncs vs one fsync+rename+dir-fsync per file.
    Flush,
}

/// What every workload gets: sizes and where to put its data.
#[derive(Debug)]
pub struct Config {
    /// Entities per run.
    pub n: usize,
    /// Repetitions of each measurement.
    pub runs: usize,
    /// The directory given by `--dir` (or its default).
    pub base: PathBuf,
    /// Whether to run the prototypes as well.
    pub explore: bool,
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
        let dir = self.session.path().join(format!("{n:03}-{label}"));
        std::fs::create_dir(&dir)?;
        Ok(dir)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shelf-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> Result<(), Box<dyn std::error::Error>> {
    let base = match &cli.dir {
        Some(dir) => dir.clone(),
        None => default_base()?,
    };
    std::fs::create_dir_all(&base)?;
    let base = base.canonicalize()?;
    let n = cli.n.unwrap_or(if cli.quick { 1_000 } else { 10_000 });
    let session = tempfile::Builder::new().prefix("shelf-bench-").tempdir_in(&base)?;
    let config = Config { n, runs: cli.runs.max(1), base, explore: cli.explore, session, dirs_made: Cell::new(0) };

    let mut report = Report::new(&config, std::env::args().collect());
    eprintln!("{}", report.machine_line());
    if report.machine.data_fs.as_deref() == Some("tmpfs") {
        eprintln!(
            "warning: {} is a tmpfs: fsync costs nothing there, so the numbers say little",
            config.base.display()
        );
    }
    let all = cli.workload == Workload::All;
    if all || cli.workload == Workload::Flush {
        flush::run(&config, &mut report)?;
    }

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
