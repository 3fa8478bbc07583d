use serde::{Deserialize, Serialize};
use shelf::Entity;

#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
#[storage(per_record, wal, wal)]
struct Event {
    #[id]
    id: String,
}

fn main() {}
