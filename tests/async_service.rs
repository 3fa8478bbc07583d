//! The axum example (`examples/axum_service.rs`), served on a loopback port: a few
//! hundred concurrent inserts over HTTP, and the server-sent-events stream received
//! every one of them, exactly once; a client resuming with `Last-Event-ID` gets the
//! rest.

#[allow(dead_code)]
#[path = "../examples/axum_service.rs"]
mod service;

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const REQUESTS: usize = 300;
const CLIENTS: usize = 16;

/// Sends one `POST /notes` and returns the id of the inserted note.
async fn post_note(addr: std::net::SocketAddr, text: &str) -> u64 {
    let body = serde_json::json!({ "text": text }).to_string();
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST /notes HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "POST failed: {response}");
    let json = response.split("\r\n\r\n").nth(1).unwrap();
    let note: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(note["text"], text);
    note["id"].as_u64().unwrap()
}

/// An SSE client: de-chunks the response body and yields `(seq, note id)` per event.
struct SseClient {
    conn: TcpStream,
    raw: Vec<u8>,
    body: String,
}

impl SseClient {
    async fn connect(addr: std::net::SocketAddr, last_event_id: Option<u64>) -> SseClient {
        let mut conn = TcpStream::connect(addr).await.unwrap();
        let resume = last_event_id.map(|id| format!("Last-Event-ID: {id}\r\n")).unwrap_or_default();
        let request = format!("GET /events HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n{resume}\r\n");
        conn.write_all(request.as_bytes()).await.unwrap();
        let mut client = SseClient { conn, raw: Vec::new(), body: String::new() };
        // The head, up to the blank line.
        while !client.raw.windows(4).any(|w| w == b"\r\n\r\n") {
            client.read_more().await;
        }
        let end = client.raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head = String::from_utf8_lossy(&client.raw[..end]).to_string();
        assert!(head.starts_with("HTTP/1.1 200"), "SSE refused: {head}");
        assert!(head.to_ascii_lowercase().contains("transfer-encoding: chunked"), "{head}");
        client.raw.drain(..end);
        client
    }

    async fn read_more(&mut self) {
        let mut buf = [0u8; 8192];
        let n = self.conn.read(&mut buf).await.unwrap();
        assert!(n > 0, "the SSE connection closed");
        self.raw.extend_from_slice(&buf[..n]);
    }

    /// Moves every complete chunk from `raw` to `body`.
    fn dechunk(&mut self) {
        loop {
            let Some(line_end) = self.raw.windows(2).position(|w| w == b"\r\n") else { return };
            let size = usize::from_str_radix(std::str::from_utf8(&self.raw[..line_end]).unwrap().trim(), 16).unwrap();
            if self.raw.len() < line_end + 2 + size + 2 {
                return;
            }
            let chunk = self.raw[line_end + 2..line_end + 2 + size].to_vec();
            self.body.push_str(std::str::from_utf8(&chunk).unwrap());
            self.raw.drain(..line_end + 2 + size + 2);
        }
    }

    /// Reads until `want` insert events arrived; returns them as `(seq, note id)`.
    async fn inserts(&mut self, want: usize) -> Vec<(u64, u64)> {
        let mut got = Vec::new();
        while got.len() < want {
            self.dechunk();
            while let Some(end) = self.body.find("\n\n") {
                let event: String = self.body.drain(..end + 2).collect();
                let field =
                    |name: &str| event.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim_start().to_owned());
                if field("event:").as_deref() != Some("insert") {
                    continue; // a keep-alive comment
                }
                let seq: u64 = field("id:").unwrap().parse().unwrap();
                let note: serde_json::Value = serde_json::from_str(&field("data:").unwrap()).unwrap();
                got.push((seq, note["id"].as_u64().unwrap()));
            }
            if got.len() < want {
                self.read_more().await;
            }
        }
        got
    }
}

#[test]
fn every_durable_insert_reaches_the_event_stream() {
    let dir = tempfile::tempdir().unwrap();
    let store = service::open(dir.path()).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = service::app(store.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        let mut stream = SseClient::connect(addr, None).await;
        let mut clients = Vec::new();
        for c in 0..CLIENTS {
            clients.push(tokio::spawn(async move {
                let mut ids = Vec::new();
                for r in (c..REQUESTS).step_by(CLIENTS) {
                    ids.push(post_note(addr, &format!("note {r}")).await);
                }
                ids
            }));
        }
        let mut written = BTreeSet::new();
        for client in clients {
            written.extend(client.await.unwrap());
        }
        assert_eq!(written.len(), REQUESTS, "every POST got its own id");
        let watchdog = Duration::from_secs(120);
        let seen = tokio::time::timeout(watchdog, stream.inserts(REQUESTS)).await.expect("SSE stream hung");
        let seen_ids: BTreeSet<u64> = seen.iter().map(|(_, id)| *id).collect();
        assert_eq!(seen_ids.len(), REQUESTS, "an insert came twice");
        assert_eq!(seen_ids, written, "the stream and the acknowledged writes differ");
        assert!(seen.windows(2).all(|w| w[0].0 < w[1].0), "events in commit order");

        // A client that lost its connection after the 100th event resumes there.
        let cursor = seen[99].0;
        let mut resumed = SseClient::connect(addr, Some(cursor)).await;
        let rest = tokio::time::timeout(watchdog, resumed.inserts(REQUESTS - 100)).await.expect("resume hung");
        assert_eq!(rest, seen[100..].to_vec(), "resumed from {cursor}");
    });
    // Every acknowledged insert is in the store.
    assert_eq!(store.collection::<service::Note>().unwrap().len(), REQUESTS);
}
