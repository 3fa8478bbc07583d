use serde::{Deserialize, Serialize};
use shelf::Entity;

// The derive generates `User::fields()` for typed queries; a method of the same
// name on the type clashes with it (the README's naming rules say so).
#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
struct User {
    #[id]
    id: String,
}

impl User {
    fn fields() -> Vec<&'static str> {
        vec!["id"]
    }
}

fn main() {}
