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
    // `name` is a String: its values are not u32s.
    let _names: Vec<u32> = items(store).select(Item::fields().name);
}

fn main() {}
