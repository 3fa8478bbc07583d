//! The PostgreSQL backend against a real server (SHELF_TEST_POSTGRES): several
//! instances on one database, in this process and in re-executed processes.

mod common_pg;

use std::sync::Arc;
use std::time::Duration;

use common_pg::Schema;
use serde::{Deserialize, Serialize};
use shelf::{Entity, Error, Store};

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
struct User {
    #[id]
    id: String,
    #[index(unique)]
    email: String,
    visits: u64,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[storage(memory)]
struct Session {
    #[id]
    id: String,
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Post {
    #[id(auto)]
    id: u64,
    #[belongs_to(User, on_delete = cascade)]
    author: String,
    title: String,
}

fn open(schema: &Schema) -> Store {
    schema.builder().register::<User>().register::<Post>().register::<Session>().open().expect("open on PostgreSQL")
}

fn user(id: &str, email: &str) -> User {
    User { id: id.into(), email: email.into(), visits: 0 }
}

#[test]
fn a_write_is_in_postgres_and_another_instance_sees_it_after_sync() {
    let Some(schema) = Schema::new("crud") else { return };
    let a = open(&schema);
    let b = open(&schema);
    a.collection::<User>().unwrap().insert(user("ada", "ada@x")).unwrap();
    // In PostgreSQL at `Ok`.
    let row =
        schema.client().query_one("SELECT doc->>'email', version FROM \"user\" WHERE id = '\"ada\"'", &[]).unwrap();
    assert_eq!(row.get::<_, String>(0), "ada@x");
    b.sync().unwrap();
    assert_eq!(b.collection::<User>().unwrap().get("ada").unwrap().email, "ada@x");
    b.collection::<User>().unwrap().update(&"ada".into(), |u| u.visits += 1).unwrap();
    a.sync().unwrap();
    assert_eq!(a.collection::<User>().unwrap().get("ada").unwrap().visits, 1);
    // A third instance loads it at open.
    let c = open(&schema);
    assert_eq!(c.collection::<User>().unwrap().get("ada").unwrap().visits, 1);
    // A removal reaches the others.
    c.collection::<User>().unwrap().remove("ada").unwrap();
    a.sync().unwrap();
    assert!(a.collection::<User>().unwrap().get("ada").is_none());
}

#[test]
fn two_instances_inserting_one_email_at_once_exactly_one_succeeds() {
    let Some(schema) = Schema::new("unique") else { return };
    let (a, b) = (open(&schema), open(&schema));
    for round in 0..20 {
        let email = format!("same{round}@x");
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let results: Vec<shelf::Result<String>> = [(a.clone(), "a"), (b.clone(), "b")]
            .into_iter()
            .map(|(store, who)| {
                let (barrier, email) = (Arc::clone(&barrier), email.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    store.collection::<User>().unwrap().insert(user(&format!("{who}{round}"), &email))
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        let ok = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(ok, 1, "round {round}: {results:?}");
        let refused = results.iter().find_map(|r| r.as_ref().err()).unwrap();
        assert!(matches!(refused, Error::UniqueViolation { .. }), "round {round}: {refused}");
    }
    let rows: i64 = schema.client().query_one("SELECT count(*) FROM \"user\"", &[]).unwrap().get(0);
    assert_eq!(rows, 20);
}

#[test]
fn concurrent_updates_of_one_record_from_two_instances_lose_nothing() {
    let Some(schema) = Schema::new("counter") else { return };
    let (a, b) = (open(&schema), open(&schema));
    a.collection::<User>().unwrap().insert(user("n", "n@x")).unwrap();
    b.sync().unwrap();
    let threads: Vec<_> = [a.clone(), b.clone(), a.clone(), b.clone()]
        .into_iter()
        .map(|store| {
            std::thread::spawn(move || {
                // A hot record: a commit may lose its race 30 times and fail with
                // `Conflict`; then nothing was applied, and the caller retries.
                let mut done = 0;
                while done < 50 {
                    match store.collection::<User>().unwrap().update(&"n".into(), |u| u.visits += 1) {
                        Ok(_) => done += 1,
                        Err(Error::Conflict { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    a.sync().unwrap();
    b.sync().unwrap();
    assert_eq!(a.collection::<User>().unwrap().get("n").unwrap().visits, 200);
    assert_eq!(b.collection::<User>().unwrap().get("n").unwrap().visits, 200);
}

#[test]
fn watch_events_of_another_instance_arrive_in_sequence_order() {
    let Some(schema) = Schema::new("watch") else { return };
    let (a, b) = (open(&schema), open(&schema));
    let events = b.collection::<User>().unwrap().watch();
    for i in 0..100 {
        a.collection::<User>().unwrap().insert(user(&format!("u{i:03}"), &format!("{i}@x"))).unwrap();
    }
    let mut seen = Vec::new();
    while seen.len() < 100 {
        let event = events.recv_timeout(Duration::from_secs(20)).unwrap_or_else(|e| {
            panic!(
                "event {} not within 20 s ({e}); seen {:?}",
                seen.len(),
                seen.iter().map(|e: &shelf::Event<User>| e.seq).collect::<Vec<_>>()
            )
        });
        seen.push(event);
    }
    let seqs: Vec<u64> = seen.iter().map(|e| e.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let ids: Vec<String> = seen
        .iter()
        .map(|e| match &e.change {
            shelf::Change::Insert(u) => u.id.clone(),
            other => panic!("expected inserts only, got {other:?}"),
        })
        .collect();
    let expected: Vec<String> = (0..100).map(|i| format!("u{i:03}")).collect();
    assert_eq!(ids, expected);
}

#[test]
fn foreign_keys_and_cascades_hold_across_instances() {
    let Some(schema) = Schema::new("fk") else { return };
    let (a, b) = (open(&schema), open(&schema));
    a.collection::<User>().unwrap().insert(user("ada", "ada@x")).unwrap();
    let posts = a.collection::<Post>().unwrap();
    posts.insert(Post { id: 0, author: "ada".into(), title: "one".into() }).unwrap();
    let missing = posts.insert(Post { id: 0, author: "nobody".into(), title: "x".into() });
    assert!(matches!(missing, Err(Error::MissingParent { .. })), "{missing:?}");
    // b removes the user: the cascade removes the post everywhere.
    b.sync().unwrap();
    b.collection::<User>().unwrap().remove("ada").unwrap();
    a.sync().unwrap();
    assert_eq!(a.collection::<Post>().unwrap().len(), 0);
    let rows: i64 = schema.client().query_one("SELECT count(*) FROM post", &[]).unwrap().get(0);
    assert_eq!(rows, 0);
}

#[test]
fn memory_collections_stay_local() {
    let Some(schema) = Schema::new("memory") else { return };
    let (a, b) = (open(&schema), open(&schema));
    a.collection::<Session>().unwrap().insert(Session { id: "s".into() }).unwrap();
    b.sync().unwrap();
    assert!(b.collection::<Session>().unwrap().is_empty());
    let tables: i64 = schema
        .client()
        .query_one("SELECT count(*) FROM information_schema.tables WHERE table_name = 'session'", &[])
        .unwrap()
        .get(0);
    assert_eq!(tables, 0);
}

#[test]
fn a_data_directory_is_copied_into_postgres_whole_and_checked() {
    let Some(schema) = Schema::new("copy") else { return };
    let dir = tempfile::tempdir().unwrap();
    let files = Store::builder(dir.path()).register::<User>().register::<Post>().register::<Session>().open().unwrap();
    for i in 0..50 {
        files.collection::<User>().unwrap().insert(user(&format!("u{i}"), &format!("{i}@x"))).unwrap();
        files.collection::<Post>().unwrap().insert(Post { id: 0, author: format!("u{i}"), title: "t".into() }).unwrap();
    }
    files.collection::<Session>().unwrap().insert(Session { id: "local".into() }).unwrap();
    let shared = open(&schema);
    let report = files.copy_into(&shared).unwrap();
    assert_eq!(report.collections, vec![("user", 50), ("post", 50)]);
    // Another instance loads exactly the copy.
    let other = open(&schema);
    for i in 0..50 {
        let id = format!("u{i}");
        assert_eq!(
            *other.collection::<User>().unwrap().get(id.as_str()).unwrap(),
            *files.collection::<User>().unwrap().get(id.as_str()).unwrap()
        );
    }
    assert_eq!(other.collection::<Post>().unwrap().len(), 50);
    assert!(other.collection::<Session>().unwrap().is_empty(), "memory collections are not copied");
    // A second copy into the same database is refused and changes nothing.
    let again = files.copy_into(&shared);
    assert!(matches!(again, Err(Error::Postgres { .. })), "{again:?}");
    let rows: i64 = schema.client().query_one("SELECT count(*) FROM \"user\"", &[]).unwrap().get(0);
    assert_eq!(rows, 50);
}

#[test]
fn a_value_jsonb_would_change_is_refused_at_the_write() {
    let Some(schema) = Schema::new("jsonb") else { return };
    let store = open(&schema);
    let users = store.collection::<User>().unwrap();
    let nul = users.insert(user("nul", "a\u{0}b@x"));
    assert!(matches!(nul, Err(Error::Unloadable { .. })), "{nul:?}");
    assert!(users.get("nul").is_none());
    let rows: i64 = schema.client().query_one("SELECT count(*) FROM \"user\"", &[]).unwrap().get(0);
    assert_eq!(rows, 0);
}

#[test]
fn a_transaction_runs_again_when_a_record_it_read_changed_in_another_instance() {
    let Some(schema) = Schema::new("readset") else { return };
    let (a, b) = (open(&schema), open(&schema));
    a.collection::<User>().unwrap().insert(user("x", "x@x")).unwrap();
    a.collection::<User>().unwrap().insert(user("y", "y@x")).unwrap();
    b.sync().unwrap();
    let mut runs = 0;
    a.transaction(|tx| {
        runs += 1;
        let x = tx.get::<User>(&"x".into()).unwrap();
        if runs == 1 {
            // Another instance changes what this body has just read.
            b.collection::<User>().unwrap().update(&"x".into(), |u| u.visits = 100).unwrap();
        }
        // y is written from x: only x's read version makes this stale.
        tx.update::<User>(&"y".into(), |u| u.visits = x.visits)?;
        Ok::<_, Error>(())
    })
    .unwrap();
    assert_eq!(runs, 2, "the body ran again after the conflict");
    assert_eq!(a.collection::<User>().unwrap().get("y").unwrap().visits, 100);
    b.sync().unwrap();
    assert_eq!(b.collection::<User>().unwrap().get("y").unwrap().visits, 100);
}

/// The feed of an open holds the commits it applied after opening: a cursor from
/// before (an earlier open's, or another instance's older one) gets `FeedExpired`,
/// never this open's later events as if nothing were between.
#[test]
fn a_feed_cursor_from_before_an_open_gets_feed_expired() {
    let Some(schema) = Schema::new("feed_floor") else { return };
    let open = || {
        schema
            .builder()
            .register::<User>()
            .register::<Post>()
            .register::<Session>()
            .feed_retention(shelf::FeedRetention::events(100))
            .open()
            .expect("open on PostgreSQL")
    };
    let seqs = |store: &Store, prefix: &str| -> Vec<u64> {
        let users = store.collection::<User>().unwrap();
        let all = users.watch();
        for i in 0..3 {
            users.insert(user(&format!("{prefix}{i}"), &format!("{prefix}{i}@x"))).unwrap();
        }
        (0..3).map(|_| all.recv_timeout(Duration::from_secs(20)).unwrap().seq).collect()
    };
    let first = seqs(&open(), "a");
    let store = open();
    let second = seqs(&store, "b");
    let users = store.collection::<User>().unwrap();
    for cursor in [0, first[0], first[1]] {
        let refused = users.watch_from(cursor).map(|_| ());
        assert!(matches!(refused, Err(Error::FeedExpired { .. })), "cursor {cursor}: {refused:?}");
    }
    let resumed: Vec<u64> = users.watch_from(first[2]).unwrap().try_iter().map(|e| e.seq).collect();
    assert_eq!(resumed, second);
}

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
struct Renamed {
    #[id]
    user_key: String,
    #[belongs_to(User)]
    owner_id: String,
}

/// The schema PostgreSQL records keys the id by its Rust name, as it did before
/// `shelf.json` recorded JSON keys: a database made then still opens.
#[test]
fn a_renamed_id_is_recorded_by_its_rust_name_and_reopens() {
    let Some(schema) = Schema::new("renamed") else { return };
    let open = || schema.builder().register::<User>().register::<Renamed>().open().expect("open on PostgreSQL");
    let store = open();
    store.collection::<User>().unwrap().insert(user("ada", "ada@x")).unwrap();
    store.collection::<Renamed>().unwrap().insert(Renamed { user_key: "k".into(), owner_id: "ada".into() }).unwrap();
    drop(store);
    let recorded: String = schema
        .client()
        .query_one("SELECT schema->>'id_field' FROM shelf_meta WHERE collection = 'renamed'", &[])
        .unwrap()
        .get(0);
    assert_eq!(recorded, "user_key");
    let store = open();
    assert_eq!(store.collection::<Renamed>().unwrap().get("k").unwrap().owner_id, "ada");
}

/// The events `events` holds within `wait`, as `(kind, id)`.
fn drain(events: &std::sync::mpsc::Receiver<shelf::Event<User>>, wait: Duration) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    while let Ok(event) = events.recv_timeout(wait) {
        out.push(match &event.change {
            shelf::Change::Insert(u) => ("insert", u.id.clone()),
            shelf::Change::Update { old, new } => {
                assert_eq!(old.id, new.id);
                ("update", new.id.clone())
            }
            shelf::Change::Remove(u) => ("remove", u.id.clone()),
        });
    }
    out
}

/// An instance that fell behind the change log's retention (the rows it still needs
/// were pruned) reloads from one snapshot: its records, indices and watchers get the
/// net changes, one event per changed record and none for the others, and it follows
/// the feed again. Its own commit made while it was behind (numbered before the
/// snapshot) is kept.
#[test]
fn an_instance_behind_the_pruned_change_log_reloads_and_follows_the_feed_again() {
    let Some(schema) = Schema::new("reload") else { return };
    let (a, b) = (open(&schema), open(&schema));
    let users = a.collection::<User>().unwrap();
    for id in ["keep", "change", "gone"] {
        users.insert(user(id, &format!("{id}@x"))).unwrap();
    }
    b.sync().unwrap();
    let events = b.collection::<User>().unwrap().watch();

    // Hold B's change feed back: each of its polls reads `shelf_pruned`.
    let mut holder = schema.client();
    let mut hold = holder.transaction().unwrap();
    hold.batch_execute("LOCK TABLE shelf_pruned IN ACCESS EXCLUSIVE MODE").unwrap();
    users
        .update(&"change".into(), |u| {
            u.visits = 7;
            u.email = "changed@x".into();
        })
        .unwrap();
    // A second commit to the same record: following the log would give two
    // events for it, a reload gives one.
    users.update(&"change".into(), |u| u.visits = 8).unwrap();
    users.remove("gone").unwrap();
    users.insert(user("new", "gone@x")).unwrap(); // the removed record's email
    b.collection::<User>().unwrap().insert(user("bee", "bee@x")).unwrap();
    // Prune every row so far, as `prune` does with rows older than a minute.
    hold.batch_execute(
        "WITH gone AS (DELETE FROM shelf_changes RETURNING seq)
         UPDATE shelf_pruned SET upto = greatest(upto, (SELECT max(seq) FROM gone))",
    )
    .unwrap();
    hold.commit().unwrap();

    b.sync().expect("an instance behind the retention reloads");
    let held = b.collection::<User>().unwrap();
    let mut ids: Vec<String> = held.all().iter().map(|u| u.id.clone()).collect();
    ids.sort();
    assert_eq!(ids, ["bee", "change", "keep", "new"]);
    assert_eq!(*held.get("change").unwrap(), User { id: "change".into(), email: "changed@x".into(), visits: 8 });
    assert_eq!(held.by_email("gone@x").unwrap().id, "new", "the unique index follows the reload");
    assert!(held.by_email("change@x").is_none());
    assert_eq!(held.by_email("bee@x").unwrap().id, "bee");

    let mut seen = drain(&events, Duration::from_millis(200));
    assert_eq!(seen.first(), Some(&("insert", "bee".to_owned())), "its own commit, at once: {seen:?}");
    seen.remove(0);
    seen.sort();
    assert_eq!(
        seen,
        [("insert", "new".to_owned()), ("remove", "gone".to_owned()), ("update", "change".to_owned())],
        "the reload's net changes, one per record, and nothing for `keep`"
    );

    // It follows the feed again.
    users.insert(user("after", "after@x")).unwrap();
    b.sync().unwrap();
    assert_eq!(held.get("after").unwrap().email, "after@x");
    assert_eq!(drain(&events, Duration::from_millis(200)), [("insert", "after".to_owned())]);
    // And a write of B's reaches A.
    held.update(&"keep".into(), |u| u.visits = 1).unwrap();
    a.sync().unwrap();
    assert_eq!(users.get("keep").unwrap().visits, 1);
}

/// Instances that register different collections share one schema: every open
/// makes the commit function for every table the schema holds, so an open that
/// knows only `user` leaves `post` writable for the instances that know it.
#[test]
fn instances_registering_different_collections_share_one_schema() {
    let Some(schema) = Schema::new("mixed") else { return };
    let full = open(&schema);
    full.collection::<User>().unwrap().insert(user("ada", "ada@x")).unwrap();
    let posts = full.collection::<Post>().unwrap();
    let first = posts.insert(Post { id: 0, author: "ada".into(), title: "one".into() }).unwrap();
    // Opens after `post` exists, knowing only `user`: it makes the function again.
    let users_only = schema.builder().register::<User>().open().unwrap();
    users_only.collection::<User>().unwrap().update(&"ada".into(), |u| u.visits = 3).unwrap();
    let second = posts.insert(Post { id: 0, author: "ada".into(), title: "two".into() }).unwrap();
    posts.update(&first, |p| p.title = "one, again".into()).unwrap();
    assert!(matches!(
        posts.insert(Post { id: 0, author: "nobody".into(), title: "orphan".into() }),
        Err(Error::MissingParent { .. })
    ));
    full.sync().unwrap();
    assert_eq!(full.collection::<User>().unwrap().get("ada").unwrap().visits, 3);
    let titles: Vec<(String, String)> = schema
        .client()
        .query("SELECT doc->>'title', fk_author::text FROM post ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(titles, [("one, again".to_owned(), "\"ada\"".to_owned()), ("two".to_owned(), "\"ada\"".to_owned())]);
    assert_ne!(first, second);
}

/// The `NOTIFY`s that `listener` receives within `wait` from sessions other than
/// the instances' change-feed readers (which say hello when they connect): the
/// instances' notifiers.
fn notifier_notifications(listener: &mut postgres::Client, wait: Duration) -> usize {
    use postgres::fallible_iterator::FallibleIterator;
    let mut from = Vec::new();
    {
        let mut notifications = listener.notifications();
        let mut iter = notifications.timeout_iter(wait);
        while let Ok(Some(n)) = iter.next() {
            from.push(n.process_id());
        }
    }
    let readers: Vec<i32> = listener
        .query("SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'shelf-feed %'", &[])
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    from.iter().filter(|pid| !readers.contains(pid)).count()
}

/// Commits (one update of `u0` per round) until a round brings no notifier's
/// `NOTIFY`: a lone instance stops notifying once it has looked (at most a second
/// after it last did). Fails after 15 s.
fn until_quiet(users: &shelf::Collection<User>, listener: &mut postgres::Client) {
    let watchdog = std::time::Instant::now();
    loop {
        users.update(&"u0".into(), |u| u.visits += 1).unwrap();
        if notifier_notifications(listener, Duration::from_millis(300)) == 0 {
            return;
        }
        assert!(watchdog.elapsed() < Duration::from_secs(15), "a lone instance kept sending NOTIFY for 15 s");
    }
}

#[test]
fn an_instance_notifies_only_while_another_instance_follows_the_feed() {
    let Some(schema) = Schema::new("notify") else { return };
    let a = open(&schema);
    let mut listener = schema.client();
    listener.batch_execute(&format!("LISTEN \"shelf_{}\"", schema.name)).unwrap();
    let users = a.collection::<User>().unwrap();
    users.insert(user("u0", "u0@x")).unwrap();
    // Alone: nobody to wake, no NOTIFY (each costs the server a transaction).
    until_quiet(&users, &mut listener);
    for i in 1..20 {
        users.insert(user(&format!("u{i}"), &format!("u{i}@x"))).unwrap();
    }
    assert_eq!(notifier_notifications(&mut listener, Duration::from_secs(1)), 0, "a lone instance sent a NOTIFY");
    // A second instance follows the feed: the first wakes it.
    let b = open(&schema);
    let mut seen = 0;
    let watchdog = std::time::Instant::now();
    while seen == 0 {
        assert!(watchdog.elapsed() < Duration::from_secs(30), "no NOTIFY reached the second instance in 30 s");
        users.update(&"u0".into(), |u| u.visits += 1).unwrap();
        seen = notifier_notifications(&mut listener, Duration::from_millis(200));
    }
    // It goes: once the first has looked again, it stops.
    drop(b);
    until_quiet(&users, &mut listener);
    for _ in 0..20 {
        users.update(&"u0".into(), |u| u.visits += 1).unwrap();
    }
    assert_eq!(notifier_notifications(&mut listener, Duration::from_secs(1)), 0, "a NOTIFY after the other went");
}

/// `shelf_commit` itself, as a client of the schema would call it.
#[test]
fn shelf_commit_refuses_an_id_that_exists_and_a_version_that_is_gone() {
    use postgres::error::SqlState;
    let Some(schema) = Schema::new("commitfn") else { return };
    drop(open(&schema));
    let mut client = schema.client();
    let write =
        |v: &str, e: &str| format!(r#"[{{"c":"user","id":"zed","v":{v},"e":{e},"u":[["email","zed@x"]],"f":{{}}}}]"#);
    let call = |client: &mut postgres::Client, writes: String, reads: Option<&str>| {
        client.query_one("SELECT shelf_commit($1::text::jsonb, $2::text::jsonb, 'test')", &[&writes, &reads])
    };
    let record = r#"{"id":"zed","email":"zed@x","visits":0}"#;
    // `reads` may be NULL: none.
    let out: Vec<i64> = call(&mut client, write(record, "null"), None).unwrap().get(0);
    let version = out[1];
    // The same id again (with another unique key): the primary key refuses it,
    // and nothing is written.
    let other = r#"{"id":"zed","email":"zed@z","visits":0}"#;
    let writes = write(other, "null").replace(r#"["email","zed@x"]"#, r#"["email","zed@z"]"#);
    let again = call(&mut client, writes, Some("[]")).unwrap_err();
    assert_eq!(again.code(), Some(&SqlState::UNIQUE_VIOLATION), "{again}");
    assert_eq!(again.as_db_error().and_then(|e| e.constraint()), Some("user_pkey"), "{again}");
    // An update expecting a version that is gone changes nothing: 40001.
    let stale = call(&mut client, write(record, &(version - 1).to_string()), Some("[]")).unwrap_err();
    assert_eq!(stale.code(), Some(&SqlState::T_R_SERIALIZATION_FAILURE), "{stale}");
    // One expecting the version there is applied, with its unique key moved along.
    let moved = r#"{"id":"zed","email":"zed@y","visits":1}"#;
    let writes = write(moved, &version.to_string()).replace(r#"["email","zed@x"]"#, r#"["email","zed@y"]"#);
    call(&mut client, writes, Some("[]")).unwrap();
    let rows = client.query("SELECT key::text FROM shelf_unique WHERE collection = 'user'", &[]).unwrap();
    let keys: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
    assert_eq!(keys, vec![r#""zed@y""#.to_owned()]);
    let changes: i64 = client.query_one("SELECT count(*) FROM shelf_changes", &[]).unwrap().get(0);
    assert_eq!(changes, 2, "the two refused calls left change rows");
}

/// `shelf_commit_group` itself: each commit of a group is checked at its own end
/// (a unique key taken by the first and freed only by the second is refused, as
/// the first alone would be), and a group that passes gets one change row per
/// commit, numbered in order, all with the transaction's version.
#[test]
fn shelf_commit_group_checks_each_commit_at_its_end_and_numbers_them_in_order() {
    use postgres::error::SqlState;
    let Some(schema) = Schema::new("groupfn") else { return };
    drop(open(&schema));
    let mut client = schema.client();
    let insert = |id: &str, email: &str| {
        format!(
            r#"[{{"c":"user","id":"{id}","v":{{"id":"{id}","email":"{email}","visits":0}},"e":null,"u":[["email","{email}"]],"f":{{}}}}]"#
        )
    };
    let call = |client: &mut postgres::Client, writes: Vec<String>| {
        let reads = vec!["[]".to_owned(); writes.len()];
        client.query_one(
            "SELECT shelf_commit_group($1::text[]::jsonb[], $2::text[]::jsonb[], 'test')",
            &[&writes, &reads],
        )
    };
    let out: Vec<i64> = call(&mut client, vec![insert("a", "a@x")]).unwrap().get(0);
    let version_a = out[0];
    // `b` takes a@x, which `a`'s update frees only after: `b` alone would be
    // refused, so the group is.
    let free = format!(
        r#"[{{"c":"user","id":"a","v":{{"id":"a","email":"a@y","visits":0}},"e":{version_a},"u":[["email","a@y"]],"f":{{}}}}]"#
    );
    let refused = call(&mut client, vec![insert("b", "a@x"), free.clone()]).unwrap_err();
    assert_eq!(refused.code(), Some(&SqlState::UNIQUE_VIOLATION), "{refused}");
    let users: i64 = client.query_one("SELECT count(*) FROM \"user\"", &[]).unwrap().get(0);
    assert_eq!(users, 1, "nothing of a refused group is committed");
    // In the other order each commit holds at its end: committed, numbered in order.
    let out: Vec<i64> = call(&mut client, vec![free, insert("b", "a@x"), insert("c", "c@x")]).unwrap().get(0);
    let (version, seqs) = out.split_first().unwrap();
    assert_eq!(seqs.len(), 3);
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "one number per commit, in order: {seqs:?}");
    let rows = client.query("SELECT seq, version, payload->0->>'id' FROM shelf_changes ORDER BY seq", &[]).unwrap();
    let log: Vec<(i64, i64, String)> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    assert_eq!(log.len(), 4, "the refused group left no change row: {log:?}");
    let group: Vec<(i64, i64, String)> =
        seqs.iter().zip(["a", "b", "c"]).map(|(s, id)| (*s, *version, id.to_owned())).collect();
    assert_eq!(log[1..], group[..]);
    // A later commit of a group may still break a key for a moment inside itself:
    // `b` takes c@x before `c` lets it go, in one commit after another.
    let update = |id: &str, email: &str| {
        format!(
            r#"{{"c":"user","id":"{id}","v":{{"id":"{id}","email":"{email}","visits":1}},"e":{version},"u":[["email","{email}"]],"f":{{}}}}"#
        )
    };
    let swap = format!("[{},{}]", update("b", "c@x"), update("c", "b@z"));
    let out: Vec<i64> = call(&mut client, vec![insert("d", "d@x"), swap]).unwrap().get(0);
    assert_eq!(out.len(), 3, "{out:?}");
    // The others see the group's commits as any others.
    let b = open(&schema);
    let users = b.collection::<User>().unwrap();
    assert_eq!(users.get("a").unwrap().email, "a@y");
    assert_eq!(users.get("b").unwrap().email, "c@x");
    assert_eq!(users.get("c").unwrap().email, "b@z");
    assert_eq!(users.get("d").unwrap().email, "d@x");
}

/// A group waits for no lock long: one held by another transaction refuses it
/// (lock_not_available), where `shelf_commit` alone waits its turn.
#[test]
fn a_group_blocked_on_a_lock_is_refused_and_a_lone_commit_waits() {
    use postgres::error::SqlState;
    let Some(schema) = Schema::new("grouplock") else { return };
    let a = open(&schema);
    a.collection::<User>().unwrap().insert(user("ada", "ada@x")).unwrap();
    let version: i64 =
        schema.client().query_one("SELECT version FROM \"user\" WHERE id = '\"ada\"'", &[]).unwrap().get(0);
    let writes = format!(
        r#"[{{"c":"user","id":"ada","v":{{"id":"ada","email":"ada@y","visits":1}},"e":{version},"u":[["email","ada@y"]],"f":{{}}}}]"#
    );
    let mut holder = schema.client();
    let mut tx = holder.transaction().unwrap();
    tx.execute("SELECT 1 FROM \"user\" WHERE id = '\"ada\"' FOR UPDATE", &[]).unwrap();
    let mut client = schema.client();
    let refused = client
        .query_one(
            "SELECT shelf_commit_group($1::text[]::jsonb[], $2::text[]::jsonb[], 'test')",
            &[&vec![writes.clone()], &vec!["[]".to_owned()]],
        )
        .unwrap_err();
    assert_eq!(refused.code(), Some(&SqlState::LOCK_NOT_AVAILABLE), "{refused}");
    let alone = std::thread::spawn(move || {
        client.query_one("SELECT shelf_commit($1::text::jsonb, '[]'::jsonb, 'test')", &[&writes]).map(|_| ())
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(!alone.is_finished(), "a lone commit waits for the lock");
    tx.rollback().unwrap();
    alone.join().unwrap().unwrap();
    let email: String =
        schema.client().query_one("SELECT doc->>'email' FROM \"user\" WHERE id = '\"ada\"'", &[]).unwrap().get(0);
    assert_eq!(email, "ada@y");
}

#[test]
fn an_id_another_instance_inserted_first_is_a_duplicate_after_the_retry() {
    let Some(schema) = Schema::new("dupid") else { return };
    let b = open(&schema);
    // Another writer's commit, with no `NOTIFY`: `b` learns of it by its next poll.
    let writes = r#"[{"c":"user","id":"ada","v":{"id":"ada","email":"ada@x","visits":0},"e":null,"u":[["email","ada@x"]],"f":{}}]"#;
    schema.client().query_one("SELECT shelf_commit($1::text::jsonb, '[]'::jsonb, 'other')", &[&writes]).unwrap();
    // `b` has not seen it: PostgreSQL's primary key refuses the insert, `b`
    // catches up and runs it again, and the second run finds the id taken.
    let second = b.collection::<User>().unwrap().insert(user("ada", "other@x"));
    assert!(matches!(second, Err(Error::DuplicateId { .. })), "{second:?}");
    let row = schema.client().query_one("SELECT doc->>'email' FROM \"user\" WHERE id = '\"ada\"'", &[]).unwrap();
    assert_eq!(row.get::<_, String>(0), "ada@x");
    assert_eq!(b.collection::<User>().unwrap().get("ada").unwrap().email, "ada@x");
}

/// Commits of one instance's threads share PostgreSQL transactions (group commit),
/// and a group that PostgreSQL refuses because two of its commits take one email
/// leaves each commit its own outcome: exactly one of each pair is committed, the
/// other fails with `UniqueViolation`, and nothing else is lost or doubled.
#[test]
fn commits_of_many_threads_share_transactions_and_keep_their_own_outcomes() {
    let Some(schema) = Schema::new("groups") else { return };
    let a = open(&schema);
    let watchdog = std::time::Instant::now();
    let (threads, per) = (8usize, 40usize);
    let mut round = 0;
    let mut expected = 0i64;
    loop {
        // Threads 2k and 2k+1 race for the same emails; every id is new.
        let barrier = Arc::new(std::sync::Barrier::new(threads));
        let outcomes: Vec<Vec<shelf::Result<String>>> = (0..threads)
            .map(|t| {
                let (a, barrier) = (a.clone(), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    let users = a.collection::<User>().unwrap();
                    barrier.wait();
                    (0..per)
                        .map(|i| users.insert(user(&format!("r{round}t{t}i{i}"), &format!("r{round}p{}i{i}@x", t / 2))))
                        .collect()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect();
        for (pair, racing) in outcomes.chunks(2).enumerate() {
            for (i, (x, y)) in racing[0].iter().zip(&racing[1]).enumerate() {
                assert_eq!(x.is_ok() as u8 + y.is_ok() as u8, 1, "round {round}, email p{pair}i{i}: {x:?} {y:?}");
                let refused = [x, y].into_iter().find_map(|r| r.as_ref().err()).unwrap();
                assert!(matches!(refused, Error::UniqueViolation { .. }), "{refused}");
            }
        }
        expected += (threads / 2 * per) as i64;
        let mut client = schema.client();
        // Each `Ok` is in PostgreSQL, and each refusal is not.
        for (t, results) in outcomes.iter().enumerate() {
            for (i, result) in results.iter().enumerate() {
                let id = format!("\"r{round}t{t}i{i}\"");
                let there: i64 = client
                    .query_one("SELECT count(*) FROM \"user\" WHERE id = $1::text::jsonb", &[&id])
                    .unwrap()
                    .get(0);
                assert_eq!(there, result.is_ok() as i64, "{id}: {result:?}");
            }
        }
        let rows: i64 = client.query_one("SELECT count(*) FROM \"user\"", &[]).unwrap().get(0);
        assert_eq!(rows, expected, "round {round}: every acknowledged insert, and nothing else");
        assert_eq!(a.collection::<User>().unwrap().len() as i64, expected);
        // Commits of one transaction share its id as their version.
        let shared: i64 = client
            .query_one(
                "SELECT count(*) FROM (SELECT version FROM shelf_changes GROUP BY version HAVING count(*) > 1) g",
                &[],
            )
            .unwrap()
            .get(0);
        if shared > 0 {
            break;
        }
        round += 1;
        assert!(watchdog.elapsed() < Duration::from_secs(60), "8 threads never shared a transaction in {round} rounds");
    }
    // A second instance loads exactly the committed records.
    let b = open(&schema);
    assert_eq!(b.collection::<User>().unwrap().len() as i64, expected);
}
