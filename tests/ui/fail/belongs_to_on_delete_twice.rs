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
    #[belongs_to(User, on_delete = cascade, on_delete = restrict)]
    user_id: String,
}

fn main() {}
