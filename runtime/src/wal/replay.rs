//! Reading the WAL back on open.
//!
//! Segments are read in order of their first sequence number. A record that does
//! not decode ends the log: if nothing valid follows it anywhere, it is the torn tail
//! of an interrupted append, and the segment is truncated there (the dropped bytes
//! are reported). If a valid record follows it, in the same segment or a later one,
//! the log is corrupt: `open` fails with [`Error::WalCorrupt`] unless repair was
//! asked for, which truncates there and drops everything after.
//!
//! Sequence numbers must increase through the log. A segment's name is a lower
//! bound of its first record's sequence number (a segment may be created before
//! its first record is numbered, and may stay empty); a first record below its
//! segment's name, or a valid record not above the one before it, is
//! [`Error::WalSegment`] (repair cuts the log there instead). So is a `.wal` entry
//! that is not a segment: see [`list_segments`].

use std::io::Read;
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

/// Sequence numbers above this are never reached (2^63: a billion commits a
/// second for three centuries); a segment named above it is not Shelf's, and
/// accepting it would run the next sequence numbers out of range.
pub(crate) const MAX_SEGMENT_LSN: u64 = 1 << 63;

/// The segment files in `dir`, in order. An entry ending in `.wal` that is not a
/// segment (a name that is not 20 digits, a directory, a name above
/// [`MAX_SEGMENT_LSN`]) is an [`Error::WalSegment`] naming it: replaying around it
/// could lose or reorder acknowledged commits.
pub(crate) fn list_segments(fs: &dyn Vfs, dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let entries = match fs.read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("list", dir, e)),
    };
    let mut segments = Vec::new();
    for entry in entries.into_iter().filter(|e| e.name.ends_with(SEGMENT_EXT)) {
        let path = dir.join(&entry.name);
        let problem = match segment_lsn(&entry.name) {
            _ if entry.is_dir => "a directory, where a segment file is expected",
            None => "not a segment name (20 digits, the segment's first sequence number, then `.wal`)",
            Some(lsn) if lsn > MAX_SEGMENT_LSN => {
                "the sequence number in its name is beyond any that Shelf writes, so it cannot be a segment of this log"
            }
            Some(lsn) => {
                segments.push((lsn, path));
                continue;
            }
        };
        return Err(Error::WalSegment {
            segment: path,
            message: format!("{problem}; move it out of the WAL directory"),
        });
    }
    segments.sort();
    Ok(segments)
}

/// Reads every segment in `dir`, truncating a torn tail. See the module docs.
pub(crate) fn recover(fs: &dyn Vfs, dir: &Path, repair: bool) -> Result<Recovered> {
    let segments = list_segments(fs, dir)?;
    let mut out = Recovered::default();
    for (i, (named, path)) in segments.iter().enumerate() {
        let bytes = read_segment(fs, path).map_err(|e| Error::io("read WAL segment", path, e))?;
        let mut offset = 0;
        while offset < bytes.len() {
            let Some(record) = decode(&bytes[offset..]) else { break };
            // A valid record out of order is not a torn write: it is an error, or
            // under repair, where the log is cut.
            let problem = if offset == 0 && record.lsn < *named {
                Some(format!(
                    "its name says its first sequence number is at least {named}, but its first record has {}",
                    record.lsn
                ))
            } else if record.lsn <= out.last_lsn {
                Some(format!(
                    "the record at byte {offset} has sequence number {}, not above the {} before it",
                    record.lsn, out.last_lsn
                ))
            } else {
                None
            };
            if let Some(problem) = problem {
                if !repair {
                    return Err(Error::WalSegment {
                        segment: path.clone(),
                        message: format!(
                            "{problem}; open with `repair_wal(true)` to truncate the log there (losing what follows)"
                        ),
                    });
                }
                break;
            }
            out.records.push((record.lsn, record.payload.to_vec()));
            out.last_lsn = record.lsn;
            offset += record.size;
        }
        out.segments.push(path.clone());
        if offset == bytes.len() {
            continue;
        }
        // An invalid record at `offset`.
        let later_segments = &segments[i + 1..];
        // A later segment proves corruption only if it holds a record: a rotation
        // whose directory sync failed can leave an empty one behind.
        let later_valid = later_segments.iter().any(|(_, p)| read_segment(fs, p).is_ok_and(|b| decode(&b).is_some()));
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
                dropped += read_segment(fs, later).map(|b| b.len() as u64).unwrap_or(0);
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

/// Reads a whole segment. Streamed through [`Vfs::open_read`] rather than read with
/// [`Vfs::read`]: a segment grows until the next flush rotates it, so it is not
/// held to [`DEFAULT_MAX_FILE_SIZE`](crate::fs::DEFAULT_MAX_FILE_SIZE) (refusing a
/// large one would make acknowledged commits unreadable). [`RealFs`](crate::fs::RealFs)
/// still reads only a regular file, and no more than its size when opened.
pub(crate) fn read_segment(fs: &dyn Vfs, path: &Path) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    fs.open_read(path)?.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Whether any valid record with a higher sequence number starts somewhere in `rest`.
fn valid_record_after(rest: &[u8], last_lsn: u64) -> bool {
    (0..rest.len().saturating_sub(HEADER_LEN - 1)).any(|p| decode(&rest[p..]).is_some_and(|r| r.lsn > last_lsn))
}
