use serde::{Deserialize, Serialize};
use shelf::Entity;

#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
#[storage(per_record, ttl = "30s")]
struct Persisted {
    #[id]
    id: String,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
#[storage(memory, ttl = "30 seconds")]
struct BadDuration {
    #[id]
    id: String,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
#[storage(memory, ttl = "30s", ttl = "1m")]
struct Twice {
    #[id]
    id: String,
}

fn main() {}
