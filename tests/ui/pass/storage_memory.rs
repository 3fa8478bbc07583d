#![deny(warnings)]

use serde::{Deserialize, Serialize};
use shelf::Entity;

#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
#[storage(memory)]
struct Session {
    #[id]
    token: String,
    user_id: String,
}

fn _use(store: &shelf::Store) -> shelf::Result<()> {
    let sessions = store.collection::<Session>()?;
    sessions.insert(Session { token: "t1".into(), user_id: "ada".into() })?;
    let _: usize = sessions.len();
    Ok(())
}

fn main() {
    assert!(!<Session as Entity>::STORAGE.is_persisted());
}
