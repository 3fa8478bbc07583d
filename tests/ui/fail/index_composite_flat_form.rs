use serde::{Deserialize, Serialize};
use shelf::Entity;

#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
#[index(country, age)]
struct User {
    #[id]
    id: String,
    country: String,
    age: u32,
}

// The hint keeps the options.
#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
#[index(country, level, unique)]
struct Player {
    #[id]
    id: String,
    country: String,
    level: u8,
}

fn main() {}
