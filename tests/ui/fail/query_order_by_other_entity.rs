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

#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
struct Order {
    #[id]
    id: u64,
    total_cents: u64,
}

fn _use(store: &shelf::Store) -> shelf::Result<()> {
    let users = store.collection::<User>()?;
    let _ = users.query().order_by(Order::fields().total_cents.desc()).collect();
    Ok(())
}

fn main() {}
