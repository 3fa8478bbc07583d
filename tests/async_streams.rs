//! Subscriptions as `Stream`s (issue 16): `watch_stream`, `watch_id_stream`,
//! `watch_where_stream`, `watch_flushes_stream` and `watch_from` deliver what the
//! blocking receivers deliver, in the same order, none dropped, under tokio and
//! under the `futures` executor.

use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use shelf::{Entity, Event, FeedRetention, Store};

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[storage(per_record, wal)]
struct Doc {
    #[id]
    id: String,
    v: u64,
}

const NEVER: Duration = Duration::from_secs(3600);

fn seq_id(e: &Event<Doc>) -> (u64, String, u64) {
    (e.seq, e.record().id.clone(), e.record().v)
}

#[test]
fn streams_deliver_what_the_receivers_deliver_in_order_under_tokio() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path())
        .register::<Doc>()
        .flush_interval(NEVER)
        .feed_retention(FeedRetention::events(10_000))
        .open()
        .unwrap();
    let docs = store.collection::<Doc>().unwrap();
    let all_rx = docs.watch();
    let id_rx = docs.watch_id(&"k3".to_owned());
    let where_rx = docs.watch_where(Doc::fields().v.ge(150u64));
    let all = docs.watch_stream();
    let one = docs.watch_id_stream(&"k3".to_owned());
    let big = docs.watch_where_stream(Doc::fields().v.ge(150u64));
    let resumed = docs.watch_from(0).unwrap();
    const TASKS: u64 = 8;
    const EACH: u64 = 25;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (a, o, b, r) = rt.block_on(async {
        // Consumers first: they wait on the streams while the writers run.
        let n = (TASKS * EACH) as usize;
        let consumers = (
            tokio::spawn(all.take(n).collect::<Vec<_>>()),
            tokio::spawn(one.take(EACH as usize).collect::<Vec<_>>()),
            tokio::spawn(resumed.take(n).collect::<Vec<_>>()),
        );
        let mut writers = Vec::new();
        for t in 0..TASKS {
            let docs = docs.clone();
            writers.push(tokio::spawn(async move {
                for k in 0..EACH {
                    docs.upsert_async(Doc { id: format!("k{t}"), v: t * EACH + k }).await.unwrap();
                }
            }));
        }
        for w in writers {
            w.await.unwrap();
        }
        let watchdog = Duration::from_secs(120);
        let a = tokio::time::timeout(watchdog, consumers.0).await.expect("all: hang").unwrap();
        let o = tokio::time::timeout(watchdog, consumers.1).await.expect("id: hang").unwrap();
        let r = tokio::time::timeout(watchdog, consumers.2).await.expect("resumed: hang").unwrap();
        // The filtered stream: as many as its receiver got, then nothing more.
        let want = where_rx.try_iter().count();
        let b = tokio::time::timeout(watchdog, big.take(want).collect::<Vec<_>>()).await.expect("where: hang");
        (a, o, b, r)
    });
    let key = |v: &Vec<Event<Doc>>| v.iter().map(seq_id).collect::<Vec<_>>();
    let all_want: Vec<_> = all_rx.try_iter().collect();
    assert_eq!(all_want.len() as u64, TASKS * EACH);
    assert_eq!(key(&a), key(&all_want), "watch_stream");
    assert_eq!(key(&r), key(&all_want), "watch_from(0)");
    assert_eq!(key(&o), key(&id_rx.try_iter().collect()), "watch_id_stream");
    let where_want: Vec<_> = docs.watch_from(0).unwrap().try_iter().filter(|e| e.record().v >= 150).collect();
    assert_eq!(key(&b), key(&where_want), "watch_where_stream");
    assert!(a.windows(2).all(|w| w[0].seq < w[1].seq), "one event per commit, in commit order");
}

#[test]
fn flush_stream_and_event_stream_under_the_futures_executor() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path()).register::<Doc>().flush_interval(NEVER).open().unwrap();
    let docs = store.collection::<Doc>().unwrap();
    let mut flushes = store.watch_flushes_stream();
    let mut events = docs.watch_stream();
    let (tx, rx) = std::sync::mpsc::channel();
    let (pending_tx, pending_rx) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        futures::executor::block_on(async {
            // The stream waits (Pending) until the writes below arrive; the worker
            // says so, and the writes wait for that (a gate, not a sleep).
            let mut next = std::pin::pin!(events.next());
            let first = futures::future::poll_fn(|cx| {
                let polled = std::future::Future::poll(next.as_mut(), cx);
                if polled.is_pending() {
                    let _ = pending_tx.send(());
                }
                polled
            })
            .await
            .map(|e| e.record().id.clone());
            let second = events.next().await.map(|e| e.record().id.clone());
            let flushed = flushes.next().await;
            let _ = tx.send((first, second, flushed));
        })
    });
    pending_rx.recv_timeout(Duration::from_secs(60)).expect("the event stream did not wait for a write");
    docs.insert(Doc { id: "a".into(), v: 1 }).unwrap();
    docs.insert(Doc { id: "b".into(), v: 2 }).unwrap();
    store.flush().unwrap();
    let (first, second, flushed) = rx.recv_timeout(Duration::from_secs(60)).expect("the streams hung");
    worker.join().unwrap();
    assert_eq!((first.as_deref(), second.as_deref()), (Some("a"), Some("b")));
    assert_eq!(flushed, Some(2), "the flush covered commit 2");
}
