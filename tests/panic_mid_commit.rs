//! A panic in the middle of a commit (a user's `Serialize` that panics on one
//! value, called when the commit checks that each record loads back; a user's
//! `Hash` that panics, called when an index takes the record) leaves nothing of
//! the commit behind: not in memory, not in the files after a flush, not
//! after a reopen. The store goes on working. On each backend (`common_pg`).

#[macro_use]
mod common_pg;

use std::time::Duration;

use common_pg::Backend;
use serde::{Deserialize, Serialize, Serializer};
use shelf::{Entity, Store};

/// A string whose `Serialize` panics on "boom".
#[derive(Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Touchy(String);

impl Serialize for Touchy {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        assert!(self.0 != "boom", "Touchy refuses to serialize boom");
        serializer.serialize_str(&self.0)
    }
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Note {
    #[id]
    id: String,
    #[index]
    text: Touchy,
}

/// An index key whose `Hash` panics on "boom" (`Serialize` is fine).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Boomy(String);

impl std::hash::Hash for Boomy {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        assert!(self.0 != "boom", "Boomy refuses to hash boom");
        self.0.hash(state);
    }
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Tagged {
    #[id]
    id: String,
    #[index]
    tag: Boomy,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[storage(per_record, wal)]
struct Logged {
    #[id]
    id: String,
    text: Touchy,
}

fn open(backend: &Backend) -> Store {
    backend
        .builder()
        .register::<Note>()
        .register::<Logged>()
        .register::<Tagged>()
        .flush_interval(Duration::from_secs(3600))
        .open()
        .unwrap()
}

fn note(id: &str, text: &str) -> Note {
    Note { id: id.into(), text: Touchy(text.into()) }
}

on_each_backend! {
fn a_panic_mid_commit_leaves_nothing_of_the_commit(backend) {
    let store = open(&backend);
    let notes = store.collection::<Note>().unwrap();
    let logged = store.collection::<Logged>().unwrap();
    notes.insert(note("kept", "before")).unwrap();

    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        store.transaction(|tx| {
            tx.update::<Note>(&"kept".to_string(), |n| n.text = Touchy("changed".into()))?;
            tx.insert(note("first", "fine"))?;
            tx.insert(Logged { id: "logged".into(), text: Touchy("fine".into()) })?;
            tx.insert(note("second", "boom"))?;
            Ok::<_, shelf::Error>(())
        })
    }));
    assert!(panicked.is_err(), "the Serialize panic reaches the caller");

    // Memory: the commit is not there, the record it changed is as before.
    assert_eq!(notes.get("kept").unwrap().text, Touchy("before".into()));
    assert!(notes.get("first").is_none(), "a half commit is visible");
    assert!(logged.get("logged").is_none());
    assert!(notes.by_text(&Touchy("fine".into())).is_empty(), "the index holds the half commit");
    assert_eq!(notes.by_text(&Touchy("before".into())).len(), 1);

    // The store goes on, and a flush and a reopen hold nothing of the commit.
    notes.insert(note("after", "fine")).unwrap();
    store.flush().unwrap();
    drop((notes, logged));
    store.close().unwrap();
    let store = open(&backend);
    let notes = store.collection::<Note>().unwrap();
    let mut ids: Vec<String> = notes.all().iter().map(|n| n.id.clone()).collect();
    ids.sort();
    assert_eq!(ids, ["after", "kept"]);
    assert_eq!(notes.get("kept").unwrap().text, Touchy("before".into()));
    assert!(store.collection::<Logged>().unwrap().get("logged").is_none());
}

// A panic inside the indices, after the record is in the map: undone too.
fn a_panic_inside_an_index_leaves_nothing_of_the_commit(backend) {
    let store = open(&backend);
    let tagged = store.collection::<Tagged>().unwrap();
    let notes = store.collection::<Note>().unwrap();
    tagged.insert(Tagged { id: "a".into(), tag: Boomy("x".into()) }).unwrap();
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        store.transaction(|tx| {
            tx.insert(note("first", "fine"))?;
            tx.update::<Tagged>(&"a".to_string(), |t| t.tag = Boomy("y".into()))?;
            tx.insert(Tagged { id: "b".into(), tag: Boomy("boom".into()) })?;
            Ok::<_, shelf::Error>(())
        })
    }));
    assert!(panicked.is_err(), "the Hash panic reaches the caller");
    assert!(notes.get("first").is_none(), "a half commit is visible");
    assert!(tagged.get("b").is_none(), "the record whose index panicked is visible");
    assert_eq!(tagged.get("a").unwrap().tag, Boomy("x".into()));
    assert_eq!(tagged.by_tag(&Boomy("x".into())).len(), 1);
    assert!(tagged.by_tag(&Boomy("y".into())).is_empty());
    assert_eq!(tagged.len(), 1);
    tagged.insert(Tagged { id: "c".into(), tag: Boomy("z".into())}).unwrap();
    store.flush().unwrap();
    drop((tagged, notes));
    store.close().unwrap();
    let store = open(&backend);
    let mut ids: Vec<String> = store.collection::<Tagged>().unwrap().all().iter().map(|t| t.id.clone()).collect();
    ids.sort();
    assert_eq!(ids, ["a", "c"]);
    assert!(store.collection::<Note>().unwrap().get("first").is_none());
}
}
