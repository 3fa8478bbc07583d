//! Entities and helpers shared by the WAL acceptance tests (`kill`, `transfers`,
//! `wal_faults`): a bank of accounts in a `wal` collection, logged and unlogged
//! side collections, a model of the logged state, a tiny seeded RNG, and the
//! re-exec-a-child-process plumbing.
//!
//! Each test file compiles this module on its own and uses only part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shelf::{Entity, Store, StoreBuilder};

/// An account: a `wal` collection. `version` counts the writes to the account.
#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[storage(per_record, wal)]
pub struct Account {
    #[id]
    pub id: String,
    pub balance: i64,
    pub version: u64,
}

/// A key written by single inserts, updates and removes: a `wal` collection.
/// `version` is 0 when inserted and grows by one with each update.
#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[storage(per_record, wal)]
pub struct Entry {
    #[id]
    pub id: String,
    pub version: u64,
}

/// Written only inside transfer transactions: a collection *without* `wal`, whose
/// writes are logged because the transaction touches a `wal` collection.
#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[storage(per_record)]
pub struct Receipt {
    #[id]
    pub id: String,
    pub tx: u64,
    pub from: String,
    pub to: String,
    pub amount: i64,
}

/// Written only by single writes to a collection without `wal`: durable only after
/// a flush. `check` is derived from the id and the version, so a file holding a
/// mix of two writes is detected.
#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[storage(per_record)]
pub struct Note {
    #[id]
    pub id: String,
    pub version: u64,
    pub check: String,
}

/// Per writer thread: how many transfers it committed (a `wal` collection).
#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[storage(per_record, wal)]
pub struct Progress {
    #[id]
    pub id: String,
    pub done: u64,
}

/// The number of accounts of the bank.
pub const ACCOUNTS: usize = 16;
/// Each account's opening balance.
pub const OPENING: i64 = 1000;
/// The sum of all balances, which no transfer changes.
pub const TOTAL: i64 = ACCOUNTS as i64 * OPENING;
/// Transfer receipts are upserted into this many slots, to keep the store small.
pub const RECEIPT_SLOTS: u64 = 32;

/// An interval so long that the background flusher never runs during a test.
pub const NEVER: Duration = Duration::from_secs(3600);

pub fn account_id(i: usize) -> String {
    format!("a{i:02}")
}

pub fn receipt_id(tx: u64) -> String {
    format!("r{:02}", tx % RECEIPT_SLOTS)
}

pub fn note(id: &str, version: u64) -> Note {
    Note { id: id.to_owned(), version, check: note_check(id, version) }
}

pub fn note_check(id: &str, version: u64) -> String {
    format!("{id}@{version}")
}

/// A builder with every entity of this module registered.
pub fn builder(dir: &Path) -> StoreBuilder {
    Store::builder(dir)
        .register::<Account>()
        .register::<Entry>()
        .register::<Receipt>()
        .register::<Note>()
        .register::<Progress>()
}

/// Opens `dir` with the real file system and default settings, background flusher idle.
pub fn open_plain(dir: &Path) -> Store {
    builder(dir).flush_interval(NEVER).open().unwrap_or_else(|e| panic!("open {}: {e:?}", dir.display()))
}

/// Creates the accounts, each with the opening balance, durably.
pub fn create_bank(store: &Store) {
    store
        .transaction(|tx| {
            for i in 0..ACCOUNTS {
                tx.insert(Account { id: account_id(i), balance: OPENING, version: 0 })?;
            }
            Ok::<_, shelf::Error>(())
        })
        .unwrap();
}

pub fn balance_sum(store: &Store) -> i64 {
    store.collection::<Account>().unwrap().iter().map(|a| a.balance).sum()
}

/// Everything the WAL protects: the `wal` collections and the receipts (logged
/// with the transfers). Notes are not in it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Logged {
    pub accounts: BTreeMap<String, Account>,
    pub entries: BTreeMap<String, Entry>,
    pub receipts: BTreeMap<String, Receipt>,
}

impl Logged {
    /// The logged state of an open store, read one collection at a time.
    pub fn of(store: &Store) -> Logged {
        Logged { accounts: all(store), entries: all(store), receipts: all(store) }
    }

    pub fn sum(&self) -> i64 {
        self.accounts.values().map(|a| a.balance).sum()
    }

    /// Applies one operation as the store should; notes are ignored.
    pub fn apply(&mut self, op: &Op) {
        match op {
            Op::Transfer { tx, from, to, amount } => {
                let a = self.accounts.get_mut(from).expect("model: from account");
                a.balance -= amount;
                a.version += 1;
                let b = self.accounts.get_mut(to).expect("model: to account");
                b.balance += amount;
                b.version += 1;
                let id = receipt_id(*tx);
                self.receipts
                    .insert(id.clone(), Receipt { id, tx: *tx, from: from.clone(), to: to.clone(), amount: *amount });
            }
            Op::Insert { id } => {
                let old = self.entries.insert(id.clone(), Entry { id: id.clone(), version: 0 });
                assert!(old.is_none(), "model: insert of existing {id}");
            }
            Op::Update { id } => self.entries.get_mut(id).expect("model: update of missing entry").version += 1,
            Op::Remove { id } => {
                self.entries.remove(id).expect("model: remove of missing entry");
            }
            Op::Note { .. } => {}
        }
    }

    /// A short description of how two states differ, for assertion messages.
    pub fn diff(&self, other: &Logged) -> String {
        fn side<V: std::fmt::Debug + PartialEq>(
            name: &str,
            a: &BTreeMap<String, V>,
            b: &BTreeMap<String, V>,
            out: &mut Vec<String>,
        ) {
            for (k, v) in a {
                match b.get(k) {
                    None => out.push(format!("{name} {k}: {v:?} vs missing")),
                    Some(w) if w != v => out.push(format!("{name} {k}: {v:?} vs {w:?}")),
                    _ => {}
                }
            }
            for (k, w) in b {
                if !a.contains_key(k) {
                    out.push(format!("{name} {k}: missing vs {w:?}"));
                }
            }
        }
        let mut out = Vec::new();
        side("account", &self.accounts, &other.accounts, &mut out);
        side("entry", &self.entries, &other.entries, &mut out);
        side("receipt", &self.receipts, &other.receipts, &mut out);
        out.join("; ")
    }
}

/// Every record of a collection with a String id, by id.
pub fn all<T: Entity<Id = String>>(store: &Store) -> BTreeMap<String, T> {
    store.collection::<T>().unwrap().iter().map(|v| (v.id().clone(), T::clone(&v))).collect()
}

/// One operation of the kill test's child, printed before it runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// A transaction: `amount` from one account to another, plus a receipt.
    Transfer { tx: u64, from: String, to: String, amount: i64 },
    /// A single insert of an entry with version 0.
    Insert { id: String },
    /// A single update of an entry: version + 1.
    Update { id: String },
    /// A single remove of an entry.
    Remove { id: String },
    /// A single upsert of a note (no `wal`).
    Note { id: String, version: u64 },
}

impl Op {
    /// Performs the operation on a store.
    pub fn run(&self, store: &Store) -> shelf::Result<()> {
        match self {
            Op::Transfer { tx, from, to, amount } => store.transaction(|t| {
                t.update::<Account>(from, |a| {
                    a.balance -= amount;
                    a.version += 1;
                })?;
                t.update::<Account>(to, |a| {
                    a.balance += amount;
                    a.version += 1;
                })?;
                t.upsert(Receipt {
                    id: receipt_id(*tx),
                    tx: *tx,
                    from: from.clone(),
                    to: to.clone(),
                    amount: *amount,
                })?;
                Ok::<_, shelf::Error>(())
            }),
            Op::Insert { id } => store.collection::<Entry>()?.insert(Entry { id: id.clone(), version: 0 }).map(drop),
            Op::Update { id } => store.collection::<Entry>()?.update(id, |e| e.version += 1).map(drop),
            Op::Remove { id } => store.collection::<Entry>()?.remove(id).map(drop),
            Op::Note { id, version } => store.collection::<Note>()?.upsert(note(id, *version)).map(drop),
        }
    }
}

/// xorshift64*: a tiny seeded RNG, enough for delays and workloads.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        // splitmix64 of the seed, so that nearby seeds give unrelated streams.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Rng(z | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo)
    }

    /// `true` with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A `u64` from the environment, or `default`.
pub fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v.trim().parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

/// The prefix of every line a child prints for its parent.
pub const MARK: &str = "@@ ";

/// Prints one line for the parent and flushes it, so that a SIGKILL right after
/// loses nothing that was printed.
pub fn tell(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    // The parent may be gone (then there is no one to tell, and the child should stop).
    // One write of the whole line, so a kill cannot split it on our side.
    let text = format!("{MARK}{line}\n");
    if out.write_all(text.as_bytes()).and_then(|()| out.flush()).is_err() {
        std::process::exit(3);
    }
}

/// A child process (this test binary, re-executed to run one test with `env` set),
/// killed when dropped, and the lines it printed with [`tell`].
pub struct ChildProc {
    child: Child,
    lines: Receiver<String>,
    reader: Option<JoinHandle<()>>,
}

impl ChildProc {
    pub fn spawn(test: &str, env: &[(&str, String)]) -> ChildProc {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args(["--exact", test, "--nocapture", "--test-threads=1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("spawn child");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut stdout = BufReader::new(stdout);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match stdout.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                // A line cut short by the SIGKILL (no newline) was never fully
                // printed: the child did not get past printing it.
                if buf.last() != Some(&b'\n') {
                    return;
                }
                let line = String::from_utf8_lossy(&buf[..buf.len() - 1]).into_owned();
                // libtest may print its own text before the first line on the same line.
                if let Some(at) = line.find(MARK) {
                    if tx.send(line[at + MARK.len()..].to_owned()).is_err() {
                        return;
                    }
                }
            }
        });
        ChildProc { child, lines, reader: Some(reader) }
    }

    /// Waits up to `timeout` for the next line.
    pub fn next_line(&self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// Whether the child has exited already (it should not, until killed).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// SIGKILLs the child, waits for it, and returns every line it printed that was
    /// not taken with [`next_line`](Self::next_line).
    pub fn kill(mut self) -> Vec<String> {
        let _ = self.child.kill();
        self.child.wait().unwrap();
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        self.lines.try_iter().collect()
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Copies a data directory, as a crash at this instant would leave it (what the
/// running process wrote is in the page cache, hence in the copy).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The files of a directory whose names end with `ext` (sorted), none when missing.
pub fn files_with_ext(dir: &Path, ext: &str) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<_> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.file_name().unwrap().to_string_lossy().ends_with(ext))
        .collect();
    files.sort();
    files
}

/// Temp files of interrupted flushes anywhere under `dir`.
pub fn temp_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut n = 0;
    for entry in entries {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            n += temp_files(&entry.path());
        } else if entry.file_name().to_string_lossy().starts_with(".shelf-tmp-") {
            n += 1;
        }
    }
    n
}
