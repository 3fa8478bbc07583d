use serde::{Deserialize, Serialize};
use shelf::Entity;

#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
#[index((country, agee))]
struct User {
    #[id]
    id: String,
    country: String,
    age: u32,
}

fn main() {}
