//! W-async (issue 16): durable single-record writes from an async service.
//!
//! A tokio multi-thread runtime with 2 workers runs 16 tasks; each inserts records
//! one at a time into a `#[storage(per_record, wal)]` collection (`WalSync::Always`)
//! and waits until each is durable. Two subjects, in the same run, rounds
//! interleaved:
//!
//! - `insert_async(..).await`: the commit at the call, the durability wait a future
//!   woken by the group-commit sync (no thread blocked per waiter);
//! - `spawn_blocking(move || insert(..)).await`: the blocking API on tokio's
//!   blocking pool, what a service does without an async API.
//!
//! Each round reports throughput over the whole run and the latency of each write
//! (from before the call to the end of the `await`). The table shows the median
//! round; the note gives min–max over the rounds and the p99.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use shelf::{Entity, Store};

use crate::report::{Latency, Report, Row};
use crate::{BoxError, Config};

pub const W_ASYNC: &str = "W-async 16 tasks";
/// The rows' cases: the async API, and the blocking one through `spawn_blocking`.
pub const ASYNC_CASE: &str = "insert_async().await";
pub const BLOCKING_CASE: &str = "spawn_blocking(insert)";
const TASKS: u64 = 16;
const WORKERS: usize = 2;

/// One durable write.
#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
#[storage(per_record, wal)]
#[entity(collection = "bench_async_event")]
struct AsyncEvent {
    #[id]
    id: u64,
    task: u64,
    body: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Async,
    SpawnBlocking,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Async => ASYNC_CASE,
            Mode::SpawnBlocking => BLOCKING_CASE,
        }
    }
}

/// One round: the elapsed time and every write's latency.
fn round(config: &Config, mode: Mode, per_task: u64) -> Result<(Duration, Vec<Duration>), BoxError> {
    let dir = config.fresh_dir(if mode == Mode::Async { "w-async" } else { "w-async-blocking" })?;
    let store = Store::builder(&dir).register::<AsyncEvent>().open()?;
    let events = store.collection::<AsyncEvent>()?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(WORKERS).enable_all().build()?;
    let (elapsed, latencies) = rt.block_on(async {
        let started = Instant::now();
        let mut tasks = Vec::new();
        for task in 0..TASKS {
            let events = events.clone();
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(per_task as usize);
                for k in 0..per_task {
                    let event = AsyncEvent { id: task * 1_000_000 + k, task, body: format!("event {k} of {task}") };
                    let t = Instant::now();
                    match mode {
                        Mode::Async => {
                            events.insert_async(event).await?;
                        }
                        Mode::SpawnBlocking => {
                            let events = events.clone();
                            tokio::task::spawn_blocking(move || events.insert(event)).await??;
                        }
                    }
                    latencies.push(t.elapsed());
                }
                Ok::<_, BoxError>(latencies)
            }));
        }
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await??);
        }
        Ok::<_, BoxError>((started.elapsed(), all))
    })?;
    drop(events);
    if let Some(wal) = store.stats().wal {
        let label = mode.label();
        let mean = wal.sync_time.as_secs_f64() * 1e6 / wal.syncs.max(1) as f64;
        eprintln!("  {label}: {} WAL syncs for {} writes, {mean:.0} us per sync", wal.syncs, wal.records);
    }
    store.close()?;
    Ok((elapsed, latencies))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

pub fn run(config: &Config, report: &mut Report) -> Result<(), BoxError> {
    let per_task: u64 = if config.quick { 100 } else { 500 };
    let total = (per_task * TASKS) as usize;
    let rounds = config.runs.max(5);
    eprintln!("{W_ASYNC}: {total} durable single-record writes per subject, {rounds} rounds, {WORKERS} workers");
    // Per mode: elapsed per round, (p50, p99, p99.9, max) per round.
    let mut results: Vec<(Mode, Vec<Duration>, Vec<[Duration; 4]>)> =
        [Mode::Async, Mode::SpawnBlocking].into_iter().map(|m| (m, Vec::new(), Vec::new())).collect();
    for _ in 0..rounds {
        for (mode, elapsed, lats) in &mut results {
            let (took, mut latencies) = round(config, *mode, per_task)?;
            latencies.sort();
            elapsed.push(took);
            lats.push([0.50, 0.99, 0.999, 1.0].map(|p| percentile(&latencies, p)));
        }
    }
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    for (mode, elapsed, lats) in &results {
        let mut rates: Vec<f64> = elapsed.iter().map(|e| total as f64 / e.as_secs_f64()).collect();
        let (lo, hi) = (rates.iter().copied().fold(f64::INFINITY, f64::min), rates.iter().copied().fold(0.0, f64::max));
        let rate = median(&mut rates);
        let col = |i: usize| lats.iter().map(|l| us(l[i])).collect::<Vec<f64>>();
        let mut p99s = col(1);
        let (p99_lo, p99_hi) =
            (p99s.iter().copied().fold(f64::INFINITY, f64::min), p99s.iter().copied().fold(0.0, f64::max));
        let p99 = median(&mut p99s);
        let latency = Latency {
            p50_us: median(&mut col(0)),
            p99_us: Some(p99),
            p99_9_us: median(&mut col(2)),
            max_us: median(&mut col(3)),
            unpreempted_max_us: None,
            preempted: None,
            interrupted: None,
        };
        let line = format!(
            "{}: {rate:.0} writes/s (min-max {lo:.0}-{hi:.0}), p50 {:.0} us, p99 {p99:.0} us (min-max {p99_lo:.0}-{p99_hi:.0})",
            mode.label(),
            latency.p50_us
        );
        eprintln!("{W_ASYNC}: {line}");
        report.add(
            Row::new(W_ASYNC, "shelf", mode.label(), total, "write", elapsed)
                .durability("WAL fdatasync per write (group)")
                .latency(latency)
                .note(format!("tokio {WORKERS} workers, {TASKS} tasks; median of {rounds} rounds: {line}")),
        );
    }
    Ok(())
}
