//! The WAL across segments: what `open` accepts and what it refuses.
//!
//! A bad record with a valid one after it, in the same segment or a later one, is
//! corruption (`Error::WalCorrupt`), not a torn tail. A segment's name is a lower
//! bound of its first record's sequence number: a name above it, records whose
//! sequence numbers go back, and `.wal` entries that are not segments are
//! `Error::WalSegment`, naming the file, and the files are left as they were.
//!
//! Each test writes a few commits, copies the directory while the store is open
//! (what a crash leaves), and rearranges the copy's segments.

mod common_wal;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shelf::{Entity, Error, Store, StoreBuilder};

#[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[storage(per_record, wal)]
struct Entry {
    #[id]
    id: u32,
    text: String,
}

const NEVER: Duration = Duration::from_secs(3600);
const HEADER_LEN: usize = 16;

fn builder(dir: &Path) -> StoreBuilder {
    Store::builder(dir).register::<Entry>().flush_interval(NEVER)
}

fn entry(id: u32) -> Entry {
    Entry { id, text: format!("entry {id}") }
}

fn segment_name(lsn: u64) -> String {
    format!("{lsn:020}.wal")
}

/// The crash image of a store that committed entries `1..=n` (one WAL record each)
/// and was never flushed: `(tempdir, wal directory, records)`, where the WAL
/// directory holds nothing any more and `records` are `(lsn, bytes)` of every
/// record that was in it, in order.
fn crashed(n: u32) -> (tempfile::TempDir, PathBuf, Vec<(u64, Vec<u8>)>) {
    let live = tempfile::tempdir().unwrap();
    let store = builder(live.path()).open().unwrap();
    for id in 1..=n {
        store.collection::<Entry>().unwrap().insert(entry(id)).unwrap();
    }
    let image = tempfile::tempdir().unwrap();
    common_wal::copy_dir(live.path(), image.path());
    drop(store);
    let wal = image.path().join("wal");
    let mut segments: Vec<PathBuf> = std::fs::read_dir(&wal).unwrap().map(|e| e.unwrap().path()).collect();
    segments.sort();
    let mut records = Vec::new();
    for segment in segments {
        let bytes = std::fs::read(&segment).unwrap();
        let mut offset = 0;
        while offset < bytes.len() {
            let len = u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap()) as usize;
            let lsn = u64::from_le_bytes(bytes[offset + 4..offset + 12].try_into().unwrap());
            records.push((lsn, bytes[offset..offset + HEADER_LEN + len].to_vec()));
            offset += HEADER_LEN + len;
        }
        std::fs::remove_file(&segment).unwrap();
    }
    assert_eq!(records.len(), n as usize, "expected one WAL record per insert");
    (image, wal, records)
}

/// Writes a segment holding `records`, concatenated.
fn write_segment(wal: &Path, name: &str, records: &[&[u8]]) -> PathBuf {
    let path = wal.join(name);
    std::fs::write(&path, records.concat()).unwrap();
    path
}

/// Every file of the WAL directory with its bytes.
fn wal_files(wal: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(wal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
        .collect();
    files.sort();
    files
}

/// Opens the image, expecting `Error::WalSegment` about `segment` whose message says
/// `needle`, and checks that the WAL directory was left exactly as it was.
fn expect_wal_segment(image: &Path, wal: &Path, segment: &Path, needle: &str) {
    let before = wal_files(wal);
    match builder(image).open() {
        Err(Error::WalSegment { segment: s, message }) => {
            assert_eq!(s, segment);
            assert!(message.contains(needle), "message does not say {needle:?}: {message}");
            let text = Error::WalSegment { segment: s, message }.to_string();
            assert!(text.contains(&segment.display().to_string()), "{text}");
        }
        Err(other) => panic!("expected Error::WalSegment for {}, got {other}", segment.display()),
        Ok(store) => panic!("expected Error::WalSegment for {}, got {store:?}", segment.display()),
    }
    assert_eq!(wal_files(wal), before, "a refused open changed the WAL");
}

fn ids(store: &Store) -> Vec<u32> {
    let mut ids: Vec<u32> = store.collection::<Entry>().unwrap().all().iter().map(|e| e.id).collect();
    ids.sort();
    ids
}

#[test]
fn a_bad_record_at_the_end_of_a_segment_with_a_valid_one_in_the_next_is_corruption() {
    let (image, wal, records) = crashed(3);
    let mut bad = records[1].1.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x40;
    let first = write_segment(&wal, &segment_name(records[0].0), &[&records[0].1, &bad]);
    write_segment(&wal, &segment_name(records[2].0), &[&records[2].1]);
    let before = wal_files(&wal);
    match builder(image.path()).open() {
        Err(Error::WalCorrupt { segment, offset }) => {
            assert_eq!(segment, first);
            assert_eq!(offset, records[0].1.len() as u64);
        }
        Err(other) => panic!("expected Error::WalCorrupt, got {other}"),
        Ok(store) => panic!("expected Error::WalCorrupt, got a store with ids {:?}", ids(&store)),
    }
    assert_eq!(wal_files(&wal), before, "a refused open changed the WAL");

    // Repair cuts the log at the bad record, dropping what follows, and reports the
    // bytes dropped from both segments.
    let store = builder(image.path()).repair_wal(true).open().unwrap();
    assert_eq!(ids(&store), [1]);
    assert_eq!(store.recovery_report().wal_bytes_truncated, (bad.len() + records[2].1.len()) as u64);
    // The cut keeps the segment it cut (record 1 is not flushed yet: the log still
    // carries it): a crash now loses nothing the repair kept.
    let after = tempfile::tempdir().unwrap();
    common_wal::copy_dir(image.path(), after.path());
    drop(store);
    let store = builder(after.path()).open().unwrap();
    assert_eq!(ids(&store), [1], "the record before the cut survives a crash after the repair");
}

#[test]
fn a_segment_named_below_its_first_record_is_accepted() {
    let (image, wal, records) = crashed(3);
    write_segment(&wal, &segment_name(records[0].0), &[&records[0].1, &records[1].1]);
    // Named as a rotation that did not yet know its first record would name it.
    write_segment(&wal, &segment_name(records[1].0), &[&records[2].1]);
    let store = builder(image.path()).open().unwrap();
    assert_eq!(ids(&store), [1, 2, 3]);
    store.collection::<Entry>().unwrap().insert(entry(4)).unwrap();
    drop(store);
    let store = builder(image.path()).open().unwrap();
    assert_eq!(ids(&store), [1, 2, 3, 4]);
}

#[test]
fn a_segment_named_above_its_first_record_is_refused() {
    let (image, wal, records) = crashed(3);
    write_segment(&wal, &segment_name(records[0].0), &[&records[0].1, &records[1].1]);
    let second = write_segment(&wal, &segment_name(records[2].0 + 5), &[&records[2].1]);
    expect_wal_segment(image.path(), &wal, &second, "first record");
}

#[test]
fn records_that_go_back_are_refused_not_truncated_as_a_torn_tail() {
    let (image, wal, records) = crashed(3);
    let segment =
        write_segment(&wal, &segment_name(records[0].0), &[&records[0].1, &records[1].1, &records[2].1, &records[1].1]);
    expect_wal_segment(image.path(), &wal, &segment, "not above");
    // Asked to repair, open cuts the log at the record that goes back, keeping the
    // three before it.
    let store = builder(image.path()).repair_wal(true).open().unwrap();
    assert_eq!(ids(&store), [1, 2, 3]);
    assert_eq!(store.recovery_report().wal_bytes_truncated, records[1].1.len() as u64);
}

#[test]
fn records_that_go_back_in_a_later_segment_are_refused() {
    let (image, wal, records) = crashed(3);
    write_segment(&wal, &segment_name(records[0].0), &[&records[0].1, &records[1].1, &records[2].1]);
    let second = write_segment(&wal, &segment_name(records[1].0), &[&records[1].1]);
    expect_wal_segment(image.path(), &wal, &second, "not above");
}

#[test]
fn a_segment_named_at_the_end_of_the_sequence_space_is_refused() {
    let (image, wal, records) = crashed(2);
    write_segment(&wal, &segment_name(records[0].0), &[&records[0].1, &records[1].1]);
    let planted = write_segment(&wal, &segment_name(u64::MAX), &[]);
    expect_wal_segment(image.path(), &wal, &planted, "beyond");
}

#[test]
fn a_wal_file_whose_name_is_not_a_segment_is_reported() {
    let (image, wal, records) = crashed(2);
    write_segment(&wal, &segment_name(records[0].0), &[&records[0].1]);
    let stray = write_segment(&wal, "2.wal", &[&records[1].1]);
    expect_wal_segment(image.path(), &wal, &stray, "not a segment name");
}

#[test]
fn a_directory_named_like_a_segment_is_reported() {
    let (image, wal, records) = crashed(2);
    write_segment(&wal, &segment_name(records[0].0), &[&records[0].1, &records[1].1]);
    let dir = wal.join(segment_name(records[1].0 + 1));
    std::fs::create_dir(&dir).unwrap();
    expect_wal_segment(image.path(), &wal, &dir, "directory");
}

/// A WAL record built by hand: `len`, `lsn`, CRC32C of both and the payload.
fn record(lsn: u64, payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u32).to_le_bytes();
    let mut crc = crc32c::crc32c(&len);
    crc = crc32c::crc32c_append(crc, &lsn.to_le_bytes());
    crc = crc32c::crc32c_append(crc, payload);
    [&len[..], &lsn.to_le_bytes(), &crc.to_le_bytes(), payload].concat()
}

/// Every record `(lsn, payload)` of the WAL directory, in segment order.
fn wal_records(wal: &Path) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    for (_, bytes) in wal_files(wal) {
        let mut offset = 0;
        while offset + HEADER_LEN <= bytes.len() {
            let len = u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap()) as usize;
            let lsn = u64::from_le_bytes(bytes[offset + 4..offset + 12].try_into().unwrap());
            out.push((lsn, bytes[offset + HEADER_LEN..offset + HEADER_LEN + len].to_vec()));
            offset += HEADER_LEN + len;
        }
    }
    out
}

/// After a torn append, the bytes that follow may hold an older record (a reused
/// buffer): a valid record whose sequence number is not above the last one does
/// not prove corruption, so the tail is cut as torn.
#[test]
fn a_stale_copy_of_an_older_record_after_a_torn_one_is_a_torn_tail() {
    let (image, wal, records) = crashed(3);
    let torn = &records[2].1[..records[2].1.len() - 3];
    write_segment(&wal, &segment_name(records[0].0), &[&records[0].1, &records[1].1, torn, &records[1].1]);
    let store = builder(image.path()).open().unwrap();
    assert_eq!(ids(&store), [1, 2]);
    assert_eq!(store.recovery_report().wal_bytes_truncated, (torn.len() + records[1].1.len()) as u64);
}

/// A valid record after a bad one is found wherever it starts, up to the last
/// header-sized window of the segment: here a record with an empty payload that
/// ends the segment.
#[test]
fn a_valid_record_ending_the_segment_after_a_bad_one_is_corruption() {
    let (image, wal, records) = crashed(2);
    let mut bad = records[1].1.clone();
    bad[HEADER_LEN] ^= 0x20;
    let last = record(records[1].0 + 1, b"");
    let segment = write_segment(&wal, &segment_name(records[0].0), &[&records[0].1, &bad, &last]);
    match builder(image.path()).open() {
        Err(Error::WalCorrupt { segment: s, offset }) => {
            assert_eq!((s, offset), (segment, records[0].1.len() as u64));
        }
        Err(other) => panic!("expected Error::WalCorrupt, got {other}"),
        Ok(store) => panic!("expected Error::WalCorrupt, got a store with ids {:?}", ids(&store)),
    }
}

/// A segment is named for its first record: with only an empty segment left, the
/// next commit takes the sequence number the name gives, not one already used.
#[test]
fn the_next_record_after_an_empty_segment_takes_the_number_in_its_name() {
    let (image, wal, records) = crashed(2);
    let next = records[1].0 + 10;
    write_segment(&wal, &segment_name(records[0].0), &[&records[0].1, &records[1].1]);
    write_segment(&wal, &segment_name(next), &[]);
    let store = builder(image.path()).open().unwrap();
    assert_eq!(ids(&store), [1, 2]);
    store.collection::<Entry>().unwrap().insert(entry(3)).unwrap();
    let lsns: Vec<u64> = wal_records(&wal).into_iter().map(|(lsn, _)| lsn).collect();
    assert_eq!(lsns.last(), Some(&next), "sequence numbers in the WAL: {lsns:?}");
}

/// The real file system, except that listing the WAL directory fails with EIO.
#[derive(Debug)]
struct UnlistableWal;

impl shelf::fs::Vfs for UnlistableWal {
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        shelf::fs::RealFs.read(path)
    }
    fn create_new(&self, path: &Path) -> std::io::Result<Box<dyn shelf::fs::VfsFile>> {
        shelf::fs::RealFs.create_new(path)
    }
    fn open_append(&self, path: &Path) -> std::io::Result<Box<dyn shelf::fs::VfsAppend>> {
        shelf::fs::RealFs.open_append(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        shelf::fs::RealFs.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        shelf::fs::RealFs.remove_file(path)
    }
    fn sync_dir(&self, path: &Path) -> std::io::Result<()> {
        shelf::fs::RealFs.sync_dir(path)
    }
    fn create_dir_all(&self, path: &Path) -> std::io::Result<()> {
        shelf::fs::RealFs.create_dir_all(path)
    }
    fn read_dir(&self, path: &Path) -> std::io::Result<Vec<shelf::fs::DirEntry>> {
        if path.ends_with(shelf::WAL_DIR) {
            return Err(std::io::Error::other("EIO listing the WAL directory (injected)"));
        }
        shelf::fs::RealFs.read_dir(path)
    }
    fn try_lock(&self, path: &Path) -> std::io::Result<Box<dyn shelf::fs::VfsLock>> {
        shelf::fs::RealFs.try_lock(path)
    }
}

/// A WAL directory that cannot be listed fails open, naming it: only a missing one
/// means an empty log. Opening as if it were empty would lose acknowledged commits.
#[test]
fn a_wal_directory_that_cannot_be_listed_fails_open() {
    let (image, wal, records) = crashed(2);
    write_segment(&wal, &segment_name(records[0].0), &[&records[0].1, &records[1].1]);
    match builder(image.path()).vfs(UnlistableWal).open() {
        Err(e) => assert!(
            e.to_string().contains(&wal.display().to_string()),
            "the error does not name {}: {e}",
            wal.display()
        ),
        Ok(store) => panic!("an unlistable WAL was taken as empty: opened with ids {:?}", ids(&store)),
    }
    let store = builder(image.path()).open().unwrap();
    assert_eq!(ids(&store), [1, 2]);
}

/// The bound is inclusive: a segment named exactly 2^63 (the highest sequence number
/// Shelf writes) is a segment; the one above it is refused
/// (`a_segment_named_at_the_end_of_the_sequence_space_is_refused`).
#[test]
fn a_segment_named_at_the_bound_of_the_sequence_space_is_accepted() {
    let (image, wal, records) = crashed(2);
    write_segment(&wal, &segment_name(records[0].0), &[&records[0].1, &records[1].1]);
    write_segment(&wal, &segment_name(1 << 63), &[]);
    let store = builder(image.path()).open().unwrap();
    assert_eq!(ids(&store), [1, 2]);
}
