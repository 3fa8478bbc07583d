//! Issue 3's benchmark: indexed lookups and the cost of indices on insert.
//!
//! ```text
//! cargo run --release -p shelf-bench --bin indices -- [N] [--quick] [--lookups L] [--rounds R]
//! ```
//!
//! N entities (default 1,000,000) of about 200 bytes of JSON, with a unique index
//! (`email`) and a non-unique one (`country`). Lookups by a pre-generated random key
//! sequence, the same for every contender: `by_email`, `get` by id, and a plain
//! `HashMap<String, Arc<T>>` holding the same `Arc`s, keyed by email and by id, in
//! the same run (the two HashMaps show what the key alone costs). Then insert throughput into collections with 0, 1, 2 and 3 indices. Every
//! collection is `#[storage(memory)]`, so the disk plays no part.

mod common;

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

use clap::Parser;
use serde::{Deserialize, Serialize};
use shelf::{Entity, Store};

use common::{ns_per, per_op, race, rate, thousands, timed, Contender, Rng, Table};

/// Indexed lookups vs `get` vs a HashMap, and insert throughput with 0-3 indices.
#[derive(Parser, Debug)]
#[command(name = "indices")]
struct Cli {
    /// Entities per collection [default: 1,000,000, or 20,000 with --quick].
    n: Option<usize>,
    /// A small smoke run.
    #[arg(long)]
    quick: bool,
    /// Lookups per round and contender [default: 1,000,000, or 200,000 with --quick].
    #[arg(long)]
    lookups: Option<usize>,
    /// Rounds of lookups; the table shows the median round.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
}

/// No index.
#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
#[storage(memory)]
struct NoIndex {
    #[id]
    id: String,
    email: String,
    country: String,
    age: u32,
    name: String,
    bio: String,
}

/// One index: unique `email`.
#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
#[storage(memory)]
struct OneIndex {
    #[id]
    id: String,
    #[index(unique)]
    email: String,
    country: String,
    age: u32,
    name: String,
    bio: String,
}

/// Two indices: unique `email`, non-unique `country`. The lookups run on this one.
#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
#[storage(memory)]
struct TwoIndices {
    #[id]
    id: String,
    #[index(unique)]
    email: String,
    #[index]
    country: String,
    age: u32,
    name: String,
    bio: String,
}

/// Three indices: unique `email`, non-unique `country`, sorted `age`.
#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
#[storage(memory)]
struct ThreeIndices {
    #[id]
    id: String,
    #[index(unique)]
    email: String,
    #[index]
    country: String,
    #[index(sorted)]
    age: u32,
    name: String,
    bio: String,
}

/// The generated data, turned into each entity type before its phase.
struct Row {
    id: String,
    email: String,
    country: String,
    age: u32,
    name: String,
    bio: String,
}

trait FromRow: Entity {
    fn from_row(row: &Row) -> Self;
}

macro_rules! from_row {
    ($($t:ident),*) => {$(
        impl FromRow for $t {
            fn from_row(r: &Row) -> Self {
                $t {
                    id: r.id.clone(),
                    email: r.email.clone(),
                    country: r.country.clone(),
                    age: r.age,
                    name: r.name.clone(),
                    bio: r.bio.clone(),
                }
            }
        }
    )*};
}
from_row!(NoIndex, OneIndex, TwoIndices, ThreeIndices);

const COUNTRIES: usize = 50;

fn rows(n: usize, seed: u64) -> Vec<Row> {
    let mut rng = Rng::new(seed);
    let mut ids: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut ids); // ids not in insertion order
    ids.into_iter()
        .map(|i| {
            let name = rng.text(12);
            Row {
                id: format!("user-{i:08}"),
                email: format!("{}.{i}@example.com", name.replace(' ', "_")),
                country: format!("C{:02}", rng.below(COUNTRIES)),
                age: 18 + rng.below(70) as u32,
                name,
                bio: rng.text(100),
            }
        })
        .collect()
}

/// A store with one collection of `T`, and the directory it lives in (dropped after
/// the store: the fields drop in order).
struct Loaded<T: Entity> {
    handle: T::Handle,
    _store: Store,
    _dir: tempfile::TempDir,
}

/// Inserts every row as a `T`, one `insert` each; returns the store and ns/insert.
fn load<T: FromRow>(rows: &[Row]) -> (Loaded<T>, f64) {
    let dir = common::temp_dir();
    let store = Store::builder(dir.path()).register::<T>().open().expect("open");
    let handle = store.collection::<T>().expect("collection");
    let values: Vec<T> = rows.iter().map(T::from_row).collect();
    let ((), elapsed) = timed(|| {
        for value in values {
            handle.insert(value).expect("insert");
        }
    });
    assert_eq!(handle.len(), rows.len());
    (Loaded { handle, _store: store, _dir: dir }, ns_per(elapsed, rows.len()))
}

fn main() {
    let cli = Cli::parse();
    let n = cli.n.unwrap_or(if cli.quick { 20_000 } else { 1_000_000 });
    let lookups = cli.lookups.unwrap_or(if cli.quick { 200_000 } else { 1_000_000 });
    let rounds = cli.rounds.max(1);
    common::print_header(
        "indices",
        &format!(
            "{} entities with a unique (email) and a non-unique (country) index; \
             every collection is #[storage(memory)]: no disk involved",
            thousands(n as u64)
        ),
    );

    let (rows, generated) = timed(|| rows(n, 0x5eed));
    let sample = rows.len().min(1000);
    let json_bytes: usize =
        rows[..sample].iter().map(|r| serde_json::to_vec(&TwoIndices::from_row(r)).map_or(0, |v| v.len())).sum();
    println!(
        "data: {} rows generated in {:.1} s, {} bytes of JSON per entity on average, {COUNTRIES} countries",
        thousands(n as u64),
        generated.as_secs_f64(),
        json_bytes / sample.max(1)
    );

    // Inserts into 0, 1 and 3 indices; the 2-index collection is loaded last and kept.
    let mut inserts = Vec::new();
    let (loaded, ns) = load::<NoIndex>(&rows);
    drop(loaded);
    inserts.push(("0", "NoIndex", ns));
    let (loaded, ns) = load::<OneIndex>(&rows);
    drop(loaded);
    inserts.push(("1 (unique email)", "OneIndex", ns));
    let (loaded, ns) = load::<ThreeIndices>(&rows);
    drop(loaded);
    inserts.push(("3 (+ country, sorted age)", "ThreeIndices", ns));
    let (users, ns) = load::<TwoIndices>(&rows);
    inserts.insert(2, ("2 (unique email, country)", "TwoIndices", ns));
    let users = &users.handle;

    // The baseline: a HashMap from email to the very same Arcs.
    let baseline_insert = {
        let values: Vec<(String, Arc<TwoIndices>)> =
            rows.iter().map(|r| (r.email.clone(), users.get(&r.id).expect("present"))).collect();
        let mut map: HashMap<String, Arc<TwoIndices>> = HashMap::new();
        let ((), elapsed) = timed(|| {
            for (key, value) in values {
                map.insert(key, value);
            }
        });
        (map, ns_per(elapsed, n))
    };
    let (map, map_insert_ns) = baseline_insert;
    let by_id: HashMap<String, Arc<TwoIndices>> =
        rows.iter().map(|r| (r.id.clone(), Arc::clone(&map[&r.email]))).collect();

    // The same random sequence of records for every contender.
    let mut rng = Rng::new(0xb0b);
    let picks: Vec<usize> = (0..lookups).map(|_| rng.below(n)).collect();
    let emails: Vec<String> = picks.iter().map(|&i| rows[i].email.clone()).collect();
    let ids: Vec<String> = picks.iter().map(|&i| rows[i].id.clone()).collect();
    let countries: Vec<String> = picks.iter().map(|&i| rows[i].country.clone()).collect();
    drop(rows);

    let mut contenders = vec![
        Contender::new("get(&id)", lookups, || {
            ids.iter().map(|id| usize::from(black_box(users.get(black_box(id))).is_some())).sum()
        }),
        Contender::new("by_email(&str)", lookups, || {
            emails.iter().map(|e| usize::from(black_box(users.by_email(black_box(e.as_str()))).is_some())).sum()
        }),
        Contender::new("HashMap<String, Arc<T>>::get(email) + clone", lookups, || {
            emails.iter().map(|e| usize::from(black_box(map.get(black_box(e.as_str())).cloned()).is_some())).sum()
        }),
        Contender::new("HashMap<String, Arc<T>>::get(id) + clone", lookups, || {
            ids.iter().map(|id| usize::from(black_box(by_id.get(black_box(id.as_str())).cloned()).is_some())).sum()
        }),
        Contender::new("count_by_country(&str)", lookups, || {
            countries.iter().map(|c| usize::from(black_box(users.count_by_country(black_box(c.as_str()))) > 0)).sum()
        }),
    ];
    let timings = race(&mut contenders, rounds);
    drop(contenders);
    for timing in &timings {
        assert_eq!(timing.items, lookups, "{}: every key must be found", timing.name);
    }
    let (get_median, get_best) = (timings[0].median(), timings[0].best());

    println!();
    println!(
        "Lookups: {} random keys per round (one pre-generated sequence, all hits), {rounds} rounds",
        thousands(lookups as u64)
    );
    let mut table =
        Table::new(&["workload", "median ns/op", "ops/s", "vs get", "best ns/op", "vs get (best)", "every round"]);
    for timing in &timings {
        table.row(vec![
            timing.name.clone(),
            format!("{:.0}", timing.median()),
            rate(timing.median()),
            format!("{:.2}x", timing.median() / get_median),
            format!("{:.0}", timing.best()),
            format!("{:.2}x", timing.best() / get_best),
            timing.rounds_text(),
        ]);
    }
    table.print();
    let key_effect = timings[2].median() / timings[3].median();
    println!(
        "the key alone: HashMap by email / HashMap by id = {key_effect:.2}x by medians, {:.2}x by best rounds",
        timings[2].best() / timings[3].best()
    );
    let ratio = timings[1].median() / get_median;
    let best_ratio = timings[1].best() / get_best;
    println!(
        "by_email / get = {ratio:.2}x by medians, {best_ratio:.2}x by best rounds (target: within 2x) -> {}",
        if ratio <= 2.0 { "MET" } else { "MISSED" }
    );

    println!();
    println!(
        "Inserts: {} entities, one insert() each, into an empty #[storage(memory)] collection",
        thousands(n as u64)
    );
    let mut table = Table::new(&["indices", "entity", "ns/insert", "inserts/s", "vs 0 indices"]);
    let base = inserts[0].2;
    for (indices, entity, ns) in &inserts {
        table.row(vec![
            (*indices).to_owned(),
            (*entity).to_owned(),
            per_op(*ns),
            rate(*ns),
            format!("{:.2}x", ns / base),
        ]);
    }
    table.row(vec![
        "HashMap<String, Arc<T>>::insert".to_owned(),
        "(baseline)".to_owned(),
        per_op(map_insert_ns),
        rate(map_insert_ns),
        format!("{:.2}x", map_insert_ns / base),
    ]);
    table.print();
}
