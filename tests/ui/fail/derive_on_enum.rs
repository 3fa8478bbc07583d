use serde::{Deserialize, Serialize};
use shelf::Entity;

#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
enum Status {
    Active,
    Closed,
}

fn main() {}
