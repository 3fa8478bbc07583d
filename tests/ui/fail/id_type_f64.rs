use serde::{Deserialize, Serialize};
use shelf::Entity;

#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
struct Point {
    #[id]
    id: f64,
}

fn main() {}
