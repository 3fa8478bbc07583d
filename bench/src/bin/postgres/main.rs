//! Issue 18's benchmark: Shelf on PostgreSQL next to the raw `postgres` crate on
//! the same server, in one run.
//!
//! ```text
//! SHELF_TEST_POSTGRES=postgres://postgres@127.0.0.1/test \
//!   cargo run --release -p shelf-bench --bin postgres -- [--commits C] [--rounds R] [--open N] [--chunks K]
//! ```
//!
//! - durable single-record commits (insert, then update of the same records), 1 and
//!   8 threads: Shelf's `insert`/`update` against a prepared single-row
//!   `INSERT`/`UPDATE` of a `(id, doc jsonb)` table with the same unique index,
//!   and against `shelf_commit` called directly with what Shelf sends (the
//!   server's share of a Shelf commit). The contenders take turns chunk by chunk
//!   (`--chunks`, see `commits`), and each round reports its own ratio of the
//!   line's commits/s to Shelf's (`line / Shelf`); `--shelf-only` runs only Shelf
//!   and the direct calls, for profiling;
//! - reads by id and by unique key: Shelf's cache against a PostgreSQL `SELECT`;
//! - the physical line for Shelf's commit: the same three rows a Shelf commit
//!   writes (the record, its unique key, a change-log row with the next sequence
//!   number) by one static SQL function in one transaction, 1 and 8 threads;
//! - the same Shelf commits while a second instance follows the change feed on
//!   this machine (its CPU is the writers'; the rows above run without it);
//! - cross-instance visibility: from one instance's `Ok` to another instance's
//!   watch event, p50 and p99;
//! - open: records loaded per second into a new instance's cache.
//!
//! Every figure is the median of R rounds with the min–max; without
//! `SHELF_TEST_POSTGRES` the binary says so and exits.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use serde::{Deserialize, Serialize};
use shelf::{Entity, Store};

mod commits;

#[derive(Parser, Debug)]
#[command(name = "postgres")]
struct Cli {
    /// Commits per thread count and round.
    #[arg(long, default_value_t = 2_000)]
    commits: usize,
    /// Rounds; the table shows the median and the min–max.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Records for the open measurement.
    #[arg(long, default_value_t = 20_000)]
    open: usize,
    /// Only Shelf's commit rows (for profiling them): no peers, reads,
    /// visibility or open.
    #[arg(long)]
    shelf_only: bool,
    /// Only the commit rows of the contenders whose name contains this text (for
    /// profiling one of them alone), e.g. `--only Shelf` or `--only directly`.
    #[arg(long)]
    only: Option<String>,
    /// The thread counts of the commit rows.
    #[arg(long, value_delimiter = ',', default_value = "1,8", value_parser = clap::value_parser!(u16).range(1..))]
    threads: Vec<u16>,
    /// Turns each commit row is cut into (see `commits`).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    chunks: u16,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
struct Person {
    #[id]
    id: u64,
    #[index(unique)]
    email: String,
    name: String,
    country: String,
    age: u32,
}

fn person(id: u64, age: u32) -> Person {
    Person {
        id,
        email: format!("user{id}@example.com"),
        name: format!("User Number {id}"),
        country: ["DE", "FR", "US", "JP"][(id % 4) as usize].to_owned(),
        age,
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The contenders the ratio rows compare.
const SHELF: &str = "Shelf on PostgreSQL";
const LINE: &str = "line (3 rows, static SQL)";

fn main() -> Result<(), BoxError> {
    let cli = Cli::parse();
    let Ok(url) = std::env::var("SHELF_TEST_POSTGRES") else {
        println!("skipped: SHELF_TEST_POSTGRES is not set (e.g. postgres://postgres@127.0.0.1/test)");
        return Ok(());
    };
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average at start: {}", load.split_whitespace().take(3).collect::<Vec<_>>().join(" "));
    let mut rows: Vec<(String, Vec<f64>, &str)> = Vec::new();
    let mut push = |name: String, value: f64, unit: &'static str| match rows.iter_mut().find(|r| r.0 == name) {
        Some(row) => row.1.push(value),
        None => rows.push((name, vec![value], unit)),
    };
    for round in 0..cli.rounds {
        let schema = format!("bench_{}_{round}", std::process::id());
        let mut admin = postgres::Client::connect(&url, postgres::NoTls)?;
        admin.batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};
             CREATE TABLE {schema}.raw (id bigint PRIMARY KEY, doc jsonb NOT NULL);
             CREATE UNIQUE INDEX ON {schema}.raw ((doc->>'email'));
             {line}",
            line = line_sql(&schema)
        ))?;
        let open = || -> Result<Store, BoxError> {
            Ok(Store::builder(&schema).register::<Person>().postgres(&url).postgres_schema(&schema).open()?)
        };
        let a = open()?;
        // A schema of its own for `shelf_commit` called directly (see `Direct`).
        let direct_schema = format!("{schema}_direct");
        drop(
            Store::builder(&direct_schema)
                .register::<Person>()
                .postgres(&url)
                .postgres_schema(&direct_schema)
                .open()?,
        );
        let mut next = 0u64;
        for threads in cli.threads.iter().map(|&t| usize::from(t)) {
            let per = cli.commits / threads;
            let shelf = commits::Shelf(&a);
            let direct = commits::Direct::new(&url, threads, &direct_schema)?;
            // The line: Shelf's three rows per commit, by static SQL; raw: the same
            // records in a plain table.
            let line = commits::Sql::new(
                &url,
                threads,
                &format!("SELECT {schema}.line_insert($1, $2::text::jsonb)"),
                &format!("SELECT {schema}.line_update($1, $2::text::jsonb)"),
            )?;
            let raw = commits::Sql::new(
                &url,
                threads,
                &format!("INSERT INTO {schema}.raw (id, doc) VALUES ($1, $2::text::jsonb)"),
                &format!("UPDATE {schema}.raw SET doc = $2::text::jsonb WHERE id = $1"),
            )?;
            let mut contenders: Vec<(&str, &dyn commits::Contender)> =
                vec![(SHELF, &shelf), ("shelf_commit called directly", &direct)];
            if !cli.shelf_only {
                contenders.push((LINE, &line));
                contenders.push(("raw postgres", &raw));
            }
            if let Some(only) = &cli.only {
                contenders.retain(|(name, _)| name.contains(only.as_str()));
            }
            let each: Vec<&dyn commits::Contender> = contenders.iter().map(|(_, c)| *c).collect();
            let rates = commits::interleaved(&each, threads, per, next, usize::from(cli.chunks))?;
            for ((name, _), (insert, update)) in contenders.iter().zip(&rates) {
                push(format!("insert, {threads} thread(s): {name}"), *insert, "commits/s");
                push(format!("update, {threads} thread(s): {name}"), *update, "commits/s");
            }
            // Each round's own ratios: the disk's speed drifts between rounds.
            let rate_of = |name: &str| contenders.iter().position(|(n, _)| *n == name).map(|k| rates[k]);
            if let (Some(shelf), Some(line)) = (rate_of(SHELF), rate_of(LINE)) {
                push(format!("insert, {threads} thread(s): line / Shelf"), line.0 / shelf.0, "x");
                push(format!("update, {threads} thread(s): line / Shelf"), line.1 / shelf.1, "x");
            }
            next += (per * threads + threads * commits::WARM_UP) as u64;
        }
        if cli.shelf_only || cli.only.is_some() {
            drop(a);
            admin.batch_execute(&format!("DROP SCHEMA {schema} CASCADE; DROP SCHEMA {direct_schema} CASCADE"))?;
            continue;
        }
        // Reads.
        let people = a.collection::<Person>()?;
        let n = next;
        // Long enough that one preemption of the thread does not make the mean.
        let lookups = 1_000_000usize;
        let started = Instant::now();
        for i in 0..lookups {
            std::hint::black_box(people.get(&((i as u64 * 7919) % n)));
        }
        push("get by id: Shelf cache".into(), ns_per(lookups, started), "ns/read");
        let started = Instant::now();
        for i in 0..lookups {
            std::hint::black_box(people.by_email(&format!("user{}@example.com", (i as u64 * 7919) % n)));
        }
        push("get by unique email: Shelf cache".into(), ns_per(lookups, started), "ns/read");
        let mut client = postgres::Client::connect(&url, postgres::NoTls)?;
        let by_id = client.prepare(&format!("SELECT doc::text FROM {schema}.raw WHERE id = $1"))?;
        let by_email = client.prepare(&format!("SELECT doc::text FROM {schema}.raw WHERE doc->>'email' = $1"))?;
        let selects = 2_000usize;
        let started = Instant::now();
        for i in 0..selects {
            std::hint::black_box(client.query_opt(&by_id, &[&(((i as u64 * 7919) % n) as i64)])?);
        }
        push("get by id: PostgreSQL SELECT".into(), ns_per(selects, started), "ns/read");
        let started = Instant::now();
        for i in 0..selects {
            let email = format!("user{}@example.com", (i as u64 * 7919) % n);
            std::hint::black_box(client.query_opt(&by_email, &[&email])?);
        }
        push("get by unique email: PostgreSQL SELECT".into(), ns_per(selects, started), "ns/read");
        // Cross-instance visibility: a's Ok to b's event.
        let b = open()?;
        let events = b.collection::<Person>()?.watch();
        let mut latencies = Vec::new();
        for i in 0..300u64 {
            let id = next + i;
            a.collection::<Person>()?.insert(person(id, 0))?;
            let acked = Instant::now();
            loop {
                let event = events.recv_timeout(Duration::from_secs(10))?;
                if matches!(&event.change, shelf::Change::Insert(p) if p.id == id) {
                    break;
                }
            }
            latencies.push(acked.elapsed().as_secs_f64() * 1e3);
        }
        latencies.sort_by(f64::total_cmp);
        push("cross-instance visibility p50".into(), latencies[latencies.len() / 2], "ms");
        push("cross-instance visibility p99".into(), latencies[latencies.len() * 99 / 100], "ms");
        next += 300;
        // Commits while `b` follows the feed on this machine.
        let (threads, per) = (8usize, cli.commits / 8);
        let rates = commits::interleaved(&[&commits::Shelf(&a)], threads, per, next, usize::from(cli.chunks))?;
        push("insert, 8 thread(s): Shelf, a second instance following".into(), rates[0].0, "commits/s");
        push("update, 8 thread(s): Shelf, a second instance following".into(), rates[0].1, "commits/s");
        next += (per * threads + threads * commits::WARM_UP) as u64;
        // Open: top the collection up to `--open` records, then load a new instance.
        let people = a.collection::<Person>()?;
        a.transaction(|tx| {
            for id in next..(cli.open as u64).max(next) {
                tx.insert(person(id, 0))?;
            }
            Ok::<_, shelf::Error>(())
        })?;
        let records = people.len();
        drop((a, b));
        let started = Instant::now();
        let c = open()?;
        push(format!("open ({records} records)"), rate(c.collection::<Person>()?.len(), started), "records/s");
        drop(c);
        admin.batch_execute(&format!("DROP SCHEMA {schema} CASCADE; DROP SCHEMA {direct_schema} CASCADE"))?;
    }
    println!("\n{:<52} {:>14} {:>24}  unit", "row", "median", "min–max");
    for (name, mut values, unit) in rows {
        values.sort_by(f64::total_cmp);
        let median = values[values.len() / 2];
        let digits = if unit == "x" { 2 } else { 1 };
        println!(
            "{name:<52} {median:>14.digits$} {:>24}  {unit}",
            format!("{:.digits$}–{:.digits$}", values[0], values[values.len() - 1])
        );
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average at end: {}", load.split_whitespace().take(3).collect::<Vec<_>>().join(" "));
    Ok(())
}

/// The line's tables and functions in `schema`: what `shelf_commit` writes for
/// one record with one unique key, in static SQL (plans cached, no JSON walk).
fn line_sql(schema: &str) -> String {
    format!(
        "CREATE TABLE {schema}.line_person (id jsonb PRIMARY KEY, doc jsonb NOT NULL, version bigint NOT NULL);
         CREATE TABLE {schema}.line_unique (collection text NOT NULL, index_name text NOT NULL, key jsonb NOT NULL, id jsonb NOT NULL,
             PRIMARY KEY (collection, index_name, key) DEFERRABLE INITIALLY DEFERRED);
         CREATE INDEX ON {schema}.line_unique (collection, id);
         CREATE SEQUENCE {schema}.line_seq;
         CREATE TABLE {schema}.line_changes (seq bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), origin text NOT NULL,
             version bigint NOT NULL, payload jsonb NOT NULL);
         CREATE FUNCTION {schema}.line_insert(i bigint, d jsonb) RETURNS bigint LANGUAGE plpgsql AS $fn$
         DECLARE ver bigint := pg_current_xact_id()::text::bigint; s bigint;
         BEGIN
           INSERT INTO {schema}.line_person (id, doc, version) VALUES (to_jsonb(i), d, ver);
           INSERT INTO {schema}.line_unique VALUES ('person', 'email', d->'email', to_jsonb(i));
           INSERT INTO {schema}.line_changes (seq, origin, version, payload) VALUES (nextval('{schema}.line_seq'), 'x', ver, d)
             RETURNING seq INTO s;
           RETURN s;
         END $fn$;
         CREATE FUNCTION {schema}.line_update(i bigint, d jsonb) RETURNS bigint LANGUAGE plpgsql AS $fn$
         DECLARE ver bigint := pg_current_xact_id()::text::bigint; s bigint;
         BEGIN
           UPDATE {schema}.line_person SET doc = d, version = ver WHERE id = to_jsonb(i);
           DELETE FROM {schema}.line_unique WHERE collection = 'person' AND id = to_jsonb(i);
           INSERT INTO {schema}.line_unique VALUES ('person', 'email', d->'email', to_jsonb(i));
           INSERT INTO {schema}.line_changes (seq, origin, version, payload) VALUES (nextval('{schema}.line_seq'), 'x', ver, d)
             RETURNING seq INTO s;
           RETURN s;
         END $fn$;"
    )
}

fn run_threads(threads: usize, work: impl Fn(usize) -> Result<(), BoxError> + Sync) -> Result<(), BoxError> {
    let work = Arc::new(&work);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let work = Arc::clone(&work);
                scope.spawn(move || work(t))
            })
            .collect();
        handles.into_iter().try_for_each(|h| h.join().map_err(|_| -> BoxError { "a thread panicked".into() })?)
    })
}

fn rate(n: usize, started: Instant) -> f64 {
    n as f64 / started.elapsed().as_secs_f64()
}

fn ns_per(n: usize, started: Instant) -> f64 {
    started.elapsed().as_nanos() as f64 / n as f64
}
