//! `shelf verify` checks ids against file names with the id field the store recorded
//! in `shelf.json`, never a guess (issue 19, item 7): when another field equals the id
//! in every record, a renamed record file is still a problem, as it is for open.

use std::process::Command;

use serde::{Deserialize, Serialize};
use shelf::{Entity, Store};

#[derive(Entity, Serialize, Deserialize, Clone, Debug)]
#[storage(per_record)]
struct Page {
    #[id]
    key: String,
    // Listed first, and equal to the id in every record: a guess picks it.
    alias: String,
}

#[test]
fn verify_fails_on_a_renamed_record_that_open_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path()).register::<Page>().open().unwrap();
    let pages = store.collection::<Page>().unwrap();
    for key in ["a", "b", "c"] {
        pages.insert(Page { key: key.into(), alias: key.into() }).unwrap();
    }
    store.close().unwrap();
    drop((pages, store));
    let meta = std::fs::read_to_string(dir.path().join("shelf.json")).unwrap();
    assert!(meta.contains("\"id_field\": \"key\""), "{meta}");
    // b.json now holds a record whose id is "b" and alias "d": renamed to d.json, the
    // alias matches the file name and the id does not.
    let page = dir.path().join("page");
    let text = std::fs::read_to_string(page.join("b.json")).unwrap().replace("\"alias\": \"b\"", "\"alias\": \"d\"");
    std::fs::write(page.join("d.json"), text).unwrap();
    std::fs::remove_file(page.join("b.json")).unwrap();

    assert!(Store::builder(dir.path()).register::<Page>().open().is_err(), "open accepts the renamed record");
    let out =
        Command::new(env!("CARGO_BIN_EXE_shelf")).args(["verify", dir.path().to_str().unwrap()]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "verify approved what open refuses:\n{stdout}");
    assert!(stdout.contains("d.json"), "{stdout}");
}
