//! Subscriptions as [`Stream`]s: a channel with a waker slot beside it.
//!
//! The sending side ([`Notify`]) is what the store keeps per subscriber: it sends
//! on the unbounded `std::sync::mpsc` channel, then wakes the task that last polled
//! the [`Subscription`], if one did. No thread, no async runtime: any executor's
//! waker works. Ordering and delivery are the channel's: every message, in the order
//! sent, none dropped.

use std::pin::Pin;
use std::sync::mpsc::{channel, Receiver, RecvError, RecvTimeoutError, Sender, TryRecvError};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_core::Stream;
use parking_lot::Mutex;

/// The waker of the task that polled a [`Subscription`] last.
type WakerSlot = Arc<Mutex<Option<Waker>>>;

/// The sending side of one subscription.
pub(crate) struct Notify<M> {
    tx: Sender<M>,
    waker: WakerSlot,
}

/// The subscriber is gone (its [`Subscription`] or receiver was dropped).
#[derive(Debug)]
pub(crate) struct Gone;

impl<M> Notify<M> {
    /// A subscription: the sending side, and the [`Subscription`] to hand out.
    pub fn pair() -> (Notify<M>, Subscription<M>) {
        let (tx, rx) = channel();
        let waker: WakerSlot = Arc::default();
        (Notify { tx, waker: Arc::clone(&waker) }, Subscription { rx, waker })
    }

    /// Sends one message and wakes the subscriber's task; `Err` when the
    /// subscriber is gone, so the caller drops this sender.
    pub fn send(&self, message: M) -> Result<(), Gone> {
        self.tx.send(message).map_err(|_| Gone)?;
        // Taken after the send: a poll that stored its waker before this point
        // finds the message or is woken; one after it finds the message.
        let waker = self.waker.lock().take();
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }
}

/// One subscription: read it blocking ([`recv`](Subscription::recv) and friends) or
/// as a [`Stream`] (from `futures-core`, so `StreamExt` of `futures` or
/// `tokio-stream` works on it) from any executor.
///
/// Messages arrive in the order they were published, and none is dropped: the
/// channel is unbounded, so a slow subscriber never blocks a writer; its messages
/// wait in memory. Dropping the subscription unsubscribes. The stream ends (or
/// `recv` fails) only when the store is gone.
///
/// Polling the stream never blocks: it looks at the channel and, when it is empty,
/// leaves the task's waker for the next publish.
pub struct Subscription<M> {
    rx: Receiver<M>,
    waker: WakerSlot,
}

impl<M> std::fmt::Debug for Subscription<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription").finish_non_exhaustive()
    }
}

impl<M> Subscription<M> {
    /// The plain channel, for the blocking `watch` methods.
    pub(crate) fn into_receiver(self) -> Receiver<M> {
        self.rx
    }

    /// Blocks until the next message (the calling thread sleeps: not on an async
    /// executor's thread). `Err` once the store is gone and every message was read.
    pub fn recv(&self) -> Result<M, RecvError> {
        self.rx.recv()
    }

    /// The next message if one is waiting, without blocking.
    pub fn try_recv(&self) -> Result<M, TryRecvError> {
        self.rx.try_recv()
    }

    /// Blocks for at most `timeout` for the next message.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<M, RecvTimeoutError> {
        self.rx.recv_timeout(timeout)
    }

    /// Every message waiting now, without blocking.
    pub fn try_iter(&self) -> std::sync::mpsc::TryIter<'_, M> {
        self.rx.try_iter()
    }
}

impl<M> Stream for Subscription<M> {
    type Item = M;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<M>> {
        // Fast path: a message is waiting.
        match self.rx.try_recv() {
            Ok(message) => return Poll::Ready(Some(message)),
            Err(TryRecvError::Disconnected) => return Poll::Ready(None),
            Err(TryRecvError::Empty) => {}
        }
        // Leave the waker, then look again: a send between the two looks either
        // put its message in the channel before the second look, or finds the waker.
        *self.waker.lock() = Some(cx.waker().clone());
        match self.rx.try_recv() {
            Ok(message) => Poll::Ready(Some(message)),
            Err(TryRecvError::Disconnected) => Poll::Ready(None),
            Err(TryRecvError::Empty) => Poll::Pending,
        }
    }
}
