//! `shelf export` gives the durable state, and `info`/`verify` leave a running store
//! alone: with the real binary, against a child process (this test binary run again)
//! that holds a `wal` store, then dies by SIGKILL with commits only in the WAL.

mod common;

use common::snapshot;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use shelf::{Entity, Store};

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[storage(per_record, wal)]
struct Item {
    #[id]
    id: String,
    #[index(unique)]
    code: String,
    n: i64,
}

/// Set in the child: the data directory.
const CHILD: &str = "SHELF_CLI_DURABLE_CHILD_DIR";

/// How long the parent waits for the child at each step before failing.
const WATCHDOG: Duration = Duration::from_secs(60);

fn open(dir: &Path) -> Store {
    Store::builder(dir).register::<Item>().flush_interval(Duration::from_secs(3600)).open().unwrap()
}

fn item(id: &str, n: i64) -> Item {
    Item { id: id.into(), code: format!("code-{id}"), n }
}

fn shelf(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shelf")).args(args).stdin(Stdio::null()).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The child's half: commits to the WAL, says `ready`, waits for `go`, commits
/// once more, says `done`, and waits to be killed (or for its stdin to close).
fn child(dir: &Path) {
    let store = open(dir);
    let items = store.collection::<Item>().unwrap();
    for i in 1..=3 {
        items.insert(item(&format!("new{i}"), i)).unwrap();
    }
    items.remove(&"old1".to_string()).unwrap();
    items.update(&"old2".to_string(), |it| it.n = 200).unwrap();
    let mut stdout = std::io::stdout();
    writeln!(stdout, "ready").unwrap();
    stdout.flush().unwrap();
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    items.insert(item("after", 9)).unwrap();
    writeln!(stdout, "done").unwrap();
    stdout.flush().unwrap();
    line.clear();
    // Blocks until killed; returns only if the parent went away.
    let _ = std::io::stdin().read_line(&mut line);
    std::process::exit(3);
}

/// Reads the child's lines until one ends with `expected` (the test harness prints
/// its own text, on the same line too);
/// fails if the child ends first, or after [`WATCHDOG`].
fn expect_line(lines: &mpsc::Receiver<String>, child: &mut Child, expected: &str) {
    let deadline = std::time::Instant::now() + WATCHDOG;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.trim_end().ends_with(expected) => return,
            Ok(_) => continue,
            Err(e) => {
                let _ = child.kill();
                panic!("expected `{expected}` from the child: {e}");
            }
        }
    }
}

fn line_reader(stdout: ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

#[test]
fn export_after_sigkill_gives_the_wal_durable_state_and_info_verify_leave_a_running_store_alone() {
    if let Ok(dir) = std::env::var(CHILD) {
        child(Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let items = store.collection::<Item>().unwrap();
    items.insert(item("old1", 1)).unwrap();
    items.insert(item("old2", 2)).unwrap();
    store.close().unwrap();

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "export_after_sigkill_gives_the_wal_durable_state_and_info_verify_leave_a_running_store_alone",
        ])
        .args(["--nocapture", "--test-threads=1"])
        .env(CHILD, dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = line_reader(child.stdout.take().unwrap());
    let mut stdin = child.stdin.take().unwrap();
    expect_line(&lines, &mut child, "ready");

    // The child holds the store: info and verify read it and change nothing.
    let before = snapshot(dir.path());
    let info = shelf(&["info", dir.path().to_str().unwrap()]);
    assert_eq!(info.status.code(), Some(0), "info: {}", text(&info.stderr));
    assert!(text(&info.stdout).contains("in use: yes"), "info: {}", text(&info.stdout));
    let verify = shelf(&["verify", dir.path().to_str().unwrap()]);
    assert_eq!(verify.status.code(), Some(0), "verify: {}{}", text(&verify.stdout), text(&verify.stderr));
    assert_eq!(snapshot(dir.path()), before, "info and verify changed the directory");
    // ... and the store goes on writing.
    writeln!(stdin, "go").unwrap();
    stdin.flush().unwrap();
    expect_line(&lines, &mut child, "done");

    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert_eq!(status.code(), None, "the child dies by the signal");
    assert!(
        dir.path().join("item").join("old1.json").exists(),
        "old1's file is still there: the removal is only in the WAL"
    );

    let export = shelf(&["export", dir.path().to_str().unwrap(), "--collection", "item"]);
    assert_eq!(export.status.code(), Some(0), "export: {}", text(&export.stderr));
    let exported: Vec<Value> = text(&export.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let ids: Vec<&str> = exported.iter().map(|v| v["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["after", "new1", "new2", "new3", "old2"], "WAL-durable writes exported, removed old1 not");
    assert_eq!(exported[4]["n"], 200, "old2's update is in the WAL only");

    // The same as what the application's next open loads.
    let store = open(dir.path());
    let mut loaded: Vec<Value> =
        store.collection::<Item>().unwrap().all().into_iter().map(|i| serde_json::to_value(&*i).unwrap()).collect();
    loaded.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    assert_eq!(exported, loaded);
    store.close().unwrap();
}
