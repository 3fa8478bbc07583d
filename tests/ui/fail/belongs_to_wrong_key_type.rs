use serde::{Deserialize, Serialize};
use shelf::Entity;

#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
struct User {
    #[id]
    id: String,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
struct Order {
    #[id(auto)]
    id: u64,
    #[belongs_to(User)]
    user_id: u64,
}

fn main() {}
