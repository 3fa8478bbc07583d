#![deny(warnings)]

use serde::{Deserialize, Serialize};
use shelf::Entity;

#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
#[storage(per_record)]
struct User {
    #[id]
    id: String,
    name: String,
}

fn _use(store: &shelf::Store) -> shelf::Result<()> {
    let users = store.collection::<User>()?;
    users.insert(User { id: "ada".into(), name: "Ada".into() })?;
    let _: Option<std::sync::Arc<User>> = users.get(&"ada".to_string());
    let _: usize = users.len();
    Ok(())
}

fn main() {
    assert_eq!(<User as Entity>::COLLECTION, "user");
}
