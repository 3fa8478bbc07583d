use serde::{Deserialize, Serialize};
use shelf::Entity;

#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
struct User {
    #[id(generated)]
    id: u64,
}

fn main() {}
