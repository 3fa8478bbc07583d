//! The commit path when PostgreSQL is the source of truth (DESIGN §5).
//!
//! A commit is validated in memory under the writer lock, as every commit is
//! (ids, unique keys, foreign keys, cascades), and then *reverted*: memory does not
//! change yet. Outside the lock it goes to PostgreSQL as one `shelf_commit` call
//! (or in a group with other threads' commits: `backend::postgres::group`),
//! with the version of every record it writes as the cache knew it. Only when
//! PostgreSQL has committed is it applied to memory, with the same code that
//! applies other instances' commits, and published to subscribers.
//!
//! If PostgreSQL refuses it because another instance changed what it read, or
//! holds a unique key or a child the cache did not know of yet, this instance
//! catches up with the change log and runs the commit again (its `stage`: the
//! transaction body or the `update` closure) against the new state, up to
//! [`ATTEMPTS`] times. The second run then fails with the usual typed error
//! (`UniqueViolation`, `ForeignKey`, `DuplicateId`), or succeeds.
//!
//! Commits are applied to memory exactly once, whichever comes first: the thread
//! that committed, or the change feed ([`Applied`]).
//!
//! An instance that fell behind the change log's retention reloads
//! ([`Inner::reload`]): the net difference between its cache and a snapshot of
//! every table is applied as one commit, at the snapshot's sequence number.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use parking_lot::{Condvar, Mutex};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::backend::postgres::{ChangeRow, Postgres, Refusal, Snapshot};
use crate::collection::{Locked, SharedWrite};
use crate::commit::{Op, Run, WriterGuard};
use crate::error::{show_id, Error, Result};
use crate::store::Inner;

/// How many times a commit runs before it fails with [`Error::Conflict`].
pub const ATTEMPTS: u32 = 30;

/// Which commits this instance has applied: every one up to `floor` (delivered
/// by the change feed in order), and its own commits above it, applied by the
/// committing thread ahead of the feed, with the `(collection, id)` each wrote.
/// Changed only under the writer lock.
#[derive(Debug, Default)]
struct Applied {
    floor: u64,
    ahead: BTreeMap<u64, Vec<(usize, String)>>,
}

/// The shared-backend state of a store: which commits are applied, and which
/// records this instance's commits in flight write.
#[derive(Default)]
pub(crate) struct SharedState {
    applied: Mutex<Applied>,
    /// `(collection, id)` written by this instance's commits on their way to
    /// PostgreSQL: a second local commit of one of them waits for the first
    /// instead of conflicting with it.
    inflight: Mutex<Vec<(usize, String)>>,
    done: Condvar,
}

impl SharedState {
    pub(crate) fn new(floor: u64) -> Self {
        SharedState { applied: Mutex::new(Applied { floor, ahead: BTreeMap::new() }), ..Default::default() }
    }

    fn finish(&self, keys: &[(usize, String)]) {
        self.inflight.lock().retain(|k| !keys.contains(k));
        self.done.notify_all();
    }
}

/// The records of a commit on its way to PostgreSQL, in `SharedState::inflight`
/// until this is dropped.
struct Inflight<'a> {
    shared: &'a SharedState,
    keys: &'a [(usize, String)],
}

impl Drop for Inflight<'_> {
    fn drop(&mut self) {
        self.shared.finish(self.keys);
    }
}

/// A validated commit, waiting for PostgreSQL.
struct Staged {
    /// `(collection, write)`, one per record (its last state in the commit).
    writes: Vec<(usize, SharedWrite)>,
    /// The `shelf_commit` argument: the writes of persisted collections.
    json: String,
}

/// One write of a change-log payload.
#[derive(Deserialize)]
struct Entry<'a> {
    c: String,
    #[serde(borrow)]
    id: &'a RawValue,
    #[serde(borrow)]
    v: &'a RawValue,
}

impl Inner {
    /// Runs `stage` under the writer lock and commits its ops through PostgreSQL;
    /// on a conflict, catches up and runs `stage` again. See the module docs.
    pub(crate) fn write_shared<R, E: From<Error>>(
        &self,
        pg: &Postgres,
        mut stage: impl FnMut(&WriterGuard<'_>, &mut Vec<(usize, String)>) -> std::result::Result<(Vec<Op>, R), E>,
    ) -> std::result::Result<R, E> {
        let shared = &self.shared;
        let mut attempts = 0;
        loop {
            let guard = self.lock_writer()?;
            let mut reads = Vec::new();
            let (ops, result) = stage(&guard, &mut reads)?;
            let Some(staged) = self.stage_shared(pg, ops)? else { return Ok(result) };
            let reads = self.reads_json(pg, &staged, reads);
            if staged.json == "[]" {
                // Only `memory` collections: nothing for PostgreSQL to keep.
                let seq = self.commit_seq.fetch_add(1, Ordering::SeqCst) + 1;
                self.apply_writes(pg, seq, None, staged.writes);
                return Ok(result);
            }
            let keys: Vec<(usize, String)> =
                staged.writes.iter().filter(|(c, _)| pg.table(*c).is_some()).map(|(c, w)| (*c, w.id.clone())).collect();
            {
                let mut inflight = shared.inflight.lock();
                if keys.iter().any(|key| inflight.contains(key)) {
                    // Another commit of this instance writes one of these records:
                    // wait for it to be applied, then run again against its result.
                    drop(guard);
                    shared.done.wait_for(&mut inflight, std::time::Duration::from_millis(50));
                    continue;
                }
                inflight.extend(keys.iter().cloned());
            }
            drop(guard);
            // The records are let go of whatever happens, a panic included: a later
            // commit of one of them must not wait for ever.
            let on_its_way = Inflight { shared, keys: &keys };
            let outcome = pg.commit(staged.json, reads);
            if let Ok((seq, version)) = &outcome {
                let _writer = self.writer.lock();
                let mut applied = shared.applied.lock();
                if *seq > applied.floor {
                    self.apply_writes(pg, *seq, Some(*version), staged.writes);
                    // Marked once applied: if applying panicked, the feed brings it.
                    applied.ahead.insert(*seq, keys.clone());
                } else {
                    // The change feed applied it first, from the change log, which
                    // holds only what PostgreSQL keeps: its `memory` writes are this
                    // thread's to apply.
                    let local: Vec<(usize, SharedWrite)> =
                        staged.writes.into_iter().filter(|(c, _)| pg.table(*c).is_none()).collect();
                    if !local.is_empty() {
                        self.apply_writes(pg, *seq, None, local);
                    }
                }
            }
            drop(on_its_way);
            match outcome {
                Ok(_) => return Ok(result),
                Err(Refusal::Failed(e)) => return Err(e.into()),
                Err(Refusal::Conflict(last)) => {
                    attempts += 1;
                    if attempts >= ATTEMPTS {
                        return Err(Error::Conflict { attempts, last }.into());
                    }
                    backoff(attempts);
                    pg.sync()?;
                }
            }
        }
    }

    /// Validates `ops` as a local commit would, collects what they write, and
    /// reverts them. `None` when there is nothing to commit.
    fn stage_shared(&self, pg: &Postgres, ops: Vec<Op>) -> Result<Option<Staged>> {
        if ops.is_empty() {
            return Ok(None);
        }
        let mut to_lock: Vec<usize> = ops.iter().flat_map(|op| self.related[op.coll].iter().copied()).collect();
        to_lock.extend(ops.iter().map(|op| op.coll));
        to_lock.sort_unstable();
        to_lock.dedup();
        let mut run = Run {
            locks: to_lock.iter().map(|&c| (c, self.collections[c].lock_write())).collect(),
            payload: Vec::new(),
            changed: Vec::new(),
            logged: false,
            log: &self.log,
        };
        // Reverted whatever happens, a panic included (see `commit_locked`).
        let collected = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.apply_all(&mut run, ops).and_then(|()| collect(&run))
        }));
        run.revert();
        let writes = collected.unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
        let mut json = String::with_capacity(256);
        json.push('[');
        for (coll, write) in &writes {
            self.push_write(pg, &mut json, *coll, write, pg.version(*coll, &write.id))?;
        }
        json.push(']');
        Ok(Some(Staged { writes, json }))
    }

    /// The `reads` argument of `shelf_commit`: the records read and not written,
    /// with the versions this instance's cache has. Under the writer lock.
    fn reads_json(&self, pg: &Postgres, staged: &Staged, mut reads: Vec<(usize, String)>) -> String {
        reads.sort_unstable();
        reads.dedup();
        let mut json = String::from("[");
        for (coll, id) in reads {
            let Some(table) = pg.table(coll) else { continue };
            if staged.writes.iter().any(|(c, w)| *c == coll && w.id == id) {
                continue; // its version is checked as a write
            }
            if json.len() > 1 {
                json.push(',');
            }
            json.push_str(r#"{"c":"#);
            push_quoted(&mut json, table);
            let expected = pg.version(coll, &id).map_or_else(|| "null".to_owned(), |v| v.to_string());
            json.push_str(&format!(r#","id":{id},"e":{expected}}}"#));
        }
        json.push(']');
        json
    }

    /// Appends one write as `shelf_commit` takes it (see `sql::SHARED`), with the
    /// version it expects, to `json`, an array being written (a comma first unless
    /// it is the first element). Nothing for a collection PostgreSQL does not keep.
    pub(crate) fn push_write(
        &self,
        pg: &Postgres,
        json: &mut String,
        coll: usize,
        write: &SharedWrite,
        expected: Option<i64>,
    ) -> Result<()> {
        use std::fmt::Write as _;
        let Some(table) = pg.table(coll) else { return Ok(()) };
        let unloadable = |message: String| Error::Unloadable {
            collection: self.collections[coll].name().to_owned(),
            id: show_id(&write.id),
            field: String::new(),
            message,
        };
        let value = match &write.value {
            Some(value) => {
                Postgres::check_value(value).map_err(unloadable)?;
                // Written by serde_json: UTF-8 (checked, not assumed).
                std::str::from_utf8(value).map_err(|e| unloadable(format!("its JSON is not UTF-8: {e}")))?
            }
            None => "null",
        };
        if !json.ends_with('[') {
            json.push(',');
        }
        json.push_str(r#"{"c":"#);
        push_quoted(json, table);
        let _ = write!(json, r#","id":{},"v":{value},"e":"#, write.id);
        match expected {
            Some(version) => drop(write!(json, "{version}")),
            None => json.push_str("null"),
        }
        json.push_str(r#","u":["#);
        for (i, (index, key)) in write.unique.iter().enumerate() {
            json.push_str(if i > 0 { ",[" } else { "[" });
            push_quoted(json, index);
            let _ = write!(json, ",{key}]");
        }
        json.push_str(r#"],"f":{"#);
        let enforced = write.parents.iter().filter(|(field, _)| pg.enforces(coll, field));
        for (i, (field, parent)) in enforced.enumerate() {
            json.push_str(if i > 0 { "," } else { "" });
            push_quoted(json, &crate::backend::postgres::fk_column(field));
            let _ = write!(json, ":{}", parent.as_deref().unwrap_or("null"));
        }
        json.push_str("}}");
        Ok(())
    }

    /// Applies a committed commit's writes to memory, records their versions, and
    /// publishes the changes under `seq`. Call under the writer lock.
    fn apply_writes(&self, pg: &Postgres, seq: u64, version: Option<i64>, writes: Vec<(usize, SharedWrite)>) {
        let mut colls: Vec<usize> = writes.iter().map(|(c, _)| *c).collect();
        colls.sort_unstable();
        colls.dedup();
        let mut locks: Vec<(usize, Box<dyn Locked + '_>)> =
            colls.iter().map(|&c| (c, self.collections[c].lock_write())).collect();
        let mut typed: Vec<Vec<Box<dyn std::any::Any + Send>>> = colls.iter().map(|_| Vec::new()).collect();
        for (coll, write) in writes {
            if let (Some(version), Some(_)) = (version, pg.table(coll)) {
                pg.set_version(coll, write.id, write.value.is_some().then_some(version));
            }
            if let Ok(i) = colls.binary_search(&coll) {
                typed[i].push(write.typed);
            }
        }
        for ((_, lock), writes) in locks.iter_mut().zip(typed) {
            lock.put_typed(writes);
        }
        self.publish_applied(seq, &mut locks);
    }

    fn publish_applied(&self, seq: u64, locks: &mut [(usize, Box<dyn Locked + '_>)]) {
        self.commit_seq.fetch_max(seq, Ordering::SeqCst);
        for (_, lock) in locks.iter_mut() {
            lock.publish(seq, true);
        }
    }

    /// Applies commits delivered by the change feed, in sequence order: those this
    /// instance has not applied yet (other instances', and its own that the feed
    /// brought first).
    pub(crate) fn apply_changes(&self, pg: &Postgres, rows: &[ChangeRow]) -> Result<()> {
        let _writer = self.writer.lock();
        let mut applied = self.shared.applied.lock();
        for row in rows {
            if row.seq <= applied.floor {
                continue;
            }
            applied.floor = row.seq;
            if applied.ahead.remove(&row.seq).is_some() {
                continue;
            }
            let entries: Vec<Entry<'_>> = serde_json::from_str(&row.payload).map_err(|e| Error::Postgres {
                op: "apply the change log",
                message: format!("commit {} is unreadable: {e}", row.seq),
            })?;
            let mut colls: Vec<usize> = Vec::new();
            let mut per: Vec<(usize, String, Option<String>)> = Vec::with_capacity(entries.len());
            for entry in &entries {
                let Some(&coll) = self.by_name.get(entry.c.as_str()) else {
                    // A collection this instance does not register: not its business.
                    continue;
                };
                let id = crate::backend::postgres::canonical_id(entry.id.get())?;
                let value = (entry.v.get() != "null").then(|| entry.v.get().to_owned());
                colls.push(coll);
                per.push((coll, id, value));
            }
            colls.sort_unstable();
            colls.dedup();
            let mut locks: Vec<(usize, Box<dyn Locked + '_>)> =
                colls.iter().map(|&c| (c, self.collections[c].lock_write())).collect();
            for (coll, lock) in locks.iter_mut() {
                let writes: Vec<(&str, Option<&str>)> =
                    per.iter().filter(|(c, _, _)| c == coll).map(|(_, id, v)| (id.as_str(), v.as_deref())).collect();
                lock.put_json(&writes).map_err(|message| Error::Postgres {
                    op: "apply the change log",
                    message: format!("commit {}, collection `{}`: {message}", row.seq, self.collections[*coll].name()),
                })?;
                // The versions follow the cache, never run ahead of it.
                for (_, id, value) in per.iter().filter(|(c, _, _)| c == coll) {
                    pg.set_version(*coll, id.clone(), value.is_some().then_some(row.version));
                }
            }
            self.publish_applied(row.seq, &mut locks);
        }
        let floor = applied.floor;
        applied.ahead.retain(|&seq, _| seq > floor);
        Ok(())
    }

    /// Makes the cache what `snapshot` holds, for an instance whose change feed
    /// fell behind the log's retention: each record whose version differs is set,
    /// each the snapshot lacks is removed, and the changes are published as one
    /// commit at the snapshot's sequence number (one event per changed record).
    ///
    /// Records written by this instance's commits after the snapshot, applied
    /// already, keep their newer state (an instance sees its own commits when they
    /// return); the feed skips those commits as it always does. Until the feed
    /// brings the commits between, a unique key may be held by two records in the
    /// cache, as after any commit applied ahead: an index keeps every id under a
    /// key, and the next commits of the log settle it.
    pub(crate) fn reload(&self, pg: &Postgres, snapshot: &Snapshot) -> Result<()> {
        let _writer = self.writer.lock();
        let mut applied = self.shared.applied.lock();
        if snapshot.floor <= applied.floor {
            return Ok(());
        }
        let newer: Vec<&(usize, String)> =
            applied.ahead.range(snapshot.floor + 1..).flat_map(|(_, keys)| keys).collect();
        let mut locks: Vec<(usize, Box<dyn Locked + '_>)> = Vec::new();
        let mut failed = None;
        for (pos, rows) in snapshot.tables.iter().enumerate() {
            if pg.table(pos).is_none() {
                continue;
            }
            let writes = pg.reload_writes(pos, rows, &|id| newer.iter().any(|(c, k)| *c == pos && k == id));
            if writes.is_empty() {
                continue;
            }
            let mut lock = self.collections[pos].lock_write();
            let json: Vec<(&str, Option<&str>)> = writes.iter().map(|(id, v, _)| (id.as_str(), v.as_deref())).collect();
            if let Err(message) = lock.put_json(&json) {
                failed = Some(Error::Postgres {
                    op: "reload after the change log was pruned",
                    message: format!("collection `{}`: {message}", self.collections[pos].name()),
                });
                break;
            }
            // The versions follow the cache, never run ahead of it.
            for (id, _, version) in writes {
                pg.set_version(pos, id, version);
            }
            locks.push((pos, lock));
        }
        if let Some(error) = failed {
            // What was applied is published; the feed stops (the caller fails it).
            self.publish_applied(snapshot.floor, &mut locks);
            return Err(error);
        }
        applied.floor = snapshot.floor;
        let floor = applied.floor;
        applied.ahead.retain(|&seq, _| seq > floor);
        self.publish_applied(snapshot.floor, &mut locks);
        Ok(())
    }
}

/// What a validated commit writes: one entry per record, its last state.
fn collect(run: &Run<'_>) -> Result<Vec<(usize, SharedWrite)>> {
    let mut seen: Vec<(usize, String)> = Vec::new();
    let mut writes = Vec::new();
    for (coll, id, _) in &run.changed {
        let Some((_, lock)) = run.locks.iter().find(|(c, _)| c == coll) else { continue };
        let write = lock.shared_write(&**id)?;
        if seen.iter().any(|(c, seen_id)| c == coll && *seen_id == write.id) {
            continue;
        }
        seen.push((*coll, write.id.clone()));
        writes.push((*coll, write));
    }
    Ok(writes)
}

/// Sleeps a random time below `attempts` ms (at most 8 ms), so that commits that
/// conflicted do not meet again in step. Short: the commits that won do not wait,
/// so a long sleep would only make the loser lose again.
fn backoff(attempts: u32) {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(attempts);
    let ceiling = u64::from(attempts.min(8)) * 1000;
    std::thread::sleep(std::time::Duration::from_micros(hasher.finish() % ceiling));
}

/// Appends `text` as a JSON string.
fn push_quoted(out: &mut String, text: &str) {
    // Names of tables, indices and columns: Rust identifiers, as a rule.
    if text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        out.push('"');
        out.push_str(text);
        out.push('"');
    } else {
        out.push_str(&serde_json::Value::String(text.to_owned()).to_string());
    }
}
