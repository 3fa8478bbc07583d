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

/// One valid record found by [`scan`].
#[derive(Debug)]
pub(crate) struct Scanned<'a> {
    pub lsn: u64,
    /// The index of its segment in the list given to [`scan`].
    pub segment: usize,
    /// Where it starts in its segment.
    pub offset: u64,
    pub payload: &'a [u8],
}

/// Why the walk stopped before the end of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stop {
    /// A record that does not decode (short, too large, or failing its checksum).
    /// `valid_after`: a valid record follows it, in the same segment or a later one,
    /// so it is corruption rather than a torn tail.
    Undecodable { valid_after: bool },
    /// A valid record out of sequence: a first record below its segment's name, or a
    /// record not above the one before it. Always corruption; the text says which.
    OutOfOrder(String),
}

/// Where and why the walk stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invalid {
    /// The index of the segment.
    pub segment: usize,
    /// Where the invalid record starts.
    pub offset: u64,
    pub stop: Stop,
    /// Whether a later segment starts with a valid record (it is then removed with
    /// the tail when the log is cut; an empty or garbage one is kept for the next
    /// checkpoint).
    pub later_valid: bool,
    /// Bytes that cutting the log here drops: the rest of this segment, and the later
    /// segments when they hold records.
    pub dropped: u64,
}

impl Invalid {
    /// Whether this is corruption (valid records would be lost by cutting here), not
    /// the torn end of an interrupted append.
    pub fn is_corruption(&self) -> bool {
        !matches!(self.stop, Stop::Undecodable { valid_after: false })
    }
}

/// The walk over the log: the one reading of the WAL format, used by recovery on
/// open and by `inspect` (which reports instead of truncating).
#[derive(Debug, Default)]
pub(crate) struct Scan<'a> {
    /// Every valid record up to the first invalid one, in order.
    pub records: Vec<Scanned<'a>>,
    /// The first invalid record, if any.
    pub invalid: Option<Invalid>,
}

/// Walks `segments` (as [`list_segments`] gives them, with their bytes in
/// `contents`) in order, up to the first invalid record. See the module docs.
pub(crate) fn scan<'a>(segments: &[(u64, PathBuf)], contents: &'a [Vec<u8>]) -> Scan<'a> {
    let mut out = Scan::default();
    let mut last_lsn = 0;
    for (i, ((named, _), bytes)) in segments.iter().zip(contents).enumerate() {
        let mut offset = 0;
        let mut out_of_order = None;
        while offset < bytes.len() {
            let Some(record) = decode(&bytes[offset..]) else { break };
            if offset == 0 && record.lsn < *named {
                out_of_order = Some(format!(
                    "its name says its first sequence number is at least {named}, but its first record has {}",
                    record.lsn
                ));
                break;
            }
            if record.lsn <= last_lsn {
                out_of_order = Some(format!(
                    "the record at byte {offset} has sequence number {}, not above the {last_lsn} before it",
                    record.lsn
                ));
                break;
            }
            out.records.push(Scanned { lsn: record.lsn, segment: i, offset: offset as u64, payload: record.payload });
            last_lsn = record.lsn;
            offset += record.size;
        }
        if offset == bytes.len() {
            continue;
        }
        // A later segment proves corruption only if it holds a record: a rotation
        // whose directory sync failed can leave an empty one behind.
        let later = &contents[i + 1..];
        let later_valid = later.iter().any(|b| decode(b).is_some());
        let stop = match out_of_order {
            Some(problem) => Stop::OutOfOrder(problem),
            None => {
                Stop::Undecodable { valid_after: later_valid || valid_record_after(&bytes[offset + 1..], last_lsn) }
            }
        };
        let mut dropped = (bytes.len() - offset) as u64;
        if later_valid {
            dropped += later.iter().map(|b| b.len() as u64).sum::<u64>();
        }
        out.invalid = Some(Invalid { segment: i, offset: offset as u64, stop, later_valid, dropped });
        break;
    }
    out
}

/// Reads every segment in `dir`, truncating a torn tail. See the module docs.
pub(crate) fn recover(fs: &dyn Vfs, dir: &Path, repair: bool) -> Result<Recovered> {
    let segments = list_segments(fs, dir)?;
    let mut contents = Vec::with_capacity(segments.len());
    for (_, path) in &segments {
        contents.push(read_segment(fs, path).map_err(|e| Error::io("read WAL segment", path, e))?);
    }
    let walk = scan(&segments, &contents);
    let mut out = Recovered {
        records: walk.records.iter().map(|r| (r.lsn, r.payload.to_vec())).collect(),
        last_lsn: walk.records.last().map_or(0, |r| r.lsn),
        ..Recovered::default()
    };
    match walk.invalid {
        None => out.segments = segments.iter().map(|(_, p)| p.clone()).collect(),
        Some(invalid) => {
            let path = &segments[invalid.segment].1;
            match &invalid.stop {
                // A valid record out of order is not a torn write: it is an error, or
                // under repair, where the log is cut.
                Stop::OutOfOrder(problem) if !repair => {
                    return Err(Error::WalSegment {
                        segment: path.clone(),
                        message: format!(
                            "{problem}; open with `repair_wal(true)` to truncate the log there (losing what follows)"
                        ),
                    });
                }
                Stop::Undecodable { valid_after: true } if !repair => {
                    return Err(Error::WalCorrupt { segment: path.clone(), offset: invalid.offset });
                }
                _ => {}
            }
            out.segments = segments[..=invalid.segment].iter().map(|(_, p)| p.clone()).collect();
            let file = fs.open_append(path).map_err(|e| Error::io("open WAL segment", path, e))?;
            file.truncate(invalid.offset).map_err(|e| Error::io("truncate WAL segment", path, e))?;
            file.sync_data().map_err(|e| Error::io("sync WAL segment", path, e))?;
            for (_, later) in &segments[invalid.segment + 1..] {
                if invalid.later_valid {
                    fs.remove_file(later).map_err(|e| Error::io("remove WAL segment", later, e))?;
                } else {
                    // Empty: kept for the next checkpoint to delete.
                    out.segments.push(later.clone());
                }
            }
            if invalid.later_valid {
                fs.sync_dir(dir).map_err(|e| Error::io("sync directory", dir, e))?;
            }
            tracing::warn!(segment = %path.display(), offset = invalid.offset, dropped = invalid.dropped, repair, "truncated the WAL at an invalid record");
            out.truncated_bytes = invalid.dropped;
        }
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
