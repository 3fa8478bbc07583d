//! Staged imports (`shelf import`, `import_file`): the open that has the types
//! applies them through the collection's own type and the commit path, makes them
//! durable, and only then removes the file. See FORMAT §15.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::collection::ErasedCollection;
use crate::commit::Op;
use crate::error::{Error, Result};
use crate::fs::Vfs;
use crate::import_file::{self, Line, IMPORT_DIR};
use crate::jsonl_file;
use crate::recover::{AppliedImport, LoadCtx, RejectedLine};

use super::Inner;

/// One collection's staged import, read at open.
pub(super) struct Staged {
    pos: usize,
    path: PathBuf,
    lines: Vec<Line>,
}

/// Reads the staged imports of the registered persisted collections. A file that
/// cannot be read, or was staged for another collection, is moved to
/// `_quarantine/_import/` and reported; one for a collection this open does not
/// register (or keeps in memory) is left for a later open, with a warning, and
/// listed in `RecoveryReport::pending_imports`.
pub(super) fn read(
    fs: &dyn Vfs,
    dir: &Path,
    collections: &[Arc<dyn ErasedCollection>],
    ctx: &LoadCtx,
) -> Result<Vec<Staged>> {
    ctx.sweep_temps(&dir.join(IMPORT_DIR))?;
    let mut staged = Vec::new();
    for path in import_file::list(fs, dir)? {
        let Some(pos) = collections.iter().position(|c| c.persisted() && import_file::path(dir, c.name()) == path)
        else {
            if !path.file_name().and_then(|n| n.to_str()).is_some_and(crate::batch::is_temp) {
                tracing::warn!(file = %path.display(), "a staged import for no persisted collection of this open is left for a later one");
                ctx.note_pending_import(path);
            }
            continue;
        };
        let read = fs.read(&path).map_err(|e| e.to_string()).and_then(|bytes| import_file::decode(&bytes));
        match read {
            Ok((header, lines)) if header.collection == collections[pos].name() => {
                staged.push(Staged { pos, path, lines });
            }
            Ok((header, _)) => {
                let reason = format!("the staged import is for collection `{}`", header.collection);
                ctx.move_aside(IMPORT_DIR, &path, reason)?;
            }
            Err(e) => {
                ctx.move_aside(IMPORT_DIR, &path, format!("unreadable staged import: {e}"))?;
            }
        }
    }
    // In registration order, whatever order the directory lists them in.
    staged.sort_by_key(|s| s.pos);
    Ok(staged)
}

/// Whether the commit path refused the records themselves (the rest of the
/// import can go in without them), rather than failing to write.
fn refused(error: &Error) -> bool {
    matches!(
        error,
        Error::DuplicateId { .. }
            | Error::UniqueViolation { .. }
            | Error::ForeignKey { .. }
            | Error::MissingParent { .. }
            | Error::UnregisteredParent { .. }
            | Error::InvalidLink { .. }
            | Error::IdChanged { .. }
            | Error::Unloadable { .. }
            | Error::Serde { .. }
            | Error::AutoIdExhausted { .. }
    )
}

/// The upserts of `lines` for the commit path; the caller checked that each parses.
fn upserts(collection: &dyn ErasedCollection, pos: usize, path: &Path, lines: &[&Line]) -> Result<Vec<Op>> {
    lines
        .iter()
        .map(|line| {
            collection
                .import_upsert(line.id.get(), line.record.get())
                .map(|op| Op { coll: pos, op })
                .map_err(|e| Error::io("apply staged import", path, std::io::Error::other(e)))
        })
        .collect()
}

/// The lines of an import whose one commit the commit path refused, each in a
/// commit of its own, in passes: a line refused in one pass is tried again in the
/// next while any line went in (a parent on a later line, a unique key another line
/// frees), and those refused in a pass where none went in are reported. Returns how
/// many went in.
fn one_by_one(
    inner: &Arc<Inner>,
    collection: &dyn ErasedCollection,
    pos: usize,
    path: &Path,
    taken: Vec<&Line>,
    rejected: &mut Vec<RejectedLine>,
) -> Result<usize> {
    // As in one commit, a later line with the same id replaces an earlier one: only
    // the last goes in (the earlier ones count as stored, and replaced).
    let last: std::collections::HashMap<&str, usize> =
        taken.iter().enumerate().map(|(i, line)| (line.id.get(), i)).collect();
    let mut applied = taken.len() - last.len();
    let mut pending: Vec<&Line> =
        taken.iter().enumerate().filter(|(i, line)| last[line.id.get()] == *i).map(|(_, line)| *line).collect();
    loop {
        let mut refused_now = Vec::new();
        let before = applied;
        for line in pending {
            match inner.write(|| Ok((upserts(collection, pos, path, &[line])?, ()))) {
                Ok(()) => applied += 1,
                Err(e) if refused(&e) => refused_now.push((line, e.to_string())),
                Err(e) => return Err(e),
            }
        }
        if refused_now.is_empty() || applied == before {
            rejected.extend(refused_now.into_iter().map(|(line, reason)| RejectedLine { line: line.line, reason }));
            return Ok(applied);
        }
        pending = refused_now.into_iter().map(|(line, _)| line).collect();
    }
}

/// Applies every staged import: the lines the collection's type takes go in as
/// upserts, all in one commit per collection; a line the type refuses, or the
/// commit path refuses (a taken unique key, a missing parent), is left out and
/// reported (see `one_by_one`). Then one flush
/// makes them durable, and each file is removed, or moved to `_quarantine/_import/`
/// when it had refused lines. A crash before that leaves the file, and the next
/// open applies it again (the same upserts).
pub(super) fn apply(
    fs: &dyn Vfs,
    inner: &Arc<Inner>,
    staged: Vec<Staged>,
    ctx: &LoadCtx,
) -> Result<Vec<AppliedImport>> {
    let mut out = Vec::new();
    for Staged { pos, path, lines } in &staged {
        let collection = inner.collections[*pos].as_ref();
        let mut rejected = Vec::new();
        let mut taken: Vec<&Line> = Vec::new();
        for line in lines {
            match collection.import_upsert(line.id.get(), line.record.get()) {
                Ok(_) => taken.push(line),
                Err(reason) => rejected.push(RejectedLine { line: line.line, reason }),
            }
        }
        let applied = match inner.write(|| Ok((upserts(collection, *pos, path, &taken)?, ()))) {
            Ok(()) => taken.len(),
            Err(e) if refused(&e) => one_by_one(inner, collection, *pos, path, taken, &mut rejected)?,
            Err(e) => return Err(e),
        };
        rejected.sort_by_key(|r| r.line);
        for r in &rejected {
            tracing::warn!(collection = collection.name(), line = r.line, reason = %r.reason, "a staged import's line was refused");
        }
        out.push(AppliedImport { collection: collection.name().to_owned(), applied, rejected, kept: None });
    }
    if staged.is_empty() {
        return Ok(out);
    }
    // Durable before the files go.
    inner.flush()?;
    let mut done = Vec::new();
    for (Staged { path, .. }, applied) in staged.iter().zip(&mut out) {
        if applied.rejected.is_empty() {
            done.push(path.clone());
        } else {
            let reason = format!("{} of its lines were refused (see the recovery report)", applied.rejected.len());
            applied.kept = Some(ctx.move_aside(IMPORT_DIR, path, reason)?);
        }
    }
    jsonl_file::remove_all(fs, done)?;
    Ok(out)
}
