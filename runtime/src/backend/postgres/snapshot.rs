//! One consistent read of every persisted table: what open loads, and what an
//! instance reloads when it fell behind the change log's retention (the rows it
//! still needed were pruned; see `feed`).

use postgres::Client;

use super::feed::SEQ_LOCK;
use super::pool::pg_error;
use super::{canonical_id, sql};
use crate::error::Result;

/// One row of a collection's table.
pub(crate) struct SnapshotRow {
    /// The id, as compact JSON.
    pub id: String,
    /// The record, as `jsonb` gives it back.
    pub doc: String,
    /// The version of the commit that wrote it.
    pub version: i64,
}

/// Every persisted table as of one sequence number.
pub(crate) struct Snapshot {
    /// Every commit up to here is in the snapshot, and no later one.
    pub floor: u64,
    /// Per collection position: its rows (none for a collection PostgreSQL does
    /// not keep).
    pub tables: Vec<Vec<SnapshotRow>>,
}

/// Reads `tables` (per collection position, its table if persisted) in one
/// repeatable-read snapshot that no commit is half-way into.
///
/// The snapshot is taken while this session holds the advisory lock commits hold
/// (shared) from taking their sequence number to their end (`feed::SEQ_LOCK`):
/// every number taken by then belongs to a commit that has ended, so the snapshot
/// holds exactly the commits up to `floor`. The lock is let go right after, before
/// the tables are read: commits wait only for that moment.
pub(super) fn read(client: &mut Client, tables: &[Option<String>]) -> Result<Snapshot> {
    client.execute("SELECT pg_advisory_lock($1)", &[&SEQ_LOCK]).map_err(|e| pg_error("load", &e))?;
    let mut locked = true;
    let result = read_locked(client, tables, &mut locked);
    if locked {
        // An error before the unlock: let go of the lock (a session lock outlives
        // the transaction).
        let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&SEQ_LOCK]);
    }
    result
}

fn read_locked(client: &mut Client, tables: &[Option<String>], locked: &mut bool) -> Result<Snapshot> {
    let mut tx = client
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .start()
        .map_err(|e| pg_error("load", &e))?;
    // The first statement takes the snapshot, under the lock, and lets it go.
    let row = tx
        .query_one(
            "SELECT (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM shelf_seq), pg_advisory_unlock($1)",
            &[&SEQ_LOCK],
        )
        .map_err(|e| pg_error("load", &e))?;
    let floor = row.get::<_, i64>(0).max(0) as u64;
    *locked = !row.get::<_, bool>(1);
    let mut out = Vec::with_capacity(tables.len());
    for table in tables {
        let mut rows = Vec::new();
        if let Some(table) = table {
            let read = tx
                .query(&format!("SELECT id::text, doc::text, version FROM {}", sql::ident(table)), &[])
                .map_err(|e| pg_error("load", &e))?;
            rows.reserve(read.len());
            for row in read {
                rows.push(SnapshotRow { id: canonical_id(row.get(0))?, doc: row.get(1), version: row.get(2) });
            }
        }
        out.push(rows);
    }
    tx.commit().map_err(|e| pg_error("load", &e))?;
    Ok(Snapshot { floor, tables: out })
}
