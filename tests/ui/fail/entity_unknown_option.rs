use serde::{Deserialize, Serialize};
use shelf::Entity;

#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
#[entity(name = "users")]
struct User {
    #[id]
    id: String,
}

fn main() {}
