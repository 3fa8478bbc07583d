//! Index files on open: a file whose header `content` hash and `checksum` match is
//! used without parsing its entries; anything else is checked entry by entry or
//! rewritten from the records.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shelf::{Entity, Store};

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Person {
    #[id]
    id: String,
    #[index(unique)]
    email: String,
}

fn open(dir: &Path) -> Store {
    Store::builder(dir).register::<Person>().flush_interval(Duration::from_secs(3600)).open().unwrap()
}

fn email_file(dir: &Path) -> PathBuf {
    dir.join("person").join("indices").join("email.jsonl")
}

/// A store with three people, flushed and closed.
fn seeded() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let people = store.collection::<Person>().unwrap();
    for (id, email) in [("ada", "ada@x.org"), ("bob", "bob@x.org"), ("cy", "cy@x.org")] {
        people.insert(Person { id: id.into(), email: email.into() }).unwrap();
    }
    store.close().unwrap();
    dir
}

fn header(text: &str) -> serde_json::Value {
    serde_json::from_str(text.lines().next().unwrap()).unwrap()
}

#[test]
fn a_written_index_file_carries_its_content_hash_and_checksum() {
    let dir = seeded();
    let text = std::fs::read_to_string(email_file(dir.path())).unwrap();
    let header = header(&text);
    assert_eq!(header["entries"], 3);
    assert!(header["content"].as_str().is_some_and(|c| c.len() == 16), "{header}");
    let body = &text[text.find('\n').unwrap() + 1..];
    assert_eq!(header["checksum"].as_str().unwrap(), format!("{:08x}", crc32c::crc32c(body.as_bytes())));
}

#[test]
fn a_record_edited_by_hand_makes_its_index_file_stale() {
    let dir = seeded();
    // Same ids, so the record-set fingerprint is unchanged: only the content hash can tell.
    let record = dir.path().join("person").join("bob.json");
    std::fs::write(&record, r#"{"id":"bob","email":"robert@x.org"}"#).unwrap();
    let store = open(dir.path());
    let people = store.collection::<Person>().unwrap();
    assert_eq!(people.by_email("robert@x.org").map(|p| p.id.clone()), Some("bob".to_owned()));
    store.close().unwrap();
    let text = std::fs::read_to_string(email_file(dir.path())).unwrap();
    assert!(text.contains(r#""key":"robert@x.org""#), "the index file was not rebuilt:\n{text}");
    assert!(!text.contains("bob@x.org"), "{text}");
}

#[test]
fn an_index_file_edited_behind_its_header_is_rewritten() {
    let dir = seeded();
    let path = email_file(dir.path());
    let good = std::fs::read_to_string(&path).unwrap();
    // Same length, still valid JSON, header untouched: only the checksum can tell.
    let tampered = good.replace("bob@x.org", "bod@x.org");
    assert_ne!(tampered, good);
    std::fs::write(&path, &tampered).unwrap();
    open(dir.path()).close().unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), good);
}

#[test]
fn an_index_file_without_hash_and_checksum_is_checked_entry_by_entry() {
    let dir = seeded();
    let path = email_file(dir.path());
    let good = std::fs::read_to_string(&path).unwrap();
    // As written by an older build or by a tool that does not know the typed hash.
    let mut old_header = header(&good);
    let object = old_header.as_object_mut().unwrap();
    object.remove("content");
    object.remove("checksum");
    let body = &good[good.find('\n').unwrap() + 1..];
    let old = format!("{}\n{body}", serde_json::to_string(&old_header).unwrap());
    std::fs::write(&path, &old).unwrap();
    // Correct entries: accepted as they are, not rewritten.
    open(dir.path()).close().unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), old);
    // Wrong entries: rewritten in the current form.
    std::fs::write(&path, old.replace("cy@x.org", "cz@x.org")).unwrap();
    open(dir.path()).close().unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), good);
}
