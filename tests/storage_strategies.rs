//! Storage strategies (issue 6, DESIGN §4): for `per_record`, `per_record` +
//! `compress`, `per_record` + `shard`, `collection_file` and `collection_file` +
//! `compress`: CRUD, flush and reopen with the exact on-disk layout checked by
//! reading the files directly (zstd and serde_json, not Shelf), indices after reopen,
//! flushes that rewrite only what changed, the compression level, and quarantine of a
//! bad line in a collection file.

#[macro_use]
mod common_storage;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common_storage::*;
use shelf::{Error, Store};

variant!(pr, per_record);
variant!(prz, per_record, compress);
variant!(prs, per_record, shard = 1);
variant!(cf, collection_file);
variant!(cfz, collection_file, compress);

/// Ids that need escaping in file names, next to plain ones.
const IDS: &[&str] = &["a", "b", "c", "d", "e", "f", "g", "h", "Mixed.Case", "x/y", "ünï", "con", "k-1_2"];
const COLORS: [&str; 3] = ["red", "green", "blue"];

#[test]
fn the_test_declarations_have_the_intended_layouts() {
    assert_eq!(pr::V::LAYOUT, Layout::PerRecord { compress: false, shard: 0 });
    assert_eq!(prz::V::LAYOUT, Layout::PerRecord { compress: true, shard: 0 });
    assert_eq!(prs::V::LAYOUT, Layout::PerRecord { compress: false, shard: 1 });
    assert_eq!(cf::V::LAYOUT, Layout::CollectionFile { compress: false });
    assert_eq!(cfz::V::LAYOUT, Layout::CollectionFile { compress: true });
}

// ---- CRUD, flush, reopen, layout ---------------------------------------------------

fn check_disk<V: Variant>(dir: &Path, items: &BTreeMap<String, Rec>, logs: &BTreeMap<u64, LogRec>, context: &str) {
    let fs = real();
    assert_on_disk(fs.as_ref(), dir, "item", V::LAYOUT, "id", &as_values(items), context);
    assert_on_disk(fs.as_ref(), dir, "log", V::LAYOUT, "seq", &as_values(logs), context);
}

fn crud_flush_reopen<V: Variant>() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let store = builder::<V>(&dir).open().unwrap();
    let items = store.collection::<V::Item>().unwrap();
    let logs = store.collection::<V::Log>().unwrap();
    let mut model = BTreeMap::new();
    for (n, id) in IDS.iter().enumerate() {
        let r = rec(id, COLORS[n % 3], n as u32, &format!("note {n} {}", "z".repeat(n)));
        assert_eq!(items.insert(V::Item::from_rec(&r)).unwrap(), *id);
        model.insert(id.to_string(), r);
    }
    // Upsert replaces, update changes an indexed field, remove removes.
    let replaced = rec("b", "blue", 100, "upserted");
    assert!(items.upsert(V::Item::from_rec(&replaced)).unwrap().is_some());
    model.insert("b".into(), replaced);
    items.update(&"c".to_string(), |i| i.set_color("green")).unwrap();
    model.get_mut("c").unwrap().color = "green".into();
    assert!(items.remove(&"d".to_string()).unwrap().is_some());
    model.remove("d");
    assert!(matches!(items.insert(V::Item::from_rec(&model["a"])), Err(Error::DuplicateId { .. })));
    assert_eq!(self::items::<V>(&store), model);
    check_indices::<V>(&store, &model, "before the first flush");

    let mut log_model = BTreeMap::new();
    for n in 0..5 {
        let id = logs.insert(V::Log::new(&format!("event {n}"))).unwrap();
        log_model.insert(id, LogRec { seq: id, msg: format!("event {n}") });
    }
    let top = *log_model.keys().max().unwrap();
    // The two highest ids are removed: the counter must not hand them out again.
    logs.remove(&top).unwrap();
    logs.remove(&(top - 1)).unwrap();
    log_model.remove(&top);
    log_model.remove(&(top - 1));

    let stats = store.flush().unwrap();
    assert!(stats.records > 0);
    assert_eq!(store.health().dirty, 0);
    check_disk::<V>(&dir, &model, &log_model, "after the first flush");
    store.close().unwrap();
    drop((items, logs, store));

    let store = builder::<V>(&dir).open().unwrap();
    assert_eq!(self::items::<V>(&store), model, "after reopen");
    assert_eq!(self::logs::<V>(&store), log_model, "after reopen");
    check_indices::<V>(&store, &model, "after reopen");
    let items = store.collection::<V::Item>().unwrap();
    let logs = store.collection::<V::Log>().unwrap();
    let next = logs.insert(V::Log::new("after reopen")).unwrap();
    assert_eq!(next, top + 1, "the auto-id counter survives the reopen");
    log_model.insert(next, LogRec { seq: next, msg: "after reopen".into() });

    // More changes after reopen: the same record files are replaced, never doubled.
    items.update(&"Mixed.Case".to_string(), |i| i.set_note("changed after reopen")).unwrap();
    model.get_mut("Mixed.Case").unwrap().note = "changed after reopen".into();
    items.remove(&"x/y".to_string()).unwrap();
    model.remove("x/y");
    let r = rec("new", "red", 200, "inserted after reopen");
    items.insert(V::Item::from_rec(&r)).unwrap();
    model.insert("new".into(), r);
    store.flush().unwrap();
    check_disk::<V>(&dir, &model, &log_model, "after the second flush");
    check_indices::<V>(&store, &model, "after the second flush");

    // Removing everything leaves an empty collection, which reopens empty.
    for id in model.keys() {
        items.remove(id).unwrap();
    }
    store.flush().unwrap();
    check_disk::<V>(&dir, &BTreeMap::new(), &log_model, "after removing every item");
    store.close().unwrap();
    drop((items, logs, store));
    let store = builder::<V>(&dir).open().unwrap();
    assert!(self::items::<V>(&store).is_empty());
    check_indices::<V>(&store, &BTreeMap::new(), "empty after reopen");
    assert_eq!(self::logs::<V>(&store), log_model);
}

#[test]
fn per_record_crud_flush_reopen_and_layout() {
    crud_flush_reopen::<pr::V>();
}

#[test]
fn per_record_compressed_crud_flush_reopen_and_layout() {
    crud_flush_reopen::<prz::V>();
}

#[test]
fn per_record_sharded_crud_flush_reopen_and_layout() {
    crud_flush_reopen::<prs::V>();
}

#[test]
fn collection_file_crud_flush_reopen_and_layout() {
    crud_flush_reopen::<cf::V>();
}

#[test]
fn collection_file_compressed_crud_flush_reopen_and_layout() {
    crud_flush_reopen::<cfz::V>();
}

// ---- Only what changed is rewritten ------------------------------------------------

/// Every file under `dir` with its inode and content: a file replaced by a rename
/// gets a new inode even when its bytes are the same.
fn identity(dir: &Path) -> BTreeMap<PathBuf, (u64, Vec<u8>)> {
    let fs = real();
    all_files(fs.as_ref(), dir)
        .into_iter()
        .filter(|f| f != Path::new("LOCK"))
        .map(|f| {
            let path = dir.join(&f);
            #[cfg(unix)]
            let ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&path).unwrap());
            #[cfg(not(unix))]
            let ino = 0;
            (f, (ino, std::fs::read(&path).unwrap()))
        })
        .collect()
}

/// The files that differ between two [`identity`] snapshots.
fn changed(before: &BTreeMap<PathBuf, (u64, Vec<u8>)>, after: &BTreeMap<PathBuf, (u64, Vec<u8>)>) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> =
        before.keys().chain(after.keys()).filter(|f| before.get(*f) != after.get(*f)).cloned().collect();
    out.dedup();
    out
}

fn only_changes_are_rewritten<V: Variant>() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let store = builder::<V>(&dir).open().unwrap();
    let items = store.collection::<V::Item>().unwrap();
    let logs = store.collection::<V::Log>().unwrap();
    for n in 0..20u32 {
        items.insert(V::Item::from_rec(&rec(&format!("i{n:02}"), COLORS[n as usize % 3], n, "x"))).unwrap();
    }
    logs.insert(V::Log::new("one")).unwrap();
    store.flush().unwrap();
    let first = identity(&dir);

    // Nothing changed: nothing is written, not even the same bytes again.
    let stats = store.flush().unwrap();
    assert_eq!(stats.records, 0, "a flush without changes wrote {} files", stats.records);
    assert_eq!(stats.bytes, 0);
    assert_eq!(changed(&first, &identity(&dir)), Vec::<PathBuf>::new(), "a flush without changes touched files");

    // A change in the other collection leaves this one's files alone.
    logs.insert(V::Log::new("two")).unwrap();
    store.flush().unwrap();
    let after_log = identity(&dir);
    for file in changed(&first, &after_log) {
        assert!(
            matches!(classify("log", &file), Some(FileKind::Data(_))) || file == Path::new("shelf.json"),
            "a change to `log` rewrote {}",
            file.display()
        );
    }

    // One changed item: per_record rewrites its file, collection_file the whole file.
    items.update(&"i07".to_string(), |i| i.set_note("changed")).unwrap();
    let stats = store.flush().unwrap();
    assert!(stats.records >= 1);
    let after_item = identity(&dir);
    let rewritten = changed(&after_log, &after_item);
    let expected: Vec<PathBuf> = match V::LAYOUT {
        Layout::CollectionFile { compress } => {
            vec![PathBuf::from(if compress { "item.jsonl.zst" } else { "item.jsonl" })]
        }
        _ => after_item.keys().filter(|f| f.to_string_lossy().contains("i07.json")).cloned().collect(),
    };
    assert_eq!(expected.len(), 1);
    assert_eq!(rewritten, expected, "an update of a non-indexed field rewrote other files");
    // Flushes never write index files; the clean close writes those that changed.
    store.close().unwrap();
    drop((items, logs, store));
    let closed = identity(&dir);
    for file in changed(&after_item, &closed) {
        assert!(file.starts_with("item/indices"), "close rewrote {}", file.display());
    }

    // Reopening and closing without changes rewrites nothing either.
    let store = builder::<V>(&dir).open().unwrap();
    assert_eq!(store.flush().unwrap().records, 0);
    store.close().unwrap();
    drop(store);
    assert_eq!(changed(&closed, &identity(&dir)), Vec::<PathBuf>::new(), "open and close without changes");
}

#[test]
fn collection_file_is_not_rewritten_when_nothing_changed() {
    only_changes_are_rewritten::<cf::V>();
}

#[test]
fn compressed_collection_file_is_not_rewritten_when_nothing_changed() {
    only_changes_are_rewritten::<cfz::V>();
}

#[test]
fn per_record_flush_rewrites_only_changed_records() {
    only_changes_are_rewritten::<pr::V>();
    only_changes_are_rewritten::<prz::V>();
    only_changes_are_rewritten::<prs::V>();
}

// ---- Sharding and compression details -----------------------------------------------

#[test]
fn sharded_records_spread_over_hex_directories() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let store = builder::<prs::V>(&dir).open().unwrap();
    let items = store.collection::<prs::Item>().unwrap();
    for n in 0..200u32 {
        items.insert(prs::Item { id: format!("user-{n}"), color: "red".into(), code: n, note: String::new() }).unwrap();
    }
    store.flush().unwrap();
    let fs = real();
    let mut shards = std::collections::BTreeSet::new();
    for (file, kind) in collection_files(fs.as_ref(), &dir, "item") {
        if kind == FileKind::Index {
            continue;
        }
        assert_eq!(kind, FileKind::Data(prs::V::LAYOUT), "{}", file.display());
        shards.insert(file.iter().nth(1).unwrap().to_owned());
    }
    assert_eq!(shards.len(), 16, "200 records in only {} of 16 shard directories", shards.len());
    for entry in std::fs::read_dir(dir.join("item")).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        assert!(entry.file_type().unwrap().is_dir(), "a file directly in the sharded collection: {name}");
        assert!(
            name == "indices"
                || (name.len() == 1 && name.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))),
            "unexpected directory {name}"
        );
    }
}

#[test]
fn the_compression_level_is_applied_and_every_level_reads_back() {
    let tmp = tempfile::tempdir().unwrap();
    let mut sizes = Vec::new();
    let mut model = BTreeMap::new();
    for n in 0..300u32 {
        let r = rec(&format!("rec-{n:04}"), COLORS[n as usize % 3], n, &format!("a fairly repetitive note number {n}"));
        model.insert(r.id.clone(), r);
    }
    for (name, level) in [("plain", None), ("fast", Some(1)), ("small", Some(19))] {
        let dir = tmp.path().join(name);
        let open = |dir: &Path| match level {
            None => builder::<cf::V>(dir).open().unwrap(),
            Some(level) => builder::<cfz::V>(dir).compression_level(level).open().unwrap(),
        };
        let store = open(&dir);
        for r in model.values() {
            match level {
                None => store.collection::<cf::Item>().unwrap().insert(cf::Item::from_rec(r)).map(drop),
                Some(_) => store.collection::<cfz::Item>().unwrap().insert(cfz::Item::from_rec(r)).map(drop),
            }
            .unwrap();
        }
        store.close().unwrap();
        drop(store);
        let layout = if level.is_some() { cfz::V::LAYOUT } else { cf::V::LAYOUT };
        let fs = real();
        assert_eq!(read_layout(fs.as_ref(), &dir, "item", layout, "id"), as_values(&model), "{name}");
        let file = dir.join(if level.is_some() { "item.jsonl.zst" } else { "item.jsonl" });
        let bytes = std::fs::read(&file).unwrap();
        if let Some(level) = level {
            // The file is exactly what zstd makes of its content at the configured level.
            let text = zstd::decode_all(bytes.as_slice()).unwrap();
            assert_eq!(bytes, zstd::encode_all(text.as_slice(), level).unwrap(), "level {level} was not applied");
            let other = if level == 1 { 19 } else { 1 };
            assert_ne!(bytes, zstd::encode_all(text.as_slice(), other).unwrap(), "levels {level} and {other} agree");
        }
        sizes.push(bytes.len());
    }
    let [plain, fast, small] = sizes[..] else { unreachable!() };
    assert!(fast < plain / 3 && small < plain / 3, "compressed {fast} and {small} bytes vs {plain} plain");
}

/// per_record files are compressed one by one (one zstd context serves a whole flush):
/// each is the single frame zstd makes of its content at the configured level.
#[test]
fn every_per_record_file_is_compressed_at_the_configured_level_and_reads_back() {
    let tmp = tempfile::tempdir().unwrap();
    let mut model = BTreeMap::new();
    // More than one flush batch's threshold for a file-system sync (64 files).
    for n in 0..100u32 {
        let r = rec(&format!("rec-{n:04}"), COLORS[n as usize % 3], n, &format!("a fairly repetitive note number {n}"));
        model.insert(r.id.clone(), r);
    }
    for level in [1, 19] {
        let dir = tmp.path().join(format!("level-{level}"));
        let store = builder::<prz::V>(&dir).compression_level(level).open().unwrap();
        for r in model.values() {
            store.collection::<prz::Item>().unwrap().insert(prz::Item::from_rec(r)).unwrap();
        }
        store.close().unwrap();
        drop(store);
        let mut files = 0;
        for entry in std::fs::read_dir(dir.join("item")).unwrap() {
            let path = entry.unwrap().path();
            if !path.to_string_lossy().ends_with(".json.zst") {
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            let text = zstd::decode_all(bytes.as_slice()).unwrap();
            assert_eq!(bytes, zstd::bulk::compress(&text, level).unwrap(), "{}: not level {level}", path.display());
            let other = if level == 1 { 19 } else { 1 };
            assert_ne!(bytes, zstd::bulk::compress(&text, other).unwrap(), "levels {level} and {other} agree");
            files += 1;
        }
        assert_eq!(files, model.len(), "level {level}: one file per record");
        assert_eq!(read_layout(real().as_ref(), &dir, "item", prz::V::LAYOUT, "id"), as_values(&model));
        let store = builder::<prz::V>(&dir).compression_level(level).open().unwrap();
        assert_eq!(store.collection::<prz::Item>().unwrap().len(), model.len(), "level {level}: reopened");
    }
}

// ---- Quarantine ----------------------------------------------------------------------

fn collection_file_path(dir: &Path, layout: Layout) -> PathBuf {
    match layout {
        Layout::CollectionFile { compress: false } => dir.join("item.jsonl"),
        Layout::CollectionFile { compress: true } => dir.join("item.jsonl.zst"),
        other => panic!("not a collection file layout: {other:?}"),
    }
}

/// Writes `text` as the collection file, compressed when the layout is.
fn write_collection_file(dir: &Path, layout: Layout, text: &str) -> Vec<u8> {
    let bytes =
        if layout.compressed() { zstd::encode_all(text.as_bytes(), 3).unwrap() } else { text.as_bytes().to_vec() };
    std::fs::write(collection_file_path(dir, layout), &bytes).unwrap();
    bytes
}

fn seed_five<V: Variant>(dir: &Path) -> BTreeMap<String, Rec> {
    let store = builder::<V>(dir).open().unwrap();
    let items = store.collection::<V::Item>().unwrap();
    let mut model = BTreeMap::new();
    for (n, id) in ["a", "b", "c", "d", "e"].into_iter().enumerate() {
        let r = rec(id, COLORS[n % 3], n as u32, "seed");
        items.insert(V::Item::from_rec(&r)).unwrap();
        model.insert(id.to_owned(), r);
    }
    store.close().unwrap();
    model
}

fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    identity(dir).into_iter().map(|(f, (_, bytes))| (f, bytes)).collect()
}

fn bad_line_is_quarantined<V: Variant>() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut model = seed_five::<V>(&dir);
    let fs = real();
    let file = collection_file_path(&dir, V::LAYOUT);
    let text = String::from_utf8(decode(&file, std::fs::read(&file).unwrap(), V::LAYOUT.compressed())).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5);
    assert!(lines[2].contains("\"c\""));
    lines[2] = r#"{"id":"c","color":"#;
    let corrupted = write_collection_file(&dir, V::LAYOUT, &(lines.join("\n") + "\n"));
    model.remove("c");
    let before = snapshot(&dir);

    // Without quarantine, open fails naming the file and line, and changes nothing.
    match builder::<V>(&dir).open() {
        Err(Error::CorruptRecord { collection, path, .. }) => {
            assert_eq!(collection, "item");
            assert_eq!(path, PathBuf::from(format!("{}:3", file.display())));
        }
        other => panic!("expected CorruptRecord, got {other:?}"),
    }
    assert_eq!(snapshot(&dir), before, "a failed open changed files");

    // With quarantine: the other records load, the file is copied aside whole.
    let store = builder::<V>(&dir).quarantine_corrupt(true).open().unwrap();
    assert_eq!(items::<V>(&store), model);
    check_indices::<V>(&store, &model, "after quarantine");
    let report = store.recovery_report().clone();
    assert_eq!(report.quarantined.len(), 1, "{report:?}");
    let q = &report.quarantined[0];
    assert_eq!(q.collection, "item");
    assert_eq!(q.from, file);
    assert_eq!(q.to, dir.join("_quarantine").join("item").join(file.file_name().unwrap()));
    assert!(q.reason.contains(":3"), "the reason names the line: {}", q.reason);
    assert_eq!(std::fs::read(&q.to).unwrap(), corrupted, "the quarantined copy is the whole original file");

    // The next flush (open already ran one) rewrites the file without the bad line.
    store.flush().unwrap();
    assert!(store.health().is_ok(), "{:?}", store.health());
    assert_eq!(read_layout(fs.as_ref(), &dir, "item", V::LAYOUT, "id"), as_values(&model));
    store.close().unwrap();
    drop(store);

    // Reopening without quarantine now works, and the copy stays.
    let store = builder::<V>(&dir).open().unwrap();
    assert_eq!(items::<V>(&store), model);
    assert!(store.recovery_report().quarantined.is_empty());
    assert_eq!(std::fs::read(&q.to).unwrap(), corrupted);
}

#[test]
fn a_bad_line_in_a_collection_file_is_quarantined() {
    bad_line_is_quarantined::<cf::V>();
}

#[test]
fn a_bad_line_in_a_compressed_collection_file_is_quarantined() {
    bad_line_is_quarantined::<cfz::V>();
}

/// Two bad lines in one collection file: both records are skipped, and the file is
/// copied aside once (one report entry, naming the first bad line).
#[test]
fn two_bad_lines_in_one_collection_file_are_copied_aside_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut model = seed_five::<cf::V>(&dir);
    let file = collection_file_path(&dir, cf::V::LAYOUT);
    let text = String::from_utf8(std::fs::read(&file).unwrap()).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for (line, id) in [(1, "b"), (3, "d")] {
        assert!(lines[line].contains(&format!("\"{id}\"")), "{}", lines[line]);
        lines[line] = format!(r#"{{"id":"{id}","color":"#);
        model.remove(id);
    }
    let corrupted = write_collection_file(&dir, cf::V::LAYOUT, &(lines.join("\n") + "\n"));

    let store = builder::<cf::V>(&dir).quarantine_corrupt(true).open().unwrap();
    assert_eq!(items::<cf::V>(&store), model);
    let report = store.recovery_report().clone();
    assert_eq!(report.quarantined.len(), 1, "{report:?}");
    assert!(report.quarantined[0].reason.contains(":2"), "{}", report.quarantined[0].reason);
    let copies: Vec<_> =
        std::fs::read_dir(dir.join("_quarantine").join("item")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(copies, [file.file_name().unwrap()], "one copy of the file");
    assert_eq!(std::fs::read(&report.quarantined[0].to).unwrap(), corrupted);

    // The rewrite the skipped lines asked for happens once: after it, a flush with
    // nothing dirty writes nothing.
    let rewrite = store.flush().unwrap();
    let again = store.flush().unwrap();
    assert_eq!((rewrite.records > 0, again.records), (true, 0), "{rewrite:?} then {again:?}");
}

/// A `.jsonl.zst` whose zstd stream is cut short must never load as the records
/// before the cut: open fails naming the file, or (with quarantine) keeps a copy and
/// reports it. Either way the file is not replaced by the shorter collection.
#[test]
fn a_truncated_compressed_collection_file_is_not_loaded_as_a_prefix() {
    for quarantine in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let store = builder::<cfz::V>(&dir).open().unwrap();
        let items = store.collection::<cfz::Item>().unwrap();
        for n in 0..2000u32 {
            items
                .insert(cfz::Item {
                    id: format!("r{n:05}"),
                    color: "red".into(),
                    code: n,
                    note: format!("{n}").repeat(8),
                })
                .unwrap();
        }
        store.close().unwrap();
        drop((items, store));
        let file = dir.join("item.jsonl.zst");
        let bytes = std::fs::read(&file).unwrap();
        std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
        let before = snapshot(&dir);

        match builder::<cfz::V>(&dir).quarantine_corrupt(quarantine).open() {
            Err(e) => {
                eprintln!("quarantine {quarantine}: open refused the truncated file: {e}");
                assert!(e.to_string().contains("item.jsonl.zst"), "the error names the file: {e}");
                assert_eq!(snapshot(&dir), before, "a failed open changed files");
            }
            Ok(store) => {
                let loaded = store.collection::<cfz::Item>().unwrap().len();
                assert!(quarantine, "open without quarantine loaded {loaded} of 2000 records from a truncated file");
                assert!(!store.recovery_report().quarantined.is_empty(), "{loaded} records loaded, nothing reported");
                let copy = &store.recovery_report().quarantined[0].to;
                assert_eq!(std::fs::read(copy).unwrap(), before[Path::new("item.jsonl.zst")]);
            }
        }
    }
}

#[test]
fn an_undecodable_compressed_record_file_is_quarantined() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let model = {
        let mut m = seed_five::<prz::V>(&dir);
        m.remove("b");
        m
    };
    let file = dir.join("item").join("b.json.zst");
    std::fs::write(&file, b"{\"id\":\"b\"} is not zstd").unwrap();

    match builder::<prz::V>(&dir).open() {
        Err(Error::CorruptRecord { path, .. }) => assert_eq!(path, file),
        other => panic!("expected CorruptRecord, got {other:?}"),
    }
    let store = builder::<prz::V>(&dir).quarantine_corrupt(true).open().unwrap();
    assert_eq!(items::<prz::V>(&store), model);
    let q = &store.recovery_report().quarantined;
    assert_eq!(q.len(), 1, "{q:?}");
    assert_eq!(q[0].from, file);
    assert_eq!(std::fs::read(&q[0].to).unwrap(), b"{\"id\":\"b\"} is not zstd");
    assert!(!file.exists());
    drop(store);
    let store =
        Store::builder(&dir).register::<prz::Item>().register::<prz::Log>().flush_interval(NEVER).open().unwrap();
    assert_eq!(items::<prz::V>(&store), model);
}
