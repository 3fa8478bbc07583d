//! The physical line, measured first in every run on the data directory: the latency
//! of one durable small append (what a durable commit cannot beat) and the raw
//! sequential write bandwidth (what a bulk write cannot beat), the latter also as
//! records of the generated users' size.

use std::time::Duration;

use crate::data;
use crate::physical;
use crate::report::{fmt_rate, Report, Row};
use crate::{BoxError, Config};

pub const WORKLOAD: &str = "physical";
/// The case of the fdatasync row: `vs` of the durable-commit rows.
pub const FSYNC_CASE: &str = "fdatasync of a 200 B append";
/// `vs` key of the durable-commit rows.
pub const FSYNC: &str = "physical/fdatasync of a 200 B append";
/// `vs` key of the bulk-write rows: the bandwidth, as records of the users' JSON size.
pub const SEQUENTIAL_RECORDS: &str = "physical/sequential write, as user records";

const APPENDS: usize = 300;
const CHUNK: usize = 1 << 20;

/// One fdatasync sample: the latencies of `APPENDS` small appends to a new file.
pub fn fsync_sample(config: &Config) -> Result<Vec<Duration>, BoxError> {
    let dir = config.fresh_dir("fsync")?;
    physical::settle();
    Ok(physical::fdatasync_append(&dir, APPENDS, 200)?)
}

/// Adds the row of fdatasync samples (one `Vec` of latencies per run) to `workload`.
pub fn add_fsync_row(report: &mut Report, workload: &str, runs: Vec<Vec<Duration>>) {
    let totals: Vec<Duration> = runs.iter().map(|l| l.iter().sum()).collect();
    let mut latencies: Vec<Duration> = runs.into_iter().flatten().collect();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e6;
    let note = format!("write + fdatasync on one file; p50 {:.0} µs, p99 {:.0} µs", pct(0.5), pct(0.99));
    report
        .add(Row::new(workload, "physical", FSYNC_CASE, APPENDS, "sync", &totals).durability("each append").note(note));
}

pub fn run(config: &Config, report: &mut Report) -> Result<(), BoxError> {
    let runs = (0..config.runs).map(|_| fsync_sample(config)).collect::<Result<_, _>>()?;
    add_fsync_row(report, WORKLOAD, runs);

    let total = if config.quick { 16 << 20 } else { 128 << 20 };
    let mut samples = Vec::new();
    for _ in 0..config.runs {
        let dir = config.fresh_dir(WORKLOAD)?;
        samples.push(physical::sequential_write(&dir, total, CHUNK)?);
    }
    let mib = total >> 20;
    report.add(
        Row::new(WORKLOAD, "physical", "sequential write + fdatasync", mib, "MiB", &samples)
            .durability("at the end")
            .note("one new file, 1 MiB writes, one fdatasync"),
    );
    let record = data::user_json_bytes(&data::users(1, 1_000)) + 1;
    let records = total / record;
    let row = Row::new(WORKLOAD, "physical", "sequential write, as user records", records, "record", &samples)
        .durability("at the end")
        .note(format!("the row above, per {record} B (a user as a JSON line)"));
    report.note(format!(
        "physical line: one durable append {} syncs/s; sequential write {} MiB/s = {} user records/s",
        fmt_rate(report.rate(WORKLOAD, FSYNC).unwrap_or(0.0)),
        fmt_rate(mib as f64 / row.seconds),
        fmt_rate(row.ops_per_sec),
    ));
    report.add(row);
    Ok(())
}
