use serde::{Deserialize, Serialize};
use shelf::{Entity, Store};

#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
struct Item {
    #[id]
    id: u32,
    #[index]
    name: String,
    size: u64,
    weight: f64,
}

fn items(store: &Store) -> shelf::Query<Item> {
    store.collection::<Item>().unwrap().query()
}

fn check(store: &Store) {
    // f64 has no total order: groups could not be ordered.
    let _ = items(store).group_by(Item::fields().weight).count();
}

fn main() {}
