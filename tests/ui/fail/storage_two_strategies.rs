use serde::{Deserialize, Serialize};
use shelf::Entity;

#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
#[storage(memory, per_record)]
struct User {
    #[id]
    id: String,
}

fn main() {}
