use serde::{Deserialize, Serialize};
use shelf::Entity;

#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
#[storage(per_record)]
#[storage(memory)]
struct User {
    #[id]
    id: String,
}

fn main() {}
