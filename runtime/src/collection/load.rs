//! Loading a collection's records into its state on open.

use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::thread::{Scope, ScopedJoinHandle};

use super::State;
use crate::entity::Entity;

/// The second thread of a [`Loader`] and the channel that feeds it.
type Worker<'scope, T> = (SyncSender<Vec<Arc<T>>>, ScopedJoinHandle<'scope, ()>);

/// Puts loaded records into a collection's state: in the loading thread while there
/// are few, then in a second thread fed batches through a bounded channel, so that
/// parsing and indexing a large collection overlap.
pub(super) struct Loader<'scope, 'env, T: Entity> {
    scope: &'scope Scope<'scope, 'env>,
    /// The state, until the second thread takes it.
    state: Option<&'env mut State<T>>,
    batch: Vec<Arc<T>>,
    worker: Option<Worker<'scope, T>>,
}

/// Records per batch handed to the indexing thread; also how many a collection
/// must have before that thread starts.
const LOAD_BATCH: usize = 2048;

impl<'scope, 'env, T: Entity> Loader<'scope, 'env, T> {
    pub fn new(scope: &'scope Scope<'scope, 'env>, state: &'env mut State<T>) -> Self {
        Loader { scope, state: Some(state), batch: Vec::with_capacity(LOAD_BATCH), worker: None }
    }

    pub fn push(&mut self, value: T) {
        self.batch.push(Arc::new(value));
        if self.batch.len() < LOAD_BATCH {
            return;
        }
        if let Some(state) = self.state.take() {
            let (sender, batches) = std::sync::mpsc::sync_channel::<Vec<Arc<T>>>(4);
            let handle = self.scope.spawn(move || {
                for batch in batches {
                    put_all(state, batch);
                }
            });
            self.worker = Some((sender, handle));
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(LOAD_BATCH));
        if let Some((sender, _)) = &self.worker {
            // A send fails only if the thread is gone (it panicked): `finish` says so.
            let _ = sender.send(batch);
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
