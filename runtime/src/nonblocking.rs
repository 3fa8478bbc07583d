//! Async writes: the commit is applied at the call, and only the wait for
//! durability is a [`Future`].
//!
//! # Naming
//!
//! Every write has an `_async` twin (`insert_async`, `upsert_async`,
//! `update_async`, `remove_async`, [`Store::transaction_async`],
//! [`Store::flush_async`]), the suffix the ecosystem uses for an async form next to
//! a blocking one (as `scc` and `sled` do). They share the blocking form's commit
//! path; only the durability wait differs.
//!
//! # What runs where
//!
//! The call validates and applies the write under the writer lock, in memory (the
//! blocking part: microseconds, plus the wait for the lock while another writer
//! holds it, and the `update` closure or transaction body you pass). It returns a
//! [`WriteFuture`] that resolves when the write is durable as the WAL policy says:
//! at once for collections without `wal` and under `WalSync::Every`; under
//! `WalSync::Always` when the group-commit sync that covers the write's WAL record
//! has finished. Polling never blocks: the future leaves its waker with the WAL,
//! and the sync that makes the record durable (or fails) wakes it.
//!
//! The `fdatasync` itself runs on one background thread per store (started by the
//! first async write), which syncs whenever an async write waits and no sync is
//! running. Blocking writers still lead syncs themselves, and a sync by either
//! covers every commit appended before it. No thread per waiter, no
//! `spawn_blocking`, no async runtime: the futures work on any executor.
//!
//! On a store opened with `StoreBuilder::postgres` (feature `postgres`), the
//! durability is PostgreSQL's commit, and an `_async` write still runs its
//! PostgreSQL transaction at the call, on the calling thread: it blocks for the
//! transaction's round trips (and its retries on a conflict), like the blocking
//! form, and the future is ready when returned. Run such writes where blocking is
//! allowed (`spawn_blocking`) if the round trips matter to the executor.
//!
//! # Cancellation
//!
//! Dropping a [`WriteFuture`] does not undo the write: it was applied at the call,
//! and it becomes durable with the next sync (which the background thread runs
//! without being polled). Only the notification is lost. [`Store::flush_async`]
//! likewise runs the flush even if its future is dropped.
//!
//! # Errors
//!
//! A write that fails validation resolves at once with the error, and nothing
//! changed. If the sync that covers a write fails, the store is poisoned and the
//! future resolves with [`Error::Poisoned`], like the blocking call.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};

use crate::commit::Op;
use crate::error::{Error, Result};
use crate::flush::FlushStats;
use crate::store::{Inner, Store};

/// The background thread that syncs the WAL for async writers and runs
/// [`Store::flush_async`]'s flushes. Started by the first async call.
#[derive(Default)]
pub(crate) struct Background {
    state: Mutex<Demand>,
    wake: Condvar,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// What the background thread is asked to do.
#[derive(Default)]
struct Demand {
    /// The highest WAL sequence number an async writer waits for.
    wanted: u64,
    /// Flushes asked for and not started.
    flushes: Vec<Arc<FlushSlot>>,
    started: bool,
    stopped: bool,
}

impl Background {
    /// Asks for `lsn` to be made durable. `false` when no background thread runs
    /// (the store is closing, or it could not start): the caller syncs itself.
    fn request_sync(&self, inner: &Arc<Inner>, lsn: u64) -> bool {
        let mut demand = self.state.lock();
        if !self.start(inner, &mut demand) {
            return false;
        }
        demand.wanted = demand.wanted.max(lsn);
        self.wake.notify_one();
        true
    }

    /// Asks for a flush; `false` like [`Background::request_sync`].
    fn request_flush(&self, inner: &Arc<Inner>, slot: Arc<FlushSlot>) -> bool {
        let mut demand = self.state.lock();
        if !self.start(inner, &mut demand) {
            return false;
        }
        demand.flushes.push(slot);
        self.wake.notify_one();
        true
    }

    /// Starts the thread unless it runs or was stopped.
    fn start(&self, inner: &Arc<Inner>, demand: &mut Demand) -> bool {
        if demand.stopped {
            return false;
        }
        if demand.started {
            return true;
        }
        let inner = Arc::clone(inner);
        let spawned = std::thread::Builder::new().name("shelf-async".to_owned()).spawn(move || run(&inner));
        match spawned {
            Ok(handle) => {
                *self.thread.lock() = Some(handle);
                demand.started = true;
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not start the async syncer thread; async writes sync on poll");
                false
            }
        }
    }

    /// Stops the thread (at close) and waits for it; flushes still asked for fail
    /// with [`Error::Closed`].
    pub(crate) fn stop(&self, dir: &std::path::Path) {
        let pending = {
            let mut demand = self.state.lock();
            demand.stopped = true;
            self.wake.notify_all();
            std::mem::take(&mut demand.flushes)
        };
        if let Some(thread) = self.thread.lock().take() {
            let _ = thread.join();
        }
        let pending = pending.into_iter().chain(std::mem::take(&mut self.state.lock().flushes));
        for slot in pending {
            slot.complete(Err(Error::Closed { dir: dir.to_path_buf() }));
        }
    }
}

/// The background thread: sleeps until an async writer waits for a record that no
/// sync covers yet, or a flush is asked for; then syncs (as the group's leader, or a
/// follower of a sync running) or flushes.
fn run(inner: &Arc<Inner>) {
    let background = &inner.background;
    loop {
        let (target, flushes) = {
            let mut demand = background.state.lock();
            loop {
                if demand.stopped {
                    return;
                }
                let durable = if inner.backend.logs() { inner.backend.durable_lsn() } else { u64::MAX };
                if demand.wanted > durable || !demand.flushes.is_empty() {
                    break;
                }
                background.wake.wait(&mut demand);
            }
            (demand.wanted, std::mem::take(&mut demand.flushes))
        };
        if inner.backend.logs() && target > inner.backend.durable_lsn() {
            let outcome = inner.backend.sync_log(target);
            inner.drain_events();
            if let Err(e) = outcome {
                // Poisoned: the waiting futures were woken and fail; nothing more
                // to sync.
                inner.flush_state.record_failure(inner.poisoned_or(e));
                background.state.lock().wanted = 0;
            }
        }
        if !flushes.is_empty() {
            let outcome = inner.flush();
            for slot in flushes {
                slot.complete(outcome.clone());
            }
        }
    }
}

/// The durability wait of an async write; see the [module docs](self).
///
/// Resolves to the write's result once the write is durable as the WAL policy says,
/// or to the error that refused or failed it. Polling never blocks.
/// Dropping it leaves the write applied; it still becomes durable.
#[must_use = "the write is applied already; await the future to know it is durable"]
pub struct WriteFuture<R, E = Error> {
    state: Waiting<R, E>,
}

enum Waiting<R, E> {
    /// Resolved at the call (an error, or nothing to wait for); `None` once taken.
    Ready(Option<Result<R, E>>),
    /// Waits until WAL record `lsn` is durable.
    Durable { store: Store, lsn: u64, value: Option<R>, fallback: bool },
}

// No field is pinned: the future moves its values out, never borrows into itself.
impl<R, E> Unpin for WriteFuture<R, E> {}

impl<R, E> std::fmt::Debug for WriteFuture<R, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.state {
            Waiting::Ready(_) => f.write_str("WriteFuture(ready)"),
            Waiting::Durable { lsn, .. } => write!(f, "WriteFuture(waiting for WAL record {lsn})"),
        }
    }
}

impl<R, E: From<Error>> WriteFuture<R, E> {
    /// The future of a commit made by [`Inner::write_nowait`] (or a refusal).
    pub(crate) fn after(store: &Store, committed: Result<(R, Option<u64>), E>) -> Self {
        let (value, lsn) = match committed {
            Ok((value, Some(lsn))) => (value, lsn),
            Ok((value, None)) => return WriteFuture { state: Waiting::Ready(Some(Ok(value))) },
            Err(e) => return WriteFuture { state: Waiting::Ready(Some(Err(e))) },
        };
        let fallback = !store.inner().background.request_sync(&store.inner_arc(), lsn);
        WriteFuture { state: Waiting::Durable { store: store.clone(), lsn, value: Some(value), fallback } }
    }
}

impl<R, E: From<Error>> Future for WriteFuture<R, E> {
    type Output = Result<R, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let (store, lsn, value, fallback) = match &mut this.state {
            Waiting::Ready(result) => {
                return Poll::Ready(result.take().unwrap_or_else(|| Err(E::from(already_resolved()))));
            }
            Waiting::Durable { store, lsn, value, fallback } => (store, *lsn, value, *fallback),
        };
        let inner = store.inner();
        let backend = &inner.backend;
        if !backend.logs() {
            return Poll::Ready(take(value));
        }
        if fallback {
            // No background thread (the store is closing): sync here, blocking.
            let outcome = inner.wait_durable(Some(lsn), None).map_err(E::from);
            return Poll::Ready(outcome.and_then(|()| take(value)));
        }
        if backend.durable_lsn() < lsn && backend.register_waker(lsn, cx.waker()) {
            return Poll::Pending;
        }
        // Not registered: durable, or a sync failed (the log is poisoned).
        inner.drain_events();
        if backend.durable_lsn() >= lsn {
            return Poll::Ready(take(value));
        }
        match backend.poisoned() {
            Some(cause) => Poll::Ready(Err(E::from(inner.poisoned_or(cause)))),
            // Unreachable: a refused registration means durable or failed.
            None => Poll::Ready(Err(E::from(already_resolved()))),
        }
    }
}

/// The value of a resolved future, once.
fn take<R, E: From<Error>>(value: &mut Option<R>) -> Result<R, E> {
    value.take().ok_or_else(|| E::from(already_resolved()))
}

/// The error of a future polled after it resolved.
fn already_resolved() -> Error {
    Error::io(
        "poll a write future",
        std::path::PathBuf::new(),
        std::io::Error::other("the future was polled after it resolved"),
    )
}

/// Where the background thread leaves a flush's outcome for [`FlushFuture`].
#[derive(Default)]
struct FlushSlot {
    state: Mutex<(Option<Result<FlushStats>>, Option<Waker>)>,
}

impl FlushSlot {
    fn complete(&self, outcome: Result<FlushStats>) {
        let waker = {
            let mut state = self.state.lock();
            state.0 = Some(outcome);
            state.1.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The future of [`Store::flush_async`]: resolves when the flush asked for at the
/// call has run, with its statistics or error. Dropping it does not cancel the
/// flush.
#[must_use = "the flush runs anyway; await the future to know it is done"]
pub struct FlushFuture {
    slot: Option<Arc<FlushSlot>>,
    ready: Option<Result<FlushStats>>,
}

impl std::fmt::Debug for FlushFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FlushFuture")
    }
}

impl Future for FlushFuture {
    type Output = Result<FlushStats>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Some(ready) = this.ready.take() {
            return Poll::Ready(ready);
        }
        let Some(slot) = &this.slot else { return Poll::Ready(Err(already_resolved())) };
        let mut state = slot.state.lock();
        if let Some(outcome) = state.0.take() {
            drop(state);
            this.slot = None;
            return Poll::Ready(outcome);
        }
        state.1 = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Inner {
    /// The commit half of [`Inner::write`]: stages and commits under the writer
    /// lock, and returns the result with the WAL record to wait for (policy
    /// `Always` only) instead of waiting.
    pub(crate) fn write_nowait<R>(&self, mut stage: impl FnMut() -> Result<(Vec<Op>, R)>) -> Result<(R, Option<u64>)> {
        #[cfg(feature = "postgres")]
        if let Some(pg) = self.backend.shared() {
            // PostgreSQL's commit is the durability: it is done at the call.
            return self.write_shared(pg, |_, _| stage()).map(|r| (r, None));
        }
        let incoming = self.announce();
        let guard = self.lock_writer()?;
        let (ops, result) = stage()?;
        let lsn = self.commit_locked(&guard, ops)?;
        drop(guard);
        // Appended: a sync leader waiting for this writer may go on.
        drop(incoming);
        Ok((result, self.to_wait_for(lsn)))
    }

    /// The WAL record a commit's caller waits for: only under `WalSync::Always`.
    pub(crate) fn to_wait_for(&self, lsn: Option<u64>) -> Option<u64> {
        lsn.filter(|_| self.backend.waits())
    }
}

impl Store {
    /// [`flush`](Store::flush) without blocking the caller: the flush runs on the
    /// store's background thread, and the future resolves with its outcome. The
    /// flush runs even if the future is dropped. See [`nonblocking`](crate::nonblocking).
    pub fn flush_async(&self) -> FlushFuture {
        if let Err(e) = self.check_open() {
            return FlushFuture { slot: None, ready: Some(Err(e)) };
        }
        if let Err(e) = self.inner().refuse_reentry("flush") {
            return FlushFuture { slot: None, ready: Some(Err(e)) };
        }
        let slot = Arc::new(FlushSlot::default());
        if self.inner().background.request_flush(&self.inner_arc(), Arc::clone(&slot)) {
            FlushFuture { slot: Some(slot), ready: None }
        } else {
            FlushFuture { slot: None, ready: Some(self.flush()) }
        }
    }

    /// [`transaction`](Store::transaction) whose durability wait is a future: `body`
    /// runs and the transaction commits at the call (under the writer lock, as in
    /// the blocking form); the future resolves once the commit is durable. Dropping
    /// the future leaves the transaction committed. See
    /// [`nonblocking`](crate::nonblocking).
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # use shelf::{Entity, Store};
    /// #[derive(Entity, Serialize, Deserialize, Clone, Debug)]
    /// #[storage(wal)]
    /// struct Account { #[id] id: String, cents: i64 }
    ///
    /// # fn main() -> shelf::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::builder(dir.path()).register::<Account>().open()?;
    /// let done = store.transaction_async(|tx| {
    ///     tx.insert(Account { id: "a".into(), cents: 70 })?;
    ///     tx.insert(Account { id: "b".into(), cents: 30 })?;
    ///     Ok::<_, shelf::Error>(2)
    /// });
    /// // Any executor: here the minimal one of the `futures` crate.
    /// assert_eq!(futures::executor::block_on(done)?, 2);
    /// # Ok(()) }
    /// ```
    pub fn transaction_async<R, E: From<Error>>(
        &self,
        body: impl FnMut(&mut crate::tx::Transaction<'_>) -> Result<R, E>,
    ) -> WriteFuture<R, E> {
        let committed = match self.check_open() {
            Ok(()) => {
                let incoming = self.inner().announce();
                let committed = self.run_transaction(body);
                drop(incoming);
                committed.map(|(value, lsn)| (value, self.inner().to_wait_for(lsn)))
            }
            Err(e) => Err(E::from(e)),
        };
        WriteFuture::after(self, committed)
    }
}
