#![deny(warnings)]

use serde::{Deserialize, Serialize};
use shelf::Entity;

#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
#[entity(collection = "people")]
struct Person {
    #[id]
    id: u32,
    name: String,
}

fn _use(store: &shelf::Store) -> shelf::Result<()> {
    let people = store.collection::<Person>()?;
    people.insert(Person { id: 1, name: "Ada".into() })?;
    let _: usize = people.len();
    Ok(())
}

fn main() {
    assert_eq!(<Person as Entity>::COLLECTION, "people");
}
