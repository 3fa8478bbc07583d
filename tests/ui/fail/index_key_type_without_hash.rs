use serde::{Deserialize, Serialize};
use shelf::Entity;

/// Serializable and comparable, but not `Eq + Ord + Hash`: not an index key.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Address {
    city: String,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
struct User {
    #[id]
    id: String,
    #[index]
    address: Address,
}

fn main() {}
