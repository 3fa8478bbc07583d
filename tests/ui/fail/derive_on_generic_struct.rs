use serde::{Deserialize, Serialize};
use shelf::Entity;

#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
struct Wrapper<T> {
    #[id]
    id: String,
    value: T,
}

fn main() {}
