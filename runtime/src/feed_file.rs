//! Feed files: `_feed/<collection>.jsonl`, the change feed a cleanly closed store
//! keeps for its next open (FORMAT §14).
//!
//! `Store::close` writes one per persisted collection that has a feed, with the
//! `feed_epoch` of its open. The next open loads a file only if that epoch is the
//! last one `shelf.json` recorded (no open came in between), then removes every
//! feed file before its first commit; so does every open, and every `shelf`
//! command that writes records. A file therefore only exists while no commit has
//! happened since the close that wrote it: its events end exactly where the
//! records are. After a crash there is none, and the feed starts empty.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::Result;
use crate::fs::Vfs;
use crate::jsonl_file;

/// The directory of feed files, in the data directory (a collection name cannot
/// start with `_`).
pub const FEED_DIR: &str = "_feed";

/// The version of the feed file format this build writes and reads.
pub(crate) const FEED_VERSION: u32 = 1;

/// The first line of a feed file.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Header {
    /// [`FEED_VERSION`].
    pub shelf_feed: u32,
    /// The collection's name.
    pub collection: String,
    /// The `feed_epoch` of the open that wrote the file (`shelf.json`).
    pub epoch: u64,
    /// The feed holds every event of the collection with a larger sequence number.
    pub retained_after: u64,
}

/// What happened to the record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Op {
    Insert,
    Update,
    Remove,
}

/// One event: every line after the header.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Line {
    /// The commit's sequence number.
    pub seq: u64,
    /// When the event was published, in milliseconds since the Unix epoch (for the
    /// retention's age limit).
    pub at_ms: u64,
    pub op: Op,
    /// The record after the change, or the removed record, as its record file
    /// holds it.
    pub record: Box<RawValue>,
    /// The record before an update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old: Option<Box<RawValue>>,
}

/// Where collection `name`'s feed file is.
pub(crate) fn path(dir: &Path, name: &str) -> PathBuf {
    dir.join(FEED_DIR).join(format!("{name}.jsonl"))
}

/// A feed file's bytes: the header, then one line per event, oldest first.
pub(crate) fn encode(header: &Header, lines: &[Line]) -> serde_json::Result<Vec<u8>> {
    jsonl_file::encode(header, lines)
}

/// Reads a feed file. An error says what is wrong, naming the line.
pub(crate) fn decode(bytes: &[u8]) -> std::result::Result<(Header, Vec<Line>), String> {
    let (header, items): (Header, Vec<(usize, Line)>) = jsonl_file::decode(bytes)?;
    if header.shelf_feed != FEED_VERSION {
        return Err(format!("feed file version {}, this build reads {FEED_VERSION}", header.shelf_feed));
    }
    let mut events: Vec<Line> = Vec::with_capacity(items.len());
    for (n, event) in items {
        if event.seq <= header.retained_after || events.last().is_some_and(|last| event.seq < last.seq) {
            return Err(format!("line {n}: sequence number {} is out of order", event.seq));
        }
        if (event.op == Op::Update) != event.old.is_some() {
            return Err(format!("line {n}: `old` goes with an update, and only with one"));
        }
        events.push(event);
    }
    Ok((header, events))
}

/// The feed files in `dir`'s feed directory (none when it does not exist).
pub(crate) fn list(fs: &dyn Vfs, dir: &Path) -> Result<Vec<PathBuf>> {
    jsonl_file::list(fs, &dir.join(FEED_DIR))
}

/// Removes every feed file, durably: after this, the records may change.
pub(crate) fn discard(fs: &dyn Vfs, dir: &Path) -> Result<()> {
    jsonl_file::remove_all(fs, list(fs, dir)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_owned()).unwrap()
    }

    fn header() -> Header {
        Header { shelf_feed: FEED_VERSION, collection: "doc".into(), epoch: 3, retained_after: 7 }
    }

    #[test]
    fn a_feed_file_reads_back_as_written() {
        let lines = [
            Line { seq: 8, at_ms: 1, op: Op::Insert, record: raw(r#"{"id":"a","v":1.5}"#), old: None },
            Line {
                seq: 9,
                at_ms: 2,
                op: Op::Update,
                record: raw(r#"{"id":"a","v":2}"#),
                old: Some(raw(r#"{"id":"a","v":1.5}"#)),
            },
            Line { seq: 9, at_ms: 2, op: Op::Remove, record: raw(r#"{"id":"b"}"#), old: None },
        ];
        let bytes = encode(&header(), &lines).unwrap();
        let (back, events) = decode(&bytes).unwrap();
        assert_eq!(back, header());
        assert_eq!(events.len(), 3);
        for (a, b) in lines.iter().zip(&events) {
            assert_eq!((a.seq, a.at_ms, a.op, a.record.get()), (b.seq, b.at_ms, b.op, b.record.get()));
            assert_eq!(a.old.as_ref().map(|o| o.get()), b.old.as_ref().map(|o| o.get()));
        }
    }

    #[test]
    fn a_damaged_feed_file_is_an_error_naming_the_line() {
        let head = String::from_utf8(encode(&header(), &[]).unwrap()).unwrap();
        let cases = [
            (String::new(), "empty"),
            ("{\"shelf_feed\":2,\"collection\":\"doc\",\"epoch\":1,\"retained_after\":0}\n".to_owned(), "version 2"),
            (format!("{head}{{\"seq\":8,\"at_ms\":0,\"op\":\"insert\"}}\n"), "line 2"),
            (format!("{head}{{\"seq\":7,\"at_ms\":0,\"op\":\"insert\",\"record\":{{}}}}\n"), "line 2: sequence number 7"),
            (
                format!("{head}{{\"seq\":9,\"at_ms\":0,\"op\":\"insert\",\"record\":{{}}}}\n{{\"seq\":8,\"at_ms\":0,\"op\":\"insert\",\"record\":{{}}}}\n"),
                "line 3: sequence number 8",
            ),
            (format!("{head}{{\"seq\":8,\"at_ms\":0,\"op\":\"update\",\"record\":{{}}}}\n"), "line 2: `old`"),
            (format!("{head}{{\"seq\":8,\"at_ms\":0,\"op\":\"remove\",\"record\":{{}},\"old\":{{}}}}\n"), "line 2: `old`"),
            ("{\"shelf_feed\":1}\n".to_owned(), "line 1 (the header)"),
        ];
        for (text, want) in cases {
            let err = decode(text.as_bytes()).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }
}
