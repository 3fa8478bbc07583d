//! The WAL and transactions, in one process: replay after an abort, torn tails,
//! corruption, repair, rollback of failed transactions.

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shelf::{Entity, Error, Store};

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[storage(per_record, wal)]
struct Account {
    #[id]
    id: String,
    #[index(unique)]
    owner: String,
    cents: i64,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Note {
    #[id(auto)]
    id: u64,
    text: String,
}

fn open(dir: &Path) -> shelf::Result<Store> {
    Store::builder(dir).register::<Account>().register::<Note>().flush_interval(Duration::from_secs(3600)).open()
}

fn account(id: &str, cents: i64) -> Account {
    Account { id: id.into(), owner: format!("owner-{id}"), cents }
}

const CHILD: &str = "SHELF_WAL_BASICS_CHILD";

/// The child half of `acknowledged_writes_survive_an_abort`: writes, acknowledges
/// each write on stdout, then dies without flushing.
fn child_main(dir: &Path) {
    let store = open(dir).unwrap();
    let accounts = store.collection::<Account>().unwrap();
    for i in 0..50 {
        accounts.insert(account(&format!("a{i}"), i)).unwrap();
        println!("ack a{i}");
    }
    store
        .transaction(|tx| {
            tx.update::<Account>(&"a0".into(), |a| a.cents = 1000)?;
            tx.insert(Note { id: 0, text: "in the same record as a0".into() })?;
            Ok::<_, Error>(())
        })
        .unwrap();
    println!("ack tx");
    std::process::abort();
}

#[test]
fn acknowledged_writes_survive_an_abort() {
    if let Ok(dir) = std::env::var(CHILD) {
        child_main(Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "acknowledged_writes_survive_an_abort", "--nocapture", "--test-threads=1"])
        .env(CHILD, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let acks: Vec<String> = std::io::BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        // libtest may print its own "test ... " prefix on the first line.
        .filter_map(|l| l.find("ack ").map(|at| l[at + 4..].to_owned()))
        .collect();
    let status = child.wait().unwrap();
    assert!(!status.success(), "the child must die by abort, not exit cleanly");
    assert_eq!(acks.len(), 51, "the child did not finish its writes: {acks:?}");
    // Nothing was flushed: the records exist only in the WAL.
    assert!(!dir.path().join("account").join("a1.json").exists());

    let store = open(dir.path()).unwrap();
    assert_eq!(store.recovery_report().wal_records_replayed, 51);
    let accounts = store.collection::<Account>().unwrap();
    for ack in acks.iter().filter(|a| a.starts_with('a')) {
        assert!(accounts.contains(ack), "acknowledged {ack} is missing");
    }
    assert_eq!(accounts.get("a0").unwrap().cents, 1000);
    assert_eq!(accounts.by_owner("owner-a7").unwrap().id, "a7");
    // The transaction's write to the non-WAL collection was logged with it.
    assert_eq!(store.collection::<Note>().unwrap().len(), 1);
    // Open replayed the log into memory only: the first flush writes the replayed
    // records and checkpoints the log.
    assert!(!dir.path().join("account").join("a1.json").exists());
    assert_eq!(store.health().dirty, 51);
    store.flush().unwrap();
    assert!(dir.path().join("account").join("a1.json").exists());
    store.close().unwrap();
    let store = open(dir.path()).unwrap();
    assert_eq!(store.recovery_report().wal_records_replayed, 0);
    assert_eq!(store.collection::<Account>().unwrap().len(), 50);
}

fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut segments: Vec<_> = std::fs::read_dir(dir.join("wal")).unwrap().map(|e| e.unwrap().path()).collect();
    segments.sort();
    segments
}

/// Writes three WAL records and leaves them unflushed, as after a crash: the store
/// is forgotten (its lock released by closing the files is not needed: the test
/// reopens after dropping a clone of the directory).
fn three_logged_writes(dir: &Path) -> Vec<u8> {
    let store = open(dir).unwrap();
    let accounts = store.collection::<Account>().unwrap();
    for i in 0..3 {
        accounts.insert(account(&format!("a{i}"), i)).unwrap();
    }
    let segment = segments(dir).into_iter().last().unwrap();
    let bytes = std::fs::read(&segment).unwrap();
    drop(accounts);
    drop(store); // flushes and checkpoints
    bytes
}

fn plant_segment(dir: &Path, bytes: &[u8]) {
    for segment in segments(dir) {
        std::fs::remove_file(segment).unwrap();
    }
    for entry in std::fs::read_dir(dir.join("account")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::remove_file(path).unwrap();
        }
    }
    std::fs::write(dir.join("wal").join(format!("{:020}.wal", 1)), bytes).unwrap();
}

#[test]
fn a_torn_tail_is_truncated_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = three_logged_writes(dir.path());
    let mut torn = bytes.clone();
    torn.truncate(bytes.len() - 5);
    plant_segment(dir.path(), &torn);
    let store = open(dir.path()).unwrap();
    let report = store.recovery_report();
    assert_eq!(report.wal_records_replayed, 2);
    assert!(report.wal_bytes_truncated > 0);
    let accounts = store.collection::<Account>().unwrap();
    assert!(accounts.contains("a1") && !accounts.contains("a2"));
}

#[test]
fn a_bad_record_before_valid_ones_is_corruption_unless_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = three_logged_writes(dir.path());
    let mut corrupt = bytes.clone();
    corrupt[20] ^= 0xFF; // inside the first record's payload
    plant_segment(dir.path(), &corrupt);
    match open(dir.path()) {
        Err(Error::WalCorrupt { offset, .. }) => assert_eq!(offset, 0),
        other => panic!("expected WalCorrupt, got {other:?}"),
    }
    // The log is untouched by the failed open.
    assert_eq!(std::fs::read(&segments(dir.path())[0]).unwrap(), corrupt);
    let store = Store::builder(dir.path()).register::<Account>().register::<Note>().repair_wal(true).open().unwrap();
    assert_eq!(store.recovery_report().wal_records_replayed, 0);
    assert_eq!(store.recovery_report().wal_bytes_truncated, corrupt.len() as u64);
}

#[test]
fn a_failed_transaction_applies_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).unwrap();
    let accounts = store.collection::<Account>().unwrap();
    accounts.insert(account("a", 10)).unwrap();
    accounts.insert(account("b", 10)).unwrap();

    // The closure's error.
    let result: Result<(), Error> = store.transaction(|tx| {
        tx.update::<Account>(&"a".into(), |a| a.cents -= 5)?;
        tx.update::<Account>(&"missing".into(), |a| a.cents += 5)?;
        Ok(())
    });
    assert!(matches!(result, Err(Error::NotFound { .. })));

    // A unique violation found at commit, after an earlier write of the same transaction.
    let result: Result<(), Error> = store.transaction(|tx| {
        tx.update::<Account>(&"a".into(), |a| a.cents = 0)?;
        tx.insert(Account { id: "c".into(), owner: "owner-b".into(), cents: 1 })?;
        Ok(())
    });
    assert!(matches!(result, Err(Error::UniqueViolation { .. })), "{result:?}");

    // A panic.
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _: Result<(), Error> = store.transaction(|tx| {
            tx.update::<Account>(&"a".into(), |a| a.cents = -1)?;
            panic!("boom");
        });
    }));
    assert!(panicked.is_err());

    assert_eq!(accounts.get("a").unwrap().cents, 10);
    assert!(!accounts.contains("c"));
    assert_eq!(accounts.by_owner("owner-b").unwrap().id, "b");
    // The store still takes writes (the writer lock was released by the panic).
    accounts.update(&"a".into(), |a| a.cents = 11).unwrap();
}

#[test]
fn reads_inside_a_transaction_see_its_own_writes_and_handles_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).unwrap();
    let accounts = store.collection::<Account>().unwrap();
    store
        .transaction(|tx| {
            tx.insert(account("x", 1))?;
            assert_eq!(tx.get::<Account>(&"x".into()).unwrap().cents, 1);
            assert!(accounts.get("x").is_none(), "other readers must not see an uncommitted write");
            tx.update::<Account>(&"x".into(), |a| a.cents = 2)?;
            assert_eq!(tx.get::<Account>(&"x".into()).unwrap().cents, 2);
            assert!(matches!(accounts.insert(account("y", 1)), Err(Error::InTransaction { .. })));
            tx.remove::<Account>(&"x".into())?;
            assert!(tx.get::<Account>(&"x".into()).is_none());
            tx.insert(account("x", 3))?;
            Ok::<_, Error>(())
        })
        .unwrap();
    assert_eq!(accounts.get("x").unwrap().cents, 3);
    assert!(!accounts.contains("y"));
}
