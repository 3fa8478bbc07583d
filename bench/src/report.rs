//! Results: rows of one measurement each, printed as a table and written as JSON.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::Config;

/// One measured case: `ops` operations, timed `samples.len()` times.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The workload, e.g. `flush`.
    pub workload: String,
    /// Who was measured: `shelf`, `physical`, `prototype`, later a peer's name.
    pub subject: String,
    /// The variant, e.g. `batched`.
    pub case: String,
    /// What a crash right after the measured operation keeps, in words.
    pub durability: String,
    /// Operations per sample.
    pub ops: usize,
    /// What one operation is, e.g. `file`.
    pub unit: String,
    /// Median seconds per sample.
    pub seconds: f64,
    /// Every sample, in seconds.
    pub samples: Vec<f64>,
    /// `ops / seconds`.
    pub ops_per_sec: f64,
    /// `ops` over the fastest sample: on a shared machine, interference only slows a
    /// sample down, so the best one is the closest to what the code can do.
    pub best_ops_per_sec: f64,
    /// Microseconds per operation.
    pub us_per_op: f64,
    /// `subject/case` of the row this one is compared with, in the same workload.
    pub vs: Option<String>,
    /// `ops_per_sec / vs.ops_per_sec`: above 1 means faster.
    pub ratio: Option<f64>,
    /// For Shelf rows: `subject/case` of the fastest durable peer row in the same workload.
    pub best_peer: Option<String>,
    /// `ops_per_sec / best_peer.ops_per_sec`: above 1 means Shelf is faster.
    pub peer_ratio: Option<f64>,
    /// Whether what the row measured is on disk when the operation returns (or, for
    /// reads, whether the row is a real store): only durable peers are "best peer".
    pub durable: bool,
    /// Bytes on disk of the store after the operation, when measured.
    pub bytes_on_disk: Option<u64>,
    /// Anything else worth knowing about the row.
    pub note: String,
    /// Per-operation latency, for rows that time every operation (W9).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency: Option<Latency>,
    /// How old the newest finished flush got while the row ran (W9).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flush_age: Option<FlushAge>,
}

/// Latency of single operations, in microseconds (medians over the runs).
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50_us: f64,
    /// The 99th percentile, where a workload reports it (W-async).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_us: Option<f64>,
    pub p99_9_us: f64,
    pub max_us: f64,
    /// W9: the largest latency of an operation that was neither preempted nor
    /// interrupted (see `preempted` and `interrupted`): its time went to running
    /// its code or to sleeping on something in the process (a lock, a page fault).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unpreempted_max_us: Option<f64>,
    /// W9: operations during which the scheduler preempted the thread (an
    /// involuntary context switch, no voluntary one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preempted: Option<usize>,
    /// W9: operations with no context switch at all that took over twice their
    /// thread's CPU time, and 200 µs more: the CPU was taken by interrupts or by
    /// the hypervisor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<usize>,
}

/// The age of the newest durable flush under load (medians over the runs).
#[derive(Debug, Clone, Serialize)]
pub struct FlushAge {
    /// The background flusher's interval.
    pub interval_ms: f64,
    /// The largest `now - health().last_flush` seen (from the start of the
    /// measurement until the first flush finished).
    pub max_age_ms: f64,
    /// Flushes that finished during the measurement.
    pub flushes: u64,
    /// The longest of them.
    pub longest_flush_ms: f64,
    /// The most files one of them wrote.
    pub largest_flush_files: usize,
    /// The physical line for that many files, in the same run: plain std calls
    /// replacing as many existing files of the same size, made durable together.
    pub line_ms: f64,
}

impl Row {
    pub fn new(workload: &str, subject: &str, case: &str, ops: usize, unit: &str, samples: &[Duration]) -> Row {
        let secs: Vec<f64> = samples.iter().map(Duration::as_secs_f64).collect();
        let seconds = median(&mut secs.clone());
        let ops_per_sec = if seconds > 0.0 { ops as f64 / seconds } else { f64::INFINITY };
        let fastest = secs.iter().copied().fold(f64::INFINITY, f64::min);
        let best_ops_per_sec = if fastest > 0.0 { ops as f64 / fastest } else { f64::INFINITY };
        Row {
            workload: workload.to_owned(),
            subject: subject.to_owned(),
            case: case.to_owned(),
            durability: String::new(),
            ops,
            unit: unit.to_owned(),
            seconds,
            samples: secs,
            ops_per_sec,
            best_ops_per_sec,
            us_per_op: seconds * 1e6 / ops.max(1) as f64,
            vs: None,
            ratio: None,
            best_peer: None,
            peer_ratio: None,
            durable: true,
            bytes_on_disk: None,
            note: String::new(),
            latency: None,
            flush_age: None,
        }
    }

    pub fn durability(mut self, durability: &str) -> Row {
        self.durability = durability.to_owned();
        self
    }

    /// What the row measured is not on disk when the operation returns (a peer setting
    /// that defers syncs): such a row is never the "best peer".
    pub fn not_durable(mut self) -> Row {
        self.durable = false;
        self
    }

    pub fn bytes_on_disk(mut self, bytes: u64) -> Row {
        self.bytes_on_disk = Some(bytes);
        self
    }

    /// Compare with the row `subject/case` (added before this one): of the same
    /// workload if there is one, else the first such row of any workload (the
    /// physical line).
    pub fn vs(mut self, key: &str) -> Row {
        self.vs = Some(key.to_owned());
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Row {
        self.note = note.into();
        self
    }

    pub fn latency(mut self, latency: Latency) -> Row {
        self.latency = Some(latency);
        self
    }

    pub fn flush_age(mut self, age: FlushAge) -> Row {
        self.flush_age = Some(age);
        self
    }

    pub fn key(&self) -> String {
        format!("{}/{}", self.subject, self.case)
    }
}

/// The machine the numbers come from.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: Option<String>,
    pub os: String,
    pub kernel: Option<String>,
    pub data_dir: PathBuf,
    pub data_fs: Option<String>,
    pub data_device: Option<String>,
    pub data_mount_options: Option<String>,
    /// For ext4: whether it has a journal. Without one, an fsync cannot share a
    /// journal commit with others, and a crash leaves work for fsck.
    pub data_fs_journal: Option<String>,
    /// `/proc/loadavg` when the run started and when it ended: other work on the
    /// machine (builds, tests) makes sync-bound numbers noisy.
    pub loadavg_start: Option<String>,
    pub loadavg_end: Option<String>,
}

impl Machine {
    fn detect(data_dir: &Path) -> Machine {
        let mount = mount_of(data_dir);
        Machine {
            cpus: std::thread::available_parallelism().map(usize::from).unwrap_or(1),
            cpu_model: std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|info| {
                info.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_owned())
            }),
            os: std::env::consts::OS.to_owned(),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").ok().map(|s| s.trim().to_owned()),
            data_dir: data_dir.to_path_buf(),
            data_fs: mount.as_ref().map(|m| m.fs_type.clone()),
            data_device: mount.as_ref().map(|m| m.device.clone()),
            data_fs_journal: mount.as_ref().and_then(ext4_journal),
            data_mount_options: mount.map(|m| m.options),
            loadavg_start: loadavg(),
            loadavg_end: None,
        }
    }
}

/// Settings of the run, as given.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub n: usize,
    pub runs: usize,
    pub explore: bool,
    pub args: Vec<String>,
    pub unix_time: u64,
    pub release: bool,
}

/// Everything measured in one run.
#[derive(Debug, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub settings: Settings,
    pub rows: Vec<Row>,
    /// Conclusions worth a line of their own, e.g. a ratio the acceptance asks for.
    pub notes: Vec<String>,
    /// Every setting of each peer, by subject.
    pub peer_settings: Vec<(String, String)>,
    /// The targets of the issues, checked against this run's rows.
    pub targets: Vec<Target>,
}

/// A target an issue sets, and whether this run met it.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// Where it is set, e.g. `issue 5`.
    pub source: String,
    /// The target in words, e.g. `W2 8 threads >= 4x 1 thread`.
    pub target: String,
    /// What this run measured, in words.
    pub measured: String,
    /// `None` when the rows it needs were not run.
    pub met: Option<bool>,
}

impl Report {
    pub fn new(config: &Config, args: Vec<String>) -> Report {
        Report {
            machine: Machine::detect(&config.base),
            settings: Settings {
                n: config.n,
                runs: config.runs,
                explore: config.explore,
                args,
                unix_time: SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
                release: !cfg!(debug_assertions),
            },
            rows: Vec::new(),
            notes: Vec::new(),
            peer_settings: Vec::new(),
            targets: Vec::new(),
        }
    }

    /// Adds a row, resolving its `vs` against the rows already there.
    pub fn add(&mut self, mut row: Row) {
        if let Some(vs) = &row.vs {
            let base = self
                .rows
                .iter()
                .find(|r| r.workload == row.workload && &r.key() == vs)
                .or_else(|| self.rows.iter().find(|r| &r.key() == vs));
            row.ratio = base.map(|b| row.ops_per_sec / b.ops_per_sec);
        }
        eprintln!(
            "  {:<19} {:<10} {:<44} {:>12} {}/s",
            row.workload,
            row.subject,
            row.case,
            fmt_rate(row.ops_per_sec),
            row.unit
        );
        self.rows.push(row);
    }

    pub fn find(&self, workload: &str, key: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.workload == workload && r.key() == key)
    }

    /// The ops/s of a row (its median sample), if it was run.
    pub fn rate(&self, workload: &str, key: &str) -> Option<f64> {
        self.find(workload, key).map(|r| r.ops_per_sec)
    }

    /// The ops/s of a row's fastest sample, if it was run.
    pub fn best_rate(&self, workload: &str, key: &str) -> Option<f64> {
        self.find(workload, key).map(|r| r.best_ops_per_sec)
    }

    /// Records a peer's settings once.
    pub fn peer_settings(&mut self, subject: &str, settings: &str) {
        if !self.peer_settings.iter().any(|(s, _)| s == subject) {
            self.peer_settings.push((subject.to_owned(), settings.to_owned()));
        }
    }

    pub fn target(&mut self, target: Target) {
        self.targets.push(target);
    }

    /// Compares every Shelf row with the fastest durable peer row of its workload.
    fn rank_peers(&mut self) {
        let best: Vec<Option<(String, f64)>> = self
            .rows
            .iter()
            .map(|row| {
                if !row.subject.starts_with("shelf") {
                    return None;
                }
                self.rows
                    .iter()
                    .filter(|r| r.workload == row.workload && PEERS.contains(&r.subject.as_str()) && r.durable)
                    .max_by(|a, b| a.ops_per_sec.total_cmp(&b.ops_per_sec))
                    .map(|b| (b.key(), b.ops_per_sec))
            })
            .collect();
        for (row, best) in self.rows.iter_mut().zip(best) {
            if let Some((key, rate)) = best {
                row.peer_ratio = Some(row.ops_per_sec / rate);
                row.best_peer = Some(key);
            }
        }
    }

    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    pub fn machine_line(&self) -> String {
        let m = &self.machine;
        format!(
            "machine: {} cpus ({}), {} {}; data dir {} on {}{} {} ({}){}",
            m.cpus,
            m.cpu_model.as_deref().unwrap_or("?"),
            m.os,
            m.kernel.as_deref().unwrap_or(""),
            m.data_dir.display(),
            m.data_fs.as_deref().unwrap_or("?"),
            m.data_fs_journal.as_deref().map(|j| format!(" with {j}")).unwrap_or_default(),
            m.data_device.as_deref().unwrap_or("?"),
            m.data_mount_options.as_deref().unwrap_or("?"),
            if self.settings.release { "" } else { "; DEBUG BUILD: use --release" },
        )
    }

    /// Records the end of the run; call before [`Report::print`] and [`Report::write_json`].
    pub fn finish(&mut self) {
        self.machine.loadavg_end = loadavg();
        self.rank_peers();
    }

    pub fn print(&self) {
        let header = [
            "workload",
            "subject",
            "case",
            "durability",
            "n",
            "median",
            "ops/s",
            "per op",
            "vs best peer",
            "vs line/baseline",
            "note",
        ];
        let cells: Vec<[String; 11]> = self
            .rows
            .iter()
            .map(|r| {
                [
                    r.workload.clone(),
                    r.subject.clone(),
                    r.case.clone(),
                    r.durability.clone(),
                    format!("{} {}", r.ops, r.unit),
                    fmt_secs(r.seconds),
                    fmt_rate(r.ops_per_sec),
                    format!("{:.1} µs", r.us_per_op),
                    match (&r.best_peer, r.peer_ratio) {
                        (Some(peer), Some(ratio)) => format!("{ratio:.2}x {}", peer.split('/').next().unwrap_or("")),
                        _ => String::new(),
                    },
                    match (&r.vs, r.ratio) {
                        (Some(vs), Some(ratio)) => format!("{ratio:.2}x {vs}"),
                        _ => String::new(),
                    },
                    r.note.clone(),
                ]
            })
            .collect();
        let mut widths = header.map(|h| h.chars().count());
        for row in &cells {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        println!();
        println!("{}", self.machine_line());
        println!(
            "n = {}, runs = {} (median shown); load average at start {}, at end {}",
            self.settings.n,
            self.settings.runs,
            self.machine.loadavg_start.as_deref().unwrap_or("?"),
            self.machine.loadavg_end.as_deref().unwrap_or("?"),
        );
        println!();
        let line = |cells: &[String]| {
            let parts: Vec<String> = cells
                .iter()
                .zip(widths)
                .enumerate()
                .map(|(i, (c, w))| {
                    // Numbers right-aligned, words left-aligned.
                    if (4..=7).contains(&i) {
                        format!("{c:>w$}")
                    } else {
                        format!("{c:<w$}")
                    }
                })
                .collect();
            println!("{}", parts.join("  ").trim_end());
        };
        line(&header.map(str::to_owned));
        line(&widths.map(|w| "-".repeat(w)));
        for row in &cells {
            line(row);
        }
        if !self.notes.is_empty() {
            println!();
            for note in &self.notes {
                println!("{note}");
            }
        }
        if !self.peer_settings.is_empty() {
            println!();
            println!("peer settings:");
            for (subject, settings) in &self.peer_settings {
                println!("  {subject}: {settings}");
            }
        }
        if !self.targets.is_empty() {
            println!();
            println!("targets:");
            for t in &self.targets {
                let verdict = match t.met {
                    Some(true) => "MET   ",
                    Some(false) => "MISSED",
                    None => "n/a   ",
                };
                println!("  {verdict} [{}] {}: {}", t.source, t.target, t.measured);
            }
        }
    }

    pub fn write_json(&self, path: &Path) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(path, json)
    }
}

/// The subjects that are peer stores.
pub const PEERS: [&str; 3] = ["sqlite", "redb", "native_db"];

fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

pub fn fmt_rate(per_sec: f64) -> String {
    if per_sec >= 10_000.0 {
        format!("{:.0}k", per_sec / 1000.0)
    } else if per_sec >= 100.0 {
        format!("{per_sec:.0}")
    } else {
        format!("{per_sec:.1}")
    }
}

fn fmt_secs(secs: f64) -> String {
    if secs >= 1.0 {
        format!("{secs:.2} s")
    } else {
        format!("{:.1} ms", secs * 1e3)
    }
}

/// The 1, 5 and 15 minute load averages (Linux only).
fn loadavg() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(text.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

struct Mount {
    device: String,
    fs_type: String,
    options: String,
}

/// The mount that holds `path`: the longest mount point that is a prefix of it.
fn mount_of(path: &Path) -> Option<Mount> {
    let path = path.canonicalize().ok()?;
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let device = fields.next()?;
            let point = fields.next()?.replace("\\040", " ");
            let fs_type = fields.next()?;
            let options = fields.next()?;
            path.starts_with(&point).then(|| {
                (
                    point.len(),
                    Mount { device: device.to_owned(), fs_type: fs_type.to_owned(), options: options.to_owned() },
                )
            })
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, mount)| mount)
}

/// `journal` or `no journal`, for an ext4 mount whose device shows in /sys/fs/ext4.
fn ext4_journal(mount: &Mount) -> Option<String> {
    if mount.fs_type != "ext4" {
        return None;
    }
    let device = Path::new(&mount.device).file_name()?.to_str()?;
    let task = std::fs::read_to_string(format!("/sys/fs/ext4/{device}/journal_task")).ok()?;
    Some(if task.trim() == "<none>" { "no journal" } else { "journal" }.to_owned())
}

/// The file-system type of the mount that holds `path`, e.g. `ext4` or `tmpfs` (Linux only).
pub fn fs_type(path: &Path) -> Option<String> {
    mount_of(path).map(|m| m.fs_type)
}
