use serde::{Deserialize, Serialize};
use shelf::Entity;

#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
#[storage(fast)]
struct User {
    #[id]
    id: String,
}

fn main() {}
