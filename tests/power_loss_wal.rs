//! Simulated power loss through the file-system seam, for `wal` collections
//! (DESIGN §5, issue 5): a write or transaction that returned `Ok` survives, a
//! transaction is all there or not at all, and writes to a collection without `wal`
//! keep the flush contract (or the WAL's, when a logged transaction wrote them).
//!
//! The workload: a bank of accounts in a `wal` collection (the sum of balances is
//! constant; transfers are transactions) and memos in a collection without `wal`,
//! written inside those transactions (so they are logged with them), in a
//! memo-only transaction (not logged) and on their own; single writes to accounts;
//! explicit flushes (each rotates and checkpoints the WAL); a `close` at the end.
//! Some workloads also close and reopen in the middle, or have flushes that fail on
//! a healthy machine (an I/O error injected by the test's [`Seam`]), which leave
//! several WAL segments to replay.
//!
//! It runs on a [`CrashFs`] that dies after `k` mutating operations. The machine
//! then loses power (everything not synced is dropped), the store is reopened and
//! the contract is checked against a model of the workload:
//! - open succeeds;
//! - the accounts are exactly the state after the last acknowledged step, or after
//!   the step in flight when the machine died (nothing else; the balances sum to
//!   the constant total);
//! - each memo holds a version that was written (a version written by a logged
//!   transaction only if the accounts show that transaction: no transaction is
//!   partial across collections), not older than what the last completed flush
//!   made durable, nor than the last logged write of a recovered transaction;
//! - the unique index agrees with the records; no temp file is left; the log was
//!   checkpointed;
//! - the store takes a transaction and a flush, and what it acknowledged afterwards
//!   survives another power loss.
//!
//! The points: every `k` of the scripted workloads; every sync point and 50 random
//! points of a longer generated workload (seeded xorshift); and crashes in the
//! middle of recovery, after which recovery must give the same state.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use shelf::fs::{CrashFs, DirEntry, Vfs, VfsAppend, VfsFile, VfsLock};
use shelf::{Collection, Entity, Store, Transaction};

/// A `wal` collection. `version` grows with every write, so every logged step
/// changes the accounts.
#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[storage(per_record, wal)]
struct Account {
    #[id]
    id: String,
    #[index(unique)]
    owner: String,
    cents: i64,
    version: u64,
}

/// A collection without `wal`. `seq` identifies the write (the model's counter).
#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[storage(per_record)]
struct Memo {
    #[id]
    id: String,
    seq: u64,
    text: String,
}

const DIR: &str = "/data";
/// The background flusher never runs: flushes are explicit.
const NEVER: Duration = Duration::from_secs(3600);
/// The sum of all balances once the accounts are opened.
const TOTAL: i64 = 1000;

fn open_on(vfs: impl Vfs + 'static) -> shelf::Result<Store> {
    Store::builder(DIR).register::<Account>().register::<Memo>().flush_interval(NEVER).vfs(vfs).open()
}

fn open(fs: &Arc<CrashFs>) -> shelf::Result<Store> {
    open_on(Arc::clone(fs))
}

// ---------------------------------------------------------------------------------
// The workload and its model.

/// One write, inside a transaction or on its own.
#[derive(Clone, Debug)]
enum W {
    /// Moves cents between two accounts: two updates.
    Move(String, String, i64),
    /// Inserts an account: `(id, owner, cents)`.
    Open(String, String, i64),
    /// Changes an account's owner (a unique index key).
    Rename(String, String),
    /// Removes an account (its balance is zero).
    Shut(String),
    /// Upserts a memo; [`plan`] gives it its value.
    Note(Memo),
    /// Removes a memo.
    Unnote(String),
}

impl W {
    fn logged(&self) -> bool {
        !matches!(self, W::Note(_) | W::Unnote(_))
    }
}

/// One step of the workload.
#[derive(Clone, Debug)]
enum Step {
    /// A transaction: logged when it writes an account.
    Tx(Vec<W>),
    /// A single write.
    One(W),
    Flush,
    /// A flush that fails on a healthy machine: the [`Seam`] injects an I/O error.
    FailedFlush(Fault),
    Close,
    /// `close`, then open again. (Open writes nothing: it replays the WAL into
    /// memory, and a later flush writes and checkpoints it.)
    Reopen,
}

/// Where a [`Step::FailedFlush`] fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// The first rename of the batch: no record file is replaced, the rotated WAL
    /// segment stays.
    Batch,
    /// The directory sync of the checkpoint: the record files are durable, the
    /// removal of the rotated segments is not.
    Checkpoint,
}

impl Step {
    fn writes(&self) -> &[W] {
        match self {
            Step::Tx(writes) => writes,
            Step::One(write) => std::slice::from_ref(write),
            Step::Flush | Step::FailedFlush(_) | Step::Close | Step::Reopen => &[],
        }
    }

    fn logged(&self) -> bool {
        self.writes().iter().any(W::logged)
    }

    /// Whether the step is a flush that completes when it returns `Ok`.
    fn flushes(&self) -> bool {
        matches!(self, Step::Flush | Step::Close | Step::Reopen)
    }

    /// Whether the step starts a flush, which may make records durable.
    fn starts_flush(&self) -> bool {
        self.flushes() || matches!(self, Step::FailedFlush(_))
    }
}

fn mv(from: &str, to: &str, cents: i64) -> W {
    W::Move(from.into(), to.into(), cents)
}
fn open_account(id: &str, owner: &str, cents: i64) -> W {
    W::Open(id.into(), owner.into(), cents)
}
fn rename(id: &str, owner: &str) -> W {
    W::Rename(id.into(), owner.into())
}
fn shut(id: &str) -> W {
    W::Shut(id.into())
}
fn note(id: &str) -> W {
    W::Note(Memo { id: id.into(), seq: 0, text: String::new() })
}
fn unnote(id: &str) -> W {
    W::Unnote(id.into())
}

/// What the store holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct State {
    accounts: BTreeMap<String, Account>,
    memos: BTreeMap<String, Memo>,
}

impl State {
    /// Applies a write as the store does; panics on a write the store would refuse.
    fn apply(&mut self, write: &W) {
        let account = |accounts: &mut BTreeMap<String, Account>, id: &str| -> Account {
            accounts.get(id).unwrap_or_else(|| panic!("the workload writes missing account `{id}`")).clone()
        };
        match write {
            W::Move(from, to, cents) => {
                assert_ne!(from, to);
                for (id, delta) in [(from, -cents), (to, *cents)] {
                    let mut a = account(&mut self.accounts, id);
                    a.cents += delta;
                    a.version += 1;
                    self.accounts.insert(id.clone(), a);
                }
            }
            W::Open(id, owner, cents) => {
                assert!(!self.accounts.contains_key(id), "account `{id}` exists");
                assert!(self.accounts.values().all(|a| a.owner != *owner), "owner `{owner}` is taken");
                self.accounts
                    .insert(id.clone(), Account { id: id.clone(), owner: owner.clone(), cents: *cents, version: 0 });
            }
            W::Rename(id, owner) => {
                assert!(self.accounts.values().all(|a| a.owner != *owner), "owner `{owner}` is taken");
                let mut a = account(&mut self.accounts, id);
                a.owner = owner.clone();
                a.version += 1;
                self.accounts.insert(id.clone(), a);
            }
            W::Shut(id) => {
                let a = account(&mut self.accounts, id);
                assert_eq!(a.cents, 0, "the workload shuts account `{id}` with a balance");
                self.accounts.remove(id);
            }
            W::Note(memo) => {
                self.memos.insert(memo.id.clone(), memo.clone());
            }
            W::Unnote(id) => {
                assert!(self.memos.remove(id).is_some(), "the workload removes missing memo `{id}`");
            }
        }
    }

    fn sum(&self) -> i64 {
        self.accounts.values().map(|a| a.cents).sum()
    }
}

/// A write or removal of one memo.
#[derive(Debug)]
struct MemoEvent {
    step: usize,
    seq: u64,
    value: Option<Memo>,
    /// Written by a transaction that touched an account: in the WAL.
    logged: bool,
}

/// A workload with everything the checks need to know about it.
struct Plan {
    steps: Vec<Step>,
    /// `states[i]`: the state after the first `i` steps.
    states: Vec<State>,
    /// Every write and removal of each memo, in order.
    memo_events: BTreeMap<String, Vec<MemoEvent>>,
}

/// Gives each memo write its value and computes the states.
fn plan(mut steps: Vec<Step>) -> Plan {
    let mut seq = 0;
    let mut state = State::default();
    let mut states = vec![state.clone()];
    let mut memo_events: BTreeMap<String, Vec<MemoEvent>> = BTreeMap::new();
    for (i, step) in steps.iter_mut().enumerate() {
        let logged = step.logged();
        let writes = match step {
            Step::Tx(writes) => writes.as_mut_slice(),
            Step::One(write) => {
                assert!(!matches!(write, W::Move(..)), "a move is two writes: put it in a transaction");
                std::slice::from_mut(write)
            }
            Step::Flush | Step::FailedFlush(_) | Step::Close | Step::Reopen => &mut [],
        };
        for write in writes {
            let memo_event = match write {
                W::Note(memo) => {
                    seq += 1;
                    memo.seq = seq;
                    memo.text = format!("{} #{seq}", memo.id);
                    Some((memo.id.clone(), Some(memo.clone())))
                }
                W::Unnote(id) => {
                    seq += 1;
                    Some((id.clone(), None))
                }
                _ => None,
            };
            state.apply(write);
            if let Some((id, value)) = memo_event {
                memo_events.entry(id).or_default().push(MemoEvent { step: i, seq, value, logged });
            }
        }
        if logged {
            assert_ne!(state.accounts, states[i].accounts, "logged step {i} changes no account");
        }
        if !state.accounts.is_empty() {
            assert_eq!(state.sum(), TOTAL, "step {i} changes the total");
        }
        states.push(state.clone());
    }
    Plan { steps, states, memo_events }
}

/// The scripted workload: every kind of write, in and out of transactions,
/// before and after flushes.
fn script() -> Vec<Step> {
    use Step::{Close, Flush, One, Reopen, Tx};
    vec![
        // 0: the accounts and a memo, one WAL record.
        Tx(vec![
            open_account("a", "alice", 400),
            open_account("b", "bob", 300),
            open_account("c", "carol", 200),
            open_account("d", "dave", 100),
            note("r0"),
        ]),
        // 1: a transfer and its receipt.
        Tx(vec![mv("a", "b", 10), note("r1")]),
        // 2: a memo on its own: only a flush keeps it.
        One(note("m1")),
        // 3: a single write to the `wal` collection.
        One(open_account("e", "erin", 0)),
        Flush,
        // 5: a transaction writes the memo written on its own before.
        Tx(vec![mv("b", "e", 25), note("m1"), note("r2")]),
        // 6: ... which is written on its own again.
        One(note("m1")),
        // 7: frees the owner `alice`.
        One(rename("a", "alice2")),
        // 8: two transfers, a memo removed and one written, in one record.
        Tx(vec![mv("c", "a", 5), mv("d", "c", 7), unnote("r0"), note("r3")]),
        // 9: a transaction of memos only: not logged.
        Tx(vec![note("m2"), note("m3")]),
        Flush,
        // 11: a second life, whose log starts empty.
        Reopen,
        // 12: a memo removed on its own, another written.
        One(unnote("r1")),
        One(note("m4")),
        // 14: a new account takes the freed owner; `e` is emptied and shut.
        Tx(vec![open_account("f", "alice", 0), mv("e", "f", 25), shut("e"), note("m4")]),
        // 15: a memo removed by a logged transaction.
        Tx(vec![mv("a", "d", 50), unnote("r2"), note("m2")]),
        // 16: a single insert and a single removal in the `wal` collection.
        One(open_account("g", "gina", 0)),
        One(shut("g")),
        Flush,
        // 19: after the last flush, only the WAL keeps these.
        Tx(vec![mv("f", "b", 20), note("m3")]),
        One(note("m5")),
        One(rename("b", "bobby")),
        Tx(vec![mv("c", "a", 1), note("r4")]),
        Close,
    ]
}

/// A workload with flushes that fail on a healthy machine: after them the log
/// holds several segments, rotated and not (durably) checkpointed, and the memos
/// have versions on disk that are newer than the last completed flush.
fn script_with_failed_flushes() -> Vec<Step> {
    use Step::{Close, FailedFlush, Flush, One, Tx};
    vec![
        Tx(vec![
            open_account("a", "alice", 400),
            open_account("b", "bob", 300),
            open_account("c", "carol", 200),
            open_account("d", "dave", 100),
            note("r0"),
        ]),
        Tx(vec![mv("a", "b", 10), note("r1")]),
        One(note("m1")),
        // 3: rotates the first segment; no file is written.
        FailedFlush(Fault::Batch),
        // 4: in the second segment.
        Tx(vec![mv("b", "c", 20), note("m1")]),
        One(rename("a", "alice2")),
        One(note("m2")),
        // 7: rotates the second segment and writes every file; the segments' removal
        // is not durable.
        FailedFlush(Fault::Checkpoint),
        // 8: in the third segment.
        Tx(vec![mv("c", "a", 5), unnote("r1"), note("r2")]),
        One(open_account("e", "alice", 0)),
        One(unnote("m2")),
        // 11: checkpoints all three.
        Flush,
        Tx(vec![mv("a", "e", 30), note("m2")]),
        One(note("m3")),
        FailedFlush(Fault::Batch),
        Tx(vec![mv("e", "d", 30), shut("e"), note("m3")]),
        One(note("m1")),
        FailedFlush(Fault::Checkpoint),
        One(rename("b", "bobby")),
        Close,
    ]
}

/// Two lives: the first ends with a flush and a clean close, which leave the log
/// one empty segment, named after the next sequence number; the open of the
/// second fails to checkpoint it (an I/O error on a healthy machine: the open
/// succeeds and reports it in `health`). The second life then commits as many
/// records as the first, so its next flush rotates to the leftover segment's name.
fn script_across_reopens() -> Vec<Step> {
    use Step::{Close, FailedFlush, Flush, One, Reopen, Tx};
    vec![
        // 0..=3: records 1, 2, 3.
        Tx(vec![
            open_account("a", "alice", 400),
            open_account("b", "bob", 300),
            open_account("c", "carol", 200),
            open_account("d", "dave", 100),
            note("r0"),
        ]),
        Tx(vec![mv("a", "b", 10), note("r1")]),
        One(note("m1")),
        One(rename("a", "alice2")),
        // 4: rotates to the segment of record 4, checkpoints the first.
        Flush,
        // 5: a reopen with nothing to replay.
        Reopen,
        // 6..=9: records 1, 2, 3 of the second life.
        Tx(vec![mv("b", "c", 20), note("r2")]),
        One(open_account("e", "erin", 0)),
        One(note("m2")),
        Tx(vec![mv("c", "e", 5), note("m1")]),
        // 10: rotates to the segment of record 4.
        Flush,
        // 11..=12: acknowledged after that flush: only the WAL keeps them.
        Tx(vec![mv("e", "a", 5), note("r3")]),
        One(rename("b", "bobby")),
        // The clean close flushed 11..=12 and checkpointed their segment: open has
        // nothing to replay or remove.
        Reopen,
        Tx(vec![mv("a", "d", 1), unnote("m2")]),
        // A checkpoint in the second life fails: the record files are durable, the
        // removal of the rotated segment is not.
        FailedFlush(Fault::Checkpoint),
        Close,
    ]
}

/// A tiny seeded xorshift generator.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// A longer workload of `len` steps, drawn with `seed`, valid by construction.
fn generated(seed: u64, len: usize) -> Vec<Step> {
    let mut rng = Rng::new(seed);
    let mut state = State::default();
    let mut steps = Vec::new();
    let mut fresh = 0;
    let mut freed: Vec<String> = Vec::new();
    let genesis = Step::Tx(vec![
        open_account("a", "oa", 250),
        open_account("b", "ob", 250),
        open_account("c", "oc", 250),
        open_account("d", "od", 250),
        note("m0"),
    ]);
    while steps.len() < len {
        let step = if steps.is_empty() {
            genesis.clone()
        } else {
            let ids: Vec<String> = state.accounts.keys().cloned().collect();
            let memo_ids: Vec<String> = state.memos.keys().cloned().collect();
            let two = |rng: &mut Rng| {
                let from = rng.pick(&ids).clone();
                let others: Vec<&String> = ids.iter().filter(|id| **id != from).collect();
                (from, (*rng.pick(&others)).clone())
            };
            let memo = |rng: &mut Rng| format!("m{}", rng.below(8));
            fresh += 1;
            match rng.below(100) {
                40..55 => Step::One(note(&memo(&mut rng))),
                55..60 if !memo_ids.is_empty() => Step::One(unnote(rng.pick(memo_ids.as_slice()).as_str())),
                60..66 => {
                    let id = rng.pick(&ids).clone();
                    freed.push(state.accounts[&id].owner.clone());
                    Step::One(rename(&id, &format!("o{fresh}")))
                }
                66..71 => {
                    let owner = freed.pop().unwrap_or_else(|| format!("o{fresh}"));
                    Step::One(open_account(&format!("x{fresh}"), &owner, 0))
                }
                71..76 if ids.len() >= 3 => {
                    let (gone, heir) = two(&mut rng);
                    freed.push(state.accounts[&gone].owner.clone());
                    let cents = state.accounts[&gone].cents;
                    if cents == 0 && rng.below(2) == 0 {
                        Step::One(shut(&gone))
                    } else {
                        Step::Tx(vec![mv(&gone, &heir, cents), shut(&gone), note(&memo(&mut rng))])
                    }
                }
                76..80 => Step::Tx(vec![note(&memo(&mut rng)), note(&memo(&mut rng))]),
                80..90 => Step::Flush,
                _ => {
                    let mut writes = Vec::new();
                    for _ in 0..1 + rng.below(3) {
                        let (from, to) = two(&mut rng);
                        writes.push(mv(&from, &to, 1 + rng.below(60) as i64));
                    }
                    if rng.below(2) == 0 {
                        writes.push(note(&memo(&mut rng)));
                    }
                    if rng.below(5) == 0 && !memo_ids.is_empty() {
                        writes.push(unnote(rng.pick(memo_ids.as_slice()).as_str()));
                    }
                    Step::Tx(writes)
                }
            }
        };
        for write in step.writes() {
            state.apply(write);
        }
        steps.push(step);
    }
    steps.push(Step::Close);
    steps
}

// ---------------------------------------------------------------------------------
// Running the workload.

fn write_in_tx(tx: &mut Transaction<'_>, write: &W) -> shelf::Result<()> {
    match write {
        W::Move(from, to, cents) => {
            tx.update::<Account>(from, |a| {
                a.cents -= cents;
                a.version += 1;
            })?;
            tx.update::<Account>(to, |a| {
                a.cents += cents;
                a.version += 1;
            })?;
        }
        W::Open(id, owner, cents) => {
            tx.insert(Account { id: id.clone(), owner: owner.clone(), cents: *cents, version: 0 })?;
        }
        W::Rename(id, owner) => {
            tx.update::<Account>(id, |a| {
                a.owner = owner.clone();
                a.version += 1;
            })?;
        }
        W::Shut(id) => {
            assert!(tx.remove::<Account>(id)?.is_some());
        }
        W::Note(memo) => {
            tx.upsert(memo.clone())?;
        }
        W::Unnote(id) => {
            assert!(tx.remove::<Memo>(id)?.is_some());
        }
    }
    Ok(())
}

fn write_one(accounts: &Collection<Account>, memos: &Collection<Memo>, write: &W) -> shelf::Result<()> {
    match write {
        W::Move(..) => unreachable!("a move is a transaction"),
        W::Open(id, owner, cents) => {
            accounts.insert(Account { id: id.clone(), owner: owner.clone(), cents: *cents, version: 0 })?;
        }
        W::Rename(id, owner) => {
            accounts.update(id, |a| {
                a.owner = owner.clone();
                a.version += 1;
            })?;
        }
        W::Shut(id) => {
            assert!(accounts.remove(id)?.is_some());
        }
        W::Note(memo) => {
            memos.upsert(memo.clone())?;
        }
        W::Unnote(id) => {
            assert!(memos.remove(id)?.is_some());
        }
    }
    Ok(())
}

/// Runs one step. A [`Step::FailedFlush`] that failed as planned is `Ok`.
fn execute(seam: &Seam, store: &mut Store, step: &Step) -> shelf::Result<()> {
    let accounts = store.collection::<Account>()?;
    let memos = store.collection::<Memo>()?;
    match step {
        Step::Tx(writes) => store.transaction(|tx| {
            for write in writes {
                write_in_tx(tx, write)?;
            }
            Ok::<_, shelf::Error>(())
        }),
        Step::One(write) => write_one(&accounts, &memos, write),
        Step::Flush => store.flush().map(|_| ()),
        Step::FailedFlush(fault) => {
            seam.arm(*fault);
            let result = store.flush();
            let fired = seam.disarm();
            match result {
                Ok(_) => panic!("the injected fault {fault:?} did not fail the flush (fired: {fired})"),
                Err(e) if seam.fs.is_dead() => Err(e),
                Err(e) => {
                    assert!(fired, "the flush failed, but not by the injected fault {fault:?}: {e}");
                    Ok(())
                }
            }
        }
        Step::Close => store.close(),
        Step::Reopen => {
            store.close()?;
            *store = open_on(seam.clone())?;
            Ok(())
        }
    }
}

fn contents(store: &Store) -> State {
    State {
        accounts: store.collection::<Account>().unwrap().iter().map(|a| (a.id.clone(), (*a).clone())).collect(),
        memos: store.collection::<Memo>().unwrap().iter().map(|m| (m.id.clone(), (*m).clone())).collect(),
    }
}

/// How far a run got.
#[derive(Clone, Copy, Debug)]
struct Outcome {
    /// Steps that returned `Ok` (a [`Step::FailedFlush`]: its planned error): the
    /// first `acked` steps.
    acked: usize,
    /// Whether step `acked` was running when the machine died.
    in_flight: bool,
    /// Whether every step ran and the machine never died.
    completed: bool,
}

/// Runs the workload through `seam` until it ends or the machine dies. An error is
/// allowed only from a dead machine. Checks the store's memory after each step.
fn run(seam: &Seam, plan: &Plan) -> Outcome {
    let fs = &seam.fs;
    let mut store = match open_on(seam.clone()) {
        Ok(store) => store,
        Err(e) => {
            assert!(fs.is_dead(), "the first open failed on a healthy file system: {e}");
            return Outcome { acked: 0, in_flight: false, completed: false };
        }
    };
    for (i, step) in plan.steps.iter().enumerate() {
        if let Err(e) = execute(seam, &mut store, step) {
            assert!(fs.is_dead(), "step {i} ({step:?}) failed on a healthy file system: {e}");
            // Dropping the handles tries a last flush, which fails: the machine is dead.
            return Outcome { acked: i, in_flight: true, completed: false };
        }
        assert_eq!(contents(&store), plan.states[i + 1], "step {i} ({step:?}): the store's memory is not the model's");
    }
    drop(store);
    Outcome { acked: plan.steps.len(), in_flight: false, completed: !fs.is_dead() }
}

// ---------------------------------------------------------------------------------
// The contract.

/// Checks a recovered state against the plan and the outcome of the crashed run.
/// Returns how many steps the recovered accounts reflect.
fn check(plan: &Plan, outcome: Outcome, found: &State, label: &str) -> usize {
    let acked = outcome.acked;
    // No partial transaction.
    if !found.accounts.is_empty() {
        assert_eq!(found.sum(), TOTAL, "{label}: the balances do not add up: a transaction is partial: {found:#?}");
    }
    // Every acknowledged step, nothing else (or the step in flight too).
    let mut candidates = vec![acked];
    if outcome.in_flight {
        candidates.push(acked + 1);
    }
    let Some(&basis) = candidates.iter().find(|&&b| plan.states[b].accounts == found.accounts) else {
        panic!(
            "{label}: after {acked} acknowledged steps (in flight: {:?}), the accounts are\n{:#?}\nexpected\n{:#?}{}",
            outcome.in_flight.then(|| &plan.steps[acked]),
            found.accounts,
            plan.states[acked].accounts,
            if outcome.in_flight { format!("\nor\n{:#?}", plan.states[acked + 1].accounts) } else { String::new() },
        )
    };

    // Memos: a version that was written, not older than the last completed flush nor
    // than the last logged write of a recovered transaction.
    let last_flush = (0..acked).rev().find(|&p| plan.steps[p].flushes());
    let ids: BTreeSet<&String> = plan.memo_events.keys().chain(found.memos.keys()).collect();
    for id in ids {
        let events = plan.memo_events.get(id).map(Vec::as_slice).unwrap_or_default();
        let value = found.memos.get(id);
        let floor = events
            .iter()
            .filter(|e| last_flush.is_some_and(|p| e.step < p) || (e.logged && e.step < basis))
            .map(|e| e.seq)
            .max()
            .unwrap_or(0);
        // A logged write is there only with its transaction; another one, once made.
        let possible = |e: &MemoEvent| {
            if e.logged {
                e.step < basis
            } else {
                e.step < acked || (e.step == acked && outcome.in_flight)
            }
        };
        let allowed = (value.is_none() && floor == 0)
            || events.iter().any(|e| e.seq >= floor && e.value.as_ref() == value && possible(e));
        assert!(
            allowed,
            "{label}: memo `{id}` is {value:?} after {acked} acknowledged steps (in flight: {}, accounts reflect {basis} steps, last completed flush: step {last_flush:?}); it must be a version written at or after seq {floor}, and a logged one only with its transaction; its writes: {events:#?}",
            outcome.in_flight,
        );
    }
    basis
}

/// Every file under `dir`, recursively.
fn files_under(fs: &Arc<CrashFs>, dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs.read_dir(dir).unwrap_or_default() {
        let path = dir.join(&entry.name);
        if entry.is_dir {
            out.extend(files_under(fs, &path));
        } else {
            out.push(path);
        }
    }
    out
}

/// What a successful open and its first flush leave: the index agrees with the
/// records, no temp file, a checkpointed log.
fn check_open_store(fs: &Arc<CrashFs>, store: &Store, found: &State, label: &str) {
    let accounts = store.collection::<Account>().unwrap();
    for account in found.accounts.values() {
        assert_eq!(
            accounts.by_owner(&account.owner).as_deref(),
            Some(account),
            "{label}: the unique index does not find account `{}` by its owner",
            account.id
        );
    }
    // Open replays the log into memory; the first flush writes it and checkpoints.
    store.flush().unwrap();
    let files = files_under(fs, Path::new(DIR));
    let temps: Vec<&PathBuf> =
        files.iter().filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))).collect();
    assert!(temps.is_empty(), "{label}: temp files left after open: {temps:?}");
    let segments: Vec<&PathBuf> = files.iter().filter(|p| p.starts_with(Path::new(DIR).join(shelf::WAL_DIR))).collect();
    assert!(segments.len() <= 1, "{label}: open replayed and flushed the log but did not checkpoint it: {segments:?}");
}

/// The store keeps working: a transaction and a flush; then a single `wal` write
/// and a memo, not flushed, and another power loss: the `wal` write survives (the
/// memo may or may not).
fn keeps_working(fs: &Arc<CrashFs>, store: Store, found: State, label: &str) {
    let mut expected = found;
    let mut writes = Vec::new();
    let mut probe = expected.clone();
    if probe.accounts.is_empty() {
        writes.push(open_account("y", "after-y", TOTAL));
        probe.apply(writes.last().unwrap());
    }
    if probe.accounts.len() < 2 {
        writes.push(open_account("z", "after-z", 0));
        probe.apply(writes.last().unwrap());
    }
    let ids: Vec<String> = probe.accounts.keys().take(2).cloned().collect();
    writes.push(mv(&ids[0], &ids[1], 1));
    writes.push(W::Note(Memo { id: "after".into(), seq: u64::MAX - 1, text: "after the crash".into() }));
    store
        .transaction(|tx| {
            for write in &writes {
                write_in_tx(tx, write)?;
            }
            Ok::<_, shelf::Error>(())
        })
        .unwrap_or_else(|e| panic!("{label}: a transaction after reopen failed: {e}"));
    for write in &writes {
        expected.apply(write);
    }
    store.flush().unwrap_or_else(|e| panic!("{label}: a flush after reopen failed: {e}"));

    let accounts = store.collection::<Account>().unwrap();
    let memos = store.collection::<Memo>().unwrap();
    let last = rename(&ids[0], "after-renamed");
    write_one(&accounts, &memos, &last).unwrap_or_else(|e| panic!("{label}: a write after reopen failed: {e}"));
    expected.apply(&last);
    let unflushed = Memo { id: "unflushed".into(), seq: u64::MAX, text: "never flushed".into() };
    memos.upsert(unflushed.clone()).unwrap();
    // Power loss with the store open.
    fs.crash_after(0);
    drop(accounts);
    drop(memos);
    drop(store);
    fs.crash();
    let store = open(fs).unwrap_or_else(|e| panic!("{label}: the second reopen failed: {e}"));
    let mut again = contents(&store);
    if let Some(memo) = again.memos.remove(&unflushed.id) {
        assert_eq!(memo, unflushed, "{label}: a memo written after reopen came back wrong");
    }
    assert_eq!(again, expected, "{label}: what the store acknowledged after reopen did not survive");
    store.close().unwrap();
}

/// After the crashed run: power loss, reopen, the contract, and the store working.
fn reopen_and_check(fs: &Arc<CrashFs>, plan: &Plan, outcome: Outcome, label: &str) {
    fs.crash();
    let store = open(fs).unwrap_or_else(|e| panic!("{label}: reopen failed: {e}"));
    let found = contents(&store);
    check(plan, outcome, &found, label);
    check_open_store(fs, &store, &found, label);
    keeps_working(fs, store, found, label);
}

// ---------------------------------------------------------------------------------
// The seam of the crashed runs: sync points and injected faults.

/// What a [`Seam`] was told to fail.
#[derive(Debug, Default)]
struct Armed {
    fault: Option<Fault>,
    /// A WAL segment was removed since the fault was armed.
    removed_segment: bool,
    fired: bool,
}

/// A [`Vfs`] over a [`CrashFs`]. It notes, for every sync that succeeds, the number
/// of operations before it ([`CrashFs::ops`]): `crash_after` of that number makes
/// the sync fail, one more makes it the last operation that succeeds. And it fails
/// one operation of a [`Step::FailedFlush`], on a healthy machine.
#[derive(Clone, Debug)]
struct Seam {
    fs: Arc<CrashFs>,
    syncs: Arc<Mutex<Vec<u64>>>,
    armed: Arc<Mutex<Armed>>,
}

impl Seam {
    fn new(fs: &Arc<CrashFs>) -> Self {
        Seam { fs: Arc::clone(fs), syncs: Arc::default(), armed: Arc::default() }
    }

    fn arm(&self, fault: Fault) {
        *self.armed.lock().unwrap() = Armed { fault: Some(fault), ..Armed::default() };
    }

    /// Disarms; returns whether the fault fired.
    fn disarm(&self) -> bool {
        std::mem::take(&mut *self.armed.lock().unwrap()).fired
    }

    /// Fails this operation if it is the armed fault's.
    fn inject(&self, fault: Fault, now: impl FnOnce(&mut Armed) -> bool) -> io::Result<()> {
        let mut armed = self.armed.lock().unwrap();
        if armed.fault == Some(fault) && !armed.fired && now(&mut armed) {
            armed.fired = true;
            return Err(io::Error::other(format!("injected fault: {fault:?}")));
        }
        Ok(())
    }

    fn synced(&self, sync: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
        let at = self.fs.ops();
        sync()?;
        self.syncs.lock().unwrap().push(at);
        Ok(())
    }

    fn wal_dir() -> PathBuf {
        Path::new(DIR).join(shelf::WAL_DIR)
    }
}

struct SeamFile {
    file: Box<dyn VfsFile>,
    seam: Seam,
}

impl Write for SeamFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl VfsFile for SeamFile {
    fn sync_data(&mut self) -> io::Result<()> {
        let seam = self.seam.clone();
        seam.synced(|| self.file.sync_data())
    }
}

struct SeamAppend {
    file: Box<dyn VfsAppend>,
    seam: Seam,
}

impl VfsAppend for SeamAppend {
    fn append(&self, buf: &[u8]) -> io::Result<()> {
        self.file.append(buf)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.seam.synced(|| self.file.sync_data())
    }
    fn truncate(&self, len: u64) -> io::Result<()> {
        self.file.truncate(len)
    }
}

impl Vfs for Seam {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.fs.read(path)
    }
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn VfsFile>> {
        Ok(Box::new(SeamFile { file: self.fs.create_new(path)?, seam: self.clone() }))
    }
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn VfsAppend>> {
        Ok(Box::new(SeamAppend { file: self.fs.open_append(path)?, seam: self.clone() }))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inject(Fault::Batch, |_| true)?;
        self.fs.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.fs.remove_file(path)?;
        if path.parent() == Some(Seam::wal_dir().as_path()) {
            self.armed.lock().unwrap().removed_segment = true;
        }
        Ok(())
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.inject(Fault::Checkpoint, |armed| armed.removed_segment && path == Seam::wal_dir())?;
        self.synced(|| self.fs.sync_dir(path))
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.fs.create_dir_all(path)
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        self.fs.read_dir(path)
    }
    fn try_lock(&self, path: &Path) -> io::Result<Box<dyn VfsLock>> {
        self.fs.try_lock(path)
    }
}

/// Runs the workload to the end once: its number of operations and the operation
/// index of each sync, cross-checked with [`CrashFs::sync_points`].
fn sync_map(plan: &Plan) -> (u64, Vec<u64>) {
    let fs = CrashFs::new();
    let seam = Seam::new(&fs);
    let outcome = run(&seam, plan);
    assert!(outcome.completed);
    let syncs = seam.syncs.lock().unwrap().clone();
    assert_eq!(syncs.len() as u64, fs.sync_points(), "the seam missed syncs");
    (fs.ops(), syncs)
}

/// Runs the workload with a crash after `k` operations.
fn run_crashing(plan: &Plan, k: u64) -> (Arc<CrashFs>, Outcome) {
    let fs = CrashFs::new();
    fs.crash_after(k);
    let outcome = run(&Seam::new(&fs), plan);
    (fs, outcome)
}

/// Every operation of a workload is a crash point, until it completes. Returns
/// the number of crash points and of sync points.
fn crash_at_every_operation(plan: &Plan, name: &str) -> (u64, u64) {
    let mut in_flight = BTreeSet::new();
    let mut k = 0;
    loop {
        let (fs, outcome) = run_crashing(plan, k);
        let sync_points = fs.sync_points();
        if outcome.in_flight {
            in_flight.insert(outcome.acked);
        }
        reopen_and_check(&fs, plan, outcome, &format!("{name}, crash point {k}"));
        if outcome.completed {
            // Every step that writes a file was interrupted somewhere.
            let touching: BTreeSet<usize> =
                plan.steps.iter().enumerate().filter(|(_, s)| s.logged() || s.starts_flush()).map(|(i, _)| i).collect();
            assert!(
                touching.is_subset(&in_flight),
                "{name}: steps never interrupted: {:?}",
                touching.difference(&in_flight)
            );
            return (k, sync_points);
        }
        k += 1;
        assert!(k < 100_000, "{name}: the workload never completed");
    }
}

// ---------------------------------------------------------------------------------
// The tests.

/// Every operation of the scripted workload is a crash point.
#[test]
fn power_loss_at_every_operation_keeps_every_acknowledged_commit() {
    let plan = plan(script());
    let started = Instant::now();
    let (points, sync_points) = crash_at_every_operation(&plan, "script");
    eprintln!(
        "script: {points} crash points ({sync_points} sync points) of {} steps checked in {:?}",
        plan.steps.len(),
        started.elapsed()
    );
    assert!(points > 100, "the workload should have many crash points, got {points}");
}

/// The same after flushes that failed on a healthy machine, so that the log holds
/// several segments, rotated but not checkpointed, when the power goes.
#[test]
fn power_loss_at_every_operation_after_failed_flushes() {
    let plan = plan(script_with_failed_flushes());
    let started = Instant::now();
    let (points, sync_points) = crash_at_every_operation(&plan, "failed flushes");
    eprintln!(
        "failed flushes: {points} crash points ({sync_points} sync points) of {} steps checked in {:?}",
        plan.steps.len(),
        started.elapsed()
    );
}

/// Sequence numbers across lives: after a failed checkpoint at open, a later
/// rotation must not reuse the name of a segment the store still means to delete.
#[test]
fn power_loss_at_every_operation_across_reopens_with_a_failed_checkpoint() {
    let plan = plan(script_across_reopens());
    let started = Instant::now();
    let (points, sync_points) = crash_at_every_operation(&plan, "across reopens");
    eprintln!(
        "across reopens: {points} crash points ({sync_points} sync points) of {} steps checked in {:?}",
        plan.steps.len(),
        started.elapsed()
    );
}

/// A longer generated workload: a crash at every sync point (the sync fails, or it
/// is the last operation that succeeds) and at 50 random points between them.
#[test]
fn power_loss_at_every_sync_point_and_between_of_a_generated_workload() {
    let plan = plan(generated(0x5eed_0005, 50));
    let started = Instant::now();
    let (ops, syncs) = sync_map(&plan);
    let mut points: BTreeSet<u64> = syncs.iter().flat_map(|&q| [q, q + 1]).collect();
    let at_syncs = points.len();
    let mut rng = Rng::new(0xc0ffee);
    let mut between = 0;
    while between < 50 {
        if points.insert(rng.below(ops)) {
            between += 1;
        }
    }
    for &k in &points {
        let label = format!("generated workload, crash point {k}");
        let (fs, outcome) = run_crashing(&plan, k);
        assert!(!outcome.completed || k >= ops, "{label}: completed before its end");
        assert_eq!(
            fs.sync_points(),
            syncs.iter().filter(|&&q| q < k).count() as u64,
            "{label}: the sync map does not match CrashFs::sync_points"
        );
        reopen_and_check(&fs, &plan, outcome, &label);
    }
    eprintln!(
        "generated: {} crash points ({at_syncs} at its {} syncs, 50 between) of {} steps and {ops} operations checked in {:?}",
        points.len(),
        syncs.len(),
        plan.steps.len(),
        started.elapsed()
    );
}

/// Opens with the machine dying after `j` operations. Returns the recovered state
/// when the open returned a store, and whether it ran to the end without dying.
fn interrupted_open(fs: &Arc<CrashFs>, j: u64, label: &str) -> (Option<State>, bool) {
    fs.crash_after(j);
    let (state, done) = match open(fs) {
        Ok(store) => (Some(contents(&store)), !fs.is_dead()),
        Err(e) => {
            assert!(fs.is_dead(), "{label}: open failed on a healthy file system: {e}");
            (None, false)
        }
    };
    if !done {
        fs.crash();
    }
    (state, done)
}

/// Runs the workload with a crash after `k` operations and loses power.
fn crashed_image(plan: &Plan, k: u64) -> (Arc<CrashFs>, Outcome) {
    let (fs, outcome) = run_crashing(plan, k);
    fs.crash();
    (fs, outcome)
}

/// Recovery is idempotent: a crash in the middle of it, then another recovery,
/// gives the state a clean recovery gives. Crash points: right after each sync of
/// the workload with failed flushes (several segments to replay) that leaves
/// records in the log. On every other point, recovery is interrupted in a chain
/// (each attempt on what the previous one left, after 0, 1, 2, ... operations); on
/// every eighth, once at each operation (a fresh image each time).
#[test]
fn a_crash_during_recovery_then_recovery_gives_the_same_state() {
    let plan = plan(script_with_failed_flushes());
    let started = Instant::now();
    let (_, syncs) = sync_map(&plan);
    let (mut points, mut interruptions) = (0, 0);
    for &q in &syncs {
        let k = q + 1;
        let label = format!("crash point {k}");
        let (fs, outcome) = crashed_image(&plan, k);
        // Only points where recovery has records to replay.
        let logged: usize = files_under(&fs, &Seam::wal_dir()).iter().map(|p| fs.read(p).unwrap().len()).sum();
        if logged == 0 {
            continue;
        }
        points += 1;
        let reference = contents(&open(&fs).unwrap_or_else(|e| panic!("{label}: reopen failed: {e}")));
        check(&plan, outcome, &reference, &label);

        if points % 2 == 1 {
            let (fs, _) = crashed_image(&plan, k);
            for j in 0.. {
                let label = format!("{label}, recovery interrupted after 0..={j} operations in a chain");
                let (state, done) = interrupted_open(&fs, j, &label);
                if let Some(state) = state {
                    assert_eq!(state, reference, "{label}: recovered a different state");
                }
                if done {
                    break;
                }
                interruptions += 1;
            }
            fs.crash();
            let store = open(&fs).unwrap_or_else(|e| panic!("{label}: reopen after the chain failed: {e}"));
            assert_eq!(contents(&store), reference, "{label}: reopen after the chain gives a different state");
            check_open_store(&fs, &store, &reference, &label);
            keeps_working(&fs, store, reference.clone(), &label);
        }
        if points % 8 == 2 {
            for j in 0.. {
                let label = format!("{label}, recovery interrupted after {j} operations");
                let (fs, _) = crashed_image(&plan, k);
                let (state, done) = interrupted_open(&fs, j, &label);
                if let Some(state) = state {
                    assert_eq!(state, reference, "{label}: recovered a different state");
                }
                if done {
                    break;
                }
                interruptions += 1;
                let store = open(&fs).unwrap_or_else(|e| panic!("{label}: the second recovery failed: {e}"));
                assert_eq!(contents(&store), reference, "{label}: the second recovery gives a different state");
                check_open_store(&fs, &store, &reference, &label);
            }
        }
    }
    eprintln!(
        "recovery: {points} crash points with records to replay (of {} sync points), {interruptions} interrupted recoveries checked in {:?}",
        syncs.len(),
        started.elapsed()
    );
}
