//! The `shelf` binary, run for real on data directories written by the library.
//!
//! WAL records are left unflushed the way a crash leaves them: this test binary runs
//! itself again as a child process (`current_exe() --exact <test>`) that sees
//! [`CHILD`], writes, and dies by `abort` before any flush.
//!
//! Tests run in parallel and spawn processes. A process spawned while a `Store` is
//! open shares the `LOCK` file's open description until it execs, so a store closed
//! in that moment would stay locked a moment longer, and an immediate reopen (or a
//! `shelf import`) of the same directory would be refused. [`FORK_GUARD`] keeps
//! spawns and closes apart.

mod common;

use common::snapshot;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::RwLock;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use shelf::{Entity, Error, Store};

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[index((country, age))]
struct User {
    #[id]
    id: String,
    name: String,
    #[index(unique)]
    email: String,
    #[index]
    country: String,
    #[index(sorted)]
    age: u32,
    #[index]
    nickname: Option<String>,
    #[index(each)]
    tags: Vec<String>,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[storage(collection_file, compress)]
struct Event {
    #[id(auto)]
    id: u64,
    kind: String,
    #[index(sorted)]
    at: u64,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[storage(per_record, wal)]
struct Account {
    #[id]
    id: String,
    #[index(unique)]
    owner: String,
    cents: i64,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[storage(per_record, shard = 1)]
struct Doc {
    #[id]
    id: u64,
    title: String,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[storage(memory)]
struct Session {
    #[id]
    id: String,
}

/// A child of `User` (by a string id) and of `Doc` (by an integer id, detachable).
/// Registered only by [`open_orders`]: the other tests' directories do not have it.
#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Order {
    #[id]
    id: String,
    #[belongs_to(User)]
    user_id: String,
    #[belongs_to(Doc, on_delete = detach)]
    doc_id: Option<u64>,
}

/// Set in the child process: the data directory to write WAL records into.
const CHILD: &str = "SHELF_CLI_TEST_CHILD_DIR";

/// Held shared while spawning a process, exclusively while closing a store.
static FORK_GUARD: RwLock<()> = RwLock::new(());

fn spawn(command: &mut Command) -> Child {
    let _guard = FORK_GUARD.read().unwrap_or_else(|e| e.into_inner());
    command.spawn().unwrap()
}

/// Closes a store (releasing its lock) while no process is being spawned.
fn close(store: Store) {
    let _guard = FORK_GUARD.write().unwrap_or_else(|e| e.into_inner());
    store.close().unwrap();
}

fn open(dir: &Path) -> shelf::Result<Store> {
    Store::builder(dir)
        .register::<User>()
        .register::<Event>()
        .register::<Account>()
        .register::<Doc>()
        .register::<Session>()
        .flush_interval(Duration::from_secs(3600))
        .open()
}

fn open_orders(dir: &Path) -> shelf::Result<Store> {
    Store::builder(dir)
        .register::<User>()
        .register::<Doc>()
        .register::<Order>()
        .flush_interval(Duration::from_secs(3600))
        .open()
}

fn user(id: &str, country: &str, age: u32, tags: &[&str]) -> User {
    User {
        id: id.into(),
        name: format!("{id} the user"),
        email: format!("{id}@example.org"),
        country: country.into(),
        age,
        nickname: (age > 30).then(|| format!("old {id}")),
        tags: tags.iter().map(|t| t.to_string()).collect(),
    }
}

/// A directory with records in every layout, flushed and closed.
fn populated() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).unwrap();
    let users = store.collection::<User>().unwrap();
    users.insert(user("ada", "UK", 36, &["admin", "staff"])).unwrap();
    users.insert(user("bob", "DE", 17, &["staff"])).unwrap();
    users.insert(user("Cy.Z", "DE", 51, &[])).unwrap();
    let events = store.collection::<Event>().unwrap();
    for (kind, at) in [("login", 10), ("logout", 20), ("login", 30)] {
        events.insert(Event { id: 0, kind: kind.into(), at }).unwrap();
    }
    let docs = store.collection::<Doc>().unwrap();
    for id in [2, 10, 7] {
        docs.insert(Doc { id, title: format!("doc {id}") }).unwrap();
    }
    let accounts = store.collection::<Account>().unwrap();
    accounts.insert(Account { id: "acc0".into(), owner: "ada".into(), cents: 5 }).unwrap();
    store.collection::<Session>().unwrap().insert(Session { id: "s".into() }).unwrap();
    close(store);
    dir
}

fn shelf(args: &[&str]) -> Output {
    shelf_with_stdin(args, None)
}

fn shelf_with_stdin(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = spawn(
        Command::new(env!("CARGO_BIN_EXE_shelf"))
            .args(args)
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    if let Some(text) = stdin {
        use std::io::Write;
        // A refusal may come before the input is read: the pipe is closed then.
        let _ = child.stdin.take().unwrap().write_all(text.as_bytes());
    }
    child.wait_with_output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

fn code(output: &Output) -> i32 {
    output.status.code().expect("the binary exited by itself")
}

fn path(dir: &Path) -> &str {
    dir.to_str().unwrap()
}

/// Runs `verify` and expects exit code `expected`; returns its stdout.
fn verify(dir: &Path, expected: i32) -> String {
    let output = shelf(&["verify", path(dir)]);
    let text = stdout(&output);
    assert_eq!(code(&output), expected, "verify exit code; stdout:\n{text}\nstderr:\n{}", stderr(&output));
    text
}

fn export(dir: &Path, collection: &str) -> Vec<Value> {
    let output = shelf(&["export", path(dir), "--collection", collection]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    stdout(&output).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = match std::fs::read_dir(dir.join("wal")) {
        Ok(entries) => {
            entries.map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "wal")).collect()
        }
        Err(_) => Vec::new(),
    };
    out.sort();
    out
}

/// Runs `test` again as a child process that calls [`child_writes`] and aborts.
fn abort_after_wal_writes(test: &str, dir: &Path) {
    let status = spawn(
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", test, "--nocapture", "--test-threads=1"])
            .env(CHILD, dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .wait()
    .unwrap();
    assert!(!status.success(), "the child must die by abort");
}

/// The child's half: WAL commits (one a transaction that also writes a user, which
/// is logged with it), then death before any flush.
fn child_writes(dir: &Path) -> ! {
    let store = open(dir).unwrap();
    let accounts = store.collection::<Account>().unwrap();
    for i in 1..=5 {
        accounts.insert(Account { id: format!("acc{i}"), owner: format!("owner{i}"), cents: i }).unwrap();
    }
    accounts.remove(&"acc0".to_string()).unwrap();
    store
        .transaction(|tx| {
            tx.update::<Account>(&"acc1".into(), |a| a.cents = 1000)?;
            tx.update::<User>(&"ada".into(), |u| u.age = 37)?;
            Ok::<_, Error>(())
        })
        .unwrap();
    std::process::abort();
}

/// Runs the child half when this process is the child; the test returns then.
fn child_check() -> bool {
    if let Ok(dir) = std::env::var(CHILD) {
        child_writes(Path::new(&dir));
    }
    false
}

#[test]
fn info_lists_collections_with_storage_counts_and_sizes() {
    let dir = populated();
    let output = shelf(&["info", path(dir.path())]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("format version: 1"), "{text}");
    assert!(text.contains("in use: no"), "{text}");
    let row = |name: &str| -> Vec<String> {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no row {name}:\n{text}"));
        line.split("  ").map(str::trim).filter(|c| !c.is_empty()).map(str::to_owned).collect()
    };
    // collection, storage, records, files, bytes, indices, index bytes, entity
    let user = row("user");
    assert_eq!(&user[1..4], ["per_record", "3", "3"], "{text}");
    assert!(user[4].parse::<u64>().unwrap() > 100);
    assert_eq!(user[5], "6", "email, country, age, nickname, tags, country_and_age: {text}");
    assert!(user[7].ends_with("User"));
    let event = row("event");
    assert_eq!(&event[1..4], ["collection_file, compress", "3", "1"], "{text}");
    assert_eq!(&row("account")[1..3], ["per_record, wal", "1"]);
    assert_eq!(&row("doc")[1..4], ["per_record, shard = 1", "3", "3"]);
    assert_eq!(&row("session")[1..3], ["memory", "-"]);
    assert!(text.contains("wal: "), "{text}");
    assert!(text.contains("0 records not yet checkpointed"), "{text}");
    // The fields shelf.json records, as the derive described them.
    let fields =
        text.split("fields of `user` (id `id`):\n").nth(1).unwrap_or_else(|| panic!("no user fields:\n{text}"));
    let fields: Vec<&str> = fields.lines().take_while(|l| l.starts_with("  ")).map(str::trim).collect();
    assert_eq!(
        fields[..6],
        ["id: String", "name: String", "email: String", "country: String", "age: u32", "nickname: Option<String>"],
        "{text}"
    );
}

#[test]
fn verify_passes_a_clean_directory() {
    let dir = populated();
    let text = verify(dir.path(), 0);
    assert!(text.contains("collection user: 3 records, 6 index files, id field `id`"), "{text}");
    assert!(text.contains("collection event: 3 records, 1 index file, id field `id`"), "{text}");
    assert!(text.contains("collection doc: 3 records"), "{text}");
    assert!(
        text.contains(
            "note: referential integrity: 0 references checked (shelf.json records no foreign keys to check)"
        ),
        "{text}"
    );
    assert!(text.trim_end().ends_with("ok: no problems found"), "{text}");
}

#[test]
fn export_writes_json_lines_sorted_by_id_in_every_layout() {
    let dir = populated();
    let users = export(dir.path(), "user");
    let ids: Vec<&str> = users.iter().map(|u| u["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["Cy.Z", "ada", "bob"]);
    let ada: User = serde_json::from_value(users[1].clone()).unwrap();
    assert_eq!(ada, user("ada", "UK", 36, &["admin", "staff"]));
    // Fields keep their declared order.
    let raw = stdout(&shelf(&["export", path(dir.path()), "-c", "user"]));
    assert!(raw.lines().nth(1).unwrap().starts_with(r#"{"id":"ada","name":"#), "{raw}");

    let events = export(dir.path(), "event"); // zstd-compressed collection file
    assert_eq!(events.iter().map(|e| e["at"].as_u64().unwrap()).collect::<Vec<_>>(), [10, 20, 30]);
    let docs = export(dir.path(), "doc"); // sharded, sorted numerically
    assert_eq!(docs.iter().map(|d| d["id"].as_u64().unwrap()).collect::<Vec<_>>(), [2, 7, 10]);

    let memory = shelf(&["export", path(dir.path()), "--collection", "session"]);
    assert_eq!(code(&memory), 2);
    assert!(stderr(&memory).contains("kept in memory"), "{}", stderr(&memory));
    let unknown = shelf(&["export", path(dir.path()), "--collection", "nope"]);
    assert_eq!(code(&unknown), 2);
    assert!(stderr(&unknown).contains("no collection `nope`"), "{}", stderr(&unknown));
}

#[test]
fn usage_and_io_errors_exit_with_2() {
    assert_eq!(code(&shelf(&[])), 2);
    assert_eq!(code(&shelf(&["frobnicate"])), 2);
    assert_eq!(code(&shelf(&["export", "/nonexistent"])), 2, "--collection is required");
    let empty = tempfile::tempdir().unwrap();
    let output = shelf(&["verify", path(empty.path())]);
    assert_eq!(code(&output), 2);
    assert!(stderr(&output).contains("not a Shelf data directory"), "{}", stderr(&output));
}

#[test]
fn import_adds_and_replaces_records_and_the_library_sees_them() {
    let dir = populated();
    let mut lines = String::new();
    for u in [user("dee", "FR", 44, &["staff", "ops"]), user("bob", "AT", 18, &[])] {
        lines.push_str(&serde_json::to_string(&u).unwrap());
        lines.push_str("\n\n");
    }
    let file = dir.path().join("users.jsonl");
    std::fs::write(&file, &lines).unwrap();
    let output = shelf(&["import", path(dir.path()), "--collection", "user", file.to_str().unwrap()]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("staged 2 records for `user` (1 new, 1 replaced; id field `id`)"), "{text}");
    assert!(dir.path().join("_import").join("user.jsonl").is_file(), "{text}");
    std::fs::remove_file(&file).unwrap();
    // A second import into the same collection waits for the first to be applied.
    let again = shelf_with_stdin(&["import", path(dir.path()), "-c", "user", "-"], Some(&lines));
    assert_eq!(code(&again), 2);
    assert!(stderr(&again).contains("already staged"), "{}", stderr(&again));

    // Into a compressed collection file, from stdin.
    let event = r#"{"id":9,"kind":"import","at":5}"#;
    let output = shelf_with_stdin(&["import", path(dir.path()), "-c", "event", "-"], Some(event));
    assert_eq!(code(&output), 0, "{}", stderr(&output));

    // Staged: the records are not in the files yet, and verify finds nothing wrong
    // but notes the staged imports. The application's open applies them through
    // its types.
    let noted = verify(dir.path(), 0);
    assert!(noted.contains("_import/user.jsonl is a staged import"), "{noted}");
    let store = open(dir.path()).unwrap();
    let applied: Vec<_> = store.recovery_report().imports.iter().map(|i| (i.collection.as_str(), i.applied)).collect();
    assert_eq!(applied, [("user", 2), ("event", 1)], "in registration order");
    assert!(!dir.path().join("_import").join("user.jsonl").exists(), "applied and durable: the file goes");
    let users = store.collection::<User>().unwrap();
    assert_eq!(users.len(), 4);
    assert_eq!(users.get(&"bob".to_string()).unwrap().country, "AT");
    assert_eq!(users.by_email("dee@example.org").unwrap().id, "dee");
    assert_eq!(users.by_tags("ops").len(), 1);
    assert_eq!(users.count_by_country("DE"), 1);
    let events = store.collection::<Event>().unwrap();
    assert_eq!(events.len(), 4);
    assert_eq!(events.range_by_at(..6).len(), 1);
    // Auto ids continue after the imported one.
    assert_eq!(events.insert(Event { id: 0, kind: "next".into(), at: 40 }).unwrap(), 10);
    close(store);
    // Record files are pretty JSON with fields in declared order, as a flush writes them.
    let dee = std::fs::read_to_string(dir.path().join("user").join("dee.json")).unwrap();
    assert!(dee.starts_with("{\n  \"id\": \"dee\",\n  \"name\": "), "{dee}");
}

#[test]
fn import_refuses_bad_input_and_writes_nothing() {
    let dir = populated();
    let before = snapshot(dir.path());
    let cases = [
        ("not json\n", "line 1"),
        ("[1,2]\n", "not a JSON object"),
        (r#"{"name":"no id"}"#, "no `id` field"),
        // bob's email: the unique index refuses it.
        (
            &*serde_json::to_string(&User { email: "bob@example.org".into(), ..user("eve", "UK", 20, &[]) }).unwrap(),
            "unique index `email`",
        ),
    ];
    for (input, message) in cases {
        let output = shelf_with_stdin(&["import", path(dir.path()), "-c", "user"], Some(input));
        assert_eq!(code(&output), 2, "{input}");
        assert!(stderr(&output).contains(message), "{input}: {}", stderr(&output));
    }
    let output = shelf_with_stdin(&["import", path(dir.path()), "-c", "session"], Some(r#"{"id":"s2"}"#));
    assert_eq!(code(&output), 2);
    assert_eq!(snapshot(dir.path()), before, "a refused import writes nothing");
}

#[test]
fn verify_catches_a_corrupted_record_file() {
    let dir = populated();
    std::fs::write(dir.path().join("user").join("ada.json"), b"{\"id\": \"ada\", \"na").unwrap();
    // A record whose content names another id than its file.
    let mut bob: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("user").join("bob.json")).unwrap()).unwrap();
    bob["id"] = "robert".into();
    std::fs::write(dir.path().join("user").join("bob.json"), serde_json::to_vec(&bob).unwrap()).unwrap();
    // A compressed collection file that is not zstd.
    std::fs::write(dir.path().join("event.jsonl.zst"), b"plain text, not zstd").unwrap();
    let text = verify(dir.path(), 1);
    let problems: Vec<&str> = text.lines().filter(|l| l.starts_with("problem")).collect();
    assert!(problems.iter().any(|l| l.starts_with("problem: user/ada.json: not a valid record: EOF")), "{text}");
    assert!(
        problems.iter().any(|l| l.contains("user/bob.json: holds id `robert`, but its file name is for id `bob`")),
        "{text}"
    );
    assert!(
        problems.iter().any(|l| l.starts_with("problem: event.jsonl.zst: collection `event` cannot be read")),
        "{text}"
    );
    assert!(text.contains("note: collection `user`: its index files were checked for form only"), "{text}");
    assert!(text.trim_end().ends_with("3 problems found"), "{text}");
    // export refuses the corrupt record rather than skipping it.
    let output = shelf(&["export", path(dir.path()), "-c", "user"]);
    assert_eq!(code(&output), 2);
    assert!(stderr(&output).contains("user/ada.json"), "{}", stderr(&output));
}

#[test]
fn verify_checks_foreign_keys_recorded_in_shelf_json() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_orders(dir.path()).unwrap();
    let users = store.collection::<User>().unwrap();
    users.insert(user("ada", "UK", 36, &[])).unwrap();
    users.insert(user("bob", "DE", 17, &[])).unwrap();
    store.collection::<Doc>().unwrap().insert(Doc { id: 7, title: "doc 7".into() }).unwrap();
    let orders = store.collection::<Order>().unwrap();
    orders.insert(Order { id: "o1".into(), user_id: "ada".into(), doc_id: Some(7) }).unwrap();
    orders.insert(Order { id: "o2".into(), user_id: "bob".into(), doc_id: None }).unwrap();
    orders.insert(Order { id: "o3".into(), user_id: "ada".into(), doc_id: Some(7) }).unwrap();
    close(store);

    let text = verify(dir.path(), 0);
    assert!(
        text.contains("note: referential integrity: 5 references checked over 2 foreign keys; 1 null (detached)"),
        "{text}"
    );
    assert!(text.trim_end().ends_with("ok: no problems found"), "{text}");

    // Edited by hand while closed: o1's user and o3's document do not exist.
    let edit = |id: &str, field: &str, value: Value| {
        let file = dir.path().join("order").join(format!("{id}.json"));
        let mut record: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        record[field] = value;
        std::fs::write(&file, serde_json::to_vec_pretty(&record).unwrap()).unwrap();
    };
    edit("o1", "user_id", "ghost".into());
    edit("o3", "doc_id", 99.into());
    let text = verify(dir.path(), 1);
    // Not repairable by open, unlike the `#[belongs_to]` index files the edits made stale.
    let problems: Vec<&str> = text.lines().filter(|l| l.starts_with("problem: ")).collect();
    for expected in [
        "problem: order/o1.json: `order` record `o1`: foreign key `user_id` references `user` record `ghost`, which does not exist",
        "problem: order/o3.json: `order` record `o3`: foreign key `doc_id` references `doc` record `99`, which does not exist",
    ] {
        assert!(problems.iter().any(|p| p.starts_with(expected)), "{expected}:\n{text}");
    }
    assert_eq!(problems.len(), 2, "{text}");
    assert!(text.contains("note: referential integrity: 5 references checked"), "{text}");
    for index in ["user_id", "doc_id"] {
        let stale = format!("problem (the next open repairs it): order/indices/{index}.jsonl: stale");
        assert!(text.contains(&stale), "{text}");
    }
    assert!(text.trim_end().ends_with("4 problems found"), "{text}");

    // The library agrees.
    let store = open_orders(dir.path()).unwrap();
    let mut dangling: Vec<(String, String, String, String)> =
        store.verify().into_iter().map(|d| (d.id, d.field, d.parent_collection, d.parent_id)).collect();
    dangling.sort();
    close(store);
    let expected = [("o1", "user_id", "user", "\"ghost\""), ("o3", "doc_id", "doc", "99")]
        .map(|(a, b, c, d)| (a.to_owned(), b.to_owned(), c.to_owned(), d.to_owned()));
    assert_eq!(dangling, expected);
}

#[test]
fn verify_catches_corrupted_index_files() {
    let dir = populated();
    let index = |name: &str| dir.path().join("user").join("indices").join(format!("{name}.jsonl"));
    // Another key for an entry: stale.
    let email = std::fs::read_to_string(index("email")).unwrap().replace("bob@example.org", "bobby@example.org");
    std::fs::write(index("email"), email).unwrap();
    // The last entry cut off: truncated.
    let country = std::fs::read_to_string(index("country")).unwrap();
    let cut = country.trim_end().rsplit_once('\n').unwrap().0.to_owned() + "\n";
    std::fs::write(index("country"), cut).unwrap();
    // Garbage.
    std::fs::write(index("tags"), b"\x00\x01garbage").unwrap();
    // An entry of each key of a composite swapped with another: stale.
    let composite = std::fs::read_to_string(index("country_and_age")).unwrap().replace("[\"DE\",17]", "[\"DE\",18]");
    std::fs::write(index("country_and_age"), composite).unwrap();
    let text = verify(dir.path(), 1);
    let problem = |file: &str| {
        text.lines()
            .find(|l| {
                l.starts_with("problem (the next open repairs it): ")
                    && l.contains(&format!("user/indices/{file}.jsonl:"))
            })
            .unwrap_or_else(|| panic!("no problem for {file}:\n{text}"))
            .to_owned()
    };
    assert!(problem("email").contains("stale: 1 entries of the records are missing (e.g. key \"bob@example.org\" for id `bob`), 1 entries match no record"), "{text}");
    assert!(problem("country").contains("truncated: the header says 3 entries, the file has 2"), "{text}");
    assert!(problem("tags").contains("corrupt index file: unparsable header"), "{text}");
    assert!(problem("country_and_age").contains("stale"), "{text}");
    assert!(!text.contains("indices/age.jsonl"), "the untouched indices are sound: {text}");
    assert!(!text.contains("indices/nickname.jsonl"), "{text}");
    assert!(text.trim_end().ends_with("4 problems found"), "{text}");

    // The library rebuilds them on open; verify is clean after.
    close(open(dir.path()).unwrap());
    verify(dir.path(), 0);
}

#[test]
fn verify_catches_a_torn_or_corrupt_wal() {
    if child_check() {
        return;
    }
    let dir = populated();
    abort_after_wal_writes("verify_catches_a_torn_or_corrupt_wal", dir.path());
    let text = verify(dir.path(), 0);
    assert!(text.contains("note: the WAL holds 7 commits not yet checkpointed"), "{text}");
    assert!(text.contains("commits still in the WAL were not taken into account"), "{text}");
    assert!(text.contains("wal: 1 segment"), "{text}");

    let segment = segments(dir.path()).pop().expect("a WAL segment");
    let bytes = std::fs::read(&segment).unwrap();
    // The last append torn: its record cut short.
    std::fs::write(&segment, &bytes[..bytes.len() - 5]).unwrap();
    let text = verify(dir.path(), 1);
    assert!(text.contains("problem (the next open repairs it): wal/"), "{text}");
    assert!(text.contains("torn tail: "), "{text}");
    assert!(text.contains("6 records not yet checkpointed"), "{text}");

    // A flipped bit in the first record, with valid ones after it: corruption.
    let mut flipped = bytes.clone();
    flipped[20] ^= 0x40;
    std::fs::write(&segment, &flipped).unwrap();
    let text = verify(dir.path(), 1);
    assert!(text.contains("corrupt: the record at offset 0 fails its checksum, and valid records follow it"), "{text}");
    assert!(!text.contains("next open repairs it"), "corruption is not repaired by itself: {text}");
    // compact will not drop the valid records after it.
    let output = shelf(&["compact", path(dir.path())]);
    assert_eq!(code(&output), 2);
    assert!(stderr(&output).contains("the WAL is corrupt"), "{}", stderr(&output));
    assert_eq!(std::fs::read(&segment).unwrap(), flipped);
}

#[test]
fn compact_applies_the_wal_to_the_files_and_empties_it() {
    if child_check() {
        return;
    }
    let dir = populated();
    abort_after_wal_writes("compact_applies_the_wal_to_the_files_and_empties_it", dir.path());
    assert!(!dir.path().join("account").join("acc1.json").exists(), "nothing was flushed");
    // A torn tail after the valid records is dropped, as open would.
    let segment = segments(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes.extend_from_slice(&[9, 0, 0, 0, 1, 2]);
    std::fs::write(&segment, &bytes).unwrap();

    let output = shelf(&["compact", path(dir.path())]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.contains("applied 7 WAL records: account (6 written, 1 removed), user (1 written, 0 removed)"),
        "{text}"
    );
    assert!(text.contains("removed 7 index files"), "account's owner and user's six: {text}");
    assert!(text.contains("dropped a torn WAL tail of 6 bytes"), "{text}");
    assert!(text.contains("removed 1 WAL segment"), "{text}");

    // The WAL is empty, and the records are in the files.
    assert!(segments(dir.path()).is_empty());
    let acc1: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("account").join("acc1.json")).unwrap()).unwrap();
    assert_eq!(acc1["cents"], 1000);
    assert!(!dir.path().join("account").join("acc0.json").exists());
    assert_eq!(export(dir.path(), "user")[1]["age"], 37);
    verify(dir.path(), 0);
    let again = stdout(&shelf(&["compact", path(dir.path())]));
    assert!(again.contains("the WAL holds no records: nothing to apply"), "{again}");

    let store = open(dir.path()).unwrap();
    assert_eq!(store.recovery_report().wal_records_replayed, 0, "nothing left to replay");
    let accounts = store.collection::<Account>().unwrap();
    assert_eq!(accounts.len(), 5);
    assert_eq!(accounts.get(&"acc1".to_string()).unwrap().cents, 1000);
    assert_eq!(accounts.by_owner("owner3").unwrap().id, "acc3");
    assert!(accounts.get(&"acc0".to_string()).is_none());
    assert_eq!(store.collection::<User>().unwrap().get(&"ada".to_string()).unwrap().age, 37);
}

#[test]
fn import_and_compact_refuse_a_directory_locked_by_an_open_store() {
    let dir = populated();
    let store = open(dir.path()).unwrap();
    let before = snapshot(dir.path());
    let line = serde_json::to_string(&user("zed", "UK", 30, &[])).unwrap();
    for (args, stdin) in [
        (vec!["import", path(dir.path()), "-c", "user"], Some(line.as_str())),
        (vec!["compact", path(dir.path())], None),
    ] {
        let output = shelf_with_stdin(&args, stdin);
        assert_eq!(code(&output), 2, "{args:?}");
        assert!(stderr(&output).contains("is locked by another process"), "{args:?}: {}", stderr(&output));
    }
    assert_eq!(snapshot(dir.path()), before, "a refused write changes nothing");
    // Reading is allowed, and says the directory is in use.
    let info = stdout(&shelf(&["info", path(dir.path())]));
    assert!(info.contains("in use: yes, by an open Store"), "{info}");
    let text = verify(dir.path(), 0);
    assert!(text.contains("note: an open Store holds this directory"), "{text}");
    // The store is undisturbed.
    store.collection::<User>().unwrap().insert(user("zed", "UK", 30, &[])).unwrap();
    close(store);
    let output = shelf_with_stdin(&["import", path(dir.path()), "-c", "user"], Some(&line));
    assert_eq!(code(&output), 0, "unlocked once closed: {}", stderr(&output));
}
