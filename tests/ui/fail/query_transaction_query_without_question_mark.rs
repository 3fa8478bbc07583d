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

fn _use(store: &shelf::Store) -> shelf::Result<()> {
    store.transaction(|tx| {
        let _ = tx.query::<User>().filter(User::fields().age.gt(17)).count();
        Ok::<_, shelf::Error>(())
    })
}

fn main() {}
