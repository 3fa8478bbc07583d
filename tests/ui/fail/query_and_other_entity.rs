use serde::{Deserialize, Serialize};
use shelf::Entity;

#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
struct User {
    #[id]
    id: String,
    #[index(sorted)]
    age: u32,
    name: String,
    nick: Option<String>,
    score: Option<u32>,
    height: f64,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
struct Order {
    #[id]
    id: u64,
    total_cents: u64,
}

fn main() {
    let _ = User::fields().age.gt(17).and(Order::fields().total_cents.gt(100));
}
