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
    /// Microseconds per operation.
    pub us_per_op: f64,
    /// `subject/case` of the row this one is compared with, in the same workload.
    pub vs: Option<String>,
    /// `ops_per_sec / vs.ops_per_sec`: above 1 means faster.
    pub ratio: Option<f64>,
    /// Anything else worth knowing about the row.
    pub note: String,
}

impl Row {
    pub fn new(workload: &str, subject: &str, case: &str, ops: usize, unit: &str, samples: &[Duration]) -> Row {
        let secs: Vec<f64> = samples.iter().map(Duration::as_secs_f64).collect();
        let seconds = median(&mut secs.clone());
        let ops_per_sec = if seconds > 0.0 { ops as f64 / seconds } else { f64::INFINITY };
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
            us_per_op: seconds * 1e6 / ops.max(1) as f64,
            vs: None,
            ratio: None,
            note: String::new(),
        }
    }

    pub fn durability(mut self, durability: &str) -> Row {
        self.durability = durability.to_owned();
        self
    }

    /// Compare with the row `subject/case` of the same workload (added before this one).
    pub fn vs(mut self, key: &str) -> Row {
        self.vs = Some(key.to_owned());
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Row {
        self.note = note.into();
        self
    }

    fn key(&self) -> String {
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
        }
    }

    /// Adds a row, resolving its `vs` against the rows already there.
    pub fn add(&mut self, mut row: Row) {
        if let Some(vs) = &row.vs {
            let base = self.rows.iter().find(|r| r.workload == row.workload && &r.key() == vs);
            row.ratio = base.map(|b| row.ops_per_sec / b.ops_per_sec);
        }
        eprintln!("  {:<10} {:<44} {:>12} {}/s", row.subject, row.case, fmt_rate(row.ops_per_sec), row.unit);
        self.rows.push(row);
    }

    pub fn find(&self, workload: &str, key: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.workload == workload && r.key() == key)
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
    }

    pub fn print(&self) {
        let header = ["workload", "subject", "case", "durability", "n", "median", "ops/s", "per op", "vs", "note"];
        let cells: Vec<[String; 10]> = self
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
    }

    pub fn write_json(&self, path: &Path) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(path, json)
    }
}

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
