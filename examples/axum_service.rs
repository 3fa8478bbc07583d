//! An async HTTP service on Shelf with axum: durable inserts that never block an
//! executor thread, and a server-sent-events endpoint fed by the change feed, which
//! a client that lost its connection resumes with `Last-Event-ID`.
//!
//! ```text
//! cargo run --example axum_service            # listens on 127.0.0.1:3000
//! curl -N localhost:3000/events &             # the change stream
//! curl -d '{"text":"hello"}' -H 'content-type: application/json' localhost:3000/notes
//! ```
//!
//! `tests/async_service.rs` starts this service on a loopback port, sends a few
//! hundred requests and checks that the stream received every write.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use shelf::{Entity, FeedRetention, Store};

/// A note: a `wal` collection, so an insert is durable when it returns.
#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[storage(per_record, wal)]
pub struct Note {
    #[id(auto)]
    pub id: u64,
    pub text: String,
}

/// The body of `POST /notes`.
#[derive(Deserialize)]
pub struct NewNote {
    pub text: String,
}

/// Opens the store of the service: notes, with a change feed of the last 100,000
/// events (or 10 minutes) for clients that resume.
pub fn open(dir: &std::path::Path) -> shelf::Result<Store> {
    Store::builder(dir)
        .register::<Note>()
        .feed_retention(FeedRetention::events(100_000).max_age(Duration::from_secs(600)))
        .open()
}

/// The routes: `POST /notes` and `GET /events`.
pub fn app(store: Store) -> Router {
    Router::new().route("/notes", post(insert)).route("/events", get(events)).with_state(store)
}

/// Inserts a note and answers once it is durable. The commit is in memory, at the
/// call; the `await` waits for the group-commit `fdatasync` without blocking a
/// worker thread.
async fn insert(State(store): State<Store>, Json(new): Json<NewNote>) -> Result<Json<Note>, (StatusCode, String)> {
    let notes = store.collection::<Note>().map_err(internal)?;
    let id = notes.insert_async(Note { id: 0, text: new.text.clone() }).await.map_err(internal)?;
    Ok(Json(Note { id, text: new.text }))
}

/// The change stream as server-sent events; each event's id is the commit's
/// sequence number. A client that reconnects with `Last-Event-ID` gets every
/// event after it (the feed's retained ones, then live ones), or a 410 when the
/// feed no longer holds them.
async fn events(
    State(store): State<Store>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, (StatusCode, String)> {
    let notes = store.collection::<Note>().map_err(internal)?;
    let last = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let changes = match last {
        Some(cursor) => notes.watch_from(cursor).map_err(|e| (StatusCode::GONE, e.to_string()))?,
        None => notes.watch_stream(),
    };
    let stream = changes.map(|event| {
        let data = serde_json::to_string(&**event.record()).unwrap_or_default();
        let kind = match event.change {
            shelf::Change::Insert(_) => "insert",
            shelf::Change::Update { .. } => "update",
            shelf::Change::Remove(_) => "remove",
        };
        Ok(SseEvent::default().id(event.seq.to_string()).event(kind).data(data))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

fn internal(e: shelf::Error) -> (StatusCode, String) {
    (StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::var_os("SHELF_DIR").map(std::path::PathBuf::from).unwrap_or_else(|| "axum-service-data".into());
    let store = open(&dir)?;
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app(store.clone())).await?;
    store.close()?;
    Ok(())
}
