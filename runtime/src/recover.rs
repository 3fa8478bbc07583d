//! Recovery on open: sweeping temp files, moving unreadable files aside, and the
//! report of what was done.

use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use crate::batch::is_temp;
use crate::error::{Error, Result};
use crate::fs::{create_dir_durable, Vfs};

/// The directory unreadable files are moved to, inside the data directory.
pub const QUARANTINE_DIR: &str = "_quarantine";

/// A file moved aside on open because it could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quarantined {
    /// The collection the file belonged to.
    pub collection: String,
    /// Where the file was.
    pub from: PathBuf,
    /// Where it is now, under `<dir>/_quarantine/<collection>/`.
    pub to: PathBuf,
    /// Why it could not be read.
    pub reason: String,
}

/// Records that share a key of a unique index, as open found them on disk.
///
/// Writes never create this; files edited by hand, or a crash in the middle of a
/// flush of a collection without `wal` (one record took the key another one gave
/// up, and only one of the two files was replaced), can. The index then holds the
/// key for one of the records; fix the records (update one of them) to resolve it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UniqueConflict {
    /// The collection.
    pub collection: String,
    /// The unique index.
    pub index: String,
    /// The shared key, as JSON.
    pub key: String,
    /// The ids of the records that hold it.
    pub ids: Vec<String>,
}

/// What `open` found and repaired. See [`Store::recovery_report`](crate::Store::recovery_report).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Leftover temp files of an interrupted flush that were deleted.
    pub temp_files_removed: usize,
    /// Unreadable files moved aside (only with
    /// [`quarantine_corrupt`](crate::StoreBuilder::quarantine_corrupt)).
    pub quarantined: Vec<Quarantined>,
    /// WAL records replayed over the loaded files.
    pub wal_records_replayed: usize,
    /// Bytes cut from an invalid WAL tail (a torn last append), or by repair.
    pub wal_bytes_truncated: u64,
    /// Keys of unique indices held by several records on disk.
    pub unique_conflicts: Vec<UniqueConflict>,
    /// Files and directories in a collection's directory that Shelf did not write
    /// (no record file, no temp file, no index directory). Left where they are.
    pub stray_files: Vec<std::path::PathBuf>,
    /// Imports staged by `shelf import` that this open applied (FORMAT §15).
    pub imports: Vec<AppliedImport>,
    /// Staged imports this open left alone, for a collection it does not register
    /// or keeps in memory; an open that registers it persisted applies them.
    pub pending_imports: Vec<PathBuf>,
}

impl RecoveryReport {
    /// A report of nothing found.
    pub(crate) const fn none() -> Self {
        RecoveryReport {
            temp_files_removed: 0,
            quarantined: Vec::new(),
            wal_records_replayed: 0,
            wal_bytes_truncated: 0,
            unique_conflicts: Vec::new(),
            stray_files: Vec::new(),
            imports: Vec::new(),
            pending_imports: Vec::new(),
        }
    }
}

/// A staged import (`shelf import`) an open applied through the collection's type.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppliedImport {
    /// The collection.
    pub collection: String,
    /// Records stored (inserted or replaced).
    pub applied: usize,
    /// Lines left out, by the line number `shelf import` read them at.
    pub rejected: Vec<RejectedLine>,
    /// Where the staged file was moved, when it had refused lines (under
    /// `_quarantine/_import/`); removed otherwise.
    pub kept: Option<PathBuf>,
}

/// A line of a staged import that was not stored, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RejectedLine {
    /// The line's number in the input `shelf import` read.
    pub line: usize,
    /// Why: what the type's deserializer said, or the write it failed.
    pub reason: String,
}

/// What loading a collection needs from the store.
pub(crate) struct LoadCtx<'a> {
    fs: &'a dyn Vfs,
    dir: &'a Path,
    quarantine: bool,
    report: Mutex<RecoveryReport>,
}

impl<'a> LoadCtx<'a> {
    pub fn new(fs: &'a dyn Vfs, dir: &'a Path, quarantine: bool) -> Self {
        LoadCtx { fs, dir, quarantine, report: Mutex::new(RecoveryReport::default()) }
    }

    pub fn quarantine(&self) -> bool {
        self.quarantine
    }

    pub fn note_wal(&self, replayed: usize, truncated: u64) {
        let mut report = self.report.lock();
        report.wal_records_replayed = replayed;
        report.wal_bytes_truncated = truncated;
    }

    pub fn note_pending_import(&self, path: PathBuf) {
        self.report.lock().pending_imports.push(path);
    }

    pub fn note_strays(&self, strays: Vec<std::path::PathBuf>) {
        self.report.lock().stray_files.extend(strays);
    }

    pub fn note_unique_conflict(&self, conflict: UniqueConflict) {
        self.report.lock().unique_conflicts.push(conflict);
    }

    pub fn into_report(self) -> RecoveryReport {
        self.report.into_inner()
    }

    /// Deletes leftover temp files in `dir` and makes the deletion durable.
    pub fn sweep_temps(&self, dir: &Path) -> Result<()> {
        let entries = match self.fs.read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io("list", dir, e)),
        };
        let mut removed = 0;
        for entry in entries.iter().filter(|e| !e.is_dir && is_temp(&e.name)) {
            let path = dir.join(&entry.name);
            self.fs.remove_file(&path).map_err(|e| Error::io("remove temp file", &path, e))?;
            removed += 1;
        }
        if removed > 0 {
            self.fs.sync_dir(dir).map_err(|e| Error::io("sync directory", dir, e))?;
            tracing::info!(dir = %dir.display(), removed, "removed temp files of an interrupted flush");
            self.report.lock().temp_files_removed += removed;
        }
        Ok(())
    }

    /// Keeps a copy of a file with an unreadable record in
    /// `<dir>/_quarantine/<collection>/` (once per file), durably, and records the
    /// record's location. The caller skips the record; its next flush rewrites the
    /// file without it, so the copy is the only place the bad bytes remain.
    pub fn copy_aside(&self, collection: &str, file: &Path, record: &Path, reason: String) -> Result<()> {
        let already = self.report.lock().quarantined.iter().any(|q| q.from == file);
        if !already {
            let target_dir = self.dir.join(QUARANTINE_DIR).join(collection);
            create_dir_durable(self.fs, &target_dir).map_err(|e| Error::io("create directory", &target_dir, e))?;
            let to = self.free_name(&target_dir, file)?;
            let bytes = self.fs.read(file).map_err(|e| Error::io("read", file, e))?;
            crate::batch::write_atomic(self.fs, to.clone(), bytes)?;
            tracing::warn!(collection, file = %file.display(), to = %to.display(), "copied a file with an unreadable record aside");
            self.report.lock().quarantined.push(Quarantined {
                collection: collection.to_owned(),
                from: file.to_path_buf(),
                to,
                reason: format!("{}: {reason}", record.display()),
            });
        }
        Ok(())
    }

    /// A name in `target_dir` for `from`'s file name that no file has yet.
    fn free_name(&self, target_dir: &Path, from: &Path) -> Result<PathBuf> {
        let name = from.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "record".to_owned());
        let taken: Vec<String> = match self.fs.read_dir(target_dir) {
            Ok(entries) => entries.into_iter().map(|e| e.name).collect(),
            Err(e) => return Err(Error::io("list", target_dir, e)),
        };
        let mut candidate = name.clone();
        let mut n = 1;
        while taken.contains(&candidate) {
            candidate = format!("{name}.{n}");
            n += 1;
        }
        Ok(target_dir.join(candidate))
    }

    /// Moves an unreadable file to `<dir>/_quarantine/<collection>/`, durably, and
    /// records it. The file is never deleted or overwritten.
    pub fn move_aside(&self, collection: &str, from: &Path, reason: String) -> Result<PathBuf> {
        let target_dir = self.dir.join(QUARANTINE_DIR).join(collection);
        create_dir_durable(self.fs, &target_dir).map_err(|e| Error::io("create directory", &target_dir, e))?;
        let to = self.free_name(&target_dir, from)?;
        self.fs.rename(from, &to).map_err(|e| Error::io("move aside", from, e))?;
        self.fs.sync_dir(&target_dir).map_err(|e| Error::io("sync directory", &target_dir, e))?;
        if let Some(parent) = from.parent() {
            self.fs.sync_dir(parent).map_err(|e| Error::io("sync directory", parent, e))?;
        }
        tracing::warn!(collection, from = %from.display(), to = %to.display(), %reason, "moved an unreadable file aside");
        self.report.lock().quarantined.push(Quarantined {
            collection: collection.to_owned(),
            from: from.to_path_buf(),
            to: to.clone(),
            reason,
        });
        Ok(to)
    }
}
