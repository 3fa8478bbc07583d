//! The physical line: what the disk and file system allow, measured with plain std
//! calls on the same directory as the store, so every workload can be put next to it.
//!
//! Also the raw prototypes of other ways to make a batch of files durable, used by
//! `--explore` to see what Shelf's flush could gain.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Writes back everything dirty, so one measurement does not pay for the last one.
pub fn settle() {
    #[cfg(target_os = "linux")]
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe {
        libc::sync();
    }
}

/// Latency of appending `size` bytes to one file and `fdatasync`ing it, `count` times:
/// the floor of one durable commit (what a WAL append pays).
pub fn fdatasync_append(dir: &Path, count: usize, size: usize) -> io::Result<Vec<Duration>> {
    let path = dir.join("append.log");
    let mut file = OpenOptions::new().create_new(true).append(true).open(&path)?;
    let record = vec![b'x'; size];
    let mut latencies = Vec::with_capacity(count);
    for _ in 0..count {
        let started = Instant::now();
        file.write_all(&record)?;
        file.sync_data()?;
        latencies.push(started.elapsed());
    }
    drop(file);
    std::fs::remove_file(path)?;
    Ok(latencies)
}

/// Raw sequential write bandwidth: `total` bytes written to a new file in `chunk`-sized
/// writes, then one `fdatasync`. Returns the time of the writes and the sync together.
pub fn sequential_write(dir: &Path, total: usize, chunk: usize) -> io::Result<Duration> {
    let path = dir.join("sequential.bin");
    let block: Vec<u8> = (0..chunk).map(|i| (i % 251) as u8).collect();
    settle();
    let started = Instant::now();
    let mut file = OpenOptions::new().create_new(true).write(true).open(&path)?;
    let mut written = 0;
    while written < total {
        let n = chunk.min(total - written);
        file.write_all(&block[..n])?;
        written += n;
    }
    file.sync_data()?;
    let elapsed = started.elapsed();
    drop(file);
    Ok(elapsed)
}

/// One file to replace atomically: its target path and new content.
pub type Job = (PathBuf, Vec<u8>);

fn temp_of(target: &Path) -> PathBuf {
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    target.with_file_name(format!(".tmp-{name}"))
}

fn write_temp(target: &Path, bytes: &[u8], sync: bool) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).open(temp_of(target))?;
    file.write_all(bytes)?;
    if sync {
        file.sync_data()?;
    }
    Ok(())
}

/// Runs `op` on every job, the jobs split in `threads` contiguous parts.
fn on_threads(jobs: &[Job], threads: usize, op: impl Fn(&Job) -> io::Result<()> + Sync) -> io::Result<()> {
    let chunk = jobs.len().div_ceil(threads.max(1)).max(1);
    let op = &op;
    std::thread::scope(|scope| {
        let handles: Vec<_> =
            jobs.chunks(chunk).map(|part| scope.spawn(move || part.iter().try_for_each(op))).collect();
        handles.into_iter().try_for_each(|h| h.join().unwrap_or_else(|_| Err(io::Error::other("thread panicked"))))
    })
}

/// Writes a temp file and starts its writeback without waiting for it.
fn write_temp_kick(target: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).open(temp_of(target))?;
    file.write_all(bytes)?;
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: the descriptor is open for the whole call.
        if unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The naive atomic replace, one file at a time: temp, write, fdatasync, rename, dir fsync.
pub fn replace_per_file(jobs: &[Job]) -> io::Result<Duration> {
    let started = Instant::now();
    for (target, bytes) in jobs {
        write_temp(target, bytes, true)?;
        std::fs::rename(temp_of(target), target)?;
        sync_dir(target.parent().unwrap_or(Path::new(".")))?;
    }
    Ok(started.elapsed())
}

/// How the temp files of a batch are made durable before the renames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchSync {
    /// `fdatasync` of each temp file, the files split over this many threads.
    Threads(usize),
    /// No per-file sync: temps written on `threads` threads, then one `syncfs(2)` of the file system.
    Syncfs(usize),
    /// Write every temp first and start its writeback (`sync_file_range`, Linux), then
    /// `fdatasync` them all on this many threads: the data is already in flight when
    /// the syncs start, so they mostly wait for shared journal commits.
    KickThenSync(usize),
    /// No sync at all, not even of the directory: the page-cache cost, not durable.
    Nothing,
}

/// Where the time of a batched replace went.
#[derive(Clone, Copy, Debug, Default)]
pub struct Phases {
    /// Creating and writing the temps (with their fdatasync, when synced one by one).
    pub write: Duration,
    /// A separate sync step: the `syncfs`, or the fdatasyncs after the writeback kick.
    pub sync: Duration,
    /// Renaming every temp over its target.
    pub rename: Duration,
    /// The fsync of each touched directory.
    pub dir_sync: Duration,
}

impl Phases {
    pub fn total(&self) -> Duration {
        self.write + self.sync + self.rename + self.dir_sync
    }
}

/// A batched atomic replace: make every temp durable (per `how`), rename all, one
/// fsync per directory. The shape of Shelf's flush, without Shelf.
pub fn replace_batched(jobs: &[Job], how: BatchSync) -> io::Result<Phases> {
    let mut phases = Phases::default();
    if jobs.is_empty() {
        return Ok(phases);
    }
    let mut clock = Instant::now();
    let mut lap = || {
        let now = Instant::now();
        let lap = now - clock;
        clock = now;
        lap
    };
    match how {
        BatchSync::Threads(t) => on_threads(jobs, t, |(target, bytes)| write_temp(target, bytes, true))?,
        BatchSync::Syncfs(t) => {
            on_threads(jobs, t, |(target, bytes)| write_temp(target, bytes, false))?;
            phases.write = lap();
            syncfs(jobs[0].0.parent().unwrap_or(Path::new(".")))?;
            phases.sync = lap();
        }
        BatchSync::Nothing => on_threads(jobs, 1, |(target, bytes)| write_temp(target, bytes, false))?,
        BatchSync::KickThenSync(t) => {
            on_threads(jobs, 1, |(target, bytes)| write_temp_kick(target, bytes))?;
            phases.write = lap();
            on_threads(jobs, t, |(target, _)| OpenOptions::new().write(true).open(temp_of(target))?.sync_data())?;
            phases.sync = lap();
        }
    }
    if phases.write.is_zero() {
        phases.write = lap();
    }
    let mut dirs: Vec<&Path> = Vec::new();
    for (target, _) in jobs {
        std::fs::rename(temp_of(target), target)?;
        let dir = target.parent().unwrap_or(Path::new("."));
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    phases.rename = lap();
    if how != BatchSync::Nothing {
        for dir in dirs {
            sync_dir(dir)?;
        }
    }
    phases.dir_sync = lap();
    Ok(phases)
}

/// `syncfs(2)` on the file system that holds `dir`.
#[cfg(target_os = "linux")]
fn syncfs(dir: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let file = File::open(dir)?;
    // SAFETY: the descriptor is open for the whole call.
    if unsafe { libc::syncfs(file.as_raw_fd()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn syncfs(_dir: &Path) -> io::Result<()> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "syncfs is Linux only"))
}
