//! The async writes and the stream subscriptions of [`Collection`]; see
//! [`nonblocking`](crate::nonblocking) and [`watch`](crate::watch).

use std::sync::Arc;

use crate::collection::TypedOp;
use crate::commit::{Op, Reusable};
use crate::entity::Entity;
use crate::error::{Error, Result};
use crate::handle::Collection;
use crate::nonblocking::WriteFuture;
use crate::stream::Subscription;
use crate::watch::Event;

impl<T: Entity> Collection<T> {
    /// Commits `stage`'s ops at the call; the future waits for durability.
    fn write_async<R>(&self, stage: impl FnMut() -> Result<(Vec<Op>, R)>) -> WriteFuture<R> {
        let committed = self.store().inner_checked().and_then(|inner| inner.write_nowait(stage));
        WriteFuture::after(self.store(), committed)
    }

    /// [`insert`](Collection::insert), applied at the call; the future resolves with
    /// the id once the record is durable (see [`nonblocking`](crate::nonblocking):
    /// polling never blocks, and dropping the future leaves the insert applied, to
    /// become durable with the next sync).
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # use shelf::{Entity, Store};
    /// #[derive(Entity, Serialize, Deserialize, Clone, Debug)]
    /// #[storage(wal)]
    /// struct Note { #[id(auto)] id: u64, text: String }
    ///
    /// # fn main() -> shelf::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::builder(dir.path()).register::<Note>().open()?;
    /// let notes = store.collection::<Note>()?;
    /// let id = futures::executor::block_on(notes.insert_async(Note { id: 0, text: "hi".into() }))?;
    /// assert_eq!(notes.get(&id).unwrap().text, "hi"); // reads stay synchronous
    /// # Ok(()) }
    /// ```
    pub fn insert_async(&self, value: T) -> WriteFuture<T::Id> {
        let core = self.core();
        let mut value = Reusable::new(value, self.store().inner());
        self.write_async(|| {
            let value = core.prepare_insert(value.get())?;
            let id = value.id().clone();
            Ok((vec![Op::new(self.pos(), TypedOp::Insert(Arc::new(value)))], id))
        })
    }

    /// [`upsert`](Collection::upsert), applied at the call; the future resolves with
    /// the old record once the write is durable.
    pub fn upsert_async(&self, value: T) -> WriteFuture<Option<Arc<T>>> {
        let mut value = Reusable::new(value, self.store().inner());
        self.write_async(|| {
            let value = value.get();
            let old = self.get(value.id());
            Ok((vec![Op::new(self.pos(), TypedOp::Upsert(Arc::new(value)))], old))
        })
    }

    /// [`update`](Collection::update), applied at the call (the closure runs
    /// there, under the writer lock); the future resolves with the new version once
    /// it is durable.
    pub fn update_async(&self, id: &T::Id, mut change: impl FnMut(&mut T)) -> WriteFuture<Arc<T>> {
        let core = self.core();
        self.write_async(|| {
            let current = self.get(id).ok_or_else(|| core.not_found(id))?;
            let value = Arc::new(core.changed(id, &current, &mut change)?);
            Ok((vec![Op::new(self.pos(), TypedOp::Update(Arc::clone(&value)))], value))
        })
    }

    /// [`remove`](Collection::remove), applied at the call; the future resolves with
    /// the removed record once the removal is durable.
    pub fn remove_async(&self, id: &T::Id) -> WriteFuture<Option<Arc<T>>> {
        self.write_async(|| {
            let old = self.get(id);
            let ops =
                if old.is_some() { vec![Op::new(self.pos(), TypedOp::<T>::Remove(id.clone()))] } else { Vec::new() };
            Ok((ops, old))
        })
    }

    /// [`watch`](Collection::watch) as a [`Subscription`]: a `Stream` for any
    /// executor, with the same order and no-drop guarantees.
    pub fn watch_stream(&self) -> Subscription<Event<T>> {
        self.core().watchers().all_stream()
    }

    /// [`watch_id`](Collection::watch_id) as a [`Subscription`].
    pub fn watch_id_stream(&self, id: &T::Id) -> Subscription<Event<T>> {
        self.core().watchers().id_stream(id.clone())
    }

    /// [`watch_where`](Collection::watch_where) as a [`Subscription`].
    pub fn watch_where_stream(&self, predicate: crate::query::Predicate<T>) -> Subscription<Event<T>> {
        self.core().watchers().matching_stream(predicate)
    }

    /// Resumes the change feed after `cursor` (the `seq` of the last event the
    /// subscriber handled; `0` for everything retained): delivers every retained
    /// event with a larger sequence number, then every live event, with no gap and
    /// no duplicate between them.
    ///
    /// The feed keeps what [`StoreBuilder::feed_retention`](crate::StoreBuilder::feed_retention)
    /// says, in memory; a clean close keeps it for the next open, a crash does not
    /// (see there). Sequence numbers keep increasing across opens (each open with a
    /// feed starts above every number an earlier one gave out), so a cursor whose
    /// events are gone is refused with [`Error::FeedExpired`]: it is never read as
    /// a position in this open's history.
    ///
    /// # Errors
    ///
    /// [`Error::FeedExpired`] when events after `cursor` were dropped by the
    /// retention or belong to an earlier open (resuming would skip them);
    /// [`Error::FeedCursor`] when no retention is set, or `cursor` is ahead of the
    /// store's last commit.
    pub fn watch_from(&self, cursor: u64) -> Result<Subscription<Event<T>>> {
        let last = self.store().inner().commit_seq.load(std::sync::atomic::Ordering::SeqCst);
        let refuse = |reason: String| Error::FeedCursor { collection: self.name().to_owned(), cursor, reason };
        if cursor > last {
            return Err(refuse(format!(
                "it is ahead of the store's last commit ({last}), so it is not one of its sequence numbers"
            )));
        }
        self.core().watchers().from(cursor).map_err(|refused| match refused {
            crate::feed::Refused::Expired(retained_after) => {
                Error::FeedExpired { collection: self.name().to_owned(), cursor, retained_after }
            }
            crate::feed::Refused::Disabled => {
                refuse("the change feed is off; set `feed_retention` on the store builder".to_owned())
            }
        })
    }
}
