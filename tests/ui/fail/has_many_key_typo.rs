use serde::{Deserialize, Serialize};
use shelf::Entity;

#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
#[has_many(orders: Order, key = usr_id)]
struct User {
    #[id]
    id: String,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
struct Order {
    #[id(auto)]
    id: u64,
    #[belongs_to(User)]
    user_id: String,
}

fn main() {}
