use serde::{Deserialize, Serialize};
use shelf::Entity;

#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
#[index((country, height))]
struct User {
    #[id]
    id: String,
    country: String,
    height: f64,
}

fn main() {}
