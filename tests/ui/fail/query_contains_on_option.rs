use serde::{Deserialize, Serialize};
use shelf::Entity;

#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
struct User {
    #[id]
    id: String,
    #[index(sorted)]
    age: u32,
    name: String,
    nick: Option<String>,
    score: Option<u32>,
    height: f64,
}

fn main() {
    let _ = User::fields().score.contains("1");
}
