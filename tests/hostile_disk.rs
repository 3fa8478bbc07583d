//! `open` (and the `shelf` CLI's reader, `inspect`) facing files it did not write:
//! a FIFO, a device or a directory where a file is expected, a file too large to
//! read whole, a byte order mark, JSON nested too deep. Open never hangs, never
//! reads without a bound, and never skips what it finds: it fails naming the file,
//! or loads what is there. Every operation that could hang runs under a watchdog.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shelf::inspect::{DataDir, Quiet};
use shelf::{Entity, Error, Store, StoreBuilder};

/// A per-record entity with an index (so it has an index file).
#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
struct User {
    #[id]
    id: String,
    #[index]
    name: String,
}

/// A collection-file entity.
#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[storage(collection_file)]
struct Line {
    #[id]
    id: u32,
    text: String,
}

/// A `wal` entity.
#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[storage(per_record, wal)]
struct Event {
    #[id]
    id: u32,
    payload: serde_json::Value,
}

const NEVER: Duration = Duration::from_secs(3600);
/// How long an operation may take before the test calls it hung.
const WATCHDOG: Duration = Duration::from_secs(20);

fn builder(dir: &Path) -> StoreBuilder {
    Store::builder(dir).register::<User>().register::<Line>().register::<Event>().flush_interval(NEVER)
}

fn user(id: &str) -> User {
    User { id: id.to_owned(), name: format!("name of {id}") }
}

/// Runs `f` on a thread and returns its result, failing the test if it takes longer
/// than [`WATCHDOG`] (the thread is left blocked; the test process ends anyway).
fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(WATCHDOG) {
        Ok(value) => value,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what} hung: no answer within {WATCHDOG:?}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what} panicked"),
    }
}

/// Opens `dir` under the watchdog.
fn open_within(dir: &Path) -> Result<Store, Error> {
    let dir = dir.to_path_buf();
    within(&format!("Store::open({})", dir.display()), move || builder(&dir).open())
}

/// A store in a fresh directory with one user, one line and one event, all durable,
/// and closed.
fn populated() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let store = builder(dir.path()).open().unwrap();
    store.collection::<User>().unwrap().insert(user("ada")).unwrap();
    store.collection::<Line>().unwrap().insert(Line { id: 1, text: "one".into() }).unwrap();
    store.collection::<Event>().unwrap().insert(Event { id: 1, payload: serde_json::json!(1) }).unwrap();
    store.close().unwrap();
    dir
}

/// Replaces `path` (a file, or nothing) with a FIFO.
fn make_fifo(path: &Path) {
    let _ = std::fs::remove_file(path);
    let status = Command::new("mkfifo").arg(path).status().expect("run mkfifo");
    assert!(status.success(), "mkfifo {} failed", path.display());
}

/// Asserts that `result` is an error whose message names `path` and contains `needle`.
fn assert_names<T: std::fmt::Debug>(result: Result<T, Error>, path: &Path, needle: &str) {
    match result {
        Err(e) => {
            let message = e.to_string();
            assert!(message.contains(&path.display().to_string()), "error does not name {}: {message}", path.display());
            assert!(message.contains(needle), "error does not say {needle:?}: {message}");
        }
        Ok(value) => panic!("expected an error naming {}, got {value:?}", path.display()),
    }
}

fn record_file(dir: &Path, id: &str) -> PathBuf {
    dir.join("user").join(format!("{id}.json"))
}

#[test]
fn a_fifo_as_a_record_file_fails_open_naming_it() {
    let dir = populated();
    let path = record_file(dir.path(), "ada");
    make_fifo(&path);
    assert_names(open_within(dir.path()), &path, "not a regular file (FIFO)");
}

#[test]
fn a_fifo_as_shelf_json_fails_open_naming_it() {
    let dir = populated();
    let path = dir.path().join("shelf.json");
    make_fifo(&path);
    assert_names(open_within(dir.path()), &path, "not a regular file (FIFO)");
}

#[test]
fn a_fifo_as_the_collection_file_fails_open_naming_it() {
    let dir = populated();
    let path = dir.path().join("line.jsonl");
    make_fifo(&path);
    assert_names(open_within(dir.path()), &path, "not a regular file (FIFO)");
}

#[test]
fn a_fifo_as_a_wal_segment_fails_open_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = builder(dir.path()).open().unwrap();
    store.collection::<Event>().unwrap().insert(Event { id: 1, payload: serde_json::json!(1) }).unwrap();
    drop(store);
    let path = dir.path().join("wal").join(format!("{:020}.wal", 900));
    make_fifo(&path);
    assert_names(open_within(dir.path()), &path, "not a regular file (FIFO)");
}

#[test]
fn a_fifo_as_an_index_file_is_rebuilt_without_hanging() {
    let dir = populated();
    let indices = dir.path().join("user").join("indices");
    let index = std::fs::read_dir(&indices).unwrap().next().unwrap().unwrap().path();
    make_fifo(&index);
    let store = open_within(dir.path()).unwrap();
    assert_eq!(store.collection::<User>().unwrap().get(&"ada".to_owned()).as_deref(), Some(&user("ada")));
    store.close().unwrap();
    assert!(std::fs::metadata(&index).unwrap().is_file(), "the index file was not rewritten");
}

#[test]
fn the_cli_reader_does_not_hang_on_a_fifo() {
    let dir = populated();
    let path = record_file(dir.path(), "ada");
    make_fifo(&path);
    let root = dir.path().to_path_buf();
    let verified = within("verify", move || {
        let data = DataDir::open(&root).map_err(|e| e.to_string())?;
        data.verify(&Quiet).map(|report| format!("{report:?}")).map_err(|e| e.to_string())
    });
    let text = match verified {
        Ok(report) => report,
        Err(error) => error,
    };
    assert!(text.contains("ada.json") && text.contains("FIFO"), "verify does not name the FIFO: {text}");
    let root = dir.path().to_path_buf();
    let exported = within("export", move || {
        let data = DataDir::open(&root).map_err(|e| e.to_string())?;
        data.export("user", &mut Vec::new(), &Quiet).map_err(|e| e.to_string())
    });
    let error = exported.expect_err("export read a FIFO as a record");
    assert!(error.contains("ada.json") && error.contains("FIFO"), "export does not name the FIFO: {error}");
}

#[test]
fn a_symlink_to_dev_zero_is_refused_not_read_forever() {
    let dir = populated();
    let path = record_file(dir.path(), "ada");
    std::fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &path).unwrap();
    assert_names(open_within(dir.path()), &path, "not a regular file (character device)");
}

#[test]
fn a_record_file_larger_than_the_bound_is_refused() {
    let dir = populated();
    let path = record_file(dir.path(), "ada");
    // Sparse: takes no disk space.
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len((1 << 30) + 1).unwrap();
    assert_names(open_within(dir.path()), &path, "larger than");
}

/// Issue 19, 2: files in a collection's directory that Shelf did not write are
/// reported by open (the recovery report) and by `verify`, and left alone; the
/// index directory and the records are not reported.
#[test]
fn stray_files_in_a_collection_directory_are_reported_and_left_alone() {
    let dir = populated();
    let stray = dir.path().join("user").join("notes.txt");
    let stray_dir = dir.path().join("user").join("backup");
    std::fs::write(&stray, b"mine").unwrap();
    std::fs::create_dir(&stray_dir).unwrap();
    let store = open_within(dir.path()).unwrap();
    let mut reported = store.recovery_report().stray_files.clone();
    reported.sort();
    assert_eq!(reported, vec![stray_dir.clone(), stray.clone()]);
    assert_eq!(store.collection::<User>().unwrap().get("ada").as_deref(), Some(&user("ada")));
    store.close().unwrap();
    assert_eq!(std::fs::read(&stray).unwrap(), b"mine");
    assert!(stray_dir.is_dir());
    let report = DataDir::open(dir.path()).unwrap().verify(&Quiet).unwrap();
    let notes = report.notes.join("\n");
    assert!(notes.contains("notes.txt") && notes.contains("backup"), "verify does not name the strays: {notes}");
    // A clean directory reports none.
    std::fs::remove_file(&stray).unwrap();
    std::fs::remove_dir(&stray_dir).unwrap();
    let store = open_within(dir.path()).unwrap();
    assert_eq!(store.recovery_report().stray_files, Vec::<PathBuf>::new());
}

/// Issue 19, 9: a directory where an index file belongs. A rewrite can never
/// replace it (a rename onto a directory fails), so an open that went on would make
/// every close fail; open refuses, naming it, and leaves it alone.
#[test]
fn a_directory_in_place_of_an_index_file_fails_open_naming_it() {
    let dir = populated();
    let indices = dir.path().join("user").join("indices");
    let index = std::fs::read_dir(&indices).unwrap().next().unwrap().unwrap().path();
    std::fs::remove_file(&index).unwrap();
    std::fs::create_dir(&index).unwrap();
    assert_names(open_within(dir.path()), &index, "directory");
    assert!(index.is_dir(), "the directory was touched");
    // Moved away, the store opens and close writes the index file again.
    std::fs::remove_dir(&index).unwrap();
    let store = open_within(dir.path()).unwrap();
    assert_eq!(store.collection::<User>().unwrap().get(&"ada".to_owned()).as_deref(), Some(&user("ada")));
    store.close().unwrap();
    assert!(std::fs::metadata(&index).unwrap().is_file(), "the index file was not rewritten");
}

#[test]
fn a_directory_in_place_of_a_record_file_fails_open_naming_it() {
    let dir = populated();
    let path = record_file(dir.path(), "bob");
    std::fs::create_dir(&path).unwrap();
    assert_names(open_within(dir.path()), &path, "directory");
    // Also with quarantine: Shelf did not make it, so it does not move it.
    let root = dir.path().to_path_buf();
    let quarantined = within("open with quarantine", move || builder(&root).quarantine_corrupt(true).open());
    assert_names(quarantined, &path, "directory");
    assert!(path.is_dir(), "the directory was touched");
}

#[test]
fn a_byte_order_mark_at_the_start_of_a_collection_file_is_skipped() {
    let dir = populated();
    let path = dir.path().join("line.jsonl");
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend(std::fs::read(&path).unwrap());
    std::fs::write(&path, &bytes).unwrap();
    let store = open_within(dir.path()).unwrap_or_else(|e| panic!("open: {e}"));
    let lines = store.collection::<Line>().unwrap();
    assert_eq!(lines.get(&1).as_deref(), Some(&Line { id: 1, text: "one".into() }));
    // The next flush writes the file without the mark.
    lines.insert(Line { id: 2, text: "two".into() }).unwrap();
    store.close().unwrap();
    assert!(!std::fs::read(&path).unwrap().starts_with(b"\xEF\xBB\xBF"));
}

#[test]
fn a_record_nested_too_deep_fails_open_naming_the_file() {
    let dir = populated();
    let path = dir.path().join("event").join("2.json");
    let deep = format!("{{\"id\":2,\"payload\":{}1{}}}", "[".repeat(200), "]".repeat(200));
    std::fs::write(&path, deep).unwrap();
    assert_names(open_within(dir.path()), &path, "recursion limit exceeded");
}
