//! The Shelf tour in one program: two entities, writes, reads, a flush, a reopen,
//! and a look at the files on disk.
//!
//! Run it with `cargo run --example quickstart`.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use shelf::{Entity, Store};

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
struct User {
    #[id]
    id: String,
    name: String,
    country: String,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Order {
    #[id(auto)]
    id: u64,
    user_id: String,
    total_cents: u64,
}

fn open(dir: &std::path::Path) -> shelf::Result<Store> {
    Store::builder(dir).register::<User>().register::<Order>().flush_interval(Duration::from_secs(2)).open()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("shelf-quickstart-{}", std::process::id()));
    let store = open(&dir)?;
    let users = store.collection::<User>()?;
    let orders = store.collection::<Order>()?;

    users.insert(User { id: "ada".into(), name: "Ada".into(), country: "GB".into() })?;
    users.insert(User { id: "linus".into(), name: "Linus".into(), country: "FI".into() })?;
    let first = orders.insert(Order { id: 0, user_id: "ada".into(), total_cents: 1999 })?;
    let second = orders.insert(Order { id: 0, user_id: "ada".into(), total_cents: 500 })?;
    users.update(&"ada".to_string(), |u| u.name = "Ada Lovelace".into())?;
    println!("inserted orders {first} and {second}; {} users in memory", users.len());

    let stats = store.flush()?;
    println!("flushed {} files ({} bytes) in {:?}", stats.records, stats.bytes, stats.duration);
    store.close()?;
    drop((users, orders, store));

    let store = open(&dir)?;
    let users = store.collection::<User>()?;
    let orders = store.collection::<Order>()?;
    let ada = users.get(&"ada".to_string()).ok_or("ada is missing after reopen")?;
    println!("after reopen: {} ({}), {} orders", ada.name, ada.country, orders.len());
    let next = orders.insert(Order { id: 0, user_id: "linus".into(), total_cents: 4200 })?;
    println!("the auto id counter survived the reopen: next order id is {next}");
    store.close()?;

    println!("\nfiles in {}:", dir.display());
    let mut files = Vec::new();
    list(&dir, &mut files)?;
    files.sort();
    for file in files {
        println!("  {}", file.strip_prefix(&dir)?.display());
    }
    println!("\n{}:", dir.join("user").join("ada.json").display());
    print!("{}", std::fs::read_to_string(dir.join("user").join("ada.json"))?);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

fn list(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            list(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}
