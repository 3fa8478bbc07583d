//! Ids that look alike must stay apart: a property test of the id encoding
//! (`shelf::encode`) over look-alike alphabets, which random Unicode almost never
//! produces. Ids are built from pieces that collide on some file system or to some
//! reader: case twins (`a`/`A`), `%XX` spellings (`A` against `%41`), reserved
//! Windows names (`CON`, `nul`, `COM1`, `con.txt`), dots, trailing dots and spaces,
//! Unicode confusables (Latin `a`, Cyrillic `а`), and normalization twins (`é`
//! precomposed against `e` + combining acute, `Å` against the Ångström sign).
//!
//! The oracle is independent of the encoder: distinct ids are distinct strings, and
//! must give distinct file names, even ignoring case; names must hold no `.`, `/`,
//! `\` or control character and no reserved device name; `decode(encode(x)) == x`;
//! and a real store (`per_record`) keeps every id as its own record through a flush
//! and a reopen.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use shelf::encode::{decode, encode};
use shelf::{Entity, Store};

/// Pieces that look alike, spell each other, or are special to some file system.
const PIECES: &[&str] = &[
    "a", "A", "%41", "%61", "%", "41", "%2E", "%2e", ".", "..", " ", "  ", "con", "CON", "Con", "nul", "NUL", "aux",
    "prn", "com1", "COM1", "lpt9", "LPT9", "con.txt", "CON.TXT", "nul.", "com1 ", ".txt", "txt", "e", "E", "é",
    "e\u{301}", "É", "E\u{301}", "Å", "\u{212B}", "A\u{30A}", "а", "о", "o", "0", "O", "ο", "ß", "ss", "SS", "ﬁ", "fi",
    "-", "_", "/", "\\", "\t", "\u{0}", "\u{200B}", "~", "%25", "%%",
];

fn lookalike_id() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(PIECES), 1..5).prop_map(|pieces| pieces.concat())
}

/// Windows device names, compared without case.
const RESERVED: [&str; 22] = [
    "con", "prn", "aux", "nul", "com1", "com2", "com3", "com4", "com5", "com6", "com7", "com8", "com9", "lpt1", "lpt2",
    "lpt3", "lpt4", "lpt5", "lpt6", "lpt7", "lpt8", "lpt9",
];

fn check_name(id: &str, name: &str) -> Result<(), TestCaseError> {
    prop_assert!(!name.is_empty(), "{id:?} encodes to an empty name");
    prop_assert!(
        name.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b'.' | b'/' | b'\\')),
        "{id:?} encodes to {name:?}, which holds a byte unsafe in a file name"
    );
    prop_assert!(!RESERVED.contains(&name.to_ascii_lowercase().as_str()), "{id:?} encodes to the device name {name:?}");
    prop_assert_eq!(decode(name), Some(id.to_owned()), "decode(encode({:?})) with name {:?}", id, name);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Distinct ids get distinct names, also on a case-insensitive file system, and
    /// every name decodes to its id.
    #[test]
    fn lookalike_ids_get_distinct_names_that_decode_back(ids in prop::collection::btree_set(lookalike_id(), 1..24)) {
        let mut by_name: BTreeMap<String, &str> = BTreeMap::new();
        for id in &ids {
            let name = encode(id);
            check_name(id, &name)?;
            if let Some(other) = by_name.insert(name.to_ascii_lowercase(), id) {
                prop_assert!(false, "{:?} and {:?} share the file name {:?} (ignoring case)", other, id, name);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Long look-alike ids (a long shared prefix, then look-alike pieces) get hashed
    /// names: distinct even ignoring case, each the name of its own id only.
    #[test]
    fn long_lookalike_ids_get_distinct_hashed_names(
        ids in prop::collection::btree_set(lookalike_id(), 1..24),
        prefix_len in 230usize..300,
    ) {
        let prefix = "u".repeat(prefix_len);
        let ids: Vec<String> = ids.iter().map(|tail| format!("{prefix}{tail}")).collect();
        let mut by_name: BTreeMap<String, &str> = BTreeMap::new();
        for id in &ids {
            let name = encode(id);
            prop_assert!(name.len() <= shelf::encode::MAX_STEM_LEN);
            prop_assert!(name.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b'.' | b'/' | b'\\')));
            for other in &ids {
                prop_assert_eq!(shelf::encode::is_name_of(&name, other), other == id);
            }
            if let Some(other) = by_name.insert(name.to_ascii_lowercase(), id) {
                prop_assert!(false, "{:?} and {:?} share the file name {:?} (ignoring case)", other, id, name);
            }
        }
    }
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[storage(per_record)]
struct Item {
    #[id]
    id: String,
    /// The id again, so a record that landed in another id's file is seen.
    echo: String,
}

fn open(dir: &std::path::Path) -> Store {
    Store::builder(dir).register::<Item>().flush_interval(Duration::from_secs(3600)).open().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Through a real store: every distinct look-alike id is its own record after a
    /// flush and a reopen, with its own value, and its own file.
    #[test]
    fn lookalike_ids_stay_distinct_records_across_a_reopen(ids in prop::collection::btree_set(lookalike_id(), 1..24)) {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let items = store.collection::<Item>().unwrap();
        for id in &ids {
            items.insert(Item { id: id.clone(), echo: id.clone() }).unwrap();
        }
        store.flush().unwrap();
        store.close().unwrap();
        drop((store, items));

        let files = std::fs::read_dir(dir.path().join("item"))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_type().unwrap().is_file())
            .count();
        prop_assert_eq!(files, ids.len(), "one file per id");

        let store = open(dir.path());
        let items = store.collection::<Item>().unwrap();
        let found: BTreeSet<String> = items.iter().map(|i| i.id.clone()).collect();
        prop_assert_eq!(&found, &ids);
        for item in items.iter() {
            prop_assert_eq!(&item.echo, &item.id, "a record came back under another id");
        }
        prop_assert!(store.recovery_report().quarantined.is_empty(), "{:?}", store.recovery_report());
    }
}
