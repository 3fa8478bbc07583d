use serde::{Deserialize, Serialize};
use shelf::Entity;

#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
struct Post {
    #[id]
    id: u64,
    #[index(each)]
    tag: String,
}

fn main() {}
