//! W9 (issue 14): do writers wait for the background flusher?
//!
//! For each storage layout (`collection_file`, `collection_file+compress`,
//! `per_record`), a store of N users (100,000 in the full run) is built and flushed,
//! then opened twice, each time for one phase of a fixed duration:
//!
//! 1. flushing off: the background flusher's interval is an hour, so it never runs;
//! 2. flushing on: the flusher runs every [`FLUSH_INTERVAL`].
//!
//! In each phase one writer thread updates random users (seeded, one year older) as
//! fast as it can, and times every `update`. A monitor thread samples
//! `store.health().last_flush` every [`SAMPLE_EVERY`] and keeps the largest age of
//! the newest finished flush: `now - last_flush`, or `now - phase start` before the
//! first one. A new `last_flush` also counts the gap to the one before it (or to the
//! phase start), so a sample that waited for the flush does not hide the peak age.
//!
//! The flushing-on phase runs first, for at least the phase's duration and until
//! [`MIN_FLUSHES`] flushes have finished (at most [`MAX_PHASE`]): a per_record flush
//! of the records one writer dirties in 500 ms takes seconds, and an age measured
//! before any flush finished is only a lower bound. The flushing-off phase then runs
//! as long as the on phase did, so that both maxima come from as many updates.
//! After the on phase, the physical line replaces as many existing files as the
//! largest flush wrote, with plain std calls ([`physical::replace_batched`]): the
//! proposed per_record target is held against it (see [`crate::targets`]).
//!
//! The rows report updates per second; their `latency` holds p50, p99.9 and max per
//! update, and `flush_age` the durable-flush age.
//!
//! The writer also reads its own context-switch counts and CPU time around every
//! update (`getrusage(RUSAGE_THREAD)` and `CLOCK_THREAD_CPUTIME_ID`, two system
//! calls, in both phases alike). An update during which the scheduler preempted the
//! thread (an involuntary switch, no voluntary one) waited for a CPU, not for
//! Shelf. An update with no switch at all that took more than twice its CPU time
//! (and 200 µs more) was *interrupted*: its CPU ran interrupt handlers (the disk's
//! completions land on any core) or the hypervisor ran something else; this
//! machine's vCPUs lose up to 37 ms at a time that way, with the flusher off too
//! (steal time in `/proc/stat`, which the rows report). An update that slept (a
//! lock, a page fault) or ran long waited for something in the process. The rows
//! give the max of all updates and the max of those neither preempted nor
//! interrupted, and how many were: on a 2-core virtual machine the first is set by
//! the scheduler and the host, the second by Shelf. The targets of issue 14 are checked
//! in [`crate::targets`]. Closing a store between phases flushes what the writer made
//! dirty; that is not timed.
//!
//! Knobs for profiling: `SHELF_W9_ONLY=<layout label>` runs one layout,
//! `SHELF_W9_TRACE_US=<µs>` prints every slower update with its start on
//! `CLOCK_MONOTONIC` (to line up with `perf record -k CLOCK_MONOTONIC`), and
//! `SHELF_W9_NICE=<n>` sets the flusher's niceness.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use shelf::Store;

use crate::data::{self, CollectionFile, CollectionFileZ, PerRecord, Rng, ShelfKind};
use crate::physical;
use crate::report::{FlushAge, Latency, Report, Row};
use crate::{BoxError, Config};

pub const W9: &str = "W9 writes vs flusher";
/// The background flusher's interval in the flushing-on phase.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(500);
/// The interval in the flushing-off phase: longer than any run, so it never fires.
const NO_FLUSH: Duration = Duration::from_secs(3600);
/// The flushing-on phase lasts until this many flushes finished (or [`MAX_PHASE`]).
pub const MIN_FLUSHES: u64 = 3;
/// The longest a flushing-on phase runs.
const MAX_PHASE: Duration = Duration::from_secs(60);
/// How often the monitor reads `store.health()`.
const SAMPLE_EVERY: Duration = Duration::from_millis(10);
/// The layouts, as their labels in [`data`]: what the targets look up.
pub const LAYOUTS: [&str; 3] = [CollectionFile::LABEL, CollectionFileZ::LABEL, PerRecord::LABEL];

/// The case of a W9 row: `<layout> flushing on` or `... off`.
pub fn case(layout: &str, flushing: bool) -> String {
    format!("{layout} flushing {}", if flushing { "on" } else { "off" })
}

pub fn run(config: &Config, report: &mut Report) -> Result<(), BoxError> {
    eprintln!(
        "W9: one writer over {} users, {:.1} s with the flusher every {} ms and {:.1} s without, per layout",
        config.w9_n,
        config.w9_phase.as_secs_f64(),
        FLUSH_INTERVAL.as_millis(),
        config.w9_phase.as_secs_f64()
    );
    // SHELF_W9_ONLY=<layout label>: that layout alone (to profile it).
    let only = std::env::var("SHELF_W9_ONLY").ok();
    let wanted = |label: &str| only.as_deref().is_none_or(|o| o == label);
    if wanted(CollectionFile::LABEL) {
        layout::<CollectionFile>(config, report)?;
    }
    if wanted(CollectionFileZ::LABEL) {
        layout::<CollectionFileZ>(config, report)?;
    }
    if wanted(PerRecord::LABEL) {
        layout::<PerRecord>(config, report)?;
    }
    Ok(())
}

/// What one phase measured.
struct Phase {
    /// Nanoseconds of every update, sorted.
    latencies: Vec<u64>,
    /// The largest of the updates the scheduler did not preempt, in nanoseconds.
    unpreempted_max: u64,
    /// Updates during which the scheduler preempted the writer.
    preempted: usize,
    /// Updates whose CPU went to interrupts or the hypervisor (see the module docs).
    interrupted: usize,
    /// CPU time the hypervisor stole from this machine during the phase (all CPUs).
    steal: Duration,
    elapsed: Duration,
    /// The largest age of the newest finished flush.
    max_age: Duration,
    /// Flushes that finished during the phase.
    flushes: u64,
    /// The longest of those flushes, as `stats().last_flush` reported it.
    longest_flush: Duration,
    /// The most files one of them wrote.
    largest_flush_files: usize,
}

impl Phase {
    fn pct(&self, p: f64) -> Duration {
        let v = &self.latencies;
        if v.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len());
        Duration::from_nanos(v[rank - 1])
    }

    fn max(&self) -> Duration {
        Duration::from_nanos(self.latencies.last().copied().unwrap_or(0))
    }
}

fn layout<K: ShelfKind>(config: &Config, report: &mut Report) -> Result<(), BoxError> {
    let n = config.w9_n;
    let mut off_runs = Vec::new();
    let mut on_runs = Vec::new();
    for run in 0..config.runs {
        let dir = config.fresh_dir(&format!("w9-{}", K::LABEL))?;
        {
            let store = K::open_manual(&dir)?;
            let users = store.collection::<K::U>()?;
            for u in data::users(1, n) {
                users.insert(K::user(&u))?;
            }
            store.flush()?;
            store.close()?;
        }
        let seed = 0x5eed_0900 + run as u64;
        let mut duration = config.w9_phase;
        for (flushing, runs) in [(true, &mut on_runs), (false, &mut off_runs)] {
            physical::settle();
            let interval = if flushing { FLUSH_INTERVAL } else { NO_FLUSH };
            // SHELF_W9_NICE: the flusher's niceness (`StoreBuilder::flush_nice`).
            let nice = std::env::var("SHELF_W9_NICE").ok().and_then(|n| n.parse().ok());
            let nice = nice.unwrap_or(shelf::DEFAULT_FLUSH_NICE);
            let store = K::builder(&dir).flush_interval(interval).flush_nice(nice).open()?;
            let phase = phase::<K>(&store, n, duration, flushing, seed)?;
            // Flushes what the writer left dirty: not timed.
            store.close()?;
            duration = phase.elapsed;
            runs.push(phase);
        }
    }
    let largest = median_usize(on_runs.iter().map(|p| p.largest_flush_files).collect());
    let line = line_for(config, largest)?;
    for (flushing, runs) in [(false, &off_runs), (true, &on_runs)] {
        let samples: Vec<Duration> = runs.iter().map(|p| p.elapsed).collect();
        let updates = median_usize(runs.iter().map(|p| p.latencies.len()).collect());
        let latency = Latency {
            p99_us: None,
            p50_us: median_us(runs.iter().map(|p| p.pct(0.5)).collect()),
            p99_9_us: median_us(runs.iter().map(|p| p.pct(0.999)).collect()),
            max_us: median_us(runs.iter().map(Phase::max).collect()),
            unpreempted_max_us: Some(median_us(runs.iter().map(|p| Duration::from_nanos(p.unpreempted_max)).collect())),
            preempted: Some(median_usize(runs.iter().map(|p| p.preempted).collect())),
            interrupted: Some(median_usize(runs.iter().map(|p| p.interrupted).collect())),
        };
        let steal = median_us(runs.iter().map(|p| p.steal).collect()) / 1e3;
        let mut row = Row::new(W9, "shelf", &case(K::LABEL, flushing), updates, "update", &samples)
            .durability(if flushing { "flush every 500 ms" } else { "none (no flush)" })
            .latency(latency.clone());
        let lat = format!(
            "per update p50 {:.1} µs, p99.9 {:.1} µs, max {} (neither preempted nor interrupted: max {}; {} preempted, {} interrupted; hypervisor steal {steal:.0} ms)",
            latency.p50_us,
            latency.p99_9_us,
            fmt_us(latency.max_us),
            fmt_us(latency.unpreempted_max_us.unwrap_or_default()),
            latency.preempted.unwrap_or_default(),
            latency.interrupted.unwrap_or_default()
        );
        if flushing {
            let age = FlushAge {
                interval_ms: FLUSH_INTERVAL.as_secs_f64() * 1e3,
                max_age_ms: median_us(runs.iter().map(|p| p.max_age).collect()) / 1e3,
                flushes: median_usize(runs.iter().map(|p| p.flushes as usize).collect()) as u64,
                longest_flush_ms: median_us(runs.iter().map(|p| p.longest_flush).collect()) / 1e3,
                largest_flush_files: largest,
                line_ms: line.as_secs_f64() * 1e3,
            };
            let flushes = if age.flushes == 0 {
                "no flush finished in the phase: the age is a lower bound".to_owned()
            } else {
                format!(
                    "{} flushes, longest {:.0} ms, largest {} files (the line replaces as many in {:.0} ms)",
                    age.flushes, age.longest_flush_ms, age.largest_flush_files, age.line_ms
                )
            };
            row = row.flush_age(age.clone()).note(format!(
                "{lat}; newest flush up to {:.0} ms old ({:.1}x the interval); {flushes}; of {n}",
                age.max_age_ms,
                age.max_age_ms / age.interval_ms,
            ));
        } else {
            row = row.note(format!("{lat}; of {n}"));
        }
        report.add(row);
    }
    let max = |runs: &[Phase]| median_us(runs.iter().map(Phase::max).collect());
    let (on, off) = (max(&on_runs), max(&off_runs));
    report.note(format!(
        "W9 {}: max update latency with flushing on {} vs off {}: {:.1}x",
        K::LABEL,
        fmt_us(on),
        fmt_us(off),
        on / off.max(f64::MIN_POSITIVE)
    ));
    Ok(())
}

/// The physical line for a flush of `files` files: as many existing files of a
/// user record's size replaced by plain std calls, durable together, the faster of
/// the two ways ([`physical::BatchSync`]) Shelf's batch may take. Zero for no files.
fn line_for(config: &Config, files: usize) -> Result<Duration, BoxError> {
    if files == 0 {
        return Ok(Duration::ZERO);
    }
    let dir = config.fresh_dir("w9-line")?;
    let bytes = serde_json::to_vec_pretty(&data::users(1, 1)[0])?;
    let jobs: Vec<physical::Job> = (0..files).map(|i| (dir.join(format!("{i}.json")), bytes.clone())).collect();
    for (path, bytes) in &jobs {
        std::fs::write(path, bytes)?;
    }
    physical::settle();
    let mut best = Duration::MAX;
    for how in [physical::BatchSync::Threads(16), physical::BatchSync::Syncfs(1)] {
        match physical::replace_batched(&jobs, how) {
            Ok(phases) => best = best.min(phases.total()),
            // `syncfs` where the platform has none: the other way stands.
            Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {}
            Err(e) => return Err(e.into()),
        }
        physical::settle();
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(best)
}

/// One phase on an open store: the writer, and the monitor of `health().last_flush`.
/// With `flushing`, the writer goes on past `duration` until [`MIN_FLUSHES`] flushes
/// finished, up to [`MAX_PHASE`].
fn phase<K: ShelfKind>(
    store: &Store,
    n: usize,
    duration: Duration,
    flushing: bool,
    seed: u64,
) -> Result<Phase, BoxError> {
    let users = store.collection::<K::U>()?;
    let flushes_before = store.health().flushes;
    let stop = AtomicBool::new(false);
    // Set by the monitor once enough flushes finished (at once without flushing).
    let enough = AtomicBool::new(!flushing);
    let started_at = SystemTime::now();
    let started = Instant::now();
    let steal_before = steal_ns();
    let (writer, monitor) = std::thread::scope(|s| {
        let monitor = s.spawn(|| monitor(store, started_at, &stop, &enough));
        let writer = (|| -> Result<(Vec<u64>, u64, usize, usize), BoxError> {
            let mut rng = Rng::new(seed);
            let mut latencies = Vec::with_capacity(4 << 20);
            let (mut unpreempted_max, mut preempted, mut interrupted) = (0, 0, 0);
            let mut switches = context_switches()?;
            let trace_over = trace_threshold();
            let mut traced = Vec::new();
            loop {
                let elapsed = started.elapsed();
                if elapsed >= MAX_PHASE || (elapsed >= duration && enough.load(Ordering::Relaxed)) {
                    break;
                }
                let id = rng.below(n) as u64 + 1;
                let at = trace_over.map(|_| monotonic_ns());
                let cpu = thread_cpu_ns();
                let t = Instant::now();
                users.update(&id, K::touch)?;
                let latency = t.elapsed().as_nanos() as u64;
                let ran = thread_cpu_ns().saturating_sub(cpu);
                let now = context_switches()?;
                let (voluntary, involuntary) = (now.0 - switches.0, now.1 - switches.1);
                switches = now;
                if let (Some(over), Some(at)) = (trace_over, at) {
                    if latency > over {
                        traced.push((at, latency, ran, voluntary, involuntary));
                    }
                }
                if involuntary > 0 && voluntary == 0 {
                    preempted += 1;
                } else if involuntary == 0 && voluntary == 0 && latency > 2 * ran && latency - ran > 200_000 {
                    interrupted += 1;
                } else {
                    unpreempted_max = unpreempted_max.max(latency);
                }
                latencies.push(latency);
            }
            for (at, latency, ran, voluntary, involuntary) in traced {
                eprintln!(
                    "W9 trace: update at {}.{:09} (CLOCK_MONOTONIC) took {} µs, ran {} µs, {voluntary} voluntary and {involuntary} involuntary switches",
                    at / 1_000_000_000,
                    at % 1_000_000_000,
                    latency / 1000,
                    ran / 1000
                );
            }
            Ok((latencies, unpreempted_max, preempted, interrupted))
        })();
        let elapsed = started.elapsed();
        stop.store(true, Ordering::Relaxed);
        (writer.map(|l| (l, elapsed)), monitor.join())
    });
    let steal = Duration::from_nanos(steal_ns().saturating_sub(steal_before));
    let ((mut latencies, unpreempted_max, preempted, interrupted), elapsed) = writer?;
    let (max_age, longest_flush, largest_flush_files) = monitor.map_err(|_| "the W9 monitor thread panicked")?;
    latencies.sort_unstable();
    Ok(Phase {
        latencies,
        unpreempted_max,
        preempted,
        interrupted,
        steal,
        elapsed,
        max_age,
        flushes: store.health().flushes - flushes_before,
        longest_flush,
        largest_flush_files,
    })
}

/// `SHELF_W9_TRACE_US`: print every update slower than this many µs, with its start
/// on `CLOCK_MONOTONIC` (the clock of `perf record -k CLOCK_MONOTONIC`), to find what a
/// profile shows the writer doing then. Unset: no trace.
fn trace_threshold() -> Option<u64> {
    std::env::var("SHELF_W9_TRACE_US").ok()?.parse::<u64>().ok().map(|us| us * 1000)
}

/// Now on `CLOCK_MONOTONIC`, in ns.
fn monotonic_ns() -> u64 {
    // SAFETY: `timespec` is a plain C struct, all zeroes valid; `clock_gettime` fills it.
    let mut now: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a `timespec` the call may write.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// CPU time the hypervisor stole from this machine so far, all CPUs, in ns: the
/// `steal` column of `/proc/stat` (0 where there is none).
fn steal_ns() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks = stat
        .lines()
        .find(|line| line.starts_with("cpu "))
        .and_then(|line| line.split_whitespace().nth(8))
        .and_then(|steal| steal.parse::<u64>().ok())
        .unwrap_or(0);
    // SAFETY: `sysconf` has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    ticks * 1_000_000_000 / hz
}

/// The calling thread's CPU time, in nanoseconds (`CLOCK_THREAD_CPUTIME_ID`).
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid pointer to a `timespec` the call may write.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The calling thread's voluntary and involuntary context switches so far.
fn context_switches() -> Result<(i64, i64), BoxError> {
    // SAFETY: `rusage` is a plain C struct, all zeroes valid; `getrusage` fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a `rusage` the call may write.
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok((usage.ru_nvcsw, usage.ru_nivcsw))
}

/// Samples `health().last_flush` until `stop`: the largest age of the newest finished
/// flush, and the longest flush and most files of one flush seen (from `stats()`).
/// Sets `enough` once [`MIN_FLUSHES`] flushes finished.
fn monitor(
    store: &Store,
    started_at: SystemTime,
    stop: &AtomicBool,
    enough: &AtomicBool,
) -> (Duration, Duration, usize) {
    let since = |later: SystemTime, earlier: SystemTime| later.duration_since(earlier).unwrap_or_default();
    let mut newest = started_at;
    let mut max_age = Duration::ZERO;
    let mut longest = Duration::ZERO;
    let mut largest = 0;
    let first = store.health().flushes;
    let mut flushes = first;
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        let health = store.health();
        let now = SystemTime::now();
        if let Some(last) = health.last_flush.filter(|&last| last > newest) {
            // The age just before this flush finished.
            max_age = max_age.max(since(last, newest));
            newest = last;
        }
        max_age = max_age.max(since(now, newest));
        if health.flushes != flushes {
            flushes = health.flushes;
            if let Some(flush) = store.stats().last_flush {
                longest = longest.max(flush.duration);
                largest = largest.max(flush.files);
            }
            if flushes - first >= MIN_FLUSHES {
                enough.store(true, Ordering::Relaxed);
            }
        }
        if stopping {
            return (max_age, longest, largest);
        }
        std::thread::sleep(SAMPLE_EVERY);
    }
}

fn median_us(mut values: Vec<Duration>) -> f64 {
    values.sort();
    values.get(values.len() / 2).map_or(0.0, |d| d.as_secs_f64() * 1e6)
}

fn median_usize(mut values: Vec<usize>) -> usize {
    values.sort();
    values.get(values.len() / 2).copied().unwrap_or(0)
}

/// `850 µs` or `12.3 ms`.
pub fn fmt_us(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.1} ms", us / 1e3)
    } else {
        format!("{us:.0} µs")
    }
}
