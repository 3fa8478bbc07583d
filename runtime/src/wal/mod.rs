//! The write-ahead log: commits of `wal` collections are appended here and made
//! durable before they are acknowledged, with one `fdatasync` shared by every
//! commit waiting at that moment (group commit).
//!
//! Segments live in `<dir>/wal/<first-lsn>.wal`. A flush *rotates*: it syncs the
//! current segment and starts a new one, under the writer lock, so the flushed
//! snapshot holds exactly the commits of the older segments. Once the flush is
//! durable those segments are deleted (the *checkpoint*). Recovery replays whatever
//! segments remain, in sequence order, over the loaded files; replay sets records
//! to logged values, so replaying twice gives the same state.
//!
//! A commit is applied to memory before its record is synced, so other threads may
//! see it a moment before it is durable; the committing call returns only after.
//! If the sync fails, every commit not yet durable is rolled back in memory, cut
//! from the segment, and its caller gets the error.
//!
//! Group commit: a thread that becomes the sync leader first waits, for at most
//! the duration of the last sync, until as many commits wait as the last sync
//! covered and every writer announced by [`Wal::incoming`] has appended (or given
//! up), so one `fdatasync` covers them all. A lone writer never waits: its last
//! group was itself, and it is past its announcement when it leads. When fewer
//! writers come than last time, the leader waits once and the next group is smaller.
//! The writer whose arrival completes the group runs the sync itself instead of
//! waking the leader (one thread wake-up less per group); the leader then waits as a
//! follower.
//!
//! Under `WalSync::Always` a commit's record is not written when it is appended: it
//! goes to an in-memory buffer, and the sync that covers it writes the whole group
//! with one call, then runs `fdatasync`. The writer lock is then held for a memory
//! copy, not a system call, and a group costs one `write` instead of one per commit.
//! Nothing is lost by it: the writer returns only after that sync. Under
//! `WalSync::Every` writers return before any sync, so each record is written to
//! the segment at once, where a crash of the process alone cannot lose it.

pub(crate) mod record;
pub(crate) mod replay;

use std::any::Any;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::error::{Error, Result};
use crate::fs::{create_dir_durable, Vfs, VfsAppend};

/// The directory of WAL segments, inside the data directory.
pub const WAL_DIR: &str = "wal";
/// The extension of a WAL segment file.
pub(crate) const SEGMENT_EXT: &str = ".wal";

/// The file name of the segment whose first record has sequence number `lsn`.
pub(crate) fn segment_name(lsn: u64) -> String {
    format!("{lsn:020}{SEGMENT_EXT}")
}

/// The first sequence number of a segment, from its file name.
pub(crate) fn segment_lsn(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_EXT)?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.parse().ok()).flatten()
}

/// When a commit to a `wal` collection is durable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WalSync {
    /// Before the write returns `Ok` (the default). Concurrent commits share one
    /// `fdatasync`, and their records are written together, just before it.
    #[default]
    Always,
    /// In the background at this interval: a write returns before it is durable, and
    /// a crash loses at most the last interval of acknowledged writes.
    Every(Duration),
}

/// Undo information of one commit: `(collection position, typed undo)`.
pub(crate) type Undo = Vec<(usize, Box<dyn Any + Send>)>;

/// A commit appended but not yet durable.
struct Pending {
    lsn: u64,
    /// Length of the segment before this record.
    offset: u64,
    undo: Undo,
    /// The commit's sequence number, for the events of a rollback.
    seq: u64,
}

struct State {
    segment: Arc<dyn VfsAppend>,
    segment_path: PathBuf,
    /// The segment's length once every appended record is written: the offset of
    /// the next record.
    segment_len: u64,
    /// Records appended under `WalSync::Always` and not yet written to the segment:
    /// the next sync writes them all with one call, then syncs (see [`Wal::append`]).
    buffer: Vec<u8>,
    /// Rotated segments, deleted by the next successful checkpoint.
    old_segments: Vec<PathBuf>,
    last_lsn: u64,
    synced_lsn: u64,
    syncing: bool,
    /// A sync failed, with this error, and its rollback has not finished yet.
    failing: Option<Error>,
    pending: VecDeque<Pending>,
    /// Sequence numbers that were rolled back, with the error that caused it.
    rolled_back: Vec<(u64, u64, Error)>,
    /// The segment must be cut back to this length before anything else is
    /// appended (a failed append or rollback could not cut it yet).
    cut_to: Option<u64>,
    /// Bytes in rotated segments not yet checkpointed.
    old_bytes: u64,
    /// How many records the last sync made durable: the group size to wait for.
    last_group: u64,
    /// The leader waiting for its group, if one is: its token and the group size it
    /// waits for. The writer whose arrival completes the group takes the sync over.
    leader_waiting: Option<(u64, u64)>,
    /// The last leader token handed out.
    lead_token: u64,
    stats: crate::stats::WalStats,
}

/// What a waiter should do next.
pub(crate) enum SyncStep {
    Durable,
    Failed(Error),
    /// This thread's sync failed: it must run the rollback, then wait again.
    RollBack(Error),
}

/// The live log of an open store.
pub(crate) struct Wal {
    dir: PathBuf,
    fs: Arc<dyn Vfs>,
    pub policy: WalSync,
    state: Mutex<State>,
    /// Writers announced by [`Wal::incoming`] that have not appended yet.
    incoming: AtomicUsize,
    /// The number of [`Wal::wake_all`] calls so far, and the condition variable
    /// [`Wal::wait`] sleeps on until it changes.
    bell: (std::sync::Mutex<u64>, std::sync::Condvar),
    /// The highest sequence number a sync made durable (only syncs move it).
    durable: AtomicU64,
    /// Whether any commit was ever rolled back: `durable` alone then no longer
    /// tells a waiter its commit is durable.
    rolled_any: AtomicBool,
    /// Signalled when the last announced writer has appended or given up.
    arrived: Condvar,
}

/// The longest a sync leader waits for announced writers.
const MAX_GROUP_WAIT: Duration = Duration::from_millis(2);

/// A writer on its way to append a commit; see [`Wal::incoming`].
pub(crate) struct Incoming<'a>(&'a Wal);

impl Incoming<'_> {
    /// The writer arrived in [`Wal::sync_to`] (which holds the state lock): no
    /// leader needs waking, as the arriving writer checks the group itself.
    fn arrive(self) {
        self.0.incoming.fetch_sub(1, Ordering::AcqRel);
        std::mem::forget(self);
    }
}

impl Drop for Incoming<'_> {
    fn drop(&mut self) {
        if self.0.incoming.fetch_sub(1, Ordering::AcqRel) == 1 {
            // Under the lock, so a leader between its check and its wait hears it.
            let _st = self.0.state.lock();
            self.0.arrived.notify_all();
        }
    }
}

impl Wal {
    /// Opens the log for appending after recovery: `existing` segments (already
    /// replayed) are kept until the first checkpoint; new records go to a new segment.
    pub fn open(fs: Arc<dyn Vfs>, dir: &Path, policy: WalSync, existing: Vec<PathBuf>, last_lsn: u64) -> Result<Self> {
        let dir = dir.join(WAL_DIR);
        create_dir_durable(fs.as_ref(), &dir).map_err(|e| Error::io("create directory", &dir, e))?;
        let path = dir.join(segment_name(last_lsn + 1));
        let mut old_segments = existing;
        old_segments.retain(|p| *p != path);
        let segment = new_segment(fs.as_ref(), &dir, &path)?;
        let segment_len = fs.read(&path).map(|b| b.len() as u64).unwrap_or(0);
        Ok(Wal {
            dir,
            fs,
            policy,
            state: Mutex::new(State {
                segment,
                segment_path: path,
                segment_len,
                buffer: Vec::new(),
                old_segments,
                last_lsn,
                synced_lsn: last_lsn,
                syncing: false,
                failing: None,
                pending: VecDeque::new(),
                rolled_back: Vec::new(),
                cut_to: None,
                old_bytes: 0,
                last_group: 1,
                leader_waiting: None,
                lead_token: 0,
                stats: crate::stats::WalStats::default(),
            }),
            incoming: AtomicUsize::new(0),
            bell: (std::sync::Mutex::new(0), std::sync::Condvar::new()),
            durable: AtomicU64::new(last_lsn),
            rolled_any: AtomicBool::new(false),
            arrived: Condvar::new(),
        })
    }

    /// Appends one commit and returns its sequence number. Called with the writer
    /// lock held, after the commit was applied to memory; the caller then hands over
    /// the commit's undo with [`Wal::attach_undo`], still under the writer lock. On
    /// error nothing was logged.
    ///
    /// Under `WalSync::Always` the record goes to an in-memory buffer: its writer
    /// waits for the next sync anyway, and that sync writes the whole group's records
    /// with one call before its `fdatasync`. The writer lock is then held for a
    /// memory copy instead of a system call. Under `WalSync::Every` the commit is
    /// acknowledged before any sync, so the record is written to the segment here:
    /// a crash of the process alone does not lose it.
    ///
    /// The writer lock also orders this against a rollback (which takes it), so a
    /// record always has its undo before a rollback can look for it.
    pub fn append(&self, payload: &[u8]) -> Result<u64> {
        let mut st = self.state.lock();
        Self::cut(&mut st)?;
        let lsn = st.last_lsn + 1;
        let offset = st.segment_len;
        let len = if self.policy == WalSync::Always {
            let before = st.buffer.len();
            record::encode(lsn, payload, &mut st.buffer);
            st.buffer.len() - before
        } else {
            let mut buf = Vec::with_capacity(record::HEADER_LEN + payload.len());
            record::encode(lsn, payload, &mut buf);
            if let Err(e) = st.segment.append(&buf) {
                let error = Error::io("append to WAL segment", &st.segment_path, e);
                // A short write may have left part of the record: cut it off, now or
                // before the next append.
                st.cut_to = Some(st.segment_len);
                let _ = Self::cut(&mut st);
                return Err(error);
            }
            buf.len()
        };
        st.segment_len += len as u64;
        st.stats.records += 1;
        st.last_lsn = lsn;
        st.pending.push_back(Pending { lsn, offset, undo: Vec::new(), seq: 0 });
        Ok(lsn)
    }

    /// Gives a pending record its undo and commit sequence number (the commit is
    /// complete once its events are out). Called with the writer lock held.
    pub fn attach_undo(&self, lsn: u64, undo: Undo, seq: u64) {
        let mut st = self.state.lock();
        // The record was the last one appended: both calls hold the writer lock.
        if let Some(pending) = st.pending.back_mut().filter(|p| p.lsn == lsn) {
            pending.undo = undo;
            pending.seq = seq;
        }
    }

    /// Announces a writer about to commit, before it waits for the writer lock.
    /// Drop the guard once the commit is appended (or failed, or logged nothing),
    /// just before waiting in [`Wal::sync_to`]: a sync leader waits briefly for
    /// announced writers, so that one `fdatasync` covers their commits too.
    pub fn incoming(&self) -> Incoming<'_> {
        self.incoming.fetch_add(1, Ordering::AcqRel);
        Incoming(self)
    }

    /// The sequence number of the last appended record.
    pub fn last_lsn(&self) -> u64 {
        self.state.lock().last_lsn
    }

    /// Waits until `lsn` is durable, syncing as the group's leader when no sync is
    /// running. `arrival` is the committing writer's announcement, if any; it ends
    /// here. See [`SyncStep`].
    pub fn sync_to(&self, lsn: u64, arrival: Option<Incoming<'_>>) -> SyncStep {
        let mut st = self.state.lock();
        let announced = arrival.is_some();
        if let Some(arrival) = arrival {
            arrival.arrive();
        }
        // A leader may wait for this writer: tell it when the writer leaves at once.
        let leave = |st: &State, step: SyncStep| {
            if announced && st.leader_waiting.is_some() {
                self.arrived.notify_all();
            }
            step
        };
        // Whether a leader waiting for a group of `expected` should wait on.
        let waiting = |st: &State, expected: u64| {
            self.incoming.load(Ordering::Acquire) > 0 || st.last_lsn - st.synced_lsn < expected
        };
        // Whether this thread took the sync over from a leader still asleep.
        let mut took_over = false;
        loop {
            if let Some((_, _, e)) = st.rolled_back.iter().find(|(from, to, _)| (*from..=*to).contains(&lsn)) {
                return leave(&st, SyncStep::Failed(e.clone()));
            }
            if st.synced_lsn >= lsn {
                return leave(&st, SyncStep::Durable);
            }
            if st.syncing || st.failing.is_some() {
                // This writer completes the group a leader waits for: it syncs now,
                // rather than waking the leader to do it. The leader waits as a
                // follower once it wakes.
                let complete = st.leader_waiting.is_some_and(|(_, expected)| !waiting(&st, expected));
                if complete && st.failing.is_none() {
                    // The superseded leader is not woken now, which would delay this
                    // sync: it finds out when the sync ends (or at its deadline).
                    st.leader_waiting = None;
                    took_over = true;
                } else {
                    self.wait(st);
                    // Woken by a successful sync: most waiters are done without the lock.
                    if self.durable.load(Ordering::Acquire) >= lsn && !self.rolled_any.load(Ordering::Acquire) {
                        return SyncStep::Durable;
                    }
                    st = self.state.lock();
                    continue;
                }
            } else {
                st.syncing = true;
                // Group commit: writers on their way, and as many as came last time,
                // share this sync.
                // Only writers that wait for the sync (`Always`) form groups; the
                // background syncer of `Every` syncs whatever there is.
                let expected = st.last_group;
                if self.policy == WalSync::Always && waiting(&st, expected) {
                    st.lead_token += 1;
                    let token = st.lead_token;
                    st.leader_waiting = Some((token, expected));
                    let window = st.stats.last_sync.unwrap_or(MAX_GROUP_WAIT).min(MAX_GROUP_WAIT);
                    let deadline = std::time::Instant::now() + window;
                    while st.leader_waiting.is_some_and(|(t, _)| t == token)
                        && waiting(&st, expected)
                        && !self.arrived.wait_until(&mut st, deadline).timed_out()
                    {}
                    if st.leader_waiting.is_none_or(|(t, _)| t != token) {
                        continue; // another writer took the sync over
                    }
                    st.leader_waiting = None;
                }
            }
            let target = st.last_lsn;
            let segment = Arc::clone(&st.segment);
            let path = st.segment_path.clone();
            let mut records = std::mem::take(&mut st.buffer);
            drop(st);
            let started = std::time::Instant::now();
            let outcome = write_and_sync(segment.as_ref(), &records, &path);
            st = self.state.lock();
            st.syncing = false;
            st.stats.record_sync(started.elapsed());
            match outcome {
                Ok(()) => {
                    if st.buffer.is_empty() {
                        // Keep the allocation for the next group.
                        records.clear();
                        st.buffer = records;
                    }
                    st.last_group = target.saturating_sub(st.synced_lsn).max(1);
                    st.synced_lsn = st.synced_lsn.max(target);
                    self.durable.fetch_max(target, Ordering::Release);
                    while st.pending.front().is_some_and(|p| p.lsn <= target) {
                        st.pending.pop_front();
                    }
                    // Woken after the state is unlocked: the woken writers' next
                    // appends need it. This thread's commit is in `target`.
                    drop(st);
                    self.wake_all();
                    if took_over {
                        self.arrived.notify_all();
                    }
                    return SyncStep::Durable;
                }
                Err(e) => {
                    // A short write may have left part of the group in the file: the
                    // rollback cuts the segment back to the last durable record.
                    st.failing = Some(e.clone());
                    drop(st);
                    self.wake_all();
                    if took_over {
                        self.arrived.notify_all();
                    }
                    return SyncStep::RollBack(e);
                }
            }
        }
    }

    /// Unlocks the state and sleeps until the next [`Wal::wake_all`].
    ///
    /// The sleepers wait on a condition variable of their own (`bell`), not on the
    /// state's mutex: after a sync they all wake at once instead of being handed
    /// the state lock one after the other, and most find their commit durable
    /// without taking it (see `durable`).
    fn wait(&self, st: MutexGuard<'_, State>) {
        let (rung, bell) = &self.bell;
        // Read under the state lock: a `wake_all` after this point changes it.
        let mut count = rung.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        drop(st);
        let seen = *count;
        while *count == seen {
            count = bell.wait(count).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    /// Wakes every thread sleeping in [`Wal::wait`]; call after a change they wait
    /// for, made under the state lock (which may be held or let go by now: a
    /// sleeper read the bell's count before it let go of the state lock, so it
    /// cannot miss the ring).
    fn wake_all(&self) {
        let (rung, bell) = &self.bell;
        *rung.lock().unwrap_or_else(std::sync::PoisonError::into_inner) += 1;
        bell.notify_all();
    }

    /// Takes every commit that is not durable, newest first, and cuts its records
    /// from the segment, after a failed sync: returns them with the sync's error.
    /// Call with the writer lock held, undo the returned commits, then call
    /// [`Wal::finish_rollback`].
    ///
    /// `None` when no failed sync awaits its rollback: another thread (a flush, or
    /// the writer of a later failed sync) ran it already. Nothing may be taken then,
    /// as a new sync may be writing the records that are not durable yet.
    pub fn take_unsynced(&self) -> Option<(Vec<(Undo, u64)>, Error)> {
        let mut st = self.state.lock();
        let error = st.failing.clone()?;
        // A failed sync blocks new ones until its rollback ends: none is running.
        debug_assert!(!st.syncing, "a rollback while a WAL sync runs");
        let synced = st.synced_lsn;
        let mut taken: Vec<Pending> = Vec::new();
        while st.pending.back().is_some_and(|p| p.lsn > synced) {
            if let Some(p) = st.pending.pop_back() {
                taken.push(p);
            }
        }
        // Their records, buffered or written, go.
        st.buffer.clear();
        if let Some(first) = taken.last() {
            st.segment_len = first.offset;
            st.cut_to = Some(first.offset);
            let _ = Self::cut(&mut st);
        }
        Some((taken.into_iter().map(|p| (p.undo, p.seq)).collect(), error))
    }

    /// After a failed sync under `WalSync::Every`: the writes were acknowledged, so
    /// they are kept (in memory, and still pending in the log) and the next sync
    /// retries.
    pub fn keep_unsynced(&self) {
        let mut st = self.state.lock();
        st.failing = None;
        self.wake_all();
    }

    /// Cuts the segment back to `cut_to`, if a cut is owed.
    fn cut(st: &mut State) -> Result<()> {
        if let Some(len) = st.cut_to {
            st.segment.truncate(len).map_err(|e| Error::io("truncate WAL segment", &st.segment_path, e))?;
            st.cut_to = None;
        }
        Ok(())
    }

    /// Ends a rollback: the rolled-back sequence numbers fail with `error`.
    pub fn finish_rollback(&self, error: Error) {
        let mut st = self.state.lock();
        let (from, to) = (st.synced_lsn + 1, st.last_lsn);
        if from <= to {
            st.rolled_back.push((from, to, error));
            self.rolled_any.store(true, Ordering::Release);
        }
        // The rolled-back records are gone from the file; what remains is durable.
        st.synced_lsn = st.last_lsn;
        st.failing = None;
        self.wake_all();
    }

    /// Starts a new segment if the current one holds records, after syncing it.
    /// Called by a flush with the writer lock held; the flush's snapshot then holds
    /// exactly the commits of the rotated segments. On a failed write or sync (its
    /// own, or a group's whose rollback is pending) the caller must roll back (see
    /// [`Wal::take_unsynced`]).
    pub fn rotate(&self) -> Result<()> {
        let mut st = self.state.lock();
        Self::cut(&mut st)?;
        if st.segment_len == 0 {
            return Ok(());
        }
        while st.syncing {
            self.wait(st);
            st = self.state.lock();
        }
        if st.synced_lsn < st.last_lsn {
            if let (WalSync::Always, Some(e)) = (self.policy, &st.failing) {
                // A failed group write may have left part of a record in the
                // segment, and its records are not durable: the caller rolls back.
                return Err(e.clone());
            }
            let target = st.last_lsn;
            let started = std::time::Instant::now();
            let records = std::mem::take(&mut st.buffer);
            if let Err(e) = write_and_sync(st.segment.as_ref(), &records, &st.segment_path) {
                st.failing = Some(e.clone());
                return Err(e);
            }
            st.stats.record_sync(started.elapsed());
            st.synced_lsn = target;
            self.durable.fetch_max(target, Ordering::Release);
            st.pending.clear();
            self.wake_all();
        }
        let path = self.dir.join(segment_name(st.last_lsn + 1));
        let segment = new_segment(self.fs.as_ref(), &self.dir, &path)?;
        let old = std::mem::replace(&mut st.segment_path, path);
        st.old_segments.push(old);
        st.old_bytes += st.segment_len;
        st.segment = segment;
        st.segment_len = 0;
        Ok(())
    }

    /// The WAL's counters.
    pub fn stats(&self) -> crate::stats::WalStats {
        let st = self.state.lock();
        crate::stats::WalStats { bytes: st.old_bytes + st.segment_len, ..st.stats }
    }

    /// The rotated segments a checkpoint may delete once the flush is durable.
    pub fn rotated(&self) -> Vec<PathBuf> {
        self.state.lock().old_segments.clone()
    }

    /// Deletes segments covered by a durable flush.
    pub fn checkpoint(&self, segments: &[PathBuf]) -> Result<()> {
        if segments.is_empty() {
            return Ok(());
        }
        let _span = tracing::debug_span!("checkpoint", segments = segments.len()).entered();
        let current = self.state.lock().segment_path.clone();
        // The live segment is never deleted, whatever the list says.
        for path in segments.iter().filter(|p| **p != current) {
            match self.fs.remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("remove WAL segment", path, e)),
            }
        }
        self.fs.sync_dir(&self.dir).map_err(|e| Error::io("sync directory", &self.dir, e))?;
        let mut st = self.state.lock();
        st.old_segments.retain(|p| !segments.contains(p));
        if st.old_segments.is_empty() {
            st.old_bytes = 0;
        }
        tracing::debug!(segments = segments.len(), "checkpointed the WAL");
        Ok(())
    }
}

/// Writes buffered `records` (if any) to the end of `segment`, then syncs it.
fn write_and_sync(segment: &dyn VfsAppend, records: &[u8], path: &Path) -> Result<()> {
    if !records.is_empty() {
        segment.append(records).map_err(|e| Error::io("append to WAL segment", path, e))?;
    }
    segment.sync_data().map_err(|e| Error::io("sync WAL segment", path, e))
}

/// Creates (or reopens) a segment and makes its directory entry durable.
fn new_segment(fs: &dyn Vfs, dir: &Path, path: &Path) -> Result<Arc<dyn VfsAppend>> {
    let file = fs.open_append(path).map_err(|e| Error::io("create WAL segment", path, e))?;
    fs.sync_dir(dir).map_err(|e| Error::io("sync directory", dir, e))?;
    Ok(Arc::from(file))
}
