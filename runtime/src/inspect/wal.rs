//! Reading the WAL without replaying it: the same walk as recovery on open
//! (`crate::wal::replay`), but read-only, and it reports instead of truncating.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::json::Json;
use super::{DataDir, InspectError, Result};
use crate::fs::RealFs;
use crate::wal::record::{decode, HEADER_LEN};
use crate::wal::replay::{list_segments, read_segment};
use crate::wal::WAL_DIR;

/// What the WAL holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WalSummary {
    /// Segment files.
    pub segments: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Valid records, up to the first invalid one: commits not yet checkpointed
    /// into the record files (or already in them, if a checkpoint was interrupted).
    pub records: usize,
    /// The sequence numbers of the first and last valid record.
    pub lsns: Option<(u64, u64)>,
    /// An invalid record, if the walk met one.
    pub damage: Option<WalDamage>,
}

/// An invalid record in the WAL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WalDamage {
    /// Nothing valid follows it: the torn end of an interrupted append. The next
    /// open truncates it; no acknowledged commit is lost.
    TornTail {
        /// The segment.
        segment: PathBuf,
        /// Where the invalid bytes start.
        offset: u64,
        /// How many bytes the next open drops.
        bytes: u64,
    },
    /// Valid records follow it, or it is a valid record out of sequence (numbered
    /// below its segment's name or not above the record before it): the log is
    /// corrupt. The next open fails unless it is asked to repair, which drops
    /// everything from here on.
    Corrupt {
        /// The segment.
        segment: PathBuf,
        /// Where the invalid record starts.
        offset: u64,
    },
}

/// One valid record.
pub(crate) struct WalRecord {
    pub lsn: u64,
    pub segment: PathBuf,
    pub offset: u64,
    pub payload: Vec<u8>,
}

/// One write of a record's payload.
#[derive(Deserialize)]
pub(crate) struct WalWrite {
    #[serde(rename = "c")]
    pub collection: String,
    pub id: Json,
    #[serde(rename = "v")]
    pub value: Option<Json>,
}

impl WalRecord {
    /// The writes of the record: `[{"c","id","v"}, ...]`.
    pub fn writes(&self) -> Result<Vec<WalWrite>, String> {
        serde_json::from_slice(&self.payload).map_err(|e| format!("unparsable payload: {e}"))
    }
}

/// The whole walk: the summary, the valid records and every segment file.
pub(crate) struct WalScan {
    pub summary: WalSummary,
    pub records: Vec<WalRecord>,
    pub segments: Vec<PathBuf>,
}

impl DataDir {
    /// The WAL's segments and records, and the first invalid record if any.
    ///
    /// # Errors
    ///
    /// An I/O error reading a segment.
    pub fn wal(&self) -> Result<WalSummary> {
        Ok(scan(&self.dir)?.summary)
    }
}

/// Walks every segment in order, as recovery does.
pub(crate) fn scan(dir: &Path) -> Result<WalScan> {
    let wal_dir = dir.join(WAL_DIR);
    let segments = list_segments(&RealFs, &wal_dir)?;
    let mut contents = Vec::with_capacity(segments.len());
    for (_, path) in &segments {
        contents.push(read_segment(&RealFs, path).map_err(|e| InspectError::io("read WAL segment", path, e))?);
    }
    let mut out = WalScan {
        summary: WalSummary {
            segments: segments.len(),
            bytes: contents.iter().map(|c| c.len() as u64).sum(),
            ..WalSummary::default()
        },
        records: Vec::new(),
        segments: segments.iter().map(|(_, p)| p.clone()).collect(),
    };
    let mut last_lsn = 0;
    for (i, ((named, path), bytes)) in segments.iter().zip(&contents).enumerate() {
        let mut offset = 0;
        while offset < bytes.len() {
            match decode(&bytes[offset..]) {
                // Out of sequence: a first record below the segment's name, or a
                // record not above the one before it. Open refuses it, or repair
                // cuts there, as for corruption.
                Some(record) if (offset == 0 && record.lsn < *named) || record.lsn <= last_lsn => {
                    out.summary.damage = Some(WalDamage::Corrupt { segment: path.clone(), offset: offset as u64 });
                    break;
                }
                Some(record) => {
                    out.records.push(WalRecord {
                        lsn: record.lsn,
                        segment: path.clone(),
                        offset: offset as u64,
                        payload: record.payload.to_vec(),
                    });
                    last_lsn = record.lsn;
                    offset += record.size;
                }
                _ => break,
            }
        }
        if out.summary.damage.is_some() {
            break;
        }
        if offset == bytes.len() {
            continue;
        }
        let later = &contents[i + 1..];
        let later_valid = later.iter().any(|b| decode(b).is_some());
        let valid_after = later_valid || valid_record_after(&bytes[offset + 1..], last_lsn);
        out.summary.damage = Some(if valid_after {
            WalDamage::Corrupt { segment: path.clone(), offset: offset as u64 }
        } else {
            let dropped = (bytes.len() - offset) as u64 + later.iter().map(|b| b.len() as u64).sum::<u64>();
            WalDamage::TornTail { segment: path.clone(), offset: offset as u64, bytes: dropped }
        });
        break;
    }
    out.summary.records = out.records.len();
    out.summary.lsns = out.records.first().zip(out.records.last()).map(|(a, b)| (a.lsn, b.lsn));
    Ok(out)
}

/// Whether a valid record with a higher sequence number starts somewhere in `rest`.
fn valid_record_after(rest: &[u8], last_lsn: u64) -> bool {
    (0..rest.len().saturating_sub(HEADER_LEN - 1)).any(|p| decode(&rest[p..]).is_some_and(|r| r.lsn > last_lsn))
}
