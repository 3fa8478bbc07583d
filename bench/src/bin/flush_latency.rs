//! A first probe of issue 14's W9: one writer updates random records of a
//! 100,000-record collection while the flusher runs every 500 ms, against the same
//! with flushing off. Prints p50, p99.9 and max write latency, and the age of the
//! newest durable flush under load. (W9 proper, in the harness, is still to come.)
//!
//! ```text
//! cargo run --release -p shelf-bench --bin flush_latency -- [N] [SECONDS] [on|off]
//! ```

use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use shelf::{Entity, Store};

macro_rules! layout {
    ($name:ident, $($storage:tt)*) => {
        #[derive(Entity, Serialize, Deserialize, Clone, Debug)]
        #[storage($($storage)*)]
        struct $name {
            #[id]
            id: String,
            name: String,
            email: String,
            counter: u64,
        }
        impl Rec for $name {
            fn make(i: u64, counter: u64) -> Self {
                $name { id: format!("u{i:07}"), name: format!("user number {i}"), email: format!("u{i}@example.com"), counter }
            }
        }
    };
}

trait Rec: shelf::Entity<Id = String> {
    fn make(i: u64, counter: u64) -> Self;
}

layout!(CollFile, collection_file);
layout!(CollZst, collection_file, compress);
layout!(PerRec, per_record);

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p) as usize]
}

fn run<T: Rec>(label: &str, n: u64, secs: u64, flushing: bool) -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let interval = if flushing { Duration::from_millis(500) } else { Duration::from_secs(3600) };
    let store = Store::builder(dir.path()).register::<T>().flush_interval(interval).open()?;
    let c = store.collection::<T>()?;
    store.transaction(|tx| {
        for i in 0..n {
            tx.insert(T::make(i, 0))?;
        }
        Ok::<_, shelf::Error>(())
    })?;
    store.flush()?;
    // Preallocated and touched: a growing vector's reallocations would be measured.
    let mut lat = vec![Duration::ZERO; 4_000_000 * secs as usize];
    let mut count = 0;
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let start = Instant::now();
    let mut max_age = Duration::ZERO;
    let mut k = 0u64;
    while start.elapsed() < Duration::from_secs(secs) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        k += 1;
        let t = Instant::now();
        c.upsert(T::make(x % n, k))?;
        if count < lat.len() {
            lat[count] = t.elapsed();
            count += 1;
        }
        if k.is_multiple_of(256) && flushing {
            let last = store.health().last_flush.unwrap_or(SystemTime::now());
            max_age = max_age.max(SystemTime::now().duration_since(last).unwrap_or_default());
        }
    }
    lat.truncate(count);
    lat.sort();
    println!(
        "{label:<28} flushing {:<3} writes {:>8}  p50 {:>7.1?}  p99.9 {:>7.1?}  max {:>7.1?}  newest-flush age max {:?}",
        if flushing { "on" } else { "off" },
        lat.len(),
        pct(&lat, 0.5),
        pct(&lat, 0.999),
        lat[lat.len() - 1],
        max_age
    );
    store.close()?;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let n = args.first().copied().unwrap_or(100_000);
    let secs = args.get(1).copied().unwrap_or(5);
    let only = std::env::args().find(|a| a == "on" || a == "off");
    for flushing in [true, false] {
        if only.as_deref().is_some_and(|o| (o == "on") != flushing) {
            continue;
        }
        run::<CollFile>("collection_file", n, secs, flushing)?;
        run::<CollZst>("collection_file, compress", n, secs, flushing)?;
        run::<PerRec>("per_record", n, secs, flushing)?;
    }
    Ok(())
}
