//! Moving a collection between storage layouts when its declaration changed
//! between runs (`per_record` <-> `collection_file`, compression on or off, sharding).
//!
//! `shelf.json` records each collection's layout. When the code declares another
//! one, `open` loads the records from the recorded layout and then:
//!
//! 1. writes every record in the new layout and makes it durable;
//! 2. records the new layout in `shelf.json`, with the old one marked for cleanup;
//! 3. removes the old layout's files, durably;
//! 4. clears the cleanup mark.
//!
//! A crash before step 2 leaves `shelf.json` naming the old layout, whose files are
//! complete: the next open loads them and migrates again (new-layout files from the
//! interrupted attempt are rewritten). A crash after step 2 leaves the new layout
//! complete and recorded; the next open finishes the cleanup. So the records are
//! always wholly in the recorded layout, never split between two.

use std::path::Path;

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

/// Finishes an interrupted cleanup recorded in `meta`.
pub(crate) fn finish_cleanup(fs: &dyn Vfs, dir: &Path, meta: &mut Meta, collection: &str, level: i32) -> Result<()> {
    let Some(old) = meta.collections.get(collection).and_then(|m| m.cleanup) else { return Ok(()) };
    tracing::info!(collection, ?old, "finishing the cleanup of an interrupted storage migration");
    remove_layout(fs, dir, collection, old, level)?;
    if let Some(entry) = meta.collections.get_mut(collection) {
        entry.cleanup = None;
    }
    write_atomic(fs, Meta::path(dir), meta.to_bytes(dir)?)
}

/// Moves `collection`'s loaded records from the `from` layout to its declared one.
pub(crate) fn migrate(
    fs: &dyn Vfs,
    dir: &Path,
    meta: &mut Meta,
    collection: &dyn ErasedCollection,
    from: Layout,
    level: i32,
) -> Result<()> {
    let name = collection.name();
    let to = Layout::of(collection.spec());
    tracing::info!(collection = name, ?from, ?to, "migrating storage layout");
    // 1. The new layout, complete and durable.
    let mut batch = WriteBatch::default();
    collection.stage_all_records(&mut batch)?;
    batch.commit(fs, SyncMode::Batched)?;
    // 2. Recorded, with the old layout marked for cleanup.
    let entry = meta.collections.get_mut(name).ok_or_else(|| Error::Meta {
        path: Meta::path(dir),
        message: format!("collection `{name}` has no entry to migrate"),
    })?;
    entry.layout = to;
    entry.cleanup = Some(from);
    write_atomic(fs, Meta::path(dir), meta.to_bytes(dir)?)?;
    // 3 and 4.
    finish_cleanup(fs, dir, meta, name, level)
}

/// Whether moving from `from` to `to` needs the explicit opt-in: it deletes files.
pub(crate) fn needs_opt_in(from: Layout, to: Layout) -> bool {
    from.storage != StorageKind::Memory && to.storage == StorageKind::Memory
}
