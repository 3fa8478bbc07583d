//! Index files on open: a file whose header `content` hash and `checksum` match is
//! used without parsing its entries; anything else is checked entry by entry or
//! rewritten from the records.

mod common_wal;

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

// ---- Index files a flush must rewrite (issue #21) ------------------------------------------
//
// Two bugs once made `shelf verify` report stale index files, and `cli/tests/cli.rs`
// steered its fixtures around them: (a) the first write after open left the index
// file written on open in place; (b) an index none of whose records has a key was
// not rewritten by a flush when records were added. The oracle here is independent
// of how a flush decides what is due: the index files of the closed directory must
// equal, byte for byte, those a store writes when it rebuilds them from the records
// (a copy of the directory with its index files deleted, opened and closed).

/// A per-record collection with a write-ahead log and a unique index, like the CLI
/// fixtures' `Account`.
#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[storage(per_record, wal)]
struct Account {
    #[id]
    id: String,
    #[index(unique)]
    owner: String,
}

/// A collection whose indices may hold no key at all: an optional field and a list.
#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Tagged {
    #[id]
    id: String,
    #[index]
    nickname: Option<String>,
    #[index(each)]
    tags: Vec<String>,
}

fn open_all(dir: &Path) -> Store {
    Store::builder(dir)
        .register::<Account>()
        .register::<Tagged>()
        .flush_interval(Duration::from_secs(3600))
        .open()
        .unwrap()
}

/// Every index file under `dir`, relative path and content, sorted.
fn index_files(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for collection in std::fs::read_dir(dir).unwrap() {
        let indices = collection.unwrap().path().join("indices");
        let Ok(entries) = std::fs::read_dir(&indices) else { continue };
        for entry in entries {
            let path = entry.unwrap().path();
            out.push((path.strip_prefix(dir).unwrap().to_path_buf(), std::fs::read_to_string(&path).unwrap()));
        }
    }
    out.sort();
    out
}

/// Asserts that the index files of the closed store in `dir` are those rebuilt
/// from its records.
fn assert_index_files_current(dir: &Path) {
    let rebuilt = tempfile::tempdir().unwrap();
    common_wal::copy_dir(dir, rebuilt.path());
    for (path, _) in index_files(rebuilt.path()) {
        std::fs::remove_file(rebuilt.path().join(path)).unwrap();
    }
    open_all(rebuilt.path()).close().unwrap();
    let (found, expected) = (index_files(dir), index_files(rebuilt.path()));
    assert!(!expected.is_empty(), "the rebuild wrote no index file");
    for ((path, text), (_, want)) in found.iter().zip(&expected) {
        assert_eq!(text, want, "{} is stale", path.display());
    }
    assert_eq!(found.len(), expected.len(), "index files: {found:?}, rebuilt: {expected:?}");
}

/// Bug (a): a collection whose only write since open is the first one.
#[test]
fn the_first_write_after_open_rewrites_the_index_file() {
    let dir = tempfile::tempdir().unwrap();
    // A new directory: the index files are written on open, then one write.
    let store = open_all(dir.path());
    store.collection::<Account>().unwrap().insert(Account { id: "acc0".into(), owner: "ada".into() }).unwrap();
    store.close().unwrap();
    assert_index_files_current(dir.path());
    // An existing directory: again one write after open.
    let store = open_all(dir.path());
    store.collection::<Account>().unwrap().insert(Account { id: "acc1".into(), owner: "bob".into() }).unwrap();
    store.close().unwrap();
    assert_index_files_current(dir.path());
}

/// Bug (b): records are added, but none has a key in the `nickname` and `tags`
/// indices; their files name the record set in their headers, so they are due.
#[test]
fn an_index_whose_records_have_no_key_is_rewritten_when_records_are_added() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_all(dir.path());
    let tagged = store.collection::<Tagged>().unwrap();
    tagged.insert(Tagged { id: "ada".into(), nickname: None, tags: vec![] }).unwrap();
    store.flush().unwrap();
    tagged.insert(Tagged { id: "bob".into(), nickname: None, tags: vec![] }).unwrap();
    store.close().unwrap();
    assert_index_files_current(dir.path());
    // And after a reopen, a remove.
    let store = open_all(dir.path());
    store.collection::<Tagged>().unwrap().remove(&"ada".to_string()).unwrap();
    store.close().unwrap();
    assert_index_files_current(dir.path());
}
