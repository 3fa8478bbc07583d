//! Files the `shelf` tools write are opened by the store with no entry-by-entry parse
//! of an index file: `import` and `compact` leave no index file without the content
//! hash and checksum that let open check a file from its header.
//!
//! One test in this binary: it reads a process-wide counter.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shelf::inspect::index_files_parsed_entry_by_entry;
use shelf::{Entity, Store};

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[index((country, age))]
struct User {
    #[id]
    id: String,
    #[index(unique)]
    email: String,
    #[index]
    country: String,
    #[index(sorted)]
    age: u32,
    #[index(each)]
    tags: Vec<String>,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[storage(per_record, wal)]
struct Account {
    #[id]
    id: String,
    #[index(unique)]
    owner: String,
    cents: i64,
}

const CHILD: &str = "SHELF_CLI_INDEX_FILES_CHILD_DIR";

fn open(dir: &Path) -> Store {
    Store::builder(dir)
        .register::<User>()
        .register::<Account>()
        .flush_interval(Duration::from_secs(3600))
        .open()
        .unwrap()
}

fn user(id: &str, age: u32) -> User {
    User { id: id.into(), email: format!("{id}@example.org"), country: "DE".into(), age, tags: vec!["a".into()] }
}

fn shelf(args: &[&str], stdin: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_shelf"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "shelf {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

/// Every index file's header has `content` and `checksum`.
fn assert_headers_complete(dir: &Path) {
    for collection in ["user", "account"] {
        let Ok(entries) = std::fs::read_dir(dir.join(collection).join("indices")) else { continue };
        for entry in entries {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let header: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
            assert!(
                header.get("content").is_some() && header.get("checksum").is_some(),
                "{}: header without content hash or checksum: {header}",
                path.display()
            );
        }
    }
}

#[test]
fn import_and_compact_leave_no_index_file_that_open_parses_entry_by_entry() {
    if let Ok(dir) = std::env::var(CHILD) {
        // The child: WAL commits, then death before any flush.
        let store = open(Path::new(&dir));
        let accounts = store.collection::<Account>().unwrap();
        for i in 0..5 {
            accounts.insert(Account { id: format!("acc{i}"), owner: format!("owner{i}"), cents: i }).unwrap();
        }
        accounts.remove(&"acc9".to_string()).unwrap();
        std::process::abort();
    }
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.collection::<User>().unwrap().insert(user("ada", 36)).unwrap();
    let accounts = store.collection::<Account>().unwrap();
    accounts.insert(Account { id: "acc9".into(), owner: "nobody".into(), cents: 0 }).unwrap();
    store.close().unwrap();
    assert!(dir.path().join("user").join("indices").join("email.jsonl").exists(), "the store wrote index files");

    // import
    let lines = format!(
        "{}\n{}\n",
        serde_json::to_string(&user("bob", 17)).unwrap(),
        serde_json::to_string(&user("cy", 51)).unwrap()
    );
    shelf(&["import", dir.path().to_str().unwrap(), "--collection", "user"], &lines);
    assert_headers_complete(dir.path());
    let before = index_files_parsed_entry_by_entry();
    let store = open(dir.path());
    assert_eq!(index_files_parsed_entry_by_entry(), before, "open parsed index files entry by entry after import");
    let users = store.collection::<User>().unwrap();
    assert_eq!(users.len(), 3);
    assert_eq!(users.by_email("cy@example.org").map(|u| u.age), Some(51), "the unique index holds cy");
    store.close().unwrap();
    assert_headers_complete(dir.path());

    // compact
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "import_and_compact_leave_no_index_file_that_open_parses_entry_by_entry", "--nocapture"])
        .env(CHILD, dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the child dies by abort");
    let report = shelf(&["compact", dir.path().to_str().unwrap()], "");
    assert!(report.contains("applied 6 WAL records"), "{report}");
    assert_headers_complete(dir.path());
    let before = index_files_parsed_entry_by_entry();
    let store = open(dir.path());
    assert_eq!(index_files_parsed_entry_by_entry(), before, "open parsed index files entry by entry after compact");
    assert_eq!(store.recovery_report().wal_records_replayed, 0, "compact emptied the WAL");
    let accounts = store.collection::<Account>().unwrap();
    assert_eq!(accounts.len(), 5, "acc0..acc4; acc9 removed");
    assert_eq!(accounts.by_owner("owner3").map(|a| a.cents), Some(3));
    store.close().unwrap();
    assert_headers_complete(dir.path());
}
