//! W2 parents (issue 17, item 7): what it costs that a `wal` commit also logs the
//! parents its foreign keys reference that are not durable yet, so that no child
//! outlives its parent after a crash.
//!
//! One thread makes durable single-order commits (W2's shape) into a
//! `#[storage(per_record, wal)]` collection whose `#[belongs_to]` parent lives in a
//! `per_record` collection without WAL. Each order references its own user. The
//! users are inserted before the clock starts, and then either flushed (every parent
//! is durable: each commit logs its order alone) or not (no parent is durable yet:
//! each commit's WAL record also carries its user, about 200 bytes). No flush runs
//! while the commits are timed. The WAL bytes each case appended are checked before
//! the rows are reported: the unflushed case must log more per commit than the
//! flushed one, or the comparison is not the one it names.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use shelf::{Entity, Store};

use crate::data::{self, Order, User};
use crate::line::FSYNC;
use crate::physical;
use crate::report::{Report, Row};
use crate::{BoxError, Config};

pub const WORKLOAD: &str = "W2 wal child, 1 thread";
const DURABLE_PARENT: &str = "parent flushed: the order alone is logged";
const FRESH_PARENT: &str = "parent not durable yet: logged with the order";

#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
#[entity(collection = "user")]
#[storage(per_record)]
struct Parent {
    #[id]
    id: u64,
    email: String,
    name: String,
    country: String,
    age: u32,
    created_at: u64,
    active: bool,
    street: String,
    city: String,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
#[entity(collection = "order")]
#[storage(per_record, wal)]
struct Child {
    #[id]
    id: u64,
    #[belongs_to(Parent)]
    user_id: u64,
    total_cents: u64,
    item: String,
}

/// The same value as another type with the same fields (the plain `User` and
/// `Order` as this workload's entities), through serde, outside the timed part.
fn convert<A: Serialize, B: serde::de::DeserializeOwned>(value: &A) -> Result<B, BoxError> {
    Ok(serde_json::from_value(serde_json::to_value(value)?)?)
}

pub fn run(config: &Config, report: &mut Report) -> Result<(), BoxError> {
    let commits = config.commits();
    let users = data::users(1, commits);
    // One order per user, so every commit references a parent of its own.
    let orders: Vec<Order> = users
        .iter()
        .map(|u| Order { id: u.id, user_id: u.id, total_cents: 100 + u.id, item: format!("item {}", u.id) })
        .collect();
    let rounds = config.runs.max(3);
    eprintln!("{WORKLOAD}: {commits} durable single-order commits per case, {rounds} rounds");
    // Interleaved rounds, as in W2: sync latency drifts with the machine.
    let mut samples = [Vec::new(), Vec::new()];
    let mut logged = [0u64, 0u64];
    for _ in 0..rounds {
        for (flushed, (samples, logged)) in [true, false].into_iter().zip(samples.iter_mut().zip(&mut logged)) {
            let (elapsed, bytes) = commits_after(config, &users, &orders, flushed)?;
            samples.push(elapsed);
            *logged = bytes;
        }
    }
    let per_commit = logged.map(|b| b / commits as u64);
    if per_commit[1] <= per_commit[0] {
        return Err(format!(
            "{WORKLOAD}: the commits with unflushed parents logged {} B each, the ones with flushed parents {} B: the parents were not logged, so the rows would not measure that",
            per_commit[1], per_commit[0]
        )
        .into());
    }
    let [durable, fresh] = samples;
    report.add(
        Row::new(WORKLOAD, "shelf", DURABLE_PARENT, commits, "commit", &durable)
            .durability("WAL fdatasync per commit")
            .vs(FSYNC)
            .note(format!("{} B of WAL per commit", per_commit[0])),
    );
    report.add(
        Row::new(WORKLOAD, "shelf", FRESH_PARENT, commits, "commit", &fresh)
            .durability("WAL fdatasync per commit")
            .vs(&format!("shelf/{DURABLE_PARENT}"))
            .note(format!("{} B of WAL per commit (the order and its user)", per_commit[1])),
    );
    Ok(())
}

/// One round: the users inserted (and flushed if `flushed`), then one timed commit
/// per order. Returns the time of the commits and the WAL bytes they appended.
fn commits_after(
    config: &Config,
    users: &[User],
    orders: &[Order],
    flushed: bool,
) -> Result<(Duration, u64), BoxError> {
    let dir = config.fresh_dir(if flushed { "w2p-flushed" } else { "w2p-fresh" })?;
    let store = Store::builder(&dir)
        .register::<Parent>()
        .register::<Child>()
        .flush_interval(Duration::from_secs(24 * 3600))
        .open()?;
    let parents = store.collection::<Parent>()?;
    let children = store.collection::<Child>()?;
    for u in users {
        parents.insert(convert::<User, Parent>(u)?)?;
    }
    if flushed {
        store.flush()?;
    }
    let values = orders.iter().map(convert::<Order, Child>).collect::<Result<Vec<_>, _>>()?;
    let before = store.stats().wal.map_or(0, |w| w.bytes);
    physical::settle();
    let started = Instant::now();
    for v in values {
        children.insert(v)?;
    }
    let elapsed = started.elapsed();
    let bytes = store.stats().wal.map_or(0, |w| w.bytes).saturating_sub(before);
    store.close()?;
    Ok((elapsed, bytes))
}
