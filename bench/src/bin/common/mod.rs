//! What the micro-benchmarks in `src/bin/` share: a seeded RNG, timing, number
//! formatting, a plain text table, machine facts and the command that reproduces a
//! run. Each binary includes it as `mod common;` and uses a part of it.

#![allow(dead_code)]

#[path = "../../rng.rs"]
mod rng;
pub use rng::Rng;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// Runs `f` once and returns its result and how long it took.
pub fn timed<R>(f: impl FnOnce() -> R) -> (R, Duration) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed())
}

/// The median of some numbers (the upper one of the middle two).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Nanoseconds per operation.
pub fn ns_per(elapsed: Duration, ops: usize) -> f64 {
    elapsed.as_secs_f64() * 1e9 / ops.max(1) as f64
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Operations per second from nanoseconds per operation, e.g. `12.3 M/s`.
pub fn rate(ns_per_op: f64) -> String {
    let per_sec = 1e9 / ns_per_op;
    if per_sec >= 1e6 {
        format!("{:.2} M/s", per_sec / 1e6)
    } else if per_sec >= 1e3 {
        format!("{:.1} k/s", per_sec / 1e3)
    } else {
        format!("{per_sec:.1} /s")
    }
}

/// A duration per operation with a readable unit.
pub fn per_op(ns: f64) -> String {
    if ns >= 1e9 {
        format!("{:.2} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e4 {
        format!("{:.1} us", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

/// A plain text table: a header and rows, left-aligned first column, the rest
/// right-aligned.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Table { header: header.iter().map(|h| (*h).to_owned()).collect(), rows: Vec::new() }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn print(&self) {
        let columns = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(String::len).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut out = String::new();
            for (i, width) in widths.iter().enumerate() {
                let cell = cells.get(i).map_or("", String::as_str);
                let pad = width - cell.chars().count();
                if i == 0 {
                    let _ = write!(out, "{cell}{}", " ".repeat(pad));
                } else {
                    let _ = write!(out, "  {}{cell}", " ".repeat(pad));
                }
            }
            println!("{}", out.trim_end());
        };
        line(&self.header);
        println!("{}", "-".repeat(widths.iter().sum::<usize>() + 2 * (columns - 1)));
        for row in &self.rows {
            line(row);
        }
    }
}

/// The command that reproduces this run, from the arguments it got.
pub fn command(bin: &str) -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut out = format!("cargo run --release -p shelf-bench --bin {bin}");
    if !args.is_empty() {
        let _ = write!(out, " -- {}", args.join(" "));
    }
    out
}

/// Prints the command, the build profile and the machine.
pub fn print_header(bin: &str, what: &str) {
    println!("shelf-bench {bin}: {what}");
    println!("command: {}", command(bin));
    if cfg!(debug_assertions) {
        println!("WARNING: a debug build; the numbers mean nothing. Use --release.");
    }
    println!("machine: {}", machine());
    println!();
}

/// Cores, CPU model, OS and the compiler, as far as the process can tell.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or_else(|_| "?".to_owned(), |n| n.to_string());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(format!("{:.1} GiB RAM", kib as f64 / (1024.0 * 1024.0)))
        })
        .unwrap_or_else(|| "RAM unknown".to_owned());
    let rustc = std::process::Command::new("rustc")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "rustc not on PATH".to_owned());
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .map_or_else(String::new, |l| format!(", load average {l} at start"));
    format!(
        "{cores} cores (available_parallelism), {cpu}, {memory}, {}-{}, {rustc}{load}",
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

/// A fresh data directory for a store (memory collections write only `shelf.json`
/// and `LOCK` there).
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("cannot make a temp dir")
}

/// One thing to time: `run` does `ops` operations and returns how many items they
/// produced (records found, orders returned: a checksum that keeps the work alive).
pub struct Contender<'a> {
    pub name: String,
    pub ops: usize,
    pub run: Box<dyn FnMut() -> usize + 'a>,
}

impl<'a> Contender<'a> {
    pub fn new(name: impl Into<String>, ops: usize, run: impl FnMut() -> usize + 'a) -> Self {
        Contender { name: name.into(), ops, run: Box::new(run) }
    }
}

/// What [`race`] measured of one contender.
pub struct Timing {
    pub name: String,
    /// Nanoseconds per operation, one per round.
    pub rounds: Vec<f64>,
    /// Items each round produced (the same every round, or the workload is broken).
    pub items: usize,
    pub ops: usize,
}

impl Timing {
    pub fn median(&self) -> f64 {
        median(&self.rounds)
    }
    pub fn best(&self) -> f64 {
        self.rounds.iter().copied().fold(f64::INFINITY, f64::min)
    }
    pub fn items_per_op(&self) -> f64 {
        self.items as f64 / self.ops.max(1) as f64
    }
    pub fn rounds_text(&self) -> String {
        self.rounds.iter().map(|&ns| per_op(ns)).collect::<Vec<_>>().join(" ")
    }
}

/// Runs every contender once per round, rotating who goes first so that none always
/// gets a warm (or a cold) cache. Panics if a contender's item count changes.
pub fn race(contenders: &mut [Contender], rounds: usize) -> Vec<Timing> {
    let mut out: Vec<Timing> = contenders
        .iter()
        .map(|c| Timing { name: c.name.clone(), rounds: Vec::new(), items: usize::MAX, ops: c.ops })
        .collect();
    for round in 0..rounds.max(1) {
        for k in 0..contenders.len() {
            let which = (k + round) % contenders.len();
            let contender = &mut contenders[which];
            let start = Instant::now();
            let items = (contender.run)();
            let ns = ns_per(start.elapsed(), contender.ops);
            let timing = &mut out[which];
            assert!(
                timing.items == usize::MAX || timing.items == items,
                "{}: {items} items now, {} before",
                timing.name,
                timing.items
            );
            timing.items = items;
            timing.rounds.push(ns);
        }
    }
    out
}
