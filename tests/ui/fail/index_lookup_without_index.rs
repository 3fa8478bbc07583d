use serde::{Deserialize, Serialize};
use shelf::{Entity, Store};

#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
struct User {
    #[id]
    id: String,
    #[index(unique)]
    email: String,
    name: String,
}

fn find(store: &Store) -> shelf::Result<()> {
    let users = store.collection::<User>()?;
    let _ = users.by_name("Ada");
    Ok(())
}

fn main() {
    let _ = find;
}
