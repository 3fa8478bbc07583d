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

pub(crate) mod record;
pub(crate) mod replay;

use std::any::Any;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

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
    /// `fdatasync`.
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
    segment_len: u64,
    /// Rotated segments, deleted by the next successful checkpoint.
    old_segments: Vec<PathBuf>,
    last_lsn: u64,
    synced_lsn: u64,
    syncing: bool,
    /// A sync failed and its rollback has not finished yet.
    failing: bool,
    pending: VecDeque<Pending>,
    /// Sequence numbers that were rolled back, with the error that caused it.
    rolled_back: Vec<(u64, u64, Error)>,
    /// The segment must be cut back to this length before anything else is
    /// appended (a failed append or rollback could not cut it yet).
    cut_to: Option<u64>,
    /// Bytes in rotated segments not yet checkpointed.
    old_bytes: u64,
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
    changed: Condvar,
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
                old_segments,
                last_lsn,
                synced_lsn: last_lsn,
                syncing: false,
                failing: false,
                pending: VecDeque::new(),
                rolled_back: Vec::new(),
                cut_to: None,
                old_bytes: 0,
                stats: crate::stats::WalStats::default(),
            }),
            changed: Condvar::new(),
        })
    }

    /// Appends one commit and returns its sequence number. Called with the writer
    /// lock held, after the commit was applied to memory; the caller then hands over
    /// the commit's undo with [`Wal::attach_undo`], still under the writer lock. On
    /// error nothing was logged.
    ///
    /// The writer lock also orders this against a rollback (which takes it), so a
    /// record always has its undo before a rollback can look for it.
    pub fn append(&self, payload: &[u8]) -> Result<u64> {
        let mut st = self.state.lock();
        Self::cut(&mut st)?;
        let lsn = st.last_lsn + 1;
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
        let offset = st.segment_len;
        st.segment_len += buf.len() as u64;
        st.stats.records += 1;
        st.last_lsn = lsn;
        st.pending.push_back(Pending { lsn, offset, undo: Vec::new(), seq: 0 });
        Ok(lsn)
    }

    /// Gives a pending record its undo and commit sequence number (the commit is
    /// complete once its events are out). Called with the writer lock held.
    pub fn attach_undo(&self, lsn: u64, undo: Undo, seq: u64) {
        let mut st = self.state.lock();
        if let Some(pending) = st.pending.iter_mut().find(|p| p.lsn == lsn) {
            pending.undo = undo;
            pending.seq = seq;
        }
    }

    /// The sequence number of the last appended record.
    pub fn last_lsn(&self) -> u64 {
        self.state.lock().last_lsn
    }

    /// Waits until `lsn` is durable, syncing as the group's leader when no sync is
    /// running. See [`SyncStep`].
    pub fn sync_to(&self, lsn: u64) -> SyncStep {
        let mut st = self.state.lock();
        loop {
            if let Some((_, _, e)) = st.rolled_back.iter().find(|(from, to, _)| (*from..=*to).contains(&lsn)) {
                return SyncStep::Failed(e.clone());
            }
            if st.synced_lsn >= lsn {
                return SyncStep::Durable;
            }
            if st.syncing || st.failing {
                self.changed.wait(&mut st);
                continue;
            }
            st.syncing = true;
            let target = st.last_lsn;
            let segment = Arc::clone(&st.segment);
            let path = st.segment_path.clone();
            drop(st);
            let started = std::time::Instant::now();
            let outcome = segment.sync_data();
            st = self.state.lock();
            st.syncing = false;
            st.stats.syncs += 1;
            st.stats.last_sync = Some(started.elapsed());
            match outcome {
                Ok(()) => {
                    st.synced_lsn = st.synced_lsn.max(target);
                    while st.pending.front().is_some_and(|p| p.lsn <= target) {
                        st.pending.pop_front();
                    }
                    self.changed.notify_all();
                }
                Err(e) => {
                    st.failing = true;
                    self.changed.notify_all();
                    return SyncStep::RollBack(Error::io("sync WAL segment", path, e));
                }
            }
        }
    }

    /// Takes every commit that is not durable, newest first, and cuts its records
    /// from the segment. Call with the writer lock held, undo the returned commits,
    /// then call [`Wal::finish_rollback`].
    pub fn take_unsynced(&self) -> Vec<(Undo, u64)> {
        let mut st = self.state.lock();
        let synced = st.synced_lsn;
        let mut taken: Vec<Pending> = Vec::new();
        while st.pending.back().is_some_and(|p| p.lsn > synced) {
            if let Some(p) = st.pending.pop_back() {
                taken.push(p);
            }
        }
        if let Some(first) = taken.last() {
            st.segment_len = first.offset;
            st.cut_to = Some(first.offset);
            let _ = Self::cut(&mut st);
        }
        taken.into_iter().map(|p| (p.undo, p.seq)).collect()
    }

    /// After a failed sync under `WalSync::Every`: the writes were acknowledged, so
    /// they are kept (in memory, and still pending in the log) and the next sync
    /// retries.
    pub fn keep_unsynced(&self) {
        let mut st = self.state.lock();
        st.failing = false;
        self.changed.notify_all();
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
        }
        // The rolled-back records are gone from the file; what remains is durable.
        st.synced_lsn = st.last_lsn;
        st.failing = false;
        self.changed.notify_all();
    }

    /// Starts a new segment if the current one holds records, after syncing it.
    /// Called by a flush with the writer lock held; the flush's snapshot then holds
    /// exactly the commits of the rotated segments. On a sync failure the caller
    /// must roll back (see [`Wal::take_unsynced`]).
    pub fn rotate(&self) -> Result<()> {
        let mut st = self.state.lock();
        Self::cut(&mut st)?;
        if st.segment_len == 0 {
            return Ok(());
        }
        if st.synced_lsn < st.last_lsn {
            while st.syncing {
                self.changed.wait(&mut st);
            }
            let target = st.last_lsn;
            let started = std::time::Instant::now();
            st.segment.sync_data().map_err(|e| Error::io("sync WAL segment", &st.segment_path, e))?;
            st.stats.syncs += 1;
            st.stats.last_sync = Some(started.elapsed());
            st.synced_lsn = target;
            st.pending.clear();
            self.changed.notify_all();
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

/// Creates (or reopens) a segment and makes its directory entry durable.
fn new_segment(fs: &dyn Vfs, dir: &Path, path: &Path) -> Result<Arc<dyn VfsAppend>> {
    let file = fs.open_append(path).map_err(|e| Error::io("create WAL segment", path, e))?;
    fs.sync_dir(dir).map_err(|e| Error::io("sync directory", dir, e))?;
    Ok(Arc::from(file))
}
