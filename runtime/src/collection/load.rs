//! Loading a collection's records into its state on open.

use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::thread::{Scope, ScopedJoinHandle};

use super::State;
use crate::entity::Entity;

/// The second thread of a [`Loader`] and the channel that feeds it.
type Worker<'scope, T> = (SyncSender<Vec<Arc<T>>>, ScopedJoinHandle<'scope, ()>);

/// Puts loaded records into a collection's state. The first records are only
/// collected; once there are [`LOAD_BATCH`] of them a second thread takes the state
/// and puts batches fed through a bounded channel, so that parsing and indexing a
/// large collection overlap. A small collection is put by `finish`, on this thread.
pub(super) struct Loader<'scope, 'env, T: Entity> {
    scope: &'scope Scope<'scope, 'env>,
    /// The state, until the second thread takes it.
    state: Option<&'env mut State<T>>,
    batch: Vec<Arc<T>>,
    worker: Option<Worker<'scope, T>>,
    /// The second thread could not be started: everything is put on this one.
    single: bool,
}

/// Records per batch handed to the indexing thread; also how many a collection
/// must have before that thread starts.
const LOAD_BATCH: usize = 2048;

impl<'scope, 'env, T: Entity> Loader<'scope, 'env, T> {
    pub fn new(scope: &'scope Scope<'scope, 'env>, state: &'env mut State<T>) -> Self {
        Loader { scope, state: Some(state), batch: Vec::with_capacity(LOAD_BATCH), worker: None, single: false }
    }

    pub fn push(&mut self, value: T) {
        self.batch.push(Arc::new(value));
        if self.batch.len() < LOAD_BATCH {
            return;
        }
        if self.worker.is_none() && !self.single {
            self.start_worker();
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(LOAD_BATCH));
        match (&self.worker, self.state.as_deref_mut()) {
            // A send fails only if the thread is gone (it panicked): `finish` says so.
            (Some((sender, _)), _) => {
                let _ = sender.send(batch);
            }
            (None, Some(state)) => put_all(state, batch),
            (None, None) => {}
        }
    }

    /// Starts the second thread and hands it the state. If the thread cannot be
    /// started, the state stays here and `finish` puts every record itself.
    fn start_worker(&mut self) {
        let (sender, batches) = std::sync::mpsc::sync_channel::<Vec<Arc<T>>>(4);
        let (give, take) = std::sync::mpsc::sync_channel::<&'env mut State<T>>(1);
        let spawned = std::thread::Builder::new().name("shelf-load".into()).spawn_scoped(self.scope, move || {
            let Ok(state) = take.recv() else { return };
            for batch in batches {
                put_all(state, batch);
            }
        });
        match spawned {
            Ok(handle) => {
                if let Some(state) = self.state.take() {
                    // The thread waits for it: the send cannot fail unless it panicked,
                    // which `finish` re-raises.
                    let _ = give.send(state);
                }
                self.worker = Some((sender, handle));
            }
            Err(error) => {
                tracing::debug!(%error, "loading on one thread: no second thread");
                self.single = true;
            }
        }
    }

    /// Puts the rest and waits for the second thread, re-raising its panic.
    pub fn finish(mut self) {
        let batch = std::mem::take(&mut self.batch);
        match (self.state.take(), self.worker.take()) {
            (Some(state), _) => put_all(state, batch),
            (None, Some((sender, handle))) => {
                let _ = sender.send(batch);
                drop(sender);
                if let Err(panic) = handle.join() {
                    std::panic::resume_unwind(panic);
                }
            }
            (None, None) => {}
        }
    }
}

fn put_all<T: Entity>(state: &mut State<T>, batch: Vec<Arc<T>>) {
    for value in batch {
        let id = value.id().clone();
        state.put(&id, Some(value), false);
    }
}
