//! The directory lock: one `Store` per data directory, in this process or any other.
//!
//! The cross-process tests run this test binary again as a child process
//! (`current_exe() --exact <test> --nocapture`). The child sees [`HOLDER_ENV`], opens
//! the store, prints [`HELD`], and holds the directory until its stdin closes.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use common::*;
use shelf::Error;

/// Set in the child: the data directory it must open and hold.
const HOLDER_ENV: &str = "SHELF_TEST_LOCK_HOLDER_DIR";
/// The line the child prints once it holds the lock.
const HELD: &str = "shelf-test: lock held";

fn expect_locked(dir: &Path) {
    match builder(dir).open() {
        Err(Error::Locked { dir: locked }) => {
            assert_eq!(locked, dir);
            let message = Error::Locked { dir: locked }.to_string();
            assert!(message.contains(&dir.display().to_string()), "the error names the directory: {message}");
        }
        Err(other) => panic!("expected Error::Locked, got {other}"),
        Ok(_) => panic!("a second Store opened {} while it was held", dir.display()),
    }
}

#[test]
fn a_second_open_in_the_same_process_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let users = store.collection::<User>().unwrap();
    users.insert(user("ada", "Ada", 36)).unwrap();
    store.flush().unwrap();
    let before = snapshot(dir.path());

    expect_locked(dir.path());
    expect_locked(dir.path());
    assert_eq!(snapshot(dir.path()), before, "a refused open writes nothing");

    // The holder is undisturbed.
    users.insert(user("bob", "Bob", 41)).unwrap();
    store.flush().unwrap();
    assert_eq!(users.len(), 2);
}

#[test]
fn close_releases_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.close().unwrap();
    let again = open(dir.path());
    expect_locked(dir.path());
    drop(again);
    drop(store);
}

#[test]
fn dropping_every_handle_releases_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let users = store.collection::<User>().unwrap();
    drop(store);
    expect_locked(dir.path()); // the collection handle still holds the store
    drop(users);
    let _store = open(dir.path());
}

#[test]
fn the_lock_file_is_in_the_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let _store = open(dir.path());
    assert!(dir.path().join(shelf::LOCK_FILE).is_file());
    assert_eq!(shelf::LOCK_FILE, "LOCK");
}

/// The child's side: open and hold `dir` until stdin closes or sends a line, then
/// close the store.
fn hold_lock_as_child(dir: &str) {
    let store = open(Path::new(dir));
    let users = store.collection::<User>().unwrap();
    users.insert(user("from-child", "Child", 1)).unwrap();
    println!("{HELD}");
    std::io::stdout().flush().unwrap();
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    store.close().unwrap();
}

/// Starts this test binary as a child that holds `dir`, and waits until it does.
fn spawn_holder(test_name: &str, dir: &Path) -> Child {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test_name, "--nocapture", "--test-threads=1"])
        .env(HOLDER_ENV, dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the child test process");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // libtest prints "test <name> ... " without a newline first.
            if line.contains(HELD) {
                let _ = tx.send(());
            }
        }
    });
    if rx.recv_timeout(DEADLINE).is_err() {
        let _ = child.kill();
        let status = child.wait().unwrap();
        panic!("the child never reported holding the lock (exit: {status})");
    }
    child
}

#[test]
fn a_second_process_gets_locked_until_the_holder_closes() {
    if let Ok(dir) = std::env::var(HOLDER_ENV) {
        return hold_lock_as_child(&dir);
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn_holder("a_second_process_gets_locked_until_the_holder_closes", dir.path());

    expect_locked(dir.path());

    child.stdin.take().unwrap().write_all(b"release\n").unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "the child failed: {status}");

    let store = open(dir.path());
    let users = store.collection::<User>().unwrap();
    assert_eq!(values(&users), [user("from-child", "Child", 1)], "the child's close flushed its write");
}

#[test]
fn a_killed_holder_does_not_leave_the_directory_locked() {
    if let Ok(dir) = std::env::var(HOLDER_ENV) {
        return hold_lock_as_child(&dir);
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn_holder("a_killed_holder_does_not_leave_the_directory_locked", dir.path());

    expect_locked(dir.path());

    child.kill().unwrap();
    child.wait().unwrap();
    let store = open(dir.path());
    // The child never flushed, so its write may be lost; its directory is usable.
    assert!(store.collection::<User>().unwrap().len() <= 1);
    assert!(temp_files(dir.path()).is_empty());
}
