//! The write-ahead log: commits of `wal` collections are appended here and made
//! durable before they are acknowledged, with one `fdatasync` shared by every
//! commit waiting at that moment (group commit).
//!
//! Segments live in `<dir>/wal/<lsn>.wal`, where `<lsn>` is a lower bound of the
//! sequence numbers inside: no record in a segment is older than its name, and every
//! record in a later segment is newer than every record in an earlier one.
//! Recovery replays whatever segments remain, in sequence order, into memory;
//! replay sets records to logged values, so replaying twice gives the same state.
//!
//! # Rotation and checkpoint, without the writer lock
//!
//! A flush snapshots the collections at a cut `X` (the last appended sequence
//! number, read under the writer lock), makes the WAL durable up to `X`, writes the
//! record files, and then deletes the segments whose records are all `<= X` (the
//! *checkpoint*). To let the live segment be deleted by a later checkpoint, the
//! flusher *prepares a rotation*: it creates the next segment file (named with the
//! next sequence number at that moment) and syncs its directory, holding no lock.
//! The switch itself is a memory operation: under `WalSync::Every` at once, under
//! `WalSync::Always` in the sync that has written every record before the new
//! segment's name. No writer ever waits for a file to be created.
//!
//! # Group commit
//!
//! A thread that becomes the sync leader first waits, for at most the duration of
//! the last sync, until as many commits wait as the last sync covered and every
//! writer announced by [`Wal::incoming`] has appended (or given up), so one
//! `fdatasync` covers them all. A lone writer never waits. The writer whose arrival
//! completes the group runs the sync itself instead of waking the leader; the
//! leader then waits as a follower.
//!
//! Under `WalSync::Always` a commit's record is not written when it is appended: it
//! goes to an in-memory buffer, and the sync that covers it writes the whole group
//! with one call, then runs `fdatasync`. The writer lock is held for a memory copy,
//! not a system call. Under `WalSync::Every` writers return before any sync, so each
//! record is written to the segment at once, where a crash of the process alone
//! cannot lose it.
//!
//! # A failed write or sync poisons the log
//!
//! After a failed `fsync` the kernel may have dropped the dirty pages, and a later
//! `fsync` that succeeds says nothing about them ("fsyncgate"). So nothing is
//! retried and nothing is undone: the first failed write or sync poisons the log.
//! Every commit it did not make durable fails for its caller, every later append
//! and sync fails with the same error, and the store above refuses writes with
//! [`Error::Poisoned`]. Close and open recovers exactly what is durable.

pub(crate) mod record;
pub(crate) mod replay;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::error::{Error, Result};
use crate::fs::{create_dir_durable, Vfs, VfsAppend};

/// The directory of WAL segments, inside the data directory.
pub const WAL_DIR: &str = "wal";
/// The extension of a WAL segment file.
pub(crate) const SEGMENT_EXT: &str = ".wal";

/// The file name of a segment whose records all have sequence numbers `>= lsn`.
pub(crate) fn segment_name(lsn: u64) -> String {
    format!("{lsn:020}{SEGMENT_EXT}")
}

/// The sequence number a segment's file name gives, if it is a segment name.
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

/// The next segment, created by [`Wal::prepare_rotation`] and not switched to yet.
struct NextSegment {
    file: Arc<dyn VfsAppend>,
    path: PathBuf,
    /// Its name's sequence number: every record it will hold is at least this.
    first: u64,
}

struct State {
    segment: Arc<dyn VfsAppend>,
    segment_path: PathBuf,
    /// Records appended to the live segment (written or buffered).
    segment_records: u64,
    /// Bytes appended to the live segment (written or buffered).
    segment_len: u64,
    /// Records appended under `WalSync::Always` and not yet written to the segment:
    /// the next sync writes them all with one call, then syncs (see [`Wal::append`]).
    buffer: Vec<u8>,
    /// Segments that are no longer live and written to, with the last sequence
    /// number each holds; a checkpoint that covers it deletes it.
    old_segments: Vec<(PathBuf, u64)>,
    /// Old segments (under `WalSync::Every`) whose records are written but not
    /// synced yet: the next sync syncs them before the live one.
    unsynced_old: Vec<(Arc<dyn VfsAppend>, PathBuf)>,
    next: Option<NextSegment>,
    last_lsn: u64,
    synced_lsn: u64,
    syncing: bool,
    /// The first failed write or sync. Nothing is written or synced after it.
    poisoned: Option<Error>,
    /// Bytes in old segments not yet checkpointed.
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

impl State {
    /// Fails with the poisoning error, if there is one.
    fn check(&self) -> Result<()> {
        match &self.poisoned {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Records the first failure; later ones are consequences.
    fn poison(&mut self, error: &Error) {
        if self.poisoned.is_none() {
            tracing::error!(%error, "WAL write or sync failed; the store is poisoned");
            self.poisoned = Some(error.clone());
        }
    }

    /// Switches to the prepared next segment if every record older than its name is
    /// written to the live one (`written` is the last such sequence number).
    fn switch_if_ready(&mut self, written: u64) {
        let ready = self.next.as_ref().is_some_and(|next| next.first <= written + 1);
        if !ready || self.segment_records == 0 {
            return;
        }
        let Some(next) = self.next.take() else { return };
        let old = std::mem::replace(&mut self.segment, next.file);
        let old_path = std::mem::replace(&mut self.segment_path, next.path);
        if self.synced_lsn < written {
            self.unsynced_old.push((old, old_path.clone()));
        }
        self.old_segments.push((old_path, written));
        self.old_bytes += self.segment_len - self.buffer.len() as u64;
        self.segment_len = self.buffer.len() as u64;
        self.segment_records = self.last_lsn - written;
    }
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
    /// Signalled when the last announced writer has appended or given up.
    arrived: Condvar,
    /// Futures waiting for a sequence number to be durable (see
    /// [`Wal::register_waker`]); woken by the sync that covers them, or fails.
    /// `true` once a failed sync woke them all: later ones are not registered.
    wakers: std::sync::Mutex<(Vec<(u64, std::task::Waker)>, bool)>,
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
    /// replayed into memory, all of whose records are `<= last_lsn`) are kept until
    /// a checkpoint covers `last_lsn`; new records go to a new segment.
    pub fn open(fs: Arc<dyn Vfs>, dir: &Path, policy: WalSync, existing: Vec<PathBuf>, last_lsn: u64) -> Result<Self> {
        let dir = dir.join(WAL_DIR);
        create_dir_durable(fs.as_ref(), &dir).map_err(|e| Error::io("create directory", &dir, e))?;
        let path = dir.join(segment_name(last_lsn + 1));
        let old_segments = existing.into_iter().filter(|p| *p != path).map(|p| (p, last_lsn)).collect();
        let segment = new_segment(fs.as_ref(), &dir, &path)?;
        let segment_len = fs.read(&path).map(|b| b.len() as u64).unwrap_or(0);
        Ok(Wal {
            dir,
            fs,
            policy,
            state: Mutex::new(State {
                segment,
                segment_path: path,
                segment_records: 0,
                segment_len,
                buffer: Vec::new(),
                old_segments,
                unsynced_old: Vec::new(),
                next: None,
                last_lsn,
                synced_lsn: last_lsn,
                syncing: false,
                poisoned: None,
                old_bytes: 0,
                last_group: 1,
                leader_waiting: None,
                lead_token: 0,
                stats: crate::stats::WalStats::default(),
            }),
            incoming: AtomicUsize::new(0),
            bell: (std::sync::Mutex::new(0), std::sync::Condvar::new()),
            durable: AtomicU64::new(last_lsn),
            arrived: Condvar::new(),
            wakers: std::sync::Mutex::new((Vec::new(), false)),
        })
    }

    /// Appends one commit and returns its sequence number. Called with the writer
    /// lock held, after the commit was applied to memory. On error nothing was
    /// acknowledged, and the log is poisoned if the error came from the file.
    ///
    /// Under `WalSync::Always` the record goes to an in-memory buffer: its writer
    /// waits for the next sync anyway, and that sync writes the whole group's records
    /// with one call before its `fdatasync`. Under `WalSync::Every` the commit is
    /// acknowledged before any sync, so the record is written to the segment here.
    pub fn append(&self, payload: &[u8]) -> Result<u64> {
        let mut st = self.state.lock();
        st.check()?;
        let lsn = st.last_lsn + 1;
        let len = if self.policy == WalSync::Always {
            let before = st.buffer.len();
            record::encode(lsn, payload, &mut st.buffer);
            st.buffer.len() - before
        } else {
            let mut buf = Vec::with_capacity(record::HEADER_LEN + payload.len());
            record::encode(lsn, payload, &mut buf);
            if let Err(e) = st.segment.append(&buf) {
                // A short write may have left part of the record: the file is not
                // touched again (recovery drops a torn tail).
                let error = Error::io("append to WAL segment", &st.segment_path, e);
                st.poison(&error);
                drop(st);
                self.wake_all();
                return Err(error);
            }
            buf.len()
        };
        st.segment_len += len as u64;
        st.segment_records += 1;
        st.stats.records += 1;
        st.last_lsn = lsn;
        Ok(lsn)
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

    /// The highest sequence number known durable.
    pub fn durable_lsn(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    /// The error that poisoned the log, if one did.
    pub fn poisoned(&self) -> Option<Error> {
        self.state.lock().poisoned.clone()
    }

    /// Waits until `lsn` is durable, syncing as the group's leader when no sync is
    /// running. `arrival` is the committing writer's announcement, if any; it ends
    /// here. Fails when the log is poisoned before `lsn` became durable.
    pub fn sync_to(&self, lsn: u64, arrival: Option<Incoming<'_>>) -> Result<()> {
        let mut st = self.state.lock();
        let announced = arrival.is_some();
        if let Some(arrival) = arrival {
            arrival.arrive();
        }
        // A leader may wait for this writer: tell it when the writer leaves at once.
        let leave = |st: &State, outcome: Result<()>| {
            if announced && st.leader_waiting.is_some() {
                self.arrived.notify_all();
            }
            outcome
        };
        // Whether a leader waiting for a group of `expected` should wait on.
        let waiting = |st: &State, expected: u64| {
            self.incoming.load(Ordering::Acquire) > 0 || st.last_lsn - st.synced_lsn < expected
        };
        // Whether this thread took the sync over from a leader still asleep.
        let mut took_over = false;
        loop {
            if st.synced_lsn >= lsn && st.unsynced_old.is_empty() {
                return leave(&st, Ok(()));
            }
            if let Err(e) = st.check() {
                return leave(&st, Err(e));
            }
            if st.syncing {
                // This writer completes the group a leader waits for: it syncs now,
                // rather than waking the leader to do it. The leader waits as a
                // follower once it wakes.
                let complete = st.leader_waiting.is_some_and(|(_, expected)| !waiting(&st, expected));
                if complete {
                    // The superseded leader is not woken now, which would delay this
                    // sync: it finds out when the sync ends (or at its deadline).
                    st.leader_waiting = None;
                    took_over = true;
                } else {
                    self.wait(st);
                    // Woken by a successful sync: most waiters are done without the lock.
                    if self.durable.load(Ordering::Acquire) >= lsn {
                        return Ok(());
                    }
                    st = self.state.lock();
                    continue;
                }
            } else {
                st.syncing = true;
                // Group commit: writers on their way, and as many as came last time,
                // share this sync. Only writers that wait for the sync (`Always`)
                // form groups; the background syncer of `Every` syncs what there is.
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
            let outcome = self.sync_locked(st);
            st = self.state.lock();
            if took_over {
                self.arrived.notify_all();
            }
            return leave(&st, outcome);
        }
    }

    /// Runs one sync with `syncing` set by the caller: writes the buffered records,
    /// syncs the old segments still unsynced and the live one, then records the
    /// outcome, switches segments if a rotation waits, and wakes the waiters.
    fn sync_locked(&self, mut st: MutexGuard<'_, State>) -> Result<()> {
        let target = st.last_lsn;
        let segment = Arc::clone(&st.segment);
        let path = st.segment_path.clone();
        let old = std::mem::take(&mut st.unsynced_old);
        let mut records = std::mem::take(&mut st.buffer);
        drop(st);
        let started = std::time::Instant::now();
        let mut outcome = Ok(());
        for (file, old_path) in &old {
            outcome = file.sync_data().map_err(|e| Error::io("sync WAL segment", old_path, e));
            if outcome.is_err() {
                break;
            }
        }
        if outcome.is_ok() {
            outcome = write_and_sync(segment.as_ref(), &records, &path);
        }
        let mut st = self.state.lock();
        st.syncing = false;
        st.stats.record_sync(started.elapsed());
        match &outcome {
            Ok(()) => {
                if st.buffer.is_empty() {
                    // Keep the allocation for the next group.
                    records.clear();
                    st.buffer = records;
                }
                st.last_group = target.saturating_sub(st.synced_lsn).max(1);
                st.synced_lsn = st.synced_lsn.max(target);
                self.durable.fetch_max(target, Ordering::Release);
                if self.policy == WalSync::Always {
                    st.switch_if_ready(target);
                }
            }
            Err(e) => st.poison(e),
        }
        // Woken after the state is unlocked: the woken writers' next appends need it.
        drop(st);
        self.wake_all();
        self.wake_futures(outcome.is_err());
        outcome
    }

    /// Registers a future waiting until `lsn` is durable: the sync that makes it
    /// durable (or fails, poisoning the log) wakes it. Returns `false`, registering
    /// nothing, when `lsn` is durable already or the log is poisoned: the caller
    /// looks again instead of waiting. Registering does not start a sync.
    pub fn register_waker(&self, lsn: u64, waker: &std::task::Waker) -> bool {
        let mut wakers = self.wakers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Checked under the waker list's lock: a sync that ends after this check
        // wakes from the list after `durable` moved (or the failure was noted),
        // so it sees this entry. The state lock is not taken.
        if self.durable_lsn() >= lsn || wakers.1 {
            return false;
        }
        if !wakers.0.iter().any(|(l, w)| *l == lsn && w.will_wake(waker)) {
            wakers.0.push((lsn, waker.clone()));
        }
        true
    }

    /// Wakes the registered futures that the last sync covered (every one, when it
    /// failed).
    fn wake_futures(&self, failed: bool) {
        let durable = self.durable_lsn();
        let ready: Vec<std::task::Waker> = {
            let mut wakers = self.wakers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            wakers.1 |= failed;
            if wakers.0.is_empty() {
                return;
            }
            let (ready, waiting) =
                std::mem::take(&mut wakers.0).into_iter().partition(|(l, _)| failed || *l <= durable);
            wakers.0 = waiting;
            ready.into_iter().map(|(_, w)| w).collect()
        };
        for waker in ready {
            waker.wake();
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

    /// Prepares the next segment, so that a later checkpoint can delete the live
    /// one: creates its file and makes its directory entry durable, holding no lock,
    /// then switches to it as soon as every older record is written (at once when
    /// the log is idle). Does nothing when the live segment is empty or a rotation
    /// is already prepared. Called by the flusher, never under the writer lock.
    pub fn prepare_rotation(&self) -> Result<()> {
        let first = {
            let st = self.state.lock();
            st.check()?;
            if st.next.is_some() || st.segment_records == 0 {
                return Ok(());
            }
            st.last_lsn + 1
        };
        let path = self.dir.join(segment_name(first));
        // Nothing is in the new file yet: a failure here loses nothing, and the next
        // flush tries again.
        let file = new_segment(self.fs.as_ref(), &self.dir, &path)?;
        let mut st = self.state.lock();
        st.next = Some(NextSegment { file, path, first });
        // Idle (`Always`: nothing buffered; `Every`: every record is written).
        let written = if st.syncing { st.synced_lsn.min(st.last_lsn) } else { st.last_lsn };
        if st.buffer.is_empty() && !st.syncing || self.policy != WalSync::Always {
            st.switch_if_ready(written);
        }
        Ok(())
    }

    /// The WAL's counters.
    pub fn stats(&self) -> crate::stats::WalStats {
        let st = self.state.lock();
        crate::stats::WalStats { bytes: st.old_bytes + st.segment_len, ..st.stats }
    }

    /// Deletes the old segments whose records are all `<= upto`: a flush made the
    /// state at `upto` durable in the record files.
    pub fn checkpoint(&self, upto: u64) -> Result<()> {
        let covered: Vec<PathBuf> = {
            let st = self.state.lock();
            st.check()?;
            st.old_segments.iter().filter(|(_, last)| *last <= upto).map(|(p, _)| p.clone()).collect()
        };
        if covered.is_empty() {
            return Ok(());
        }
        let _span = tracing::debug_span!("checkpoint", segments = covered.len()).entered();
        for path in &covered {
            match self.fs.remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("remove WAL segment", path, e)),
            }
        }
        self.fs.sync_dir(&self.dir).map_err(|e| Error::io("sync directory", &self.dir, e))?;
        let mut st = self.state.lock();
        st.old_segments.retain(|(p, _)| !covered.contains(p));
        if st.old_segments.is_empty() {
            st.old_bytes = 0;
        }
        tracing::debug!(segments = covered.len(), "checkpointed the WAL");
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

#[cfg(test)]
mod tests {
    //! The segment switch, driven step by step. A sync in flight is simulated by
    //! setting `syncing` and then calling `switch_if_ready` with the target that
    //! sync covered, as `sync_locked` does when it finishes.
    use super::*;
    use crate::fs::CrashFs;

    fn open(fs: &Arc<CrashFs>, policy: WalSync) -> Wal {
        let fs: Arc<dyn Vfs> = Arc::new(Arc::clone(fs));
        Wal::open(fs, Path::new("/data"), policy, Vec::new(), 0).unwrap()
    }

    fn wal_dir() -> PathBuf {
        Path::new("/data").join(WAL_DIR)
    }

    /// The records a reopen would replay (with no repair: out-of-order is an error).
    fn replayed(fs: &Arc<CrashFs>) -> Result<Vec<u64>> {
        Ok(replay::recover(fs, &wal_dir(), false)?.records.into_iter().map(|(lsn, _)| lsn).collect())
    }

    fn segments(fs: &Arc<CrashFs>) -> Vec<PathBuf> {
        replay::list_segments(fs, &wal_dir()).unwrap().into_iter().map(|(_, p)| p).collect()
    }

    #[test]
    fn the_switch_waits_until_every_record_older_than_the_next_segment_is_written() {
        let fs = CrashFs::new();
        let wal = open(&fs, WalSync::Always);
        wal.append(b"one").unwrap();
        wal.sync_to(1, None).unwrap();
        // Record 2 is buffered (its writer waits for the next sync) when the flusher
        // prepares the next segment, named 3: no switch yet.
        wal.append(b"two").unwrap();
        wal.prepare_rotation().unwrap();
        let live = wal.state.lock().segment_path.clone();
        // A sync that covered record 1 only finishes: record 2 is not written yet,
        // so it must still go to the live segment, not to segment 3.
        wal.state.lock().switch_if_ready(1);
        assert_eq!(wal.state.lock().segment_path, live, "switched before record 2 was written");
        wal.sync_to(2, None).unwrap();
        assert_eq!(wal.state.lock().segment_path, wal_dir().join(segment_name(3)), "switched once it was");
        assert_eq!(replayed(&fs).unwrap(), [1, 2]);
    }

    #[test]
    fn a_switch_under_every_leaves_the_old_segment_for_the_next_sync() {
        let fs = CrashFs::new();
        let wal = open(&fs, WalSync::Every(Duration::from_secs(3600)));
        wal.append(b"one").unwrap(); // written, not synced
        wal.prepare_rotation().unwrap(); // switches at once: every record is written
        assert_eq!(wal.state.lock().segment_path, wal_dir().join(segment_name(2)));
        wal.sync_to(1, None).unwrap();
        drop(wal);
        fs.crash();
        assert_eq!(replayed(&fs).unwrap(), [1], "the sync covering record 1 synced its old segment");
    }

    #[test]
    fn the_logs_size_counts_what_each_segment_holds() {
        let fs = CrashFs::new();
        let wal = open(&fs, WalSync::Always);
        let on_disk =
            |fs: &Arc<CrashFs>| -> u64 { segments(fs).iter().map(|p| fs.read(p).unwrap().len() as u64).sum() };
        wal.append(b"one").unwrap();
        wal.append(b"one more, buffered behind it").unwrap();
        wal.sync_to(2, None).unwrap();
        assert_eq!(wal.stats().bytes, on_disk(&fs), "each buffered record counted once");
        // The flusher prepares the next segment while a sync is in flight, and a
        // writer appends record 3 (buffered) before that sync finishes.
        wal.state.lock().syncing = true;
        wal.prepare_rotation().unwrap();
        wal.append(b"three, longer").unwrap();
        {
            let mut st = wal.state.lock();
            st.syncing = false;
            st.switch_if_ready(2);
        }
        assert_eq!(wal.state.lock().segment_path, wal_dir().join(segment_name(3)));
        wal.sync_to(3, None).unwrap();
        assert_eq!(replayed(&fs).unwrap(), [1, 2, 3]);
        assert_eq!(wal.stats().bytes, on_disk(&fs), "old segment plus live one");
        wal.checkpoint(2).unwrap();
        assert_eq!(segments(&fs), [wal_dir().join(segment_name(3))]);
        assert_eq!(wal.stats().bytes, on_disk(&fs), "the live segment only");
    }

    #[test]
    fn a_reopened_log_names_its_new_segment_for_the_next_record() {
        let fs = CrashFs::new();
        let dyn_fs: Arc<dyn Vfs> = Arc::new(Arc::clone(&fs));
        let wal = Wal::open(Arc::clone(&dyn_fs), Path::new("/data"), WalSync::Always, Vec::new(), 41).unwrap();
        assert_eq!(wal.state.lock().segment_path, wal_dir().join(segment_name(42)));
        assert_eq!(wal.append(b"next").unwrap(), 42);
        wal.sync_to(42, None).unwrap();
        assert_eq!(replayed(&fs).unwrap(), [42]);
    }

    #[test]
    fn a_checkpoint_deletes_the_segments_it_covers_and_keeps_the_others_for_later() {
        let fs = CrashFs::new();
        let wal = open(&fs, WalSync::Always);
        rotated_twice_at(&wal, &wal_dir());
        wal.checkpoint(1).unwrap();
        assert_eq!(segments(&fs), [wal_dir().join(segment_name(2)), wal_dir().join(segment_name(3))]);
        wal.checkpoint(2).unwrap();
        assert_eq!(segments(&fs), [wal_dir().join(segment_name(3))], "the second one, remembered");
    }

    #[test]
    fn a_segment_a_checkpoint_cannot_delete_fails_it_and_is_deleted_later() {
        let dir = tempfile::tempdir().unwrap();
        let fs = crate::fs::FaultFs::new();
        let dyn_fs: Arc<dyn Vfs> = Arc::new(Arc::clone(&fs));
        let wal = Wal::open(dyn_fs, dir.path(), WalSync::Always, Vec::new(), 0).unwrap();
        rotated_twice_at(&wal, &dir.path().join(WAL_DIR));
        // The next mutating operation is the removal of segment 1: it fails. A
        // segment left behind would be replayed over newer files at the next open.
        fs.fail_at(0, crate::fs::FaultKind::Eio);
        let err = wal.checkpoint(2).unwrap_err();
        assert!(err.to_string().contains(&segment_name(1)), "{err}");
        assert!(dir.path().join(WAL_DIR).join(segment_name(1)).exists());
        wal.checkpoint(2).unwrap();
        let left: Vec<String> = std::fs::read_dir(dir.path().join(WAL_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, [segment_name(3)]);
    }

    /// Two old segments (records 1 and 2), and the live one, 3, in `wal_dir`.
    fn rotated_twice_at(wal: &Wal, wal_dir: &Path) {
        for (lsn, payload) in [(1, b"one"), (2, b"two")] {
            wal.append(payload).unwrap();
            wal.sync_to(lsn, None).unwrap();
            wal.prepare_rotation().unwrap();
        }
        assert_eq!(wal.state.lock().segment_path, wal_dir.join(segment_name(3)));
    }

    /// A waker that counts its wakes.
    struct Counter(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counter() -> (Arc<Counter>, std::task::Waker) {
        let count = Arc::new(Counter(std::sync::atomic::AtomicUsize::new(0)));
        (Arc::clone(&count), std::task::Waker::from(count))
    }

    fn wakes(count: &Counter) -> usize {
        count.0.load(Ordering::SeqCst)
    }

    #[test]
    fn every_registered_waker_is_woken_by_the_sync_that_covers_its_record() {
        let fs = CrashFs::new();
        let wal = open(&fs, WalSync::Always);
        wal.append(b"one").unwrap();
        // One future polled by two tasks in turn (the last waker must be woken),
        // and one task waiting on two records, the second not yet appended.
        let ((first, a), (second, b), (both, c)) = (counter(), counter(), counter());
        assert!(wal.register_waker(1, &a));
        assert!(wal.register_waker(1, &b));
        assert!(wal.register_waker(1, &c));
        assert!(wal.register_waker(2, &c));
        assert!(wal.register_waker(2, &c), "registering twice is harmless");
        wal.sync_to(1, None).unwrap();
        assert_eq!((wakes(&first), wakes(&second), wakes(&both)), (1, 1, 1));
        wal.append(b"two").unwrap();
        wal.sync_to(2, None).unwrap();
        assert_eq!(wakes(&both), 2, "woken again for record 2");
        assert!(!wal.register_waker(2, &c), "durable already: nothing to wait for");
    }

    #[test]
    fn an_idle_log_is_not_rotated_again() {
        let fs = CrashFs::new();
        let wal = open(&fs, WalSync::Always);
        wal.append(b"one").unwrap();
        wal.sync_to(1, None).unwrap();
        wal.prepare_rotation().unwrap(); // idle: switches to segment 2 at once
        wal.checkpoint(1).unwrap();
        let before = segments(&fs);
        assert_eq!(before, [wal_dir().join(segment_name(2))]);
        // Nothing appended since: the live segment is empty, and stays the log.
        wal.prepare_rotation().unwrap();
        wal.checkpoint(1).unwrap();
        assert_eq!(segments(&fs), before);
        assert_eq!(wal.state.lock().segment_records, 0);
    }
}
