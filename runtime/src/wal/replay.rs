//! Reading the WAL back on open.
//!
//! Segments are read in order of their first sequence number. A record that does
//! not decode ends the log: if nothing valid follows it anywhere, it is the torn tail
//! of an interrupted append, and the segment is truncated there (the dropped bytes
//! are reported). If a valid record follows it, in the same segment or a later one,
//! the log is corrupt: `open` fails with [`Error::WalCorrupt`] unless repair was
//! asked for, which truncates there and drops everything after.

use std::path::{Path, PathBuf};

use super::record::{decode, HEADER_LEN};
use super::{segment_lsn, SEGMENT_EXT};
use crate::error::{Error, Result};
use crate::fs::Vfs;

/// What the log held.
#[derive(Debug, Default)]
pub(crate) struct Recovered {
    /// `(lsn, payload)` of every valid record, in order.
    pub records: Vec<(u64, Vec<u8>)>,
    /// The segment files that remain, in order.
    pub segments: Vec<PathBuf>,
    /// The highest sequence number seen.
    pub last_lsn: u64,
    /// Bytes dropped from an invalid tail (or by repair).
    pub truncated_bytes: u64,
}

/// The segment files in `dir`, in order.
pub(crate) fn list_segments(fs: &dyn Vfs, dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let entries = match fs.read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("list", dir, e)),
    };
    let mut segments: Vec<(u64, PathBuf)> = entries
        .into_iter()
        .filter(|e| !e.is_dir && e.name.ends_with(SEGMENT_EXT))
        .filter_map(|e| segment_lsn(&e.name).map(|lsn| (lsn, dir.join(&e.name))))
        .collect();
    segments.sort();
    Ok(segments)
}

/// Reads every segment in `dir`, truncating a torn tail. See the module docs.
pub(crate) fn recover(fs: &dyn Vfs, dir: &Path, repair: bool) -> Result<Recovered> {
    let segments = list_segments(fs, dir)?;
    let mut out = Recovered::default();
    for (i, (_, path)) in segments.iter().enumerate() {
        let bytes = fs.read(path).map_err(|e| Error::io("read WAL segment", path, e))?;
        let mut offset = 0;
        while offset < bytes.len() {
            match decode(&bytes[offset..]) {
                Some(record) if record.lsn > out.last_lsn => {
                    out.records.push((record.lsn, record.payload.to_vec()));
                    out.last_lsn = record.lsn;
                    offset += record.size;
                }
                _ => break,
            }
        }
        out.segments.push(path.clone());
        if offset == bytes.len() {
            continue;
        }
        // An invalid record at `offset`.
        let later_segments = &segments[i + 1..];
        // A later segment proves corruption only if it holds a record: a rotation
        // whose directory sync failed can leave an empty one behind.
        let later_valid = later_segments.iter().any(|(_, p)| fs.read(p).is_ok_and(|b| decode(&b).is_some()));
        let valid_after = later_valid || valid_record_after(&bytes[offset + 1..], out.last_lsn);
        if valid_after && !repair {
            return Err(Error::WalCorrupt { segment: path.clone(), offset: offset as u64 });
        }
        let mut dropped = (bytes.len() - offset) as u64;
        let file = fs.open_append(path).map_err(|e| Error::io("open WAL segment", path, e))?;
        file.truncate(offset as u64).map_err(|e| Error::io("truncate WAL segment", path, e))?;
        file.sync_data().map_err(|e| Error::io("sync WAL segment", path, e))?;
        for (_, later) in later_segments {
            if later_valid {
                dropped += fs.read(later).map(|b| b.len() as u64).unwrap_or(0);
                fs.remove_file(later).map_err(|e| Error::io("remove WAL segment", later, e))?;
            } else {
                // Empty: kept for the next checkpoint to delete.
                out.segments.push(later.clone());
            }
        }
        if later_valid {
            fs.sync_dir(dir).map_err(|e| Error::io("sync directory", dir, e))?;
        }
        tracing::warn!(segment = %path.display(), offset, dropped, repair, "truncated the WAL at an invalid record");
        out.truncated_bytes = dropped;
        break;
    }
    // Sequence numbers never go back, even when every segment is empty: a segment
    // is named for its first record, so the next record follows the highest name.
    let named = segments.iter().map(|(first, _)| first.saturating_sub(1)).max().unwrap_or(0);
    out.last_lsn = out.last_lsn.max(named);
    Ok(out)
}

/// Whether any valid record with a higher sequence number starts somewhere in `rest`.
fn valid_record_after(rest: &[u8], last_lsn: u64) -> bool {
    (0..rest.len().saturating_sub(HEADER_LEN - 1)).any(|p| decode(&rest[p..]).is_some_and(|r| r.lsn > last_lsn))
}
