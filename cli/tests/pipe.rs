//! The `shelf` binary in a pipeline whose reader goes away (`shelf ... | head`): it
//! ends quietly, with the status its output would have had, and never panics.
//!
//! The reader is gone before the binary writes (a pipe whose read end is closed
//! first), so every write meets `EPIPE`; or it reads one line and goes.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shelf::{Entity, Store};

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Item {
    #[id]
    id: String,
    #[index]
    colour: String,
    text: String,
}

/// A closed directory of `n` items.
fn items(n: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path()).register::<Item>().flush_interval(Duration::from_secs(3600)).open().unwrap();
    let items = store.collection::<Item>().unwrap();
    for i in 0..n {
        let colour = ["red", "green", "blue"][i % 3].to_owned();
        items.insert(Item { id: format!("item{i:05}"), colour, text: "x".repeat(100) }).unwrap();
    }
    store.close().unwrap();
    dir
}

/// Runs the binary with stdout a pipe whose read end is already closed.
fn run_into_closed_pipe(args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    Command::new(env!("CARGO_BIN_EXE_shelf"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

fn path(dir: &Path) -> &str {
    dir.to_str().unwrap()
}

/// Asserts a quiet end: the status, and nothing on stderr (no panic, no error).
fn assert_quiet(output: &Output, status: i32, what: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(status), "{what}: exit status; stderr: {stderr}");
    assert!(stderr.is_empty(), "{what}: stderr should be empty, got: {stderr}");
}

#[test]
fn info_into_a_closed_pipe_exits_0_quietly() {
    let dir = items(3);
    let output = run_into_closed_pipe(&["info", path(dir.path())]);
    assert_quiet(&output, 0, "info");
}

#[test]
fn verify_into_a_closed_pipe_keeps_its_0_or_1_status() {
    let dir = items(3);
    assert_quiet(&run_into_closed_pipe(&["verify", path(dir.path())]), 0, "verify of a clean directory");
    std::fs::write(dir.path().join("item").join("item00001.json"), b"{ not json").unwrap();
    assert_quiet(&run_into_closed_pipe(&["verify", path(dir.path())]), 1, "verify of a corrupt directory");
}

#[test]
fn export_into_a_closed_pipe_exits_0_quietly() {
    let dir = items(10);
    let output = run_into_closed_pipe(&["export", path(dir.path()), "--collection", "item"]);
    assert_quiet(&output, 0, "export");
}

#[test]
fn export_read_one_line_then_dropped_exits_0_quietly() {
    // 3,000 lines of ~150 bytes: far more than a pipe buffer holds, so the binary is
    // still writing when the reader goes.
    let dir = items(3000);
    let mut child = Command::new(env!("CARGO_BIN_EXE_shelf"))
        .args(["export", path(dir.path()), "--collection", "item"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    assert!(first.contains("\"id\":\"item00000\""), "first line: {first}");
    // The reader (and its buffer) is dropped here: the pipe is closed.
    let output = child.wait_with_output().unwrap();
    assert_quiet(&output, 0, "export | head -1");
}

#[test]
fn verify_read_one_line_then_dropped_keeps_status_1() {
    let dir = items(3000);
    // Many problems: many lines of output.
    for i in (0..3000).step_by(2) {
        std::fs::write(dir.path().join("item").join(format!("item{i:05}.json")), b"{ not json").unwrap();
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_shelf"))
        .args(["verify", path(dir.path())])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    assert!(!first.is_empty());
    let output = child.wait_with_output().unwrap();
    assert_quiet(&output, 1, "verify | head -1");
}

#[test]
fn every_error_is_one_line_on_stderr_with_status_2() {
    let dir = items(1);
    let cases: &[&[&str]] = &[
        &["info", "/nonexistent/shelf/dir"],
        &["info"],
        &["frobnicate"],
        &["export", path(dir.path())],
        &["export", path(dir.path()), "--collection", "nope"],
    ];
    for args in cases {
        let output = Command::new(env!("CARGO_BIN_EXE_shelf")).args(*args).stdin(Stdio::null()).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: one line expected, got: {stderr}");
        assert!(stderr.starts_with("shelf: error: "), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?}: nothing on stdout");
    }
}
