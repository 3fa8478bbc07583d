use serde::{Deserialize, Serialize};
use shelf::Entity;

#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
#[entity(collection = "wal")]
struct Log {
    #[id]
    id: String,
}

fn main() {}
