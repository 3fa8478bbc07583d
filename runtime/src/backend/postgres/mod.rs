//! The PostgreSQL backend: PostgreSQL is the source of truth, shared by every
//! instance that opens the same database (and schema); each instance keeps its
//! collections in memory as a cache (DESIGN §5).
//!
//! - Each persisted collection is a table `(id jsonb primary key, doc jsonb,
//!   version bigint)`, plus one `fk_<field>` column per `#[belongs_to]` field with a
//!   deferred foreign key. Unique keys are rows of `shelf_unique`, whose primary
//!   key PostgreSQL enforces. `shelf_meta` records each collection's schema.
//! - A commit is one call of `shelf_commit` ([`sql::commit_function`]): optimistic checks
//!   of the versions the commit read, the writes, and one row of `shelf_changes`
//!   with the next global sequence number. See [`Postgres::commit`]. Commits
//!   made at once by several threads go together, as one transaction of
//!   `shelf_commit_group` ([`group`]).
//! - Other instances' commits come through the change feed ([`feed`]).
//!
//! `memory` collections stay local: they never reach PostgreSQL.

mod feed;
mod group;
mod pool;
mod schema;
mod snapshot;
mod sql;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;

use feed::Feed;
pub(crate) use feed::{Apply, ChangeRow, Delivery};
use pool::{pg_error, pg_message, Pool};
pub(crate) use schema::CollectionSchema;
pub(crate) use snapshot::{Snapshot, SnapshotRow};
pub(crate) use sql::fk_column;

use super::{Announcement, Backend, Source, Staged, StoredIndex};
use crate::error::{Error, Result};
use crate::meta::Meta;
use crate::stats::WalStats;
use crate::storage::{Quarantine, RawRecord};

/// Why PostgreSQL refused a commit.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// The commit read something another commit changed, or broke a unique or
    /// foreign key that the cache did not know of: catch up and run it again.
    Conflict(String),
    /// Anything else: the commit failed (its outcome is unknown if the connection
    /// broke during it).
    Failed(Error),
}

/// One record's rows as loaded at open.
struct Rows {
    table: String,
    docs: Mutex<Vec<String>>,
}

impl Source for Rows {
    fn load(&self, sink: &mut dyn FnMut(RawRecord<'_>) -> Result<()>) -> Result<()> {
        let docs = std::mem::take(&mut *self.docs.lock());
        let file = PathBuf::from(format!("postgres:{}", self.table));
        for (line, doc) in docs.iter().enumerate() {
            sink(RawRecord { file: &file, line: Some(line + 1), stem: None, bytes: doc.as_bytes() })?;
        }
        Ok(())
    }
    fn whole(&self) -> bool {
        false
    }
    fn quarantine(&self) -> Quarantine {
        Quarantine::CopyFileAndSkip
    }
}

/// Where and how to open a PostgreSQL store: see `StoreBuilder::postgres`.
#[derive(Clone, Debug)]
pub(crate) struct PgOptions {
    pub url: String,
    pub schema: Option<String>,
    /// Change-log rows kept, at least, when pruning.
    pub keep_changes: u64,
}

/// The PostgreSQL backend; see the module docs.
pub(crate) struct Postgres {
    pool: Arc<Pool>,
    origin: String,
    feed: Arc<Feed>,
    groups: group::Groups,
    /// Per collection position: its table, for persisted collections.
    tables: Vec<Option<String>>,
    /// Per collection position: the `#[belongs_to]` fields PostgreSQL enforces.
    foreign_keys: Vec<Vec<String>>,
    sources: Vec<Rows>,
    /// The version of every cached record, by collection and id (compact JSON).
    versions: Mutex<HashMap<(usize, String), i64>>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    keep_changes: u64,
}

impl Postgres {
    /// Connects, creates the schema (idempotent, under an advisory lock), checks
    /// every collection's schema against `shelf_meta`, and loads every persisted
    /// collection's rows in one snapshot that no commit is half-way into.
    pub(crate) fn open(options: &PgOptions, collections: &[CollectionSchema]) -> Result<Self> {
        let pool = Arc::new(Pool::new(&options.url, options.schema.clone())?);
        let mut client = pool.connect()?;
        schema::create(&mut client, collections)?;

        let tables: Vec<Option<String>> = collections.iter().map(|c| c.persisted.then(|| c.name.to_owned())).collect();
        let snapshot = snapshot::read(&mut client, &tables)?;
        let mut versions = HashMap::new();
        let mut sources = Vec::with_capacity(collections.len());
        for (pos, (table, rows)) in tables.iter().zip(snapshot.tables).enumerate() {
            let mut docs = Vec::with_capacity(rows.len());
            for row in rows {
                versions.insert((pos, row.id), row.version);
                docs.push(row.doc);
            }
            sources.push(Rows { table: table.clone().unwrap_or_default(), docs: Mutex::new(docs) });
        }
        let origin = format!("{}-{}-{:x}", std::process::id(), nanos(), rand_bits());
        let channel = format!("shelf_{}", options.schema.as_deref().unwrap_or("public"));
        Ok(Postgres {
            foreign_keys: collections.iter().map(|c| c.foreign_keys.iter().map(|(f, _)| f.clone()).collect()).collect(),
            feed: Arc::new(Feed::new(channel, snapshot.floor, tables.clone())),
            pool,
            groups: group::Groups::default(),
            origin,
            tables,
            sources,
            versions: Mutex::new(versions),
            threads: Mutex::new(Vec::new()),
            keep_changes: options.keep_changes,
        })
    }

    /// Starts the change-feed reader and the notifier; `apply` applies other
    /// instances' commits to the store.
    pub(crate) fn start(&self, apply: Arc<Apply>) -> Result<()> {
        self.feed.set_apply(apply);
        let mut threads = self.threads.lock();
        let (feed, pool) = (Arc::clone(&self.feed), Arc::clone(&self.pool));
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.to_owned())
                .spawn(f)
                .map_err(|e| Error::io("start thread", PathBuf::from(name), e))
        };
        threads.push(spawn("shelf-pg-feed", Box::new(move || feed.run_reader(pool)))?);
        let (feed, pool) = (Arc::clone(&self.feed), Arc::clone(&self.pool));
        threads.push(spawn("shelf-pg-notify", Box::new(move || feed.run_notifier(pool)))?);
        Ok(())
    }

    /// The sequence number of the last commit this instance has applied.
    pub(crate) fn floor(&self) -> u64 {
        self.feed.floor()
    }

    /// Stops the threads (at close).
    pub(crate) fn stop(&self) {
        self.feed.stop();
        for thread in self.threads.lock().drain(..) {
            let _ = thread.join();
        }
    }

    /// The version of the cached record `id` (compact JSON) of collection `pos`.
    pub(crate) fn version(&self, pos: usize, id: &str) -> Option<i64> {
        self.versions.lock().get(&(pos, id.to_owned())).copied()
    }

    /// Records the version of a record the cache now holds (`None`: removed).
    pub(crate) fn set_version(&self, pos: usize, id: String, version: Option<i64>) {
        let mut versions = self.versions.lock();
        match version {
            Some(v) => versions.insert((pos, id), v),
            None => versions.remove(&(pos, id)),
        };
    }

    /// The writes that turn collection `pos`'s cache into `rows` (a reload's
    /// snapshot of its table), with the version each record gets (`None`: removed):
    /// each row whose version the cache does not hold, and a removal for each
    /// cached record the snapshot lacks. Ids for which `newer` holds (written by
    /// this instance's commits after the snapshot) are left as they are. Record
    /// the versions (`set_version`) once the writes are applied.
    pub(crate) fn reload_writes(
        &self,
        pos: usize,
        rows: &[SnapshotRow],
        newer: &dyn Fn(&str) -> bool,
    ) -> Vec<(String, Option<String>, Option<i64>)> {
        let versions = self.versions.lock();
        let mut writes = Vec::new();
        let mut present = std::collections::HashSet::with_capacity(rows.len());
        for row in rows {
            present.insert(row.id.as_str());
            if !newer(&row.id) && versions.get(&(pos, row.id.clone())) != Some(&row.version) {
                writes.push((row.id.clone(), Some(row.doc.clone()), Some(row.version)));
            }
        }
        for (p, id) in versions.keys() {
            if *p == pos && !present.contains(id.as_str()) && !newer(id) {
                writes.push((id.clone(), None, None));
            }
        }
        writes
    }

    /// Whether PostgreSQL enforces the foreign key `field` of collection `pos`.
    pub(crate) fn enforces(&self, pos: usize, field: &str) -> bool {
        self.foreign_keys.get(pos).is_some_and(|fields| fields.iter().any(|f| f == field))
    }

    /// The table of collection `pos`, if it is persisted.
    pub(crate) fn table(&self, pos: usize) -> Option<&str> {
        self.tables.get(pos).and_then(|t| t.as_deref())
    }

    /// Commits `writes` (see `shelf_commit`, [`sql::commit_function`]) after checking
    /// `reads`, in a group with the commits other threads make meanwhile
    /// ([`group`]); returns the commit's sequence number and its records' version.
    pub(crate) fn commit(&self, writes: String, reads: String) -> group::Outcome {
        self.announced(
            self.groups.commit(writes, reads, &|w, r| self.commit_alone(w, r), &|batch| self.commit_together(batch)),
        )
    }

    /// [`Postgres::commit`], never in a group: for one large commit (copying a
    /// store into PostgreSQL).
    pub(crate) fn commit_by_itself(&self, writes: &str, reads: &str) -> group::Outcome {
        self.announced(self.commit_alone(writes, reads))
    }

    /// `outcome`, after telling the notifier of a commit made.
    fn announced(&self, outcome: group::Outcome) -> group::Outcome {
        if outcome.is_ok() {
            self.feed.committed();
        }
        outcome
    }

    /// One commit by itself, as one transaction (see [`Postgres::commit`]).
    fn commit_alone(&self, writes: &str, reads: &str) -> group::Outcome {
        let mut client = self.pool.get().map_err(Refusal::Failed)?;
        let result = client
            .prepared("SELECT shelf_commit($1::text::jsonb, $2::text::jsonb, $3)")
            .and_then(|statement| client.query_one(&statement, &[&writes, &reads, &self.origin]));
        match result {
            Ok(row) => {
                let out: Vec<i64> = row.get(0);
                match out.as_slice() {
                    [seq, version] => Ok((*seq as u64, *version)),
                    _ => Err(Refusal::Failed(Error::Postgres {
                        op: "commit",
                        message: format!("shelf_commit returned {out:?}"),
                    })),
                }
            }
            Err(e) => {
                use postgres::error::SqlState;
                let conflict = e.code().is_some_and(|code| {
                    [
                        SqlState::T_R_SERIALIZATION_FAILURE,
                        SqlState::T_R_DEADLOCK_DETECTED,
                        SqlState::UNIQUE_VIOLATION,
                        SqlState::FOREIGN_KEY_VIOLATION,
                    ]
                    .contains(code)
                });
                match conflict {
                    true => Err(Refusal::Conflict(pg_error("commit", &e).to_string())),
                    false => Err(Refusal::Failed(pg_error("commit", &e))),
                }
            }
        }
    }

    /// Several commits as one transaction: `shelf_commit_group`
    /// ([`sql::commit_function`]).
    fn commit_together(&self, batch: &[Arc<group::Ticket>]) -> group::Together {
        let writes: Vec<&str> = batch.iter().map(|t| t.writes.as_str()).collect();
        let reads: Vec<&str> = batch.iter().map(|t| t.reads.as_str()).collect();
        // Until the statement is sent, nothing of the group can be committed: a
        // failure to get there sends each commit by itself.
        let Ok(mut client) = self.pool.get() else { return group::Together::Separately };
        let Ok(statement) = client.prepared("SELECT shelf_commit_group($1::text[]::jsonb[], $2::text[]::jsonb[], $3)")
        else {
            return group::Together::Separately;
        };
        match client.query_one(&statement, &[&writes, &reads, &self.origin]) {
            Ok(row) => {
                let out: Vec<i64> = row.get(0);
                match out.split_first() {
                    Some((version, seqs)) if seqs.len() == batch.len() => {
                        group::Together::Committed(seqs.iter().map(|&seq| (seq as u64, *version)).collect())
                    }
                    _ => group::Together::Failed(format!("shelf_commit_group returned {out:?}")),
                }
            }
            Err(e) => {
                // An ERROR ends the statement and its transaction, the session going
                // on: nothing of the group is committed. A FATAL or PANIC, or a
                // connection lost, may come after the commit: its outcome is unknown.
                let rolled_back =
                    e.as_db_error().is_some_and(|db| db.parsed_severity() == Some(postgres::error::Severity::Error))
                        && !client.is_closed();
                match rolled_back {
                    true => group::Together::Separately,
                    false => group::Together::Failed(pg_message(&e)),
                }
            }
        }
    }

    /// Waits until this instance has applied every commit made before the call.
    pub(crate) fn sync(&self) -> Result<()> {
        let target = {
            let mut client = self.pool.get()?;
            let row = client
                .prepared("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM shelf_seq")
                .and_then(|statement| client.query_one(&statement, &[]))
                .map_err(|e| pg_error("sync", &e))?;
            row.get::<_, i64>(0).max(0) as u64
        };
        self.feed.wait_for(target, &self.pool)?;
        self.prune()
    }

    /// Deletes change-log rows beyond the newest `keep_changes` that every
    /// instance... has had at least a minute to read; see the README.
    fn prune(&self) -> Result<()> {
        let floor = self.feed.floor() as i64;
        if floor % 64 != 0 || self.keep_changes == 0 {
            return Ok(());
        }
        let mut client = self.pool.get()?;
        let keep = self.keep_changes as i64;
        client
            .execute(
                "WITH gone AS (DELETE FROM shelf_changes WHERE seq <= $1::bigint - $2::bigint AND at < now() - interval '1 minute' RETURNING seq)
                 UPDATE shelf_pruned SET upto = greatest(upto, (SELECT max(seq) FROM gone)) WHERE EXISTS (SELECT 1 FROM gone)",
                &[&floor, &keep],
            )
            .map_err(|e| pg_error("prune the change log", &e))?;
        Ok(())
    }

    /// Refuses a record PostgreSQL's `jsonb` would not give back exactly: a
    /// `\u0000` in a string (refused by `jsonb`) or a negative zero (`jsonb`
    /// numbers have no sign of zero).
    pub(crate) fn check_value(json: &[u8]) -> std::result::Result<(), String> {
        let mut in_string = false;
        let mut escaped = false;
        let mut i = 0;
        while i < json.len() {
            let b = json[i];
            if in_string {
                if escaped {
                    escaped = false;
                    if b == b'u' && json.get(i + 1..i + 5) == Some(b"0000") {
                        return Err("a string holds the character U+0000, which PostgreSQL's jsonb cannot store".into());
                    }
                } else if b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    in_string = false;
                }
            } else if b == b'"' {
                in_string = true;
            } else if b == b'-' {
                let end = json[i + 1..]
                    .iter()
                    .position(|c| !(c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-')))
                    .map_or(json.len(), |p| i + 1 + p);
                let number = &json[i + 1..end];
                let mantissa = number.split(|c| matches!(c, b'e' | b'E')).next().unwrap_or_default();
                if mantissa.iter().all(|c| matches!(c, b'0' | b'.')) {
                    return Err("it holds a negative zero, which PostgreSQL's jsonb stores as 0".into());
                }
                i = end;
                continue;
            }
            i += 1;
        }
        Ok(())
    }
}

/// An id as the cache keys versions: compact JSON, as serde writes the id. An
/// integer keeps its digits (through `serde_json::Value`, one beyond 64 bits
/// would turn into a float); anything else is written again compactly.
pub(crate) fn canonical_id(text: &str) -> Result<String> {
    let text = text.trim();
    let digits = text.strip_prefix('-').unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(text.to_owned());
    }
    serde_json::from_str::<serde_json::Value>(text)
        .map(|v| v.to_string())
        .map_err(|e| Error::Postgres { op: "read an id", message: format!("an id is not JSON: {e}") })
}

fn nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

fn rand_bits() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(nanos());
    h.finish()
}

impl Backend for Postgres {
    fn source(&self, pos: usize) -> &dyn Source {
        &self.sources[pos]
    }
    fn read_index(&self, _pos: usize, _name: &str) -> Result<StoredIndex> {
        Ok(StoredIndex::NotKept)
    }
    fn path(&self, _pos: usize) -> Option<PathBuf> {
        None
    }
    fn logs(&self) -> bool {
        false
    }
    fn waits(&self) -> bool {
        false
    }
    fn announce(&self) -> Option<Announcement<'_>> {
        None
    }
    fn log(&self, _payload: &[u8]) -> Result<u64> {
        Ok(0)
    }
    fn wait_logged(&self, _lsn: u64, _incoming: Option<Announcement<'_>>) -> Result<()> {
        Ok(())
    }
    fn register_waker(&self, _lsn: u64, _waker: &std::task::Waker) -> bool {
        false
    }
    fn durable_lsn(&self) -> u64 {
        0
    }
    fn poisoned(&self) -> Option<Error> {
        None
    }
    fn cut(&self) -> Option<u64> {
        None
    }
    fn sync_log(&self, _cut: u64) -> Result<()> {
        Ok(())
    }
    /// Nothing to write: every commit is in PostgreSQL before it is acknowledged.
    fn persist(&self, parts: &mut [(usize, &mut dyn Staged)], _meta: Option<&Meta>) -> Result<Vec<(usize, u64)>> {
        Ok(parts.iter().map(|_| (0, 0)).collect())
    }
    fn checkpoint(&self, _cut: u64) -> Result<()> {
        Ok(())
    }
    fn log_stats(&self) -> Option<WalStats> {
        None
    }
    fn shared(&self) -> Option<&Postgres> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::Postgres;

    #[test]
    fn check_value_refuses_what_jsonb_changes_and_nothing_else() {
        for bad in [r#"{"a":"x\u0000y"}"#, r#"{"f":-0.0}"#, r#"[-0]"#, r#"{"f":-0e5}"#] {
            assert!(Postgres::check_value(bad.as_bytes()).is_err(), "{bad} must be refused");
        }
        for good in
            [r#"{"a":"x\\u0000y"}"#, r#"{"f":-0.5}"#, r#"{"f":-10}"#, r#"{"s":"-0"}"#, r#"{"f":1e-7}"#, "[0,-1.0e3]"]
        {
            assert!(Postgres::check_value(good.as_bytes()).is_ok(), "{good} must pass");
        }
    }
}
