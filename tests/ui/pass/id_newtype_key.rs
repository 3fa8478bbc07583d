#![deny(warnings)]

use serde::{Deserialize, Serialize};
use shelf::{Entity, Key};

/// A newtype id opts in by implementing `shelf::Key`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct UserId(u64);

impl Key for UserId {
    fn encode_key(&self) -> String {
        self.0.encode_key()
    }
    fn decode_key(text: &str) -> Option<Self> {
        u64::decode_key(text).map(UserId)
    }
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
struct User {
    #[id]
    id: UserId,
    name: String,
}

fn _use(store: &shelf::Store) -> shelf::Result<()> {
    let users = store.collection::<User>()?;
    users.insert(User { id: UserId(7), name: "Ada".into() })?;
    let _: bool = users.contains(&UserId(7));
    let _: usize = users.len();
    Ok(())
}

fn main() {}
