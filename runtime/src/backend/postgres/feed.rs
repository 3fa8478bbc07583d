//! The change feed: how an instance learns of other instances' commits.
//!
//! Every commit appends one row to `shelf_changes` with a global sequence number,
//! taken at the end of its transaction, after its row locks. A reader thread
//! (woken by `NOTIFY`, and polling as a fallback) reads the rows after the last one
//! it delivered and hands them to the store in sequence order.
//!
//! A sequence number can be taken by a transaction that has not committed yet, or
//! that aborted: a gap. The reader holds later rows back until the gap resolves.
//! A commit holds an advisory lock, shared, from taking its number to its end. A
//! gap that stays more than a moment makes the reader *fence*: take that lock
//! exclusively for an instant, which waits for every commit holding a number, and
//! read the last number taken. Every number up to it is then committed, and visible
//! to the next snapshot, or aborted: one still missing is skipped.
//!
//! The log is pruned (see `Postgres::prune`). An instance that still needs a pruned
//! row (it was stopped, disconnected or too slow for longer than the retention)
//! *reloads*: it reads every table in one snapshot ([`super::snapshot`]) and hands
//! it to the store, which applies the net difference to its cache, with events,
//! and the reader goes on from the snapshot's sequence number.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, Statement};

use super::pool::{pg_error, Pool};
use super::snapshot::{self, Snapshot};
use crate::error::{Error, Result};

/// One commit read from the change log.
#[derive(Debug)]
pub(crate) struct ChangeRow {
    /// Its global sequence number.
    pub seq: u64,
    /// The version its records got.
    pub version: i64,
    /// Its writes: a JSON array of `{"c","id","v",...}`.
    pub payload: String,
}

/// What the reader hands to the store.
pub(crate) enum Delivery<'a> {
    /// The next commits, in sequence order.
    Commits(&'a [ChangeRow]),
    /// Every table as of `Snapshot::floor`, which is past the commits the store
    /// has applied: the log no longer holds the ones in between.
    Reload(&'a Snapshot),
}

/// Applies what the reader delivers to the store.
pub(crate) type Apply = dyn Fn(Delivery<'_>) -> Result<()> + Send + Sync;

/// What the reader knows.
struct State {
    /// Every commit up to here is delivered (or aborted).
    floor: u64,
    /// Rows seen above `floor`, waiting for a gap below them.
    waiting: BTreeMap<u64, ChangeRow>,
    /// Gaps above `floor`, with when they were first seen.
    gaps: BTreeMap<u64, Instant>,
    /// Every number up to here that no snapshot since the last fence shows was
    /// taken by a transaction that aborted.
    dead_upto: u64,
    /// Why the feed stopped, if it did (the store could not apply what it
    /// delivered).
    failed: Option<String>,
}

/// The reader's shared state; see the module docs.
pub(crate) struct Feed {
    channel: String,
    /// Per collection position, its table if persisted: what a reload reads.
    tables: Vec<Option<String>>,
    state: Mutex<State>,
    delivered: Condvar,
    apply: Mutex<Option<Arc<Apply>>>,
    stop: AtomicBool,
    /// The backend process of the notifier's connection (0 before it connects):
    /// the reader is not woken by this instance's own notifications.
    notifier_pid: AtomicI32,
    /// The backend process of the reader's connection (0 before it connects).
    reader_pid: AtomicI32,
    /// Whether another instance follows this schema's change feed: without one,
    /// the notifier sends no `NOTIFY` (see [`Feed::run_notifier`]). True until
    /// the notifier has looked.
    others: AtomicBool,
    /// Notifications heard from other instances, counted: a look that found no
    /// other instance does not undo what a notification heard meanwhile showed.
    heard: AtomicU64,
    /// A commit was made that other instances have not been told of.
    pending_notify: Mutex<bool>,
    /// A commit was made while no other instance followed the feed.
    unannounced: AtomicBool,
    notify: Condvar,
}

/// How long a gap may stay before the reader fences (see [`fence`]).
const FENCE_AFTER: Duration = Duration::from_millis(20);

/// The advisory lock a commit holds (shared) from taking its sequence number to
/// its end; see `shelf_commit`.
pub(super) const SEQ_LOCK: i64 = 0x5348_454c_4601;

/// Waits until every commit that holds a sequence number has ended, and returns
/// the last number taken: every number up to it is now committed (and visible to
/// any later snapshot) or aborted. New commits wait meanwhile, for as long as the
/// ones in flight take to end.
fn fence(client: &mut Client) -> Result<u64> {
    let row = client
        .query_one(
            "SELECT pg_advisory_lock($1), (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM shelf_seq), pg_advisory_unlock($1)",
            &[&SEQ_LOCK],
        )
        .map_err(|e| pg_error("read the change log", &e))?;
    Ok(row.get::<_, i64>(1).max(0) as u64)
}

/// The least time between two `NOTIFY`s of one instance.
const NOTIFY_EVERY: Duration = Duration::from_millis(2);

/// How often a notifier that has commits to announce looks whether another
/// instance follows the feed (see [`Feed::run_notifier`]).
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// The most change-log rows one poll reads.
const BATCH: i64 = 5000;

/// One poll: how far the log was pruned, and the rows after the floor (`$1`), at
/// most `$2`, in one statement, one snapshot and one round trip.
const POLL_SQL: &str = "SELECT p.upto, c.seq, c.version, c.payload::text FROM shelf_pruned p
     LEFT JOIN LATERAL (SELECT seq, version, payload FROM shelf_changes WHERE seq > $1 ORDER BY seq LIMIT $2) c ON true";

/// How often the reader polls without a notification: the bound on how late a
/// commit whose `NOTIFY` was lost is seen.
const POLL: Duration = Duration::from_millis(250);

impl Feed {
    pub(super) fn new(channel: String, floor: u64, tables: Vec<Option<String>>) -> Self {
        Feed {
            channel,
            tables,
            state: Mutex::new(State {
                floor,
                waiting: BTreeMap::new(),
                gaps: BTreeMap::new(),
                dead_upto: floor,
                failed: None,
            }),
            delivered: Condvar::new(),
            apply: Mutex::new(None),
            stop: AtomicBool::new(false),
            notifier_pid: AtomicI32::new(0),
            reader_pid: AtomicI32::new(0),
            others: AtomicBool::new(true),
            heard: AtomicU64::new(0),
            pending_notify: Mutex::new(false),
            unannounced: AtomicBool::new(false),
            notify: Condvar::new(),
        }
    }

    /// The sequence number up to which every commit is applied.
    pub(super) fn floor(&self) -> u64 {
        self.state.lock().floor
    }

    pub(super) fn set_apply(&self, apply: Arc<Apply>) {
        *self.apply.lock() = Some(apply);
    }

    /// Reads the change log once and delivers what can be delivered. `want`: a
    /// number known to be taken (by a commit before a `sync`), to be judged even if
    /// no row above it is visible yet. `statement` is [`POLL_SQL`] prepared on
    /// `client`. Returns whether more may be waiting already (a full batch, or a
    /// reload): then poll again at once.
    pub(super) fn poll(&self, client: &mut Client, statement: &Statement, want: u64) -> Result<bool> {
        let mut state = self.state.lock();
        if let Some(why) = &state.failed {
            return Err(Error::Postgres { op: "follow the change log", message: why.clone() });
        }
        // A gap that outlived a short while: fence, and judge every number taken
        // before the fence by what the next snapshot shows.
        if state.gaps.values().next().is_some_and(|seen| seen.elapsed() >= FENCE_AFTER) {
            state.dead_upto = state.dead_upto.max(fence(client)?);
        }
        let rows = client
            .query(statement, &[&(state.floor as i64), &BATCH])
            .map_err(|e| pg_error("read the change log", &e))?;
        let pruned: i64 = rows.first().map_or(0, |row| row.get(0));
        let floor = state.floor as i64;
        if pruned > floor {
            tracing::warn!(
                applied = floor,
                pruned,
                "this instance fell behind the change log's retention; reloading every table"
            );
            let snapshot = snapshot::read(client, &self.tables)?;
            self.deliver(&mut state, Delivery::Reload(&snapshot))?;
            let floor = snapshot.floor;
            state.floor = floor;
            state.dead_upto = state.dead_upto.max(floor);
            state.waiting.retain(|&seq, _| seq > floor);
            state.gaps.retain(|&seq, _| seq > floor);
            self.delivered.notify_all();
            return Ok(true);
        }
        let rows: Vec<_> = rows.into_iter().filter(|row| row.get::<_, Option<i64>>(1).is_some()).collect();
        let full = rows.len() as i64 >= BATCH;
        for row in rows {
            let seq: i64 = row.get(1);
            let seq = seq as u64;
            state.gaps.remove(&seq);
            let change = ChangeRow { seq, version: row.get(2), payload: row.get(3) };
            state.waiting.entry(seq).or_insert(change);
        }
        let top = state.waiting.keys().next_back().copied().unwrap_or(state.floor).max(state.dead_upto).max(want);
        let mut deliver = Vec::new();
        let mut next = state.floor + 1;
        while next <= top {
            if let Some(row) = state.waiting.remove(&next) {
                deliver.push(row);
            } else if next > state.dead_upto {
                state.gaps.entry(next).or_insert_with(Instant::now);
                break; // its transaction may still commit
            }
            state.gaps.remove(&next);
            next += 1;
        }
        let new_floor = next - 1;
        if new_floor == state.floor {
            // Held back by a gap: polling again at once would read the same rows.
            return Ok(false);
        }
        if !deliver.is_empty() {
            self.deliver(&mut state, Delivery::Commits(&deliver))?;
        }
        state.floor = new_floor;
        self.delivered.notify_all();
        Ok(full)
    }

    /// Hands `delivery` to the store. If the store cannot apply it, the feed stops:
    /// delivered rows are gone from `waiting`, and the cache may be part-applied.
    fn deliver(&self, state: &mut State, delivery: Delivery<'_>) -> Result<()> {
        let apply = self.apply.lock().clone();
        let Some(apply) = apply else { return Ok(()) };
        apply(delivery).inspect_err(|e| {
            state.failed = Some(e.to_string());
            self.delivered.notify_all();
        })
    }

    /// Waits until every commit up to `target` is applied, polling with `client`.
    pub(super) fn wait_for(&self, target: u64, pool: &Pool) -> Result<()> {
        let mut client = pool.get()?;
        let statement = client.prepared(POLL_SQL).map_err(|e| pg_error("read the change log", &e))?;
        while self.floor() < target {
            self.poll(&mut client, &statement, target)?;
            if self.floor() < target {
                // A commit with a smaller number is still running: let it finish.
                let mut state = self.state.lock();
                if state.floor < target && state.failed.is_none() {
                    self.delivered.wait_for(&mut state, Duration::from_millis(2));
                }
            }
        }
        Ok(())
    }

    /// Tells the notifier that a commit was made.
    pub(super) fn committed(&self) {
        if !self.others.load(Ordering::SeqCst) {
            // Nobody to tell: the notifier finds it when it next wakes, to look.
            self.unannounced.store(true, Ordering::SeqCst);
            return;
        }
        *self.pending_notify.lock() = true;
        self.notify.notify_one();
    }

    pub(super) fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.notify.notify_all();
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// The reader thread: listens, polls, delivers, until the store closes.
    pub(super) fn run_reader(self: Arc<Self>, pool: Arc<Pool>) {
        let mut client: Option<(Client, Statement)> = None;
        while !self.stopped() {
            if client.as_ref().is_none_or(|(c, _)| c.is_closed()) {
                self.reader_pid.store(0, Ordering::Relaxed);
                client = match pool.connect().and_then(|mut c| {
                    // Its process id first (the notifier's look leaves it out), then
                    // named, so that other instances' notifiers see it follows the
                    // feed, and it says hello, so that they know at once.
                    let pid: i32 =
                        c.query_one("SELECT pg_backend_pid()", &[]).map_err(|e| pg_error("listen", &e))?.get(0);
                    self.reader_pid.store(pid, Ordering::SeqCst);
                    let channel = super::sql::ident(&self.channel);
                    c.batch_execute(&format!(
                        "SET application_name = {}; LISTEN {channel}; NOTIFY {channel}",
                        super::sql::literal(&self.reader_name())
                    ))
                    .map_err(|e| pg_error("listen", &e))?;
                    let statement = c.prepare(POLL_SQL).map_err(|e| pg_error("read the change log", &e))?;
                    Ok((c, statement))
                }) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        tracing::warn!(error = %e, "the change feed cannot connect; retrying");
                        std::thread::sleep(POLL);
                        continue;
                    }
                };
            }
            let Some((c, statement)) = client.as_mut() else { continue };
            match self.poll(c, statement, 0) {
                Ok(true) => continue, // a backlog: read on
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "reading the change log failed");
                    if self.state.lock().failed.is_some() {
                        return;
                    }
                }
            }
            // Wait for a notification (or poll again after POLL, or sooner while a
            // gap waits for its fence), then take the ones already here without
            // waiting: the next poll reads every commit they stand for. (Waiting
            // for more here held a commit back until the timeout: W-visibility
            // measured a p99 of 258 ms.)
            // This instance's own notifications do not wake it: its commits are
            // applied already, and the periodic poll moves the floor past them.
            // Another's tell the notifier that someone listens.
            let wait = if self.state.lock().gaps.is_empty() { POLL } else { FENCE_AFTER };
            let deadline = Instant::now() + wait;
            let own = [self.notifier_pid.load(Ordering::Relaxed), self.reader_pid.load(Ordering::SeqCst)];
            let mut notifications = c.notifications();
            let mut woken = false;
            while let Some(left) = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) {
                match notifications.timeout_iter(left).next() {
                    Ok(Some(n)) if own.contains(&n.process_id()) => {}
                    Ok(Some(_)) => {
                        self.heard.fetch_add(1, Ordering::SeqCst);
                        self.others.store(true, Ordering::SeqCst);
                        woken = true;
                        break;
                    }
                    _ => break,
                }
            }
            if woken {
                let mut pending = notifications.iter();
                while let Ok(Some(n)) = pending.next() {
                    if !own.contains(&n.process_id()) {
                        self.heard.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        }
    }

    /// The `application_name` of every instance's reader connection on this
    /// channel (fixed length: a schema name may be longer than the 63 bytes
    /// PostgreSQL keeps).
    fn reader_name(&self) -> String {
        format!("shelf-feed {:08x}", crc32c::crc32c(self.channel.as_bytes()))
    }

    /// Looks (with the notifier's connection) whether another instance's reader
    /// is connected, and records it in `others`. Assumes so if the look fails, or
    /// if it cannot see this instance's own reader by its name (the name is
    /// hidden or changed, by a proxy say, or the reader is between connections):
    /// then it cannot tell.
    fn look_for_others(&self, client: &mut Client) {
        let heard = self.heard.load(Ordering::SeqCst);
        let own = self.reader_pid.load(Ordering::SeqCst);
        let looked = client.query_one(
            "SELECT COALESCE(bool_or(pid <> $2), false), COALESCE(bool_or(pid = $2), false) FROM pg_stat_activity
             WHERE datname = current_database() AND application_name = $1",
            &[&self.reader_name(), &own],
        );
        let found = match looked {
            Ok(row) => row.get::<_, bool>(0) || !row.get::<_, bool>(1),
            Err(e) => {
                tracing::warn!(error = %pg_error("look for other instances", &e), "notifying as if others followed");
                true
            }
        };
        // A reader names itself before it says hello: one that the look missed
        // has been heard, and counted, since `heard` was read.
        if found || self.heard.load(Ordering::SeqCst) != heard {
            self.others.store(true, Ordering::SeqCst);
            return;
        }
        self.others.store(false, Ordering::SeqCst);
        // A hello heard between the count's check and the store above.
        if self.heard.load(Ordering::SeqCst) != heard {
            self.others.store(true, Ordering::SeqCst);
        }
    }

    /// The notifier thread: one `NOTIFY` for every burst of commits, on its own
    /// connection, outside the commits' transactions (a `NOTIFY` inside a commit
    /// would serialize every commit of the database behind one lock).
    ///
    /// Only while another instance follows the feed: at most every
    /// [`LOOK_EVERY`] while commits are made, it looks for another instance's
    /// reader connection, and a notification from another instance (each reader
    /// says hello when it connects) shows one at once. Alone, an instance sends
    /// none: each costs the server a transaction, and the notifier and this
    /// instance's reader a wake-up (with one instance, about 7% fewer commits/s at
    /// 8 threads, `shelf-bench --bin postgres`). A commit made while a new
    /// instance's hello is on its way reaches it with the next `NOTIFY` or poll.
    pub(super) fn run_notifier(self: Arc<Self>, pool: Arc<Pool>) {
        let mut client: Option<Client> = None;
        let mut looked: Option<Instant> = None;
        let statement = format!("NOTIFY {}", super::sql::ident(&self.channel));
        loop {
            {
                let mut pending = self.pending_notify.lock();
                while !*pending && !self.stopped() {
                    self.notify.wait_for(&mut pending, POLL);
                    if self.unannounced.swap(false, Ordering::SeqCst) {
                        break; // commits made alone: time to look again
                    }
                }
                if self.stopped() {
                    return;
                }
                *pending = false;
            }
            if client.as_ref().is_none_or(|c| c.is_closed()) {
                // Until it connects again, no notification is its own (a closed
                // session's process id may be another instance's next).
                self.notifier_pid.store(0, Ordering::Relaxed);
                client = pool
                    .connect()
                    .and_then(|mut c| {
                        c.batch_execute("SET synchronous_commit = off").map_err(|e| pg_error("notify", &e))?;
                        let pid: i32 =
                            c.query_one("SELECT pg_backend_pid()", &[]).map_err(|e| pg_error("notify", &e))?.get(0);
                        self.notifier_pid.store(pid, Ordering::Relaxed);
                        Ok(c)
                    })
                    .map_err(|e| tracing::warn!(error = %e, "the notifier cannot connect; others will poll"))
                    .ok();
            }
            let Some(c) = client.as_mut() else { continue };
            if looked.is_none_or(|at| at.elapsed() >= LOOK_EVERY) {
                self.look_for_others(c);
                looked = Some(Instant::now());
            }
            if self.others.load(Ordering::SeqCst) {
                if let Err(e) = c.batch_execute(&statement) {
                    tracing::warn!(error = %e, "NOTIFY failed; other instances will poll");
                }
            }
            // Commits of the next moment share one NOTIFY: each one costs the server
            // a transaction, and every listener a poll.
            std::thread::sleep(NOTIFY_EVERY);
        }
    }
}
