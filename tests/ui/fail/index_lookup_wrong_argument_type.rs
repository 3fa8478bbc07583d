use serde::{Deserialize, Serialize};
use shelf::{Entity, Store};

#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
struct User {
    #[id]
    id: String,
    #[index(unique)]
    email: String,
}

fn find(store: &Store) -> shelf::Result<()> {
    let users = store.collection::<User>()?;
    let _ = users.by_email(5);
    Ok(())
}

fn main() {
    let _ = find;
}
