use serde::{Deserialize, Serialize};
use shelf::Entity;

#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
#[has_many(orders: Order, key = user_id)]
struct User {
    #[id]
    id: String,
}

// Not an entity: no #[derive(Entity)].
#[derive(Serialize, Deserialize, Clone, Debug)]
struct Order {
    id: u64,
    user_id: String,
}

fn main() {}
