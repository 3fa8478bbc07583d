use serde::{Deserialize, Serialize};
use shelf::Entity;

#[derive(Serialize, Deserialize, Clone, Debug)]
struct UserId {
    value: u64,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
struct User {
    #[id]
    id: UserId,
}

fn main() {}
