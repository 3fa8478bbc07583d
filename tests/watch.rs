//! Change subscriptions: `watch`, `watch_id`, `watch_where` and `watch_flushes`.
//!
//! The documented semantics (see `shelf::watch`): events are sent when a commit is
//! applied, in commit order, under the writer lock; the events of one commit arrive
//! together and share one sequence number; a rolled-back transaction sends nothing;
//! channels are unbounded, so a slow subscriber never blocks a writer; dropping the
//! receiver unsubscribes.

#[macro_use]
mod common_pg;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shelf::fs::{DirEntry, FaultFs, FaultKind, RealFs, Vfs, VfsAppend, VfsFile, VfsLock};
use shelf::{Change, Entity, Error, Event, Store};

/// One file for the whole collection, so that the flush on drop stays quick after
/// thousands of writes.
#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[storage(collection_file)]
struct Item {
    #[id]
    id: String,
    #[index(unique)]
    tag: String,
    n: i64,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Note {
    #[id(auto)]
    id: u64,
    text: String,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[storage(per_record, wal)]
struct Account {
    #[id]
    id: String,
    cents: i64,
}

/// Long enough that the background flusher never runs during a test.
const NEVER: Duration = Duration::from_secs(3600);
/// How long a test waits for something that should happen at once before failing
/// (instead of hanging).
const PATIENCE: Duration = Duration::from_secs(30);

fn open(dir: &Path) -> Store {
    Store::builder(dir).register::<Item>().register::<Note>().flush_interval(NEVER).open().unwrap()
}

fn open_on(backend: &common_pg::Backend) -> Store {
    backend.builder().register::<Item>().register::<Note>().flush_interval(NEVER).open().unwrap()
}

fn item(id: &str, n: i64) -> Item {
    Item { id: id.to_owned(), tag: format!("t-{id}"), n }
}

fn id(s: &str) -> String {
    s.to_owned()
}

/// A change as plain values: `(old, new)`; `None` on the side where there is no record.
type Pair = (Option<Item>, Option<Item>);

fn pair(change: &Change<Item>) -> Pair {
    match change {
        Change::Insert(new) => (None, Some(Item::clone(new))),
        Change::Update { old, new } => (Some(Item::clone(old)), Some(Item::clone(new))),
        Change::Remove(old) => (Some(Item::clone(old)), None),
    }
}

fn insert_of(v: &Item) -> Pair {
    (None, Some(v.clone()))
}

fn update_of(old: &Item, new: &Item) -> Pair {
    (Some(old.clone()), Some(new.clone()))
}

fn remove_of(v: &Item) -> Pair {
    (Some(v.clone()), None)
}

/// Everything already sent to `rx`. Events are sent before the write returns, so
/// after the writes this is all of them.
fn drain<T>(rx: &Receiver<Event<T>>) -> Vec<Event<T>> {
    rx.try_iter().collect()
}

fn pairs(events: &[Event<Item>]) -> Vec<Pair> {
    events.iter().map(|e| pair(&e.change)).collect()
}

fn assert_nothing<T: std::fmt::Debug>(rx: &Receiver<Event<T>>, what: &str) {
    match rx.try_recv() {
        Err(TryRecvError::Empty) => {}
        other => panic!("{what}: expected no event, got {other:?}"),
    }
}

/// Replays `events` on a model, checking that each one is consistent with it (an
/// insert of an absent id, an update or removal of the current version).
fn replay(model: &mut BTreeMap<String, Item>, events: &[Event<Item>]) {
    for (i, event) in events.iter().enumerate() {
        match &event.change {
            Change::Insert(new) => {
                let before = model.insert(new.id.clone(), Item::clone(new));
                assert!(before.is_none(), "event {i} (seq {}): insert of existing {}", event.seq, new.id);
            }
            Change::Update { old, new } => {
                assert_eq!(old.id, new.id, "event {i}: an update changed the id");
                let before = model.insert(new.id.clone(), Item::clone(new));
                assert_eq!(before.as_ref(), Some(&**old), "event {i} (seq {}): update's old is not current", event.seq);
            }
            Change::Remove(old) => {
                let before = model.remove(&old.id);
                assert_eq!(
                    before.as_ref(),
                    Some(&**old),
                    "event {i} (seq {}): removed record is not current",
                    event.seq
                );
            }
        }
    }
}

fn state(items: &shelf::Collection<Item>) -> BTreeMap<String, Item> {
    items.iter().map(|v| (v.id.clone(), Item::clone(&v))).collect()
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) % n
    }
}

/// An application error for transactions that give up on their own.
#[derive(Debug)]
enum AppError {
    Shelf(Error),
    Abort,
}

impl From<Error> for AppError {
    fn from(e: Error) -> Self {
        AppError::Shelf(e)
    }
}

const WRITERS: usize = 4;
const KEYS_PER_WRITER: u64 = 16;
const STEPS_PER_WRITER: usize = 400;

/// One writer of `event_order_and_completeness_under_concurrent_writers`: single
/// writes, multi-key transactions and aborted transactions on its own keys. Returns
/// the changes of each commit it made, in its order.
fn write_own_keys(store: &Store, w: usize) -> Vec<Vec<Pair>> {
    let items = store.collection::<Item>().unwrap();
    let mut rng = Rng::new(w as u64 + 1);
    let mut model: BTreeMap<String, Item> = BTreeMap::new();
    let mut commits: Vec<Vec<Pair>> = Vec::new();
    let key = |k: u64| format!("w{w}-{k:02}");
    for step in 0..STEPS_PER_WRITER {
        let n = (w * 100_000 + step) as i64;
        match rng.below(10) {
            // A single write.
            0..=5 => {
                let id = key(rng.below(KEYS_PER_WRITER));
                match model.get(&id).cloned() {
                    None if rng.below(6) == 0 => {
                        // Removing what is not there commits nothing.
                        assert!(items.remove(&id).unwrap().is_none());
                    }
                    None => {
                        let v = item(&id, n);
                        if rng.below(2) == 0 {
                            items.insert(v.clone()).unwrap();
                        } else {
                            assert!(items.upsert(v.clone()).unwrap().is_none());
                        }
                        commits.push(vec![insert_of(&v)]);
                        model.insert(id, v);
                    }
                    Some(old) => match rng.below(4) {
                        0 => {
                            assert_eq!(items.remove(&id).unwrap().as_deref(), Some(&old));
                            commits.push(vec![remove_of(&old)]);
                            model.remove(&id);
                        }
                        1 => {
                            let new = item(&id, n);
                            assert_eq!(items.upsert(new.clone()).unwrap().as_deref(), Some(&old));
                            commits.push(vec![update_of(&old, &new)]);
                            model.insert(id, new);
                        }
                        _ => {
                            let new = items.update(&id, |v| v.n += 1).unwrap().as_ref().clone();
                            commits.push(vec![update_of(&old, &new)]);
                            model.insert(id, new);
                        }
                    },
                }
            }
            // A transaction over several keys (a key may come twice), sometimes
            // with a write to another collection; the last kind aborts.
            kind => {
                let abort = kind == 9;
                let mut local = model.clone();
                let mut changes = Vec::new();
                let keys: Vec<String> = (0..2 + rng.below(3)).map(|_| key(rng.below(KEYS_PER_WRITER))).collect();
                let with_note = rng.below(3) == 0;
                let result = store.transaction(|tx| {
                    for id in &keys {
                        match local.get(id).cloned() {
                            None => {
                                let v = item(id, n);
                                if rng.below(2) == 0 {
                                    tx.insert(v.clone())?;
                                } else {
                                    assert!(tx.upsert(v.clone())?.is_none());
                                }
                                changes.push(insert_of(&v));
                                local.insert(id.clone(), v);
                            }
                            Some(old) => match rng.below(3) {
                                0 => {
                                    assert_eq!(tx.remove::<Item>(id)?.as_deref(), Some(&old));
                                    changes.push(remove_of(&old));
                                    local.remove(id);
                                }
                                1 => {
                                    let new = tx.update::<Item>(id, |v| v.n += 100)?.as_ref().clone();
                                    changes.push(update_of(&old, &new));
                                    local.insert(id.clone(), new);
                                }
                                _ => {
                                    let new = item(id, n);
                                    assert_eq!(tx.upsert(new.clone())?.as_deref(), Some(&old));
                                    changes.push(update_of(&old, &new));
                                    local.insert(id.clone(), new);
                                }
                            },
                        }
                    }
                    if with_note {
                        tx.insert(Note { id: 0, text: format!("writer {w} step {step}") })?;
                    }
                    if abort {
                        return Err(AppError::Abort);
                    }
                    Ok(())
                });
                match result {
                    Ok(()) => {
                        commits.push(changes);
                        model = local;
                    }
                    Err(AppError::Abort) if abort => {}
                    Err(AppError::Abort) => unreachable!(),
                    Err(AppError::Shelf(e)) => panic!("writer {w} step {step}: {e}"),
                }
            }
        }
    }
    commits
}

#[test]
fn watch_flushes_covers_the_events_committed_before_the_flush() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let items = store.collection::<Item>().unwrap();
    let events = items.watch();
    let flushes = store.watch_flushes();
    let other = store.watch_flushes();

    items.insert(item("a", 1)).unwrap();
    items.insert(item("b", 1)).unwrap();
    let seq = drain(&events).last().unwrap().seq;
    store.flush().unwrap();
    let flushed = flushes.try_recv().expect("a successful flush notifies");
    assert!(flushed >= seq, "flushed up to {flushed}, but seq {seq} was committed before the flush");
    assert_eq!(flushed, seq, "nothing else was committed: the flush covered exactly the last commit");
    assert_eq!(other.try_recv(), Ok(flushed), "every flush subscriber is told");
    assert_eq!(flushes.try_recv(), Err(TryRecvError::Empty), "one notification per flush");

    // A flush with nothing dirty still reports how far durability goes.
    store.flush().unwrap();
    assert_eq!(flushes.try_recv(), Ok(flushed));
    drop(other);

    // A failed flush tells nothing; the next successful one does.
    let dir2 = tempfile::tempdir().unwrap();
    let fs = FaultFs::new();
    let store2 =
        Store::builder(dir2.path()).register::<Item>().flush_interval(NEVER).vfs(Arc::clone(&fs)).open().unwrap();
    let items2 = store2.collection::<Item>().unwrap();
    let events2 = items2.watch();
    let flushes2 = store2.watch_flushes();
    items2.insert(item("a", 1)).unwrap();
    let seq2 = drain(&events2).last().unwrap().seq;
    fs.fail_at(0, FaultKind::Eio);
    store2.flush().unwrap_err();
    assert_eq!(flushes2.try_recv(), Err(TryRecvError::Empty), "a failed flush made nothing durable");
    store2.flush().unwrap();
    assert_eq!(flushes2.try_recv(), Ok(seq2));
    drop((items2, store2));

    // While a writer writes: every event received before a flush started has a seq
    // the flush covers, and its record is on disk when the notification arrives.
    let writer = {
        let items = items.clone();
        thread::spawn(move || {
            for i in 0..600 {
                items.insert(item(&format!("k{i:04}"), i)).unwrap();
            }
        })
    };
    let file = dir.path().join("item.jsonl");
    let mut seen: Vec<Event<Item>> = Vec::new();
    let mut last_flushed = flushed;
    for round in 0.. {
        let finished = writer.is_finished();
        seen.extend(events.try_iter());
        store.flush().unwrap();
        let flushed = flushes.recv_timeout(PATIENCE).unwrap();
        assert!(flushed >= last_flushed, "flush notifications go forward");
        last_flushed = flushed;
        let on_disk = std::fs::read_to_string(&file).unwrap();
        for event in &seen {
            assert!(
                event.seq <= flushed,
                "round {round}: event seq {} received before a flush up to {flushed}",
                event.seq
            );
            let line = serde_json::to_string(&**event.record()).unwrap();
            assert!(on_disk.lines().any(|l| l == line), "round {round}: {line} (seq {}) is not on disk", event.seq);
        }
        if finished {
            break;
        }
    }
    writer.join().unwrap();
    seen.extend(events.try_iter());
    assert_eq!(seen.len(), 600);
    assert_eq!(last_flushed, seen.last().unwrap().seq);
}

#[test]
fn background_flushes_notify_too() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path()).register::<Item>().flush_interval(Duration::from_millis(20)).open().unwrap();
    let items = store.collection::<Item>().unwrap();
    let events = items.watch();
    let flushes = store.watch_flushes();
    items.insert(item("a", 1)).unwrap();
    let seq = drain(&events)[0].seq;
    loop {
        let flushed = flushes.recv_timeout(PATIENCE).expect("the background flusher notifies");
        if flushed >= seq {
            break;
        }
    }
    assert_eq!(items.dirty_count(), 0);
}

/// A commit to a `wal` collection is published only once its WAL record is
/// durable. When the sync fails, the store is poisoned and the commit is never
/// published: the subscriber sees exactly the acknowledged commits, in order.
#[test]
fn a_failed_wal_sync_is_never_published() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultFs::new();
    let store =
        Store::builder(dir.path()).register::<Account>().flush_interval(NEVER).vfs(Arc::clone(&fs)).open().unwrap();
    let accounts = store.collection::<Account>().unwrap();
    let events = accounts.watch();
    accounts.insert(Account { id: id("a"), cents: 1 }).unwrap();
    // The next insert writes its group (operation 0), then syncs it (operation 1).
    fs.fail_at(1, FaultKind::Eio);
    let err = accounts.insert(Account { id: id("b"), cents: 2 }).unwrap_err();
    assert!(matches!(err, shelf::Error::Poisoned { .. }), "{err:?}");
    assert!(err.to_string().contains("injected"), "{err}");
    assert!(!fs.pending());
    let later = accounts.update(&id("a"), |a| a.cents = 3);
    assert!(matches!(later, Err(shelf::Error::Poisoned { .. })), "{later:?}");

    let events = drain(&events);
    let ids: Vec<&str> = events.iter().map(|e| e.record().id.as_str()).collect();
    assert_eq!(ids, ["a"], "only the acknowledged commit is published: {events:?}");
    drop(accounts);
    assert!(store.close().is_err());
    let store = Store::builder(dir.path()).register::<Account>().flush_interval(NEVER).open().unwrap();
    assert!(store.collection::<Account>().unwrap().contains(&id("a")));
}

/// A file system whose next WAL segment sync, once armed, waits until released and
/// then fails: it holds a group-commit leader inside its sync while other commits
/// queue behind it.
#[derive(Clone, Debug, Default)]
struct SyncGateFs(Arc<SyncGate>);

#[derive(Debug, Default)]
struct SyncGate {
    /// (armed, parked, released)
    state: Mutex<(bool, bool, bool)>,
    changed: Condvar,
}

impl SyncGate {
    fn arm(&self) {
        *self.state.lock().unwrap() = (true, false, false);
    }
    fn wait_parked(&self) {
        let state = self.state.lock().unwrap();
        let (state, _) = self.changed.wait_timeout_while(state, PATIENCE, |s| !s.1).unwrap();
        assert!(state.1, "no WAL sync was parked");
    }
    fn release(&self) {
        self.state.lock().unwrap().2 = true;
        self.changed.notify_all();
    }
}

struct GatedAppend {
    inner: Box<dyn VfsAppend>,
    gate: Arc<SyncGate>,
}

impl VfsAppend for GatedAppend {
    fn append(&self, buf: &[u8]) -> std::io::Result<()> {
        self.inner.append(buf)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        let mut state = self.gate.state.lock().unwrap();
        if state.0 {
            *state = (false, true, false);
            self.gate.changed.notify_all();
            let _released = self.gate.changed.wait_while(state, |s| !s.2).unwrap();
            return Err(std::io::Error::other("injected EIO in a parked sync"));
        }
        drop(state);
        self.inner.sync_data()
    }
    fn truncate(&self, len: u64) -> std::io::Result<()> {
        self.inner.truncate(len)
    }
}

impl Vfs for SyncGateFs {
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        RealFs.read(path)
    }
    fn create_new(&self, path: &Path) -> std::io::Result<Box<dyn VfsFile>> {
        RealFs.create_new(path)
    }
    fn open_append(&self, path: &Path) -> std::io::Result<Box<dyn VfsAppend>> {
        Ok(Box::new(GatedAppend { inner: RealFs.open_append(path)?, gate: Arc::clone(&self.0) }))
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        RealFs.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        RealFs.remove_file(path)
    }
    fn sync_dir(&self, path: &Path) -> std::io::Result<()> {
        RealFs.sync_dir(path)
    }
    fn create_dir_all(&self, path: &Path) -> std::io::Result<()> {
        RealFs.create_dir_all(path)
    }
    fn read_dir(&self, path: &Path) -> std::io::Result<Vec<DirEntry>> {
        RealFs.read_dir(path)
    }
    fn try_lock(&self, path: &Path) -> std::io::Result<Box<dyn VfsLock>> {
        RealFs.try_lock(path)
    }
}

/// Two commits wait for one WAL sync (group commit) and the sync fails: both fail
/// for their callers, and neither is ever published, although both were applied
/// to memory (and readable there) while their sync ran.
#[test]
fn a_failed_group_commit_sync_publishes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let fs = SyncGateFs::default();
    let gate = Arc::clone(&fs.0);
    let store = Store::builder(dir.path()).register::<Account>().flush_interval(NEVER).vfs(fs).open().unwrap();
    let accounts = store.collection::<Account>().unwrap();
    let events = accounts.watch();

    gate.arm();
    let first = {
        let accounts = accounts.clone();
        thread::spawn(move || accounts.insert(Account { id: id("a"), cents: 1 }))
    };
    gate.wait_parked(); // the first commit is applied, its sync is in progress
    let second = {
        let accounts = accounts.clone();
        thread::spawn(move || accounts.insert(Account { id: id("b"), cents: 2 }))
    };
    // The second commit is applied (readers see it) and waits for a sync.
    let deadline = std::time::Instant::now() + PATIENCE;
    while !accounts.contains(&id("b")) {
        assert!(std::time::Instant::now() < deadline, "the second commit was never applied");
        thread::yield_now();
    }
    assert!(events.try_recv().is_err(), "a commit was published before it was durable");
    gate.release();
    assert!(matches!(first.join().unwrap(), Err(shelf::Error::Poisoned { .. })));
    assert!(matches!(second.join().unwrap(), Err(shelf::Error::Poisoned { .. })));
    assert!(drain(&events).is_empty(), "a commit whose sync failed was published");
}

/// Files only: on PostgreSQL a commit's events are one per record, its net change
/// (the store applies what PostgreSQL committed), not one per write.
#[test]
fn event_order_and_completeness_under_concurrent_writers() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let items = store.collection::<Item>().unwrap();
    let notes = store.collection::<Note>().unwrap();
    // A subscriber that reads while the writers write, and one that reads after.
    let live = items.watch();
    let after = items.watch();
    let note_events = notes.watch();
    let reader = thread::spawn(move || {
        let mut events = Vec::new();
        loop {
            let event: Event<Item> = live.recv_timeout(PATIENCE).expect("the live subscriber starved");
            if event.record().id == "end" {
                return events;
            }
            events.push(event);
        }
    });

    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            thread::spawn(move || write_own_keys(&store, w))
        })
        .collect();
    let expected: Vec<Vec<Vec<Pair>>> = writers.into_iter().map(|h| h.join().unwrap()).collect();
    // The sentinel that tells the live reader to stop.
    items.insert(item("end", 0)).unwrap();
    let live_events = reader.join().unwrap();
    let mut after_events = drain(&after);
    assert_eq!(after_events.pop().map(|e| e.record().id.clone()), Some(id("end")));
    assert_nothing(&after, "after the sentinel");

    // Both subscribers saw the same stream.
    assert_eq!(live_events.len(), after_events.len());
    for (a, b) in live_events.iter().zip(&after_events) {
        assert_eq!((a.seq, pair(&a.change)), (b.seq, pair(&b.change)));
    }

    // Group the stream by sequence number: each group must be exactly the next
    // commit of one writer, and a sequence number never comes back.
    let mut next = [0usize; WRITERS];
    let mut last_seq = 0;
    let mut i = 0;
    while i < after_events.len() {
        let seq = after_events[i].seq;
        assert!(seq > last_seq, "event {i}: seq {seq} after seq {last_seq} (not increasing, or a commit split)");
        last_seq = seq;
        let mut group = Vec::new();
        while i < after_events.len() && after_events[i].seq == seq {
            group.push(pair(&after_events[i].change));
            i += 1;
        }
        let first = &after_events[i - group.len()].record().id;
        let w: usize = first[1..first.find('-').unwrap()].parse().unwrap();
        let commit = expected[w].get(next[w]).unwrap_or_else(|| panic!("seq {seq}: writer {w} made no more commits"));
        assert_eq!(&group, commit, "seq {seq}: commit {} of writer {w}", next[w]);
        next[w] += 1;
    }
    for w in 0..WRITERS {
        assert_eq!(next[w], expected[w].len(), "writer {w}: commits missing from the stream");
        assert!(expected[w].len() > STEPS_PER_WRITER / 2, "writer {w} committed too little to be a test");
        assert!(expected[w].iter().any(|c| c.len() >= 3), "writer {w} committed no multi-key transaction");
    }

    // Replaying the stream gives exactly the final state.
    let mut model = BTreeMap::new();
    replay(&mut model, &after_events);
    model.insert(id("end"), item("end", 0));
    assert_eq!(model, state(&items));

    // The other collection's subscriber saw only notes, each with its own commit's seq.
    let note_events = drain(&note_events);
    assert!(!note_events.is_empty());
    assert_eq!(note_events.len(), notes.len());
    let item_seqs: std::collections::BTreeSet<u64> = after_events.iter().map(|e| e.seq).collect();
    for pair in note_events.windows(2) {
        assert!(pair[0].seq < pair[1].seq);
    }
    for event in &note_events {
        assert!(matches!(event.change, Change::Insert(_)));
        assert!(item_seqs.contains(&event.seq), "a note is only written in a transaction with items");
    }
}

// The API tests above that mean the same on every backend run on each: files
// and PostgreSQL (common_pg::on_each_backend).
on_each_backend! {
    fn rolled_back_transactions_emit_nothing(b) {
        let store = open_on(&b);
        let items = store.collection::<Item>().unwrap();
        let notes = store.collection::<Note>().unwrap();
        items.insert(item("a", 1)).unwrap();
        items.insert(item("b", 2)).unwrap();
        let all = items.watch();
        let of_a = items.watch_id(&id("a"));
        let of_c = items.watch_id(&id("c"));
        let matching = items.watch_where(Item::fields().n.ge(0i64));
        let all_notes = notes.watch();
        let before = state(&items);

        // The closure returns an error of its own, after writes.
        let result: Result<(), AppError> = store.transaction(|tx| {
            tx.update::<Item>(&id("a"), |v| v.n = 10)?;
            tx.insert(item("c", 3))?;
            tx.remove::<Item>(&id("b"))?;
            tx.insert(Note { id: 0, text: "x".into() })?;
            Err(AppError::Abort)
        });
        assert!(matches!(result, Err(AppError::Abort)));

        // The closure fails with a store error, after writes.
        let result: Result<(), Error> = store.transaction(|tx| {
            tx.update::<Item>(&id("a"), |v| v.n = 11)?;
            tx.insert(item("c", 3))?;
            tx.update::<Item>(&id("missing"), |v| v.n = 0)?;
            Ok(())
        });
        assert!(matches!(result, Err(Error::NotFound { .. })), "{result:?}");

        // The closure panics, after writes.
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _: Result<(), Error> = store.transaction(|tx| {
                tx.update::<Item>(&id("a"), |v| v.n = 12)?;
                tx.insert(item("c", 3))?;
                tx.insert(Note { id: 0, text: "x".into() })?;
                panic!("boom");
            });
        }));
        assert!(panicked.is_err());

        // A unique violation found at commit, after earlier writes of the same
        // transaction were applied (and undone).
        let result: Result<(), Error> = store.transaction(|tx| {
            tx.update::<Item>(&id("a"), |v| v.n = 13)?;
            tx.insert(Note { id: 0, text: "x".into() })?;
            tx.remove::<Item>(&id("b"))?;
            tx.insert(Item { id: id("c"), tag: "t-a".into(), n: 3 })?;
            Ok(())
        });
        assert!(matches!(result, Err(Error::UniqueViolation { .. })), "{result:?}");

        // Refused single writes.
        assert!(matches!(items.insert(item("a", 5)), Err(Error::DuplicateId { .. })));
        assert!(matches!(items.insert(Item { id: id("c"), tag: "t-b".into(), n: 5 }), Err(Error::UniqueViolation { .. })));
        assert!(matches!(items.update(&id("b"), |v| v.tag = "t-a".into()), Err(Error::UniqueViolation { .. })));
        assert!(matches!(items.update(&id("c"), |v| v.n = 5), Err(Error::NotFound { .. })));
        assert!(matches!(items.update(&id("a"), |v| v.id = id("z")), Err(Error::IdChanged { .. })));
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = items.update(&id("a"), |_| panic!("boom"));
        }));
        assert!(panicked.is_err());
        assert!(items.remove(&id("c")).unwrap().is_none());

        assert_eq!(state(&items), before, "nothing was applied");
        assert_eq!(notes.len(), 0);
        assert_nothing(&all, "watch");
        assert_nothing(&of_a, "watch_id(a)");
        assert_nothing(&of_c, "watch_id(c)");
        assert_nothing(&matching, "watch_where");
        assert_nothing(&all_notes, "notes watch");

        // The subscriptions still work, and see the next commit only.
        let new = items.update(&id("a"), |v| v.n = 20).unwrap();
        let events = drain(&all);
        assert_eq!(pairs(&events), [update_of(&item("a", 1), &new)]);
        assert_eq!(pairs(&drain(&of_a)), [update_of(&item("a", 1), &new)]);
        assert_eq!(pairs(&drain(&matching)), [update_of(&item("a", 1), &new)]);
        assert_nothing(&of_c, "watch_id(c)");
        assert_nothing(&all_notes, "notes watch");
    }

    fn a_dropped_receiver_unsubscribes(b) {
        let store = open_on(&b);
        let items = store.collection::<Item>().unwrap();

        // How many references a stored record has with no subscriber: the collection's
        // and ours. A queued event holds one more.
        items.insert(item("base", 0)).unwrap();
        let base = Arc::strong_count(&items.get(&id("base")).unwrap());

        let dropped = items.watch();
        let dropped_id = items.watch_id(&id("x"));
        let dropped_where = items.watch_where(Item::fields().n.ge(0i64));
        let kept = items.watch();
        drop((dropped, dropped_id, dropped_where));
        items.insert(item("x", 1)).unwrap();
        let x = items.get(&id("x")).unwrap();
        assert_eq!(Arc::strong_count(&x), base + 1, "only the kept subscriber holds the event");
        assert_eq!(pairs(&drain(&kept)), [insert_of(&item("x", 1))]);
        assert_eq!(Arc::strong_count(&x), base);
        items.update(&id("x"), |v| v.n = 2).unwrap();
        let x = items.get(&id("x")).unwrap();
        assert_eq!(Arc::strong_count(&x), base + 1);
        drop(kept);
        assert_eq!(Arc::strong_count(&x), base, "dropping the receiver drops what it had queued");
        items.update(&id("x"), |v| v.n = 3).unwrap();
        let x = items.get(&id("x")).unwrap();
        assert_eq!(Arc::strong_count(&x), base, "no event is kept for a dropped receiver");

        // A receiver dropped while a writer writes: the writer goes on, and another
        // subscriber gets everything.
        let dropped = items.watch();
        let kept = items.watch();
        let writer = {
            let items = items.clone();
            thread::spawn(move || {
                for i in 0..2000 {
                    items.insert(item(&format!("k{i:04}"), i)).unwrap();
                }
            })
        };
        for _ in 0..100 {
            dropped.recv_timeout(PATIENCE).expect("the writer stalled");
        }
        drop(dropped);
        writer.join().expect("the writer failed after a receiver was dropped");
        let events = drain(&kept);
        let expected: Vec<Pair> = (0..2000).map(|i| insert_of(&item(&format!("k{i:04}"), i))).collect();
        assert_eq!(pairs(&events), expected);
        drop(events);
        let last = items.get(&id("k1999")).unwrap();
        assert_eq!(Arc::strong_count(&last), base, "the kept subscriber read everything; nothing else holds it");

        // A new subscriber after all this works.
        let fresh = items.watch();
        items.remove(&id("k0000")).unwrap();
        assert_eq!(pairs(&drain(&fresh)), [remove_of(&item("k0000", 0))]);
    }

    fn a_slow_subscriber_does_not_block_writers_and_gets_everything_in_order(b) {
        // PostgreSQL commits one at a time in a round trip each: fewer writes.
        let writes: i64 = if b.is_postgres() { 1_000 } else { 10_000 };
        let store = open_on(&b);
        let items = store.collection::<Item>().unwrap();
        let slow = items.watch();

        // The writes run on another thread, so that a writer blocked by the subscriber
        // fails the test instead of hanging it.
        let (done_tx, done) = std::sync::mpsc::channel();
        let writer = {
            let items = items.clone();
            thread::spawn(move || {
                for i in 0..writes {
                    let key = format!("k{:05}", i / 2);
                    if i % 2 == 0 {
                        items.insert(item(&key, i)).unwrap();
                    } else {
                        items.update(&key, |v| v.n = i).unwrap();
                    }
                }
                done_tx.send(()).unwrap();
            })
        };
        match done.recv_timeout(PATIENCE) {
            Ok(()) => {}
            Err(RecvTimeoutError::Timeout) => panic!("the writer is blocked by a subscriber that does not read"),
            Err(RecvTimeoutError::Disconnected) => panic!("the writer failed: {:?}", writer.join()),
        }
        writer.join().unwrap();

        let events = drain(&slow);
        assert_eq!(events.len(), writes as usize, "every event was queued");
        for (i, event) in (0..writes).zip(&events) {
            let key = format!("k{:05}", i / 2);
            let expected =
                if i % 2 == 0 { insert_of(&item(&key, i)) } else { update_of(&item(&key, i - 1), &item(&key, i)) };
            assert_eq!(pair(&event.change), expected, "event {i}");
        }
        for w in events.windows(2) {
            assert!(w[0].seq < w[1].seq, "each write is its own commit, in order");
        }
        assert_nothing(&slow, "after the writes");
    }

    fn watch_id_sees_only_that_id(b) {
        let store = open_on(&b);
        let items = store.collection::<Item>().unwrap();
        // Subscribed before the record exists.
        let of_a = items.watch_id(&id("a"));
        let all = items.watch();

        items.insert(item("a", 1)).unwrap();
        items.insert(item("b", 1)).unwrap();
        items.update(&id("b"), |v| v.n = 2).unwrap();
        items.update(&id("a"), |v| v.n = 2).unwrap();
        store
            .transaction(|tx| {
                tx.update::<Item>(&id("b"), |v| v.n = 3)?;
                tx.update::<Item>(&id("a"), |v| v.n = 3)?;
                tx.insert(item("c", 3))?;
                Ok::<_, Error>(())
            })
            .unwrap();
        items.remove(&id("b")).unwrap();
        items.remove(&id("a")).unwrap();
        items.insert(item("a", 4)).unwrap();
        items.upsert(item("a", 5)).unwrap();
        items.upsert(item("ab", 5)).unwrap();

        let events = drain(&of_a);
        assert_eq!(
            pairs(&events),
            [
                insert_of(&item("a", 1)),
                update_of(&item("a", 1), &item("a", 2)),
                update_of(&item("a", 2), &item("a", 3)),
                remove_of(&item("a", 3)),
                insert_of(&item("a", 4)),
                update_of(&item("a", 4), &item("a", 5)),
            ]
        );
        // Each event has the seq of the commit that made it, as the full stream shows.
        let all = drain(&all);
        let seq_of = |p: &Pair| all.iter().find(|e| &pair(&e.change) == p).map(|e| e.seq);
        for event in &events {
            assert_eq!(Some(event.seq), seq_of(&pair(&event.change)));
        }
        let tx_seq = events[2].seq;
        assert_eq!(all.iter().filter(|e| e.seq == tx_seq).count(), 3, "the transaction's other changes were filtered out");
    }

    fn watch_where_sees_changes_whose_old_or_new_version_matches(b) {
        let store = open_on(&b);
        let items = store.collection::<Item>().unwrap();
        let big = items.watch_where(Item::fields().n.gt(10i64));
        let tagged = items.watch_where(Item::fields().tag.starts_with("t-x").and(Item::fields().n.lt(100i64)));

        items.insert(item("a", 5)).unwrap(); // neither
        items.insert(item("b", 20)).unwrap(); // new matches
        items.update(&id("b"), |v| v.n = 30).unwrap(); // both match
        items.update(&id("b"), |v| v.n = 3).unwrap(); // old matches
        items.update(&id("b"), |v| v.n = 4).unwrap(); // neither
        items.update(&id("a"), |v| v.n = 15).unwrap(); // new matches
        items.remove(&id("b")).unwrap(); // removed record does not match
        store
            .transaction(|tx| {
                tx.update::<Item>(&id("a"), |v| v.n = 1)?; // old matches
                tx.insert(item("c", 0))?; // neither
                tx.insert(item("d", 11))?; // new matches
                Ok::<_, Error>(())
            })
            .unwrap();
        items.remove(&id("d")).unwrap(); // removed record matches
        items.insert(item("x1", 50)).unwrap();
        items.update(&id("x1"), |v| v.n = 500).unwrap();
        items.update(&id("x1"), |v| v.n = 600).unwrap();

        let events = drain(&big);
        assert_eq!(
            pairs(&events),
            [
                insert_of(&item("b", 20)),
                update_of(&item("b", 20), &item("b", 30)),
                update_of(&item("b", 30), &item("b", 3)),
                update_of(&item("a", 5), &item("a", 15)),
                update_of(&item("a", 15), &item("a", 1)),
                insert_of(&item("d", 11)),
                remove_of(&item("d", 11)),
                insert_of(&item("x1", 50)),
                update_of(&item("x1", 50), &item("x1", 500)),
                update_of(&item("x1", 500), &item("x1", 600)),
            ]
        );
        assert_eq!(events[4].seq, events[5].seq, "one transaction, one seq");
        assert_eq!(
            pairs(&drain(&tagged)),
            [insert_of(&item("x1", 50)), update_of(&item("x1", 50), &item("x1", 500))],
            "a compound predicate; the last update matches neither side"
        );
    }
}
