//! The flush: making dirty records durable, by the background flusher or on demand.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::{Condvar, Mutex};

use crate::batch::WriteBatch;
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
        if self.in_transaction() {
            return Err(Error::InTransaction { dir: self.dir.clone() });
        }
        let _running = self.flush_state.running.lock();
        let _span = tracing::debug_span!("flush", dir = %self.dir.display()).entered();
        let started = Instant::now();
        let outcome = self.flush_once();
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

    fn flush_once(&self) -> Result<(FlushStats, Vec<(usize, u64)>)> {
        let mut per_collection = Vec::with_capacity(self.collections.len());
        let mut batch = WriteBatch::default();
        let mut tickets = Vec::new();
        let (checkpoint, seq) = {
            // Under the writer lock the snapshot is a consistent cut: exactly the
            // commits in the rotated WAL segments, each of them whole.
            let writer = self.writer.lock();
            let seq = self.commit_seq.load(std::sync::atomic::Ordering::SeqCst);
            if let Some(wal) = &self.wal {
                if let Err(e) = wal.rotate() {
                    self.roll_back_unsynced(&writer, e.clone());
                    return Err(e);
                }
            }
            for collection in &self.collections {
                let (files, bytes) = (batch.len(), batch.bytes());
                if let Some(ticket) = collection.prepare_flush(&mut batch)? {
                    tickets.push((Arc::clone(collection), ticket));
                }
                per_collection.push((batch.len() - files, batch.bytes() - bytes));
            }
            (self.wal.as_ref().map(|wal| wal.rotated()).unwrap_or_default(), seq)
        };
        // Store-wide numbers count the collections' files, like the per-collection
        // ones; a rewrite of `shelf.json` is bookkeeping and not counted.
        let (records, bytes) = (batch.len(), batch.bytes());
        let new_meta = self.meta_with_counters();
        let meta_changed = new_meta != *self.meta.lock();
        if meta_changed {
            batch.write(Meta::path(&self.dir), new_meta.to_bytes(&self.dir)?);
        }
        if !batch.is_empty() {
            batch.commit(self.fs.as_ref(), self.sync_mode)?;
        }
        for (collection, ticket) in tickets {
            collection.finish_flush(ticket);
        }
        if meta_changed {
            *self.meta.lock() = new_meta;
        }
        if let Some(wal) = &self.wal {
            wal.checkpoint(&checkpoint)?;
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

impl Flusher {
    /// Starts a thread that runs `tick` every `interval` until stopped. The last
    /// [`Store`](crate::Store) handle's drop stops it.
    pub fn spawn(name: &str, inner: Arc<Inner>, interval: Duration, tick: fn(&Inner)) -> Result<Self> {
        let signal = Arc::new((Mutex::new(false), Condvar::new()));
        let thread_signal = Arc::clone(&signal);
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || loop {
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
            })
            .map_err(|e| Error::io("start flusher thread", std::path::PathBuf::new(), e))?;
        Ok(Flusher { signal, thread: Some(thread) })
    }

    /// Stops the thread and waits for it (and so for a flush it is running).
    pub fn stop(&mut self) {
        *self.signal.0.lock() = true;
        self.signal.1.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
