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
    // A sum of a String field: sum needs a numeric field.
    let _ = items(store).sum(Item::fields().name);
}

fn main() {}
