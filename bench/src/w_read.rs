//! W4, W5, W6: random reads of a store holding N users and 3N orders.
//!
//! - W4 get by id, W5 lookup by the unique email, W6 the orders of a user (1:N);
//! - Shelf serves reads from memory whatever the storage strategy, so one strategy
//!   (collection_file) stands for all; W6 is `users.get(id)` then `user.orders(&store)`;
//! - the peers answer inside one read transaction per pass (their best case) and
//!   decode each hit into the plain types;
//! - the baseline is a plain `HashMap` holding `Arc`s of the same users and orders.
//!
//! Every subject looks up the same random key sequence, and every hit is counted: a
//! pass that misses a key fails the run.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::data::{self, CollectionFile, Order, Rng, ShelfKind, User, ORDERS_PER_USER};
use crate::peers;
use crate::report::{Report, Row};
use crate::{BoxError, Config};

pub const W4: &str = "W4 get by id";
pub const W5: &str = "W5 by email";
pub const W6: &str = "W6 orders of user";
pub const SHELF_CASE: &str = "any strategy (reads from memory)";
pub const BASELINE_CASE: &str = "HashMap + Arc";
pub const BASELINE: &str = "baseline/HashMap + Arc";
const READ: &str = "- (read)";

/// The keys of one run: the same for every subject.
struct Keys {
    ids: Vec<u64>,
    emails: Vec<String>,
    owners: Vec<u64>,
}

pub fn run(config: &Config, report: &mut Report, which: [bool; 3]) -> Result<(), BoxError> {
    if !which.iter().any(|&w| w) {
        return Ok(());
    }
    let n = config.n;
    let lookups = config.lookups();
    eprintln!("W4-W6: {n} users, {} orders, {lookups} random lookups per subject", n * ORDERS_PER_USER);
    let users = data::users(1, n);
    let orders = data::orders(n);
    let mut rng = Rng::new(0x5eed_0004);
    let ids = rng.ids(n, lookups);
    let emails = ids.iter().map(|&id| data::user(id).email).collect();
    let owners = rng.ids(n, lookups);
    let keys = Keys { ids, emails, owners };
    let workloads = [W4, W5, W6];

    // The baseline.
    let by_id: HashMap<u64, Arc<User>> = users.iter().map(|u| (u.id, Arc::new(u.clone()))).collect();
    let by_email: HashMap<String, Arc<User>> = by_id.values().map(|u| (u.email.clone(), Arc::clone(u))).collect();
    let mut by_owner: HashMap<u64, Vec<Arc<Order>>> = HashMap::new();
    for o in &orders {
        by_owner.entry(o.user_id).or_default().push(Arc::new(o.clone()));
    }
    let passes = [
        pass(config, lookups, || count(keys.ids.iter().map(|id| by_id.get(id).cloned())))?,
        pass(config, lookups, || count(keys.emails.iter().map(|e| by_email.get(e.as_str()).cloned())))?,
        pass(config, lookups * ORDERS_PER_USER, || {
            Ok(keys.owners.iter().map(|id| black_box(by_owner.get(id).cloned().unwrap_or_default()).len()).sum())
        })?,
    ];
    add_rows(report, which, &workloads, "baseline", BASELINE_CASE, "in memory only", None, lookups, passes);

    // Shelf.
    shelf::<CollectionFile>(config, report, which, &users, &orders, &keys)?;

    // The peers.
    for kind in peers::DURABLE {
        report.peer_settings(kind.subject(), kind.settings());
        let dir = config.fresh_dir(&format!("read-{}", kind.subject()))?;
        let peer = kind.open(&dir)?;
        peer.load(&users, &orders)?;
        let passes = [
            pass(config, lookups, || {
                let mut reader = peer.reader()?;
                let mut found = 0;
                for &id in &keys.ids {
                    found += usize::from(black_box(reader.get(id)?).is_some());
                }
                Ok(found)
            })?,
            pass(config, lookups, || {
                let mut reader = peer.reader()?;
                let mut found = 0;
                for email in &keys.emails {
                    found += usize::from(black_box(reader.by_email(email)?).is_some());
                }
                Ok(found)
            })?,
            pass(config, lookups * ORDERS_PER_USER, || {
                let mut reader = peer.reader()?;
                let mut found = 0;
                for &id in &keys.owners {
                    found += black_box(reader.orders_of(id)?).len();
                }
                Ok(found)
            })?,
        ];
        add_rows(report, which, &workloads, kind.subject(), kind.case(), READ, Some(BASELINE), lookups, passes);
    }
    Ok(())
}

fn shelf<K: ShelfKind>(
    config: &Config,
    report: &mut Report,
    which: [bool; 3],
    users: &[User],
    orders: &[Order],
    keys: &Keys,
) -> Result<(), BoxError> {
    let dir = config.fresh_dir(&format!("read-{}", K::LABEL))?;
    let store = K::open_manual(&dir)?;
    let handle = store.collection::<K::U>()?;
    let order_handle = store.collection::<K::O>()?;
    for u in users {
        handle.insert(K::user(u))?;
    }
    for o in orders {
        order_handle.insert(K::order(o))?;
    }
    let passes = [
        pass(config, keys.ids.len(), || count(keys.ids.iter().map(|id| handle.get(id))))?,
        pass(config, keys.emails.len(), || count(keys.emails.iter().map(|e| K::by_email(&handle, e))))?,
        pass(config, keys.owners.len() * ORDERS_PER_USER, || {
            let mut found = 0;
            for id in &keys.owners {
                let user = handle.get(id).ok_or_else(|| format!("no user {id}"))?;
                found += black_box(K::orders_of(&store, &user)?).len();
            }
            Ok(found)
        })?,
    ];
    add_rows(report, which, &[W4, W5, W6], "shelf", SHELF_CASE, READ, Some(BASELINE), keys.ids.len(), passes);
    store.close()?; // writes the two collection files: not timed
    Ok(())
}

/// Counts the hits of a lookup pass.
fn count<T>(results: impl Iterator<Item = Option<T>>) -> Result<usize, BoxError> {
    Ok(results.map(|r| usize::from(black_box(r).is_some())).sum())
}

/// Times `config.runs` (at least 3) passes of `lookup`, which returns its hits; all must hit.
fn pass(
    config: &Config,
    expected: usize,
    mut lookup: impl FnMut() -> Result<usize, BoxError>,
) -> Result<Vec<Duration>, BoxError> {
    let mut samples = Vec::new();
    // Passes are cheap and short, so a stray context switch would show: at least 3.
    for _ in 0..config.runs.max(3) {
        let started = Instant::now();
        let found = lookup()?;
        samples.push(started.elapsed());
        if found != expected {
            return Err(format!("a lookup pass found {found} of {expected}").into());
        }
    }
    Ok(samples)
}

#[allow(clippy::too_many_arguments)]
fn add_rows(
    report: &mut Report,
    which: [bool; 3],
    workloads: &[&str; 3],
    subject: &str,
    case: &str,
    durability: &str,
    vs: Option<&str>,
    lookups: usize,
    passes: [Vec<Duration>; 3],
) {
    for ((on, workload), samples) in which.iter().zip(workloads).zip(passes) {
        if !on {
            continue;
        }
        let mut row = Row::new(workload, subject, case, lookups, "lookup", &samples).durability(durability);
        if let Some(vs) = vs {
            row = row.vs(vs);
        }
        if *workload == W6 {
            row = row.note(format!("{ORDERS_PER_USER} orders per user"));
        }
        report.add(row);
    }
}
