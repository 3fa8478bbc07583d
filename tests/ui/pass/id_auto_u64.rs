#![deny(warnings)]

use serde::{Deserialize, Serialize};
use shelf::Entity;

#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
struct Order {
    #[id(auto)]
    id: u64,
    total_cents: u64,
}

fn _use(store: &shelf::Store) -> shelf::Result<()> {
    let orders = store.collection::<Order>()?;
    // The id given here is replaced by the next counter value on insert.
    orders.insert(Order { id: 0, total_cents: 1250 })?;
    let _: usize = orders.len();
    Ok(())
}

fn main() {
    assert!(<Order as Entity>::AUTO_ID);
}
