use serde::{Deserialize, Serialize};
use shelf::Entity;

#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
#[has_many(orders: Order, key = user_id)]
struct User {
    #[id]
    id: String,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
struct Order {
    #[id(auto)]
    id: u64,
    // A plain field: has_many needs #[belongs_to(User)] here.
    user_id: String,
}

fn main() {}
