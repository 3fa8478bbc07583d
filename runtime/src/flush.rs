//! The flush: making dirty records durable, by the background flusher or on demand.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::{Condvar, Mutex};

use crate::backend::Staged;
use crate::error::{Error, Result};
use crate::meta::Meta;
use crate::store::Inner;

/// Whether the store keeps up with writing its data to disk. See [`Store::health`](crate::Store::health).
#[derive(Clone, Debug, Default)]
pub struct Health {
    /// When the last successful flush finished.
    pub last_flush: Option<SystemTime>,
    /// The error of the last flush, if it failed; cleared by the next success.
    pub last_error: Option<Error>,
    /// Flushes that failed in a row. Their data stays dirty and is retried.
    pub consecutive_failures: u32,
    /// Successful flushes since open.
    pub flushes: u64,
    /// Records changed but not yet durable, over all collections.
    pub dirty: usize,
}

impl Health {
    /// `true` when the last flush succeeded (or none has failed yet).
    pub fn is_ok(&self) -> bool {
        self.last_error.is_none()
    }
}

/// What one flush wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlushStats {
    /// Files written or removed: record files, collection files and index files.
    pub records: usize,
    /// Bytes of file content written.
    pub bytes: u64,
    /// How long the flush took.
    pub duration: Duration,
}

/// Flush bookkeeping shared by the flusher thread and explicit flushes.
#[derive(Default)]
pub(crate) struct FlushState {
    /// Held for a whole flush: flushes never overlap.
    running: Mutex<()>,
    health: Mutex<Health>,
    /// The last successful flush, and per collection `(files, bytes)` it wrote.
    last: Mutex<Option<LastFlush>>,
}

/// The last successful flush, and per collection `(files, bytes)` it wrote.
pub(crate) type LastFlush = (crate::stats::FlushReport, Vec<(usize, u64)>);

impl FlushState {
    pub fn health(&self) -> Health {
        self.health.lock().clone()
    }

    pub fn last(&self) -> Option<LastFlush> {
        self.last.lock().clone()
    }

    /// Records a failure outside a flush (a background WAL sync); the next
    /// successful flush clears it.
    pub fn record_failure(&self, error: Error) {
        let mut health = self.health.lock();
        health.last_error = Some(error);
        health.consecutive_failures += 1;
    }
}

impl Inner {
    /// Writes everything dirty, in one durable batch, then clears the dirty marks
    /// that batch covered. On failure everything stays dirty and the error is
    /// recorded in [`Health`].
    pub(crate) fn flush(&self) -> Result<FlushStats> {
        self.flush_with(false)
    }

    /// [`Inner::flush`]; with `index_files`, the index files that changed are
    /// written too (the final flush of `close`).
    pub(crate) fn flush_with(&self, index_files: bool) -> Result<FlushStats> {
        self.refuse_reentry("flush")?;
        let _running = self.flush_state.running.lock();
        let _span = tracing::debug_span!("flush", dir = %self.dir.display()).entered();
        let started = Instant::now();
        let outcome = self.flush_once(index_files);
        let mut health = self.flush_state.health.lock();
        match outcome {
            Ok((mut stats, per_collection)) => {
                stats.duration = started.elapsed();
                let report = crate::stats::FlushReport {
                    at: SystemTime::now(),
                    duration: stats.duration,
                    files: stats.records,
                    bytes: stats.bytes,
                };
                *self.flush_state.last.lock() = Some((report, per_collection));
                health.last_flush = Some(SystemTime::now());
                health.last_error = None;
                health.consecutive_failures = 0;
                health.flushes += 1;
                if stats.records > 0 {
                    tracing::debug!(records = stats.records, bytes = stats.bytes, ?stats.duration, "flushed");
                }
                Ok(stats)
            }
            Err(e) => {
                tracing::warn!(error = %e, "flush failed; the data stays dirty and is retried");
                health.last_error = Some(e.clone());
                health.consecutive_failures += 1;
                Err(e)
            }
        }
    }

    /// One flush: a snapshot under the writer lock, everything else after it.
    ///
    /// 1. Under the writer lock: the cut (the last commit and WAL record) and each
    ///    collection's snapshot, which moves its dirty marks. No I/O, no
    ///    serialization.
    /// 2. The WAL is made durable up to the cut, so the record files never hold a
    ///    commit the log could still lose. A failure there poisons the store.
    /// 3. The snapshot's values are serialized and staged, and the batch is written
    ///    and synced. On failure the marks go back and a later flush retries with
    ///    new temp files.
    /// 4. The marks are done; the WAL rotates (prepared without any lock) and the
    ///    segments the cut covers are deleted.
    fn flush_once(&self, index_files: bool) -> Result<(FlushStats, Vec<(usize, u64)>)> {
        self.check_poisoned()?;
        // Before the writer lock: what the last flush handed back and writers left,
        // and the maps the snapshots swap in.
        for collection in self.collections.iter() {
            collection.before_snapshot();
        }
        let (mut parts, cut, seq) = {
            let _writer = self.writer.lock();
            let seq = self.commit_seq.load(std::sync::atomic::Ordering::SeqCst);
            let cut = self.backend.cut();
            let parts: Vec<_> = self
                .collections
                .iter()
                .enumerate()
                .filter_map(|(pos, collection)| collection.snapshot(index_files).map(|part| (pos, part)))
                .collect();
            (parts, cut, seq)
        };
        if let Some(cut) = cut {
            self.backend.sync_log(cut).map_err(|e| self.poisoned_or(e))?;
            self.drain_events();
        }
        // Store-wide numbers count the collections' files, like the per-collection
        // ones; a rewrite of `shelf.json` is bookkeeping and not counted.
        let new_meta = self.meta_with_counters();
        let meta_changed = new_meta != *self.meta.lock();
        let counts = {
            let mut staged: Vec<(usize, &mut dyn Staged)> =
                parts.iter_mut().map(|(pos, part)| (*pos, &mut **part as &mut dyn Staged)).collect();
            self.backend.persist(&mut staged, meta_changed.then_some(&new_meta))?
        };
        let mut per_collection = vec![(0, 0); self.collections.len()];
        for ((pos, _), count) in parts.iter().zip(&counts) {
            per_collection[*pos] = *count;
        }
        let records = counts.iter().map(|c| c.0).sum();
        let bytes = counts.iter().map(|c| c.1).sum();
        for (_, part) in parts {
            part.durable();
        }
        if meta_changed {
            *self.meta.lock() = new_meta;
        }
        if let Some(cut) = cut {
            self.backend.checkpoint(cut)?;
        }
        self.flush_watchers.lock().retain(|tx| tx.send(seq).is_ok());
        Ok((FlushStats { records, bytes, duration: Duration::ZERO }, per_collection))
    }
    /// `shelf.json` as it should be now, with current auto-id counters.
    fn meta_with_counters(&self) -> Meta {
        let mut meta = self.meta.lock().clone();
        for collection in self.collections.iter().filter(|c| c.persisted()) {
            if let (Some(next), Some(entry)) = (collection.next_auto(), meta.collections.get_mut(collection.name())) {
                entry.next_id = Some(next);
            }
        }
        meta
    }
}

/// A background thread that runs `tick` every interval (the flusher, the WAL
/// syncer), and the signal that stops it.
pub(crate) struct Flusher {
    signal: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

/// What a prepared background thread needs to start ticking.
struct Start {
    inner: Arc<Inner>,
    interval: Duration,
    tick: fn(&Inner),
}

/// A background thread started before the store loads, waiting for its
/// [`Inner`]; see [`Flusher::prepare`]. Dropping it ends the thread.
pub(crate) struct Prepared {
    signal: Arc<(Mutex<bool>, Condvar)>,
    start: std::sync::mpsc::SyncSender<Start>,
    thread: JoinHandle<()>,
}

impl Flusher {
    /// Starts a background thread before the store loads; [`Prepared::start`] gives
    /// it its work. A positive `nice` lowers the CPU priority of the threads it
    /// starts to write and sync files by that much (see
    /// [`crate::priority::set_worker_nice`]); the thread itself keeps the writers'
    /// priority, as it takes the locks they take.
    ///
    /// Why before the load: with glibc's malloc a thread takes an arena at its first
    /// allocation, preferring one a finished thread left. Started after the load,
    /// the flusher took the arena of the thread that had indexed the records, so
    /// writers updating those records freed memory into the flusher's arena, and
    /// waited for its lock while the flusher consolidated that arena before a large
    /// allocation: W9 (`collection_file`, 2 cores) saw updates of 3 to 9 ms, none
    /// preempted, each lined up with a `malloc_consolidate` on the flusher thread in
    /// `perf`. Started first, the thread claims an arena of its own.
    pub fn prepare(name: &str, nice: i32) -> std::io::Result<Prepared> {
        let signal = Arc::new((Mutex::new(false), Condvar::new()));
        let thread_signal = Arc::clone(&signal);
        let (start, started) = std::sync::mpsc::sync_channel::<Start>(1);
        let thread = std::thread::Builder::new().name(name.to_owned()).spawn(move || {
            // The first allocation picks this thread's arena, now.
            drop(std::hint::black_box(Box::new(0u64)));
            crate::priority::set_worker_nice(nice);
            let Ok(Start { inner, interval, tick }) = started.recv() else {
                return; // the open failed
            };
            loop {
                {
                    let (stopped, wake) = &*thread_signal;
                    let mut stopped = stopped.lock();
                    if !*stopped {
                        wake.wait_for(&mut stopped, interval);
                    }
                    if *stopped {
                        return;
                    }
                }
                tick(&inner);
            }
        })?;
        Ok(Prepared { signal, start, thread })
    }
}

impl Prepared {
    /// Gives the thread its store: it runs `tick` every `interval` until stopped.
    /// The last [`Store`](crate::Store) handle's drop stops it.
    pub fn start(self, inner: Arc<Inner>, interval: Duration, tick: fn(&Inner)) -> Flusher {
        // The thread waits for this message; it is gone only if it panicked, and then
        // `stop` finds it finished.
        let _ = self.start.send(Start { inner, interval, tick });
        Flusher { signal: self.signal, thread: Some(self.thread) }
    }
}

impl Flusher {
    /// Stops the thread and waits for it (and so for a flush it is running).
    pub fn stop(&mut self) {
        *self.signal.0.lock() = true;
        self.signal.1.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
