//! Entities and helpers shared by the integration tests.
//!
//! Each test file compiles this module on its own and uses only part of it.
#![allow(dead_code)]

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use shelf::fs::{DirEntry, FaultFs, Vfs, VfsAppend, VfsFile, VfsLock};
use shelf::{Entity, Store, StoreBuilder};

/// A per-record entity with a String id: `<dir>/user/<id>.json`.
#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct User {
    #[id]
    pub id: String,
    pub name: String,
    pub age: u32,
}

/// A per-record entity with an auto-assigned integer id: `<dir>/order/<n>.json`.
#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Order {
    #[id(auto)]
    pub id: u64,
    pub item: String,
}

/// An entity that is never written to disk.
#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[storage(memory)]
pub struct Session {
    #[id]
    pub token: String,
    pub user: String,
}

pub fn user(id: &str, name: &str, age: u32) -> User {
    User { id: id.to_owned(), name: name.to_owned(), age }
}

pub fn order(item: &str) -> Order {
    Order { id: 0, item: item.to_owned() }
}

pub fn session(token: &str, user: &str) -> Session {
    Session { token: token.to_owned(), user: user.to_owned() }
}

/// An interval so long that the background flusher never runs during a test:
/// tests that use it flush explicitly.
pub const NEVER: Duration = Duration::from_secs(3600);

/// A builder with every test entity registered and the background flusher idle.
pub fn builder(dir: &Path) -> StoreBuilder {
    Store::builder(dir).register::<User>().register::<Order>().register::<Session>().flush_interval(NEVER)
}

/// Opens `dir` with [`builder`], panicking on error.
pub fn open(dir: &Path) -> Store {
    builder(dir).open().unwrap_or_else(|e| panic!("open {}: {e}", dir.display()))
}

/// Every file (not directory) under `dir`, as paths relative to `dir`, sorted.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("list {}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Every directory under `dir` (not `dir` itself), relative to `dir`, sorted.
pub fn dirs(dir: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                out.push(path.strip_prefix(root).unwrap().to_path_buf());
                walk(root, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The files of `dir` with their contents, to show that an operation changed nothing.
pub fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    files(dir).into_iter().map(|f| (f.clone(), std::fs::read(dir.join(&f)).unwrap())).collect()
}

/// Files whose name marks them as Shelf temp files, anywhere under `dir`.
pub fn temp_files(dir: &Path) -> Vec<PathBuf> {
    files(dir)
        .into_iter()
        .filter(|f| f.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(".shelf-tmp-")))
        .collect()
}

/// The path of the record file of `id` in `collection`, per the id encoding.
pub fn record_path(dir: &Path, collection: &str, id: &str) -> PathBuf {
    dir.join(collection).join(format!("{}.json", shelf::encode::encode(id)))
}

/// Reads and parses a record file; `None` when it is missing or does not parse yet.
pub fn read_record<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// How long polling helpers wait before giving up. Generous: polling returns as soon
/// as the condition holds, so this only matters when something is broken.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Polls `condition` every few milliseconds until it holds; panics with `what` if it
/// does not within [`DEADLINE`]. Never asserts how long anything took.
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < DEADLINE, "gave up after {DEADLINE:?} waiting until {what}");
        // The pause between polls; the condition, not the sleep, orders the caller.
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Records of a collection, sorted by id, as plain values.
pub fn values<T: Entity>(collection: &shelf::Collection<T>) -> Vec<T> {
    collection.all().into_iter().map(|r| T::clone(&r)).collect()
}

/// A [`FaultFs`] that can also park a flush: once armed, the next directory sync
/// waits until released. It holds a flush (and the thread running it) at a known
/// point, after the renames, so a test can act while the flush is in progress.
/// Faults are injected through [`GateFs::faults`]; the parked sync is counted after
/// it is released.
#[derive(Clone, Debug)]
pub struct GateFs {
    faults: Arc<FaultFs>,
    gate: Arc<Gate>,
}

/// The control side of a [`GateFs`].
#[derive(Debug, Default)]
pub struct Gate {
    armed: AtomicBool,
    /// (a sync is parked, released)
    state: Mutex<(bool, bool)>,
    changed: Condvar,
}

impl Gate {
    /// Parks the next directory sync.
    pub fn arm(&self) {
        *self.state.lock().unwrap() = (false, false);
        self.armed.store(true, Ordering::SeqCst);
    }
    /// Waits until a sync is parked; `false` if none was within [`DEADLINE`].
    pub fn wait_parked(&self) -> bool {
        let state = self.state.lock().unwrap();
        let (state, _) = self.changed.wait_timeout_while(state, DEADLINE, |s| !s.0).unwrap();
        state.0
    }
    /// Lets the parked sync (if any) go on, and disarms the gate.
    pub fn release(&self) {
        self.armed.store(false, Ordering::SeqCst);
        self.state.lock().unwrap().1 = true;
        self.changed.notify_all();
    }
}

impl Default for GateFs {
    fn default() -> Self {
        Self::new()
    }
}

impl GateFs {
    pub fn new() -> Self {
        GateFs { faults: FaultFs::new(), gate: Arc::new(Gate::default()) }
    }
    pub fn gate(&self) -> Arc<Gate> {
        Arc::clone(&self.gate)
    }
    pub fn faults(&self) -> Arc<FaultFs> {
        Arc::clone(&self.faults)
    }
}

impl Vfs for GateFs {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.faults.read(path)
    }
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn VfsFile>> {
        self.faults.create_new(path)
    }
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn VfsAppend>> {
        self.faults.open_append(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.faults.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.faults.remove_file(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let gate = &self.gate;
        if gate.armed.swap(false, Ordering::SeqCst) {
            let mut state = gate.state.lock().unwrap();
            state.0 = true;
            gate.changed.notify_all();
            let _state = gate.changed.wait_while(state, |s| !s.1).unwrap();
        }
        self.faults.sync_dir(path)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.faults.create_dir_all(path)
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        self.faults.read_dir(path)
    }
    fn try_lock(&self, path: &Path) -> io::Result<Box<dyn VfsLock>> {
        self.faults.try_lock(path)
    }
}
