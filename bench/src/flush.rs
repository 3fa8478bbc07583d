//! Workload `flush`: one `store.flush()` of N dirty `per_record` entities, with the
//! batched syncs Shelf uses and with one fsync+rename+dir-fsync round per file
//! (`SyncMode::PerFile`), each on a fresh directory. Next to them, on the same file
//! system: the latency of one small fdatasync'd append, and the naive atomic replace
//! done with plain std calls.
//!
//! With `--explore`, the same batch is also made durable by raw prototypes (more or
//! fewer sync threads, one `syncfs`, no sync at all), to show what the flush could gain.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use shelf::{Store, SyncMode};

use crate::physical::{self, BatchSync, Job, Phases};
use crate::report::{fmt_rate, Report, Row};
use crate::{BoxError, Config};

const WORKLOAD: &str = "flush";
/// Appends timed for the fdatasync latency.
const APPENDS: usize = 200;
/// Files replaced one by one with plain std calls (capped: it is the slow line).
const RAW_PER_FILE_MAX: usize = 2_000;

/// About 200 bytes of JSON: a customer as an application would keep it.
#[derive(shelf::Entity, Serialize, Deserialize, Clone, Debug)]
pub struct Customer {
    #[id]
    id: String,
    email: String,
    name: String,
    country: String,
    age: u32,
    created_at: u64,
    active: bool,
    tags: Vec<String>,
    street: String,
}

const COUNTRIES: [&str; 8] = ["DE", "FR", "GB", "US", "JP", "BR", "IN", "NG"];

fn customer(i: usize) -> Customer {
    Customer {
        id: format!("cust-{i:08}"),
        email: format!("customer.{i}@example.com"),
        name: format!("Customer Number {i}"),
        country: COUNTRIES[i % COUNTRIES.len()].to_owned(),
        age: 18 + (i % 70) as u32,
        created_at: 1_700_000_000 + i as u64,
        active: !i.is_multiple_of(3),
        tags: vec!["bench".to_owned(), format!("cohort-{}", i % 12)],
        street: format!("{} Long Example Street, Apt {}", i % 997, i % 53),
    }
}

/// The bytes Shelf writes for an entity: pretty JSON and a newline.
fn file_bytes(c: &Customer) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(c).expect("a Customer serializes");
    bytes.push(b'\n');
    bytes
}

pub fn run(config: &Config, report: &mut Report) -> Result<(), BoxError> {
    let n = config.flush_n;
    eprintln!("flush: {n} entities, {} run(s) each, under {}", config.runs, config.base.display());
    let customers: Vec<Customer> = (0..n).map(customer).collect();
    let payloads: Vec<Vec<u8>> = customers.iter().map(file_bytes).collect();
    let compact = customers.iter().map(|c| serde_json::to_vec(c).map(|v| v.len()).unwrap_or(0)).sum::<usize>();
    let file_size = payloads.iter().map(Vec::len).sum::<usize>() / n.max(1);
    let entity = format!("entity {} B as JSON, {file_size} B per file", compact / n.max(1));

    // The physical line first.
    let mut latencies = Vec::new();
    let mut append_samples = Vec::new();
    for _ in 0..config.runs {
        let dir = config.fresh_dir(WORKLOAD)?;
        let l = physical::fdatasync_append(&dir, APPENDS, 200)?;
        append_samples.push(l.iter().sum());
        latencies.extend(l);
    }
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e6;
    report.add(
        Row::new(WORKLOAD, "physical", "append 200 B + fdatasync", APPENDS, "sync", &append_samples)
            .durability("each append")
            .note(format!("p50 {:.0} µs, p99 {:.0} µs", pct(0.5), pct(0.99))),
    );

    let raw_n = n.min(RAW_PER_FILE_MAX);
    let raw = repeat(config, || with_jobs(config, &payloads[..raw_n], "raw-per-file", physical::replace_per_file))?;
    report.add(
        Row::new(WORKLOAD, "physical", "per file: temp+fdatasync+rename+dir fsync", raw_n, "file", &raw)
            .durability("each file")
            .note("plain std calls, one file at a time"),
    );

    // Shelf, both ways.
    let per_file = repeat(config, || shelf_flush(config, SyncMode::PerFile, &customers))?;
    report.add(
        Row::new(WORKLOAD, "shelf", "per-file (SyncMode::PerFile)", n, "file", &per_file)
            .durability("whole flush")
            .vs("physical/per file: temp+fdatasync+rename+dir fsync")
            .note(entity.clone()),
    );
    let batched = repeat(config, || shelf_flush(config, SyncMode::Batched, &customers))?;
    report.add(
        Row::new(WORKLOAD, "shelf", "batched (default)", n, "file", &batched)
            .durability("whole flush")
            .vs("shelf/per-file (SyncMode::PerFile)")
            .note(entity),
    );

    if config.explore {
        let threads = [1, 4, 16, 64, 256];
        let mut cases: Vec<(String, BatchSync)> =
            threads.iter().map(|&t| (format!("batch, fdatasync on {t} threads"), BatchSync::Threads(t))).collect();
        cases.push(("batch, write on 1 thread + one syncfs".to_owned(), BatchSync::Syncfs(1)));
        cases.push(("batch, write on 2 threads + one syncfs".to_owned(), BatchSync::Syncfs(2)));
        cases.push((
            "batch, write+start writeback, then fdatasync on 16 threads".to_owned(),
            BatchSync::KickThenSync(16),
        ));
        cases.push(("batch, no sync at all (not durable)".to_owned(), BatchSync::Nothing));
        for (case, how) in cases {
            let mut phases = (0..config.runs)
                .map(|_| with_jobs(config, &payloads, "proto", |jobs| physical::replace_batched(jobs, how)))
                .collect::<Result<Vec<Phases>, _>>()?;
            phases.sort_by_key(Phases::total);
            let samples: Vec<Duration> = phases.iter().map(Phases::total).collect();
            let median = phases[phases.len() / 2];
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            let mut note = format!("median run: write {:.0} ms", ms(median.write));
            if !median.sync.is_zero() {
                note += &format!(", sync {:.0} ms", ms(median.sync));
            }
            note += &format!(", rename {:.0} ms, dir fsync {:.1} ms", ms(median.rename), ms(median.dir_sync));
            let durability = if how == BatchSync::Nothing { "none" } else { "whole batch" };
            report.add(
                Row::new(WORKLOAD, "prototype", &case, n, "file", &samples)
                    .durability(durability)
                    .vs("shelf/batched (default)")
                    .note(note),
            );
        }
    }

    let ratio = |a: &str, b: &str| {
        let a = report.find(WORKLOAD, a)?;
        let b = report.find(WORKLOAD, b)?;
        Some((a.ops_per_sec, b.ops_per_sec, a.ops_per_sec / b.ops_per_sec))
    };
    if let Some((batched, per_file, r)) = ratio("shelf/batched (default)", "shelf/per-file (SyncMode::PerFile)") {
        report.note(format!(
            "flush of {n} dirty per_record entities: batched {} files/s vs per-file {} files/s = {r:.2}x",
            fmt_rate(batched),
            fmt_rate(per_file)
        ));
    }
    Ok(())
}

/// Runs a measurement `config.runs` times.
fn repeat(config: &Config, mut measure: impl FnMut() -> Result<Duration, BoxError>) -> Result<Vec<Duration>, BoxError> {
    (0..config.runs).map(|_| measure()).collect()
}

/// One timed `store.flush()` of `customers`, all inserted (dirty) on a fresh store.
fn shelf_flush(config: &Config, mode: SyncMode, customers: &[Customer]) -> Result<Duration, BoxError> {
    let dir = config.fresh_dir(WORKLOAD)?;
    let store = Store::builder(&dir)
        .register::<Customer>()
        // The background flusher must not flush the records before we do.
        .flush_interval(Duration::from_secs(24 * 3600))
        .sync_mode(mode)
        .open()?;
    let collection = store.collection::<Customer>()?;
    for c in customers {
        collection.insert(c.clone())?;
    }
    physical::settle();
    let started = Instant::now();
    let stats = store.flush()?;
    let elapsed = started.elapsed();
    if stats.records != customers.len() {
        return Err(format!("flushed {} records, expected {}", stats.records, customers.len()).into());
    }
    store.close()?;
    Ok(elapsed)
}

/// Runs `replace` on jobs that target `<fresh dir>/customer/<i>.json`.
fn with_jobs<R>(
    config: &Config,
    payloads: &[Vec<u8>],
    label: &str,
    replace: impl FnOnce(&[Job]) -> std::io::Result<R>,
) -> Result<R, BoxError> {
    let dir = config.fresh_dir(label)?;
    let sub = dir.join("customer");
    std::fs::create_dir(&sub)?;
    let jobs: Vec<Job> =
        payloads.iter().enumerate().map(|(i, bytes)| (sub.join(format!("cust-{i:08}.json")), bytes.clone())).collect();
    physical::settle();
    let outcome = replace(&jobs)?;
    Ok(outcome)
}
