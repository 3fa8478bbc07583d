//! Reading the WAL without replaying it: the same walk as recovery on open
//! (`crate::wal::replay`), but read-only, and it reports instead of truncating.

use std::path::{Path, PathBuf};

use super::json::Json;
use super::{DataDir, InspectError, Result};
use crate::fs::RealFs;
use crate::wal::record;
use crate::wal::replay::{self, list_segments, read_segment};
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

/// One write of a record's payload, as JSON.
pub(crate) struct WalWrite {
    pub collection: String,
    pub id: Json,
    pub value: Option<Json>,
    /// A parent entry: applies only where no record with its id exists.
    pub parent: bool,
}

impl WalRecord {
    /// The writes of the record, decoded by the store's own codec
    /// ([`crate::wal::record::decode_writes`]).
    pub fn writes(&self) -> Result<Vec<WalWrite>, String> {
        record::decode_writes::<Json>(&self.payload)?
            .into_iter()
            .map(|w| {
                let value = w.value.map(|raw| Json::parse(raw.get().as_bytes())).transpose()?;
                Ok(WalWrite { collection: w.collection, id: w.id, value, parent: w.parent })
            })
            .collect()
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

/// Walks every segment in order: recovery's own walk ([`crate::wal::replay::scan`]),
/// read-only.
pub(crate) fn scan(dir: &Path) -> Result<WalScan> {
    let wal_dir = dir.join(WAL_DIR);
    let segments = list_segments(&RealFs, &wal_dir)?;
    let mut contents = Vec::with_capacity(segments.len());
    for (_, path) in &segments {
        contents.push(read_segment(&RealFs, path).map_err(|e| InspectError::io("read WAL segment", path, e))?);
    }
    let walk = replay::scan(&segments, &contents);
    let records: Vec<WalRecord> = walk
        .records
        .iter()
        .map(|r| WalRecord {
            lsn: r.lsn,
            segment: segments[r.segment].1.clone(),
            offset: r.offset,
            payload: r.payload.to_vec(),
        })
        .collect();
    let damage = walk.invalid.map(|invalid| {
        let segment = segments[invalid.segment].1.clone();
        if invalid.is_corruption() {
            WalDamage::Corrupt { segment, offset: invalid.offset }
        } else {
            WalDamage::TornTail { segment, offset: invalid.offset, bytes: invalid.dropped }
        }
    });
    Ok(WalScan {
        summary: WalSummary {
            segments: segments.len(),
            bytes: contents.iter().map(|c| c.len() as u64).sum(),
            records: records.len(),
            lsns: records.first().zip(records.last()).map(|(a, b)| (a.lsn, b.lsn)),
            damage,
        },
        records,
        segments: segments.into_iter().map(|(_, p)| p).collect(),
    })
}
