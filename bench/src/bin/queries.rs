//! Issue 7's benchmark: index-aware query plans against scans and full sorts.
//!
//! ```text
//! cargo run --release -p shelf-bench --bin queries -- [N] [--quick] [--rounds R]
//! ```
//!
//! N people (default 1,000,000), `#[storage(memory)]`. Every indexed field has an
//! unindexed twin with the same value (`city` / `city_scan`, ...), so the same query
//! runs once through an index and once as a scan, and the two must return the same
//! records. Measured:
//! - equality on a non-unique index, for a selective field (`city`, 1,000 values:
//!   about N/1,000 rows) and an unselective one (`country`, 20 values: N/20 rows);
//! - top 10 by a sorted index (`order_by(age.desc()).limit(10)`: walks the index and
//!   stops) against the same ordering on the twin (collect and sort everything).
//!
//! Each query's `explain()` is printed, so the plan that ran is visible.

mod common;

use std::hint::black_box;

use clap::Parser;
use serde::{Deserialize, Serialize};
use shelf::{Entity, Query, Store};

use common::{per_op, race, rate, thousands, timed, Contender, Rng, Table, Timing};

/// Indexed equality vs scan, and sorted-index top-10 vs full sort.
#[derive(Parser, Debug)]
#[command(name = "queries")]
struct Cli {
    /// People in the collection [default: 1,000,000, or 20,000 with --quick].
    n: Option<usize>,
    /// A small smoke run.
    #[arg(long)]
    quick: bool,
    /// Rounds; the table shows the median round.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
#[storage(memory)]
struct Person {
    #[id]
    id: u64,
    #[index]
    city: String,
    city_scan: String,
    #[index]
    country: String,
    country_scan: String,
    #[index(sorted)]
    age: u32,
    age_scan: u32,
    name: String,
    bio: String,
}

const CITIES: usize = 1_000;
const COUNTRIES: usize = 20;

fn city(i: usize) -> String {
    format!("city-{i:04}")
}

fn country(i: usize) -> String {
    format!("C{i:02}")
}

/// A contender that runs each query `reps` times.
fn repeat<'a>(name: &str, queries: &'a [Query<Person>], reps: usize) -> Contender<'a> {
    Contender::new(name, queries.len() * reps, move || (0..reps).map(|_| run_all(queries)).sum())
}

/// Runs each query once; returns the rows returned in total.
fn run_all(queries: &[Query<Person>]) -> usize {
    queries.iter().map(|q| black_box(q.collect()).len()).sum()
}

fn main() {
    let cli = Cli::parse();
    let n = cli.n.unwrap_or(if cli.quick { 20_000 } else { 1_000_000 });
    let rounds = cli.rounds.max(1);
    common::print_header(
        "queries",
        &format!(
            "{} people, #[storage(memory)]: no disk involved; every indexed field has an unindexed twin",
            thousands(n as u64)
        ),
    );

    let dir = common::temp_dir();
    let store = Store::builder(dir.path()).register::<Person>().open().expect("open");
    let people = store.collection::<Person>().expect("collection");
    let mut rng = Rng::new(42);
    let mut ids: Vec<u64> = (1..=n as u64).collect();
    rng.shuffle(&mut ids);
    let ((), load_time) = timed(|| {
        for id in ids {
            let (c, k, age) = (city(rng.below(CITIES)), country(rng.below(COUNTRIES)), 18 + rng.below(82) as u32);
            people
                .insert(Person {
                    id,
                    city_scan: c.clone(),
                    city: c,
                    country_scan: k.clone(),
                    country: k,
                    age,
                    age_scan: age,
                    name: rng.text(12),
                    bio: rng.text(80),
                })
                .expect("insert");
        }
    });
    let sample = serde_json::to_vec(&*people.iter().next().expect("a person")).map_or(0, |v| v.len());
    println!(
        "data: {} people inserted in {:.1} s ({} per insert, 3 indices), {sample} bytes of JSON each; \
         {CITIES} cities, {COUNTRIES} countries, ages 18-99",
        thousands(n as u64),
        load_time.as_secs_f64(),
        per_op(load_time.as_secs_f64() * 1e9 / n as f64),
    );

    let f = Person::fields();
    // Keys in a random order, the same for the index and the scan.
    let city_keys: Vec<String> = (0..64).map(|_| city(rng.below(CITIES))).collect();
    let country_keys: Vec<String> = (0..8).map(|_| country(rng.below(COUNTRIES))).collect();
    // A scan reads the whole collection, so it runs on fewer keys; per query is what counts.
    let scan_keys = if n >= 100_000 { 4 } else { 16 };
    let by = |keys: &[String], indexed: bool, country_field: bool| -> Vec<Query<Person>> {
        keys.iter()
            .map(|k| {
                let predicate = match (country_field, indexed) {
                    (false, true) => f.city.eq(k.as_str()),
                    (false, false) => f.city_scan.eq(k.as_str()),
                    (true, true) => f.country.eq(k.as_str()),
                    (true, false) => f.country_scan.eq(k.as_str()),
                };
                people.query().filter(predicate)
            })
            .collect()
    };
    let city_index = by(&city_keys, true, false);
    let city_scan = by(&city_keys[..scan_keys], false, false);
    let country_index = by(&country_keys, true, true);
    let country_scan = by(&country_keys[..scan_keys.min(country_keys.len())], false, true);
    let top_index = vec![people.query().order_by(f.age.desc()).limit(10)];
    let top_sort = vec![people.query().order_by(f.age_scan.desc()).limit(10)];

    // The plans, and a check that each pair returns the same records.
    println!();
    type Pair<'a> = (&'a str, &'a [Query<Person>], &'a [Query<Person>]);
    let pairs: [Pair; 3] = [
        ("city == key", &city_index, &city_scan),
        ("country == key", &country_index, &country_scan),
        ("top 10 by age", &top_index, &top_sort),
    ];
    for (what, indexed, scanned) in pairs {
        for (label, query) in [("indexed", &indexed[0]), ("forced scan", &scanned[0])] {
            println!("explain() of {what}, {label}:");
            for line in query.explain().to_string().lines() {
                println!("    {line}");
            }
        }
        for (a, b) in indexed.iter().zip(scanned) {
            assert_eq!(a.ids(), b.ids(), "{what}: the plans disagree");
        }
    }
    let top: Vec<u32> = top_index[0].collect().iter().map(|p| p.age).collect();
    println!("top 10 ages: {top:?}");

    // Fast queries repeat within a round so that a round is long enough to time.
    let mut contenders = vec![
        repeat("city == key, index `city`", &city_index, 20),
        repeat("city_scan == key, scan", &city_scan, 1),
        repeat("country == key, index `country`", &country_index, 2),
        repeat("country_scan == key, scan", &country_scan, 1),
        repeat("order_by(age desc).limit(10), walk", &top_index, 2_000),
        repeat("order_by(age_scan desc).limit(10), sort", &top_sort, 1),
    ];
    let timings = race(&mut contenders, rounds);
    drop(contenders);

    println!();
    println!(
        "collect() per query, {rounds} rounds; rows/query = rows returned, averaged over the keys each contender ran"
    );
    let mut table = Table::new(&["workload", "rows/query", "median/query", "queries/s", "best/query", "every round"]);
    for timing in &timings {
        table.row(vec![
            timing.name.clone(),
            format!("{:.0}", timing.items_per_op()),
            per_op(timing.median()),
            rate(timing.median()),
            per_op(timing.best()),
            timing.rounds_text(),
        ]);
    }
    table.print();
    let ratio = |fast: &Timing, slow: &Timing| (slow.median() / fast.median(), slow.best() / fast.best());
    for (what, fast, slow) in [
        ("city: scan / index", &timings[0], &timings[1]),
        ("country: scan / index", &timings[2], &timings[3]),
        ("top 10: full sort / index walk", &timings[4], &timings[5]),
    ] {
        let (median, best) = ratio(fast, slow);
        println!("{what} = {median:.0}x by medians, {best:.0}x by best rounds");
    }
    drop(store);
}
