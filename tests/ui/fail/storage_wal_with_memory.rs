use serde::{Deserialize, Serialize};
use shelf::Entity;

#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
#[storage(memory, wal)]
struct Session {
    #[id]
    token: String,
}

fn main() {}
