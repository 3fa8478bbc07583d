use serde::{Deserialize, Serialize};
use shelf::Entity;

#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
struct Player {
    #[id]
    id: String,
    #[index(unique)]
    score: f64,
}

fn main() {}
