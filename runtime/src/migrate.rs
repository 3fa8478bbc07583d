//! Moving a collection between storage layouts when its declaration changed
//! between runs (`per_record` <-> `collection_file`, compression on or off, sharding).
//!
//! `shelf.json` records each collection's layout. When the code declares another
//! one, `open` loads the records from the recorded layout and then:
//!
//! 0. marks the new layout as `migrating` in `shelf.json`;
//! 1. writes every record in the new layout and makes it durable;
//! 2. records the new layout in `shelf.json`, with the old one marked for cleanup
//!    (and the `migrating` mark cleared);
//! 3. removes the old layout's files (and, going to `memory`, the index files),
//!    durably;
//! 4. clears the cleanup mark.
//!
//! A crash before step 2 leaves `shelf.json` naming the old layout, whose files are
//! complete, and the `migrating` mark: the next open first removes the partial
//! new-layout files (so none can outlive the records they hold), then loads the old
//! layout and migrates again if still asked to. A crash after step 2 leaves the new
//! layout complete and recorded; the next open finishes the cleanup. So the records
//! are always wholly in the recorded layout, never split between two.

use std::path::Path;

use crate::backend::files::{stage_into, CollectionFiles};
use crate::backend::{Stage, Staged};
use crate::batch::{write_atomic, SyncMode, WriteBatch};
use crate::collection::ErasedCollection;
use crate::entity::StorageKind;
use crate::error::{Error, Result};
use crate::fs::Vfs;
use crate::meta::{Layout, Meta};
use crate::storage::strategy_for;

/// Removes every file of `layout` for `collection`, durably.
pub(crate) fn remove_layout(fs: &dyn Vfs, dir: &Path, collection: &str, layout: Layout, level: i32) -> Result<()> {
    let strategy = strategy_for(layout.spec(), dir, collection, level);
    let mut batch = WriteBatch::default();
    for file in strategy.files(fs)? {
        batch.remove(file);
    }
    batch.commit(fs, SyncMode::Batched)
}

/// Removes the index files of a collection that is no longer persisted.
fn remove_index_files(fs: &dyn Vfs, dir: &Path, collection: &str) -> Result<()> {
    let index_dir = dir.join(collection).join(crate::index_file::INDEX_DIR);
    let entries = match fs.read_dir(&index_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("list", &index_dir, e)),
    };
    let mut batch = WriteBatch::default();
    for entry in entries.into_iter().filter(|e| !e.is_dir) {
        batch.remove(index_dir.join(entry.name));
    }
    batch.commit(fs, SyncMode::Batched)
}

/// Finishes what an interrupted migration left: removes the partial files of an
/// unfinished one (`migrating`), or the old layout of a finished one (`cleanup`).
pub(crate) fn finish_cleanup(fs: &dyn Vfs, dir: &Path, meta: &mut Meta, collection: &str, level: i32) -> Result<()> {
    let Some(entry) = meta.collections.get(collection) else { return Ok(()) };
    let (partial, old, current) = (entry.migrating, entry.cleanup, entry.layout);
    if partial.is_none() && old.is_none() {
        return Ok(());
    }
    if let Some(partial) = partial.filter(|p| *p != current) {
        tracing::info!(collection, ?partial, "removing the partial files of an interrupted storage migration");
        remove_layout(fs, dir, collection, partial, level)?;
    }
    if let Some(old) = old {
        tracing::info!(collection, ?old, "finishing the cleanup of an interrupted storage migration");
        remove_layout(fs, dir, collection, old, level)?;
        if current.storage == StorageKind::Memory {
            remove_index_files(fs, dir, collection)?;
        }
    }
    if let Some(entry) = meta.collections.get_mut(collection) {
        entry.cleanup = None;
        entry.migrating = None;
    }
    write_atomic(fs, Meta::path(dir), meta.to_bytes(dir)?)
}

/// Moves `collection`'s loaded records from the `from` layout to its declared one.
pub(crate) fn migrate(
    fs: &dyn Vfs,
    dir: &Path,
    meta: &mut Meta,
    collection: &dyn ErasedCollection,
    files: &CollectionFiles,
    from: Layout,
    level: i32,
) -> Result<()> {
    let name = collection.name();
    let to = Layout::of(collection.spec());
    tracing::info!(collection = name, ?from, ?to, "migrating storage layout");
    let missing =
        || Error::Meta { path: Meta::path(dir), message: format!("collection `{name}` has no entry to migrate") };
    // 0. Marked, so a crash before step 2 leaves no stray new-layout files behind.
    meta.collections.get_mut(name).ok_or_else(missing)?.migrating = Some(to);
    write_atomic(fs, Meta::path(dir), meta.to_bytes(dir)?)?;
    // 1. The new layout, complete and durable.
    let mut batch = WriteBatch::default();
    stage_into(files, &mut batch, &mut AllRecords(collection))?;
    batch.commit(fs, SyncMode::Batched)?;
    // 2. Recorded, with the old layout marked for cleanup.
    let entry = meta.collections.get_mut(name).ok_or_else(missing)?;
    entry.layout = to;
    entry.cleanup = Some(from);
    entry.migrating = None;
    write_atomic(fs, Meta::path(dir), meta.to_bytes(dir)?)?;
    // 3 and 4.
    finish_cleanup(fs, dir, meta, name, level)
}

/// Whether moving from `from` to `to` needs the explicit opt-in: it deletes files.
pub(crate) fn needs_opt_in(from: Layout, to: Layout) -> bool {
    from.storage != StorageKind::Memory && to.storage == StorageKind::Memory
}

/// The layout whose files `collection` really has on disk, given the one `shelf.json`
/// records (`stored`) and the declared one. Open never trusts `shelf.json` alone: an
/// edited, copied or deleted `shelf.json` must not make it load nothing and then
/// overwrite the files it did not look at.
///
/// - No files, or files of `stored` only: `stored`.
/// - Files of exactly one other layout: that layout (open loads it, and migrates
///   from it if the declaration differs), with a warning.
/// - Files of several layouts: an error naming them all; nothing is touched.
pub(crate) fn layout_on_disk(
    fs: &dyn Vfs,
    dir: &Path,
    collection: &str,
    stored: Layout,
    declared: Layout,
    level: i32,
) -> Result<Layout> {
    let mut candidates = vec![stored, declared];
    for storage in [StorageKind::CollectionFile, StorageKind::PerRecord] {
        for compress in [false, true] {
            for shard in [0, stored.shard, declared.shard] {
                let shard = if storage == StorageKind::PerRecord { shard } else { 0 };
                candidates.push(Layout { storage, compress, shard });
            }
        }
    }
    // Several candidates list the same directories (the two codecs of `per_record`):
    // each is listed once.
    let fs = &ListedOnce { fs, listings: parking_lot::Mutex::new(std::collections::HashMap::new()) };
    let mut present: Vec<(Layout, Vec<std::path::PathBuf>)> = Vec::new();
    for layout in candidates {
        if layout.storage == StorageKind::Memory || present.iter().any(|(l, _)| *l == layout) {
            continue;
        }
        let files = strategy_for(layout.spec(), dir, collection, level).files(fs)?;
        // Two shard settings may see the same files: a layout counts once.
        if !files.is_empty() && !present.iter().any(|(_, seen)| *seen == files) {
            present.push((layout, files));
        }
    }
    match present.as_slice() {
        [] => Ok(stored),
        [(layout, _)] if *layout == stored => Ok(stored),
        [(layout, files)] => {
            tracing::warn!(
                collection,
                recorded = ?stored,
                found = ?layout,
                file = %files[0].display(),
                "shelf.json records another layout than the files hold; loading the files"
            );
            Ok(*layout)
        }
        several => Err(Error::Meta {
            path: crate::meta::Meta::path(dir),
            message: format!(
                "collection `{collection}` has files of {} layouts on disk ({}); shelf.json records {:?}. Keep the files of one layout and open again; nothing was changed",
                several.len(),
                several
                    .iter()
                    .map(|(layout, files)| format!("{layout:?}: {}", files[0].display()))
                    .collect::<Vec<_>>()
                    .join("; "),
                stored
            ),
        }),
    }
}

/// A read-only view of a [`Vfs`] that lists each directory once (the layout probe of
/// [`layout_on_disk`]). Anything that writes is refused: the probe never writes.
#[derive(Debug)]
struct ListedOnce<'a> {
    fs: &'a dyn Vfs,
    listings: parking_lot::Mutex<std::collections::HashMap<std::path::PathBuf, Vec<crate::fs::DirEntry>>>,
}

impl ListedOnce<'_> {
    fn refuse() -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::Unsupported, "the layout probe does not write")
    }
}

impl Vfs for ListedOnce<'_> {
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        self.fs.read(path)
    }
    fn open_read(&self, path: &Path) -> std::io::Result<Box<dyn std::io::Read + Send>> {
        self.fs.open_read(path)
    }
    fn read_dir(&self, path: &Path) -> std::io::Result<Vec<crate::fs::DirEntry>> {
        if let Some(entries) = self.listings.lock().get(path) {
            return Ok(entries.clone());
        }
        let entries = self.fs.read_dir(path)?;
        self.listings.lock().insert(path.to_path_buf(), entries.clone());
        Ok(entries)
    }
    fn create_new(&self, _: &Path) -> std::io::Result<Box<dyn crate::fs::VfsFile>> {
        Err(Self::refuse())
    }
    fn open_append(&self, _: &Path) -> std::io::Result<Box<dyn crate::fs::VfsAppend>> {
        Err(Self::refuse())
    }
    fn rename(&self, _: &Path, _: &Path) -> std::io::Result<()> {
        Err(Self::refuse())
    }
    fn remove_file(&self, _: &Path) -> std::io::Result<()> {
        Err(Self::refuse())
    }
    fn sync_dir(&self, _: &Path) -> std::io::Result<()> {
        Err(Self::refuse())
    }
    fn create_dir_all(&self, _: &Path) -> std::io::Result<()> {
        Err(Self::refuse())
    }
    fn try_lock(&self, _: &Path) -> std::io::Result<Box<dyn crate::fs::VfsLock>> {
        Err(Self::refuse())
    }
}

/// Every record of a collection, as one flush part: a migration's new layout.
struct AllRecords<'a>(&'a dyn ErasedCollection);

impl Staged for AllRecords<'_> {
    fn stage(&mut self, out: &mut dyn Stage) -> Result<()> {
        self.0.stage_all_records(out)
    }
}

#[cfg(test)]
mod tests {
    use std::io::ErrorKind;

    use super::*;
    use crate::fs::RealFs;

    /// Removing the index files of a collection moved to memory removes every file
    /// of its index directory, is done when there is no such directory, and fails
    /// (naming the directory) when the directory cannot be listed.
    #[test]
    fn index_files_are_removed_and_an_unlistable_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let index_dir = dir.path().join("notes").join(crate::index_file::INDEX_DIR);
        remove_index_files(&RealFs, dir.path(), "notes").expect("no index directory: nothing to do");

        std::fs::create_dir_all(&index_dir).unwrap();
        std::fs::write(index_dir.join("by_title.idx"), b"x").unwrap();
        std::fs::write(index_dir.join("by_tag.idx"), b"y").unwrap();
        remove_index_files(&RealFs, dir.path(), "notes").unwrap();
        assert_eq!(std::fs::read_dir(&index_dir).unwrap().count(), 0, "every index file is gone");

        // A file where the directory should be: listing it fails, and so does the
        // removal, instead of reporting the index files gone.
        std::fs::remove_dir(&index_dir).unwrap();
        std::fs::write(&index_dir, b"not a directory").unwrap();
        let error = remove_index_files(&RealFs, dir.path(), "notes").unwrap_err();
        assert!(error.to_string().contains(crate::index_file::INDEX_DIR), "{error}");
    }

    /// When shelf.json records a plain sharded per_record layout but the files are
    /// the compressed ones of the same shard width, the probe finds them: a
    /// per_record candidate is tried at each recorded shard width, not only at 0.
    #[test]
    fn the_probe_finds_compressed_record_files_in_the_recorded_shards() {
        use crate::storage::codec::Codec;
        use crate::storage::per_record::{PerRecord, EXT};

        let dir = tempfile::tempdir().unwrap();
        let records = dir.path().join("notes");
        let shard = PerRecord::new(records.clone(), Codec::new(true, 3), 1).shard_of("x");
        std::fs::create_dir_all(records.join(&shard)).unwrap();
        std::fs::write(records.join(&shard).join(format!("x{EXT}.zst")), b"").unwrap();

        let plain = Layout { storage: StorageKind::PerRecord, compress: false, shard: 1 };
        let found = layout_on_disk(&RealFs, dir.path(), "notes", plain, plain, 3).unwrap();
        assert_eq!(found, Layout { storage: StorageKind::PerRecord, compress: true, shard: 1 });
    }

    /// The layout probe's view reads what is there, lists each directory once (a
    /// second listing returns the first one, even after the directory changed), and
    /// refuses every write, so the probe cannot change the directory it looks at.
    #[test]
    fn the_probe_view_reads_lists_once_and_never_writes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.json");
        std::fs::write(&file, b"{\"id\":1}").unwrap();
        let view = ListedOnce { fs: &RealFs, listings: parking_lot::Mutex::new(std::collections::HashMap::new()) };

        assert_eq!(view.read(&file).unwrap(), b"{\"id\":1}");
        let mut read = Vec::new();
        std::io::Read::read_to_end(&mut view.open_read(&file).unwrap(), &mut read).unwrap();
        assert_eq!(read, b"{\"id\":1}");
        let names = |entries: Vec<crate::fs::DirEntry>| entries.into_iter().map(|e| e.name).collect::<Vec<_>>();
        assert_eq!(names(view.read_dir(dir.path()).unwrap()), ["a.json"]);
        std::fs::write(dir.path().join("b.json"), b"{}").unwrap();
        assert_eq!(names(view.read_dir(dir.path()).unwrap()), ["a.json"], "listed once");
        assert_eq!(view.read_dir(&dir.path().join("missing")).unwrap_err().kind(), ErrorKind::NotFound);

        let other = dir.path().join("c.json");
        let refused = |result: std::io::Result<()>| result.unwrap_err().kind() == ErrorKind::Unsupported;
        assert!(view.create_new(&other).is_err_and(|e| e.kind() == ErrorKind::Unsupported));
        assert!(view.open_append(&other).is_err_and(|e| e.kind() == ErrorKind::Unsupported));
        assert!(refused(view.rename(&file, &other)));
        assert!(refused(view.remove_file(&file)));
        assert!(refused(view.sync_dir(dir.path())));
        assert!(refused(view.create_dir_all(&dir.path().join("sub"))));
        assert!(view.try_lock(&dir.path().join("LOCK")).is_err_and(|e| e.kind() == ErrorKind::Unsupported));
        assert!(file.exists() && !other.exists() && !dir.path().join("sub").exists(), "nothing changed");
    }
}
