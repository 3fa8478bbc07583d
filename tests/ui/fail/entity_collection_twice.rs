use serde::{Deserialize, Serialize};
use shelf::Entity;

#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
#[entity(collection = "people", collection = "users")]
struct User {
    #[id]
    id: String,
}

fn main() {}
