//! A write that lands while a flush is in progress stays dirty: the flush clears only
//! the marks of the versions it wrote, and the next flush writes the newer ones.

mod common;

use common::*;

#[test]
fn writes_during_a_flush_stay_dirty_for_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let fs = GateFs::new();
    let gate = fs.gate();
    let store = builder(dir.path()).vfs(fs).open().unwrap();
    let users = store.collection::<User>().unwrap();
    users.insert(user("ada", "Ada", 36)).unwrap();
    users.insert(user("carol", "Carol", 29)).unwrap();

    gate.arm();
    let flush = {
        let store = store.clone();
        std::thread::spawn(move || store.flush())
    };
    let parked = gate.wait_parked();
    // The flush has renamed its files and waits to sync the directory.
    let writes = (
        users.update(&"ada".to_string(), |u| u.age = 37),
        users.insert(user("bob", "Bob", 41)),
        users.remove(&"carol".to_string()),
    );
    gate.release();
    let flushed = flush.join().unwrap();
    assert!(parked, "the flush never reached its directory sync");
    writes.0.unwrap();
    writes.1.unwrap();
    writes.2.unwrap();
    assert_eq!(flushed.unwrap().records, 2, "the parked flush wrote ada and carol");

    assert_eq!(users.dirty_count(), 3, "ada's new version, bob and carol's removal are still dirty");
    assert_eq!(read_record::<User>(&record_path(dir.path(), "user", "ada")), Some(user("ada", "Ada", 36)));
    assert!(record_path(dir.path(), "user", "carol").exists());

    store.flush().unwrap();
    assert_eq!(users.dirty_count(), 0);
    assert_eq!(read_record::<User>(&record_path(dir.path(), "user", "ada")), Some(user("ada", "Ada", 37)));
    assert_eq!(read_record::<User>(&record_path(dir.path(), "user", "bob")), Some(user("bob", "Bob", 41)));
    assert!(!record_path(dir.path(), "user", "carol").exists());
    drop((store, users));

    let store = open(dir.path());
    assert_eq!(values(&store.collection::<User>().unwrap()), [user("ada", "Ada", 37), user("bob", "Bob", 41)]);
}
