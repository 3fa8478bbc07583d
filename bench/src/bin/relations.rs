//! Issue 4's benchmark: `user.orders(&store)` costs in proportion to the orders it
//! returns, not to the size of the orders collection.
//!
//! ```text
//! cargo run --release -p shelf-bench --bin relations -- [N] [--quick] [--calls C] [--rounds R]
//! ```
//!
//! Three stores, each with N/10 users (default 100,000), all `#[storage(memory)]` so
//! that the disk plays no part:
//! - "large": N orders (default 1,000,000), 10 per user;
//! - "medium": N/10 orders (100,000), 10 for each of N/100 users;
//! - "small": N/100 orders (10,000), 10 for each of N/1,000 users.
//!
//! The same number of calls goes to users that have orders in every store, so every
//! call returns 10 orders and the ns per returned order can be compared directly.
//! The medium store separates the two effects a larger collection could have: cost
//! that grows with the collection (it would grow 10x per step) and the step from
//! data that fits in the CPU caches to data that does not (10,000 orders fit).
//! A user's orders are spread over the collection (order `i` belongs to owner
//! `i % owners`), as orders placed over time are. Calls for a user without orders
//! show the fixed cost of one call.

mod common;

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

use clap::Parser;
use serde::{Deserialize, Serialize};
use shelf::{Entity, Store};

use common::{per_op, race, thousands, timed, Contender, Rng, Table, Timing};

/// `user.orders(&store)` over 1,000,000 and over 10,000 orders.
#[derive(Parser, Debug)]
#[command(name = "relations")]
struct Cli {
    /// Orders in the large store [default: 1,000,000, or 20,000 with --quick]; users
    /// are N/10 in every store, orders N/10 in the medium and N/100 in the small one.
    n: Option<usize>,
    /// A small smoke run.
    #[arg(long)]
    quick: bool,
    /// Calls per round and contender [default: 200,000, or 20,000 with --quick].
    #[arg(long)]
    calls: Option<usize>,
    /// Rounds; the table shows the median round.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
#[storage(memory)]
#[has_many(orders: Order, key = user_id)]
struct User {
    #[id]
    id: String,
    name: String,
    email: String,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
#[storage(memory)]
struct Order {
    #[id(auto)]
    id: u64,
    #[belongs_to(User)]
    user_id: String,
    total_cents: u64,
    item: String,
}

/// A loaded store: its users in a random order and the users that have orders.
struct World {
    store: Store,
    users: Vec<Arc<User>>,
    /// Users with orders (10 each).
    owners: Vec<Arc<User>>,
    orders: usize,
    /// The baseline: each user's orders (the very same `Arc`s), grouped ahead of time.
    grouped: HashMap<String, Vec<Arc<Order>>>,
    _dir: tempfile::TempDir,
}

fn build(label: &str, users: usize, owners: usize, orders: usize, seed: u64) -> World {
    let dir = common::temp_dir();
    let store = Store::builder(dir.path()).register::<User>().register::<Order>().open().expect("open");
    let (user_coll, order_coll) =
        (store.collection::<User>().expect("users"), store.collection::<Order>().expect("orders"));
    let mut rng = Rng::new(seed);
    let mut ids: Vec<String> = (0..users).map(|i| format!("user-{i:08}")).collect();
    rng.shuffle(&mut ids);
    let ((), user_time) = timed(|| {
        for id in &ids {
            let name = rng.text(12);
            user_coll
                .insert(User { id: id.clone(), email: format!("{}@example.com", name.replace(' ', "_")), name })
                .expect("insert user");
        }
    });
    // The first `owners` ids (a random sample: `ids` is shuffled) get the orders.
    let ((), order_time) = timed(|| {
        for i in 0..orders {
            let order = Order {
                id: 0,
                user_id: ids[i % owners].clone(),
                total_cents: rng.below(100_000) as u64,
                item: rng.text(40),
            };
            order_coll.insert(order).expect("insert order");
        }
    });
    println!(
        "{label}: {} users in {:.1} s, {} orders in {:.1} s ({} per order insert, parent checked), {} users with orders",
        thousands(users as u64),
        user_time.as_secs_f64(),
        thousands(orders as u64),
        order_time.as_secs_f64(),
        per_op(order_time.as_secs_f64() * 1e9 / orders.max(1) as f64),
        thousands(owners as u64)
    );
    let owner_arcs: Vec<Arc<User>> = ids[..owners].iter().map(|id| user_coll.get(id).expect("owner")).collect();
    let user_arcs: Vec<Arc<User>> = ids.iter().map(|id| user_coll.get(id).expect("user")).collect();
    let mut grouped: HashMap<String, Vec<Arc<Order>>> = HashMap::new();
    for order in order_coll.iter() {
        grouped.entry(order.user_id.clone()).or_default().push(order);
    }
    for list in grouped.values_mut() {
        list.sort_by_key(|o| o.id);
    }
    World { store, users: user_arcs, owners: owner_arcs, orders, grouped, _dir: dir }
}

/// `calls` random picks from `pool`, the same sequence shape for every store.
fn picks(pool: &[Arc<User>], calls: usize, seed: u64) -> Vec<Arc<User>> {
    let mut rng = Rng::new(seed);
    (0..calls).map(|_| Arc::clone(&pool[rng.below(pool.len())])).collect()
}

/// The baseline: clones each user's pre-grouped orders out of a plain HashMap.
fn grouped_of(grouped: &HashMap<String, Vec<Arc<Order>>>, users: &[Arc<User>]) -> usize {
    users.iter().map(|u| black_box(grouped.get(&black_box(u).id).cloned().unwrap_or_default()).len()).sum()
}

/// Calls `orders()` for each user; returns the number of orders returned.
fn orders_of(store: &Store, users: &[Arc<User>]) -> usize {
    users.iter().map(|u| black_box(black_box(u).orders(store).expect("orders")).len()).sum()
}

fn main() {
    let cli = Cli::parse();
    let n = cli.n.unwrap_or(if cli.quick { 20_000 } else { 1_000_000 });
    let calls = cli.calls.unwrap_or(if cli.quick { 20_000 } else { 200_000 });
    let rounds = cli.rounds.max(1);
    let users = (n / 10).max(1);
    let sizes = [n, (n / 10).max(10), (n / 100).max(10)];
    common::print_header(
        "relations",
        &format!(
            "user.orders(&store) with {} users over {} orders; \
             both collections #[storage(memory)]: no disk involved",
            thousands(users as u64),
            sizes.map(|s| thousands(s as u64)).join(" / "),
        ),
    );

    let worlds: Vec<World> = ["large", "medium", "small"]
        .iter()
        .zip(sizes)
        .zip(1..)
        .map(|((label, orders), seed)| build(label, users, orders / 10, orders, seed))
        .collect();
    let sample = serde_json::to_vec(&*worlds[0].store.collection::<Order>().expect("orders").get(&1).expect("order 1"))
        .map_or(0, |v| v.len());
    println!("an order is {sample} bytes of JSON");

    let owner_picks: Vec<Vec<Arc<User>>> = worlds.iter().map(|w| picks(&w.owners, calls, 7)).collect();
    // Users without orders: every user in the small store but its owners.
    let small = &worlds[2];
    let lonely: Vec<Arc<User>> = small.users[small.owners.len()..].to_vec();
    let small_lonely = picks(&lonely, calls, 9);

    let mut contenders: Vec<Contender> = worlds
        .iter()
        .zip(&owner_picks)
        .map(|(world, users)| {
            Contender::new(format!("orders(), {} orders in store", thousands(world.orders as u64)), calls, || {
                orders_of(&world.store, users)
            })
        })
        .collect();
    for (world, users) in worlds.iter().zip(&owner_picks) {
        contenders.push(Contender::new(
            format!("baseline HashMap<String, Vec<Arc<Order>>>, {} orders", thousands(world.orders as u64)),
            calls,
            || grouped_of(&world.grouped, users),
        ));
    }
    contenders.push(Contender::new(
        format!("orders() of a user with none, {} orders in store", thousands(small.orders as u64)),
        calls,
        || orders_of(&small.store, &small_lonely),
    ));
    let timings = race(&mut contenders, rounds);
    drop(contenders);

    println!();
    println!(
        "{} calls per round to random users ({rounds} rounds); ns per returned order = ns per call / orders per call",
        thousands(calls as u64)
    );
    let mut table = Table::new(&[
        "workload",
        "orders/call",
        "median/call",
        "ns/order (median)",
        "ns/order (best)",
        "every round (per call)",
    ]);
    let ns_order =
        |t: &Timing, ns: f64| if t.items == 0 { "-".to_owned() } else { format!("{:.0}", ns / t.items_per_op()) };
    for timing in &timings {
        table.row(vec![
            timing.name.clone(),
            format!("{:.1}", timing.items_per_op()),
            per_op(timing.median()),
            ns_order(timing, timing.median()),
            ns_order(timing, timing.best()),
            timing.rounds_text(),
        ]);
    }
    table.print();
    // Rows 0-2: orders() on the large, medium and small store; rows 3-5: the baseline.
    let per_order = |t: &Timing| (t.median() / t.items_per_op(), t.best() / t.items_per_op());
    for k in [1, 2] {
        let (large, other) = (per_order(&timings[0]), per_order(&timings[k]));
        let (base_large, base_other) = (per_order(&timings[3]), per_order(&timings[3 + k]));
        let ratio = large.0 / other.0;
        println!(
            "ns per returned order, {} vs {} orders ({}x the collection): orders() {ratio:.2}x by medians \
             ({:.2}x by best rounds); the HashMap baseline {:.2}x ({:.2}x) -> {}",
            thousands(worlds[0].orders as u64),
            thousands(worlds[k].orders as u64),
            worlds[0].orders / worlds[k].orders.max(1),
            large.1 / other.1,
            base_large.0 / base_other.0,
            base_large.1 / base_other.1,
            if ratio < 2.0 { "about the same" } else { "NOT flat" }
        );
    }
    for (k, world) in worlds.iter().enumerate() {
        println!(
            "orders() / baseline per returned order, {} orders: {:.2}x by medians ({:.2}x by best rounds)",
            thousands(world.orders as u64),
            per_order(&timings[k]).0 / per_order(&timings[3 + k]).0,
            per_order(&timings[k]).1 / per_order(&timings[3 + k]).1,
        );
    }
}
