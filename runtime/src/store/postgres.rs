//! Opening a store on PostgreSQL (feature `postgres`); see
//! [`StoreBuilder::postgres`].

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use super::{updated_meta, Inner, Relations, Shared, Store, StoreBuilder};
use crate::backend::postgres::{CollectionSchema, Delivery, PgOptions, Postgres};
use crate::backend::Backend;
use crate::collection::{enforced, Log};
use crate::error::{Error, Result};
use crate::flush::{FlushState, Flusher};
use crate::fs::RealFs;
use crate::meta::Meta;
use crate::recover::LoadCtx;

impl StoreBuilder {
    /// Keeps the store in PostgreSQL instead of the directory: the database at
    /// `url` (`postgres://user@host/db`) becomes the source of truth, shared by
    /// every instance that opens it, and this instance keeps its collections in
    /// memory as a coherent cache. Everything else stays as it is: entity types,
    /// indices, relationships, queries, transactions and subscriptions. The
    /// directory given to [`Store::builder`] is not used; it names the store in
    /// messages. `memory` collections stay local to each instance.
    ///
    /// What it guarantees:
    /// - `Ok` means PostgreSQL committed: a write or transaction is one
    ///   PostgreSQL transaction.
    /// - A commit checks the versions of the records it writes, as this instance's
    ///   cache had them. If another instance changed one first (or took a unique
    ///   key, or added a child, that this instance had not seen yet), the commit
    ///   catches up and **runs again**: a transaction body or an `update` closure
    ///   may run more than once, up to 30 times, then [`Error::Conflict`] (retry
    ///   it, or spread the writes: that many lost races mean a hot record). Unique
    ///   keys and foreign keys are enforced by PostgreSQL itself.
    /// - This instance sees its own writes at once. Other instances' commits
    ///   arrive through the change log, woken by `NOTIFY` and polled every 250 ms
    ///   as a fallback, applied atomically and in sequence order, with the same
    ///   watch events; [`Store::sync`] waits for everything committed before it.
    ///
    /// Requires the cargo feature `postgres`.
    ///
    /// ```no_run
    /// # use serde::{Deserialize, Serialize};
    /// # use shelf::{Entity, Store};
    /// #[derive(Entity, Serialize, Deserialize, Clone, Debug)]
    /// struct User { #[id] id: String, #[index(unique)] email: String }
    ///
    /// # fn main() -> shelf::Result<()> {
    /// let store = Store::builder("users")
    ///     .register::<User>()
    ///     .postgres("postgres://postgres@127.0.0.1/app")
    ///     .open()?;
    /// store.collection::<User>()?.insert(User { id: "ada".into(), email: "ada@example.com".into() })?;
    /// # Ok(()) }
    /// ```
    pub fn postgres(mut self, url: &str) -> Self {
        let options =
            self.postgres.get_or_insert_with(|| PgOptions { url: String::new(), schema: None, keep_changes: 100_000 });
        options.url = url.to_owned();
        self
    }

    /// The PostgreSQL schema to keep the tables in (created if missing); the
    /// connection's `search_path` by default (`public`). Several stores can share
    /// a database in separate schemas.
    pub fn postgres_schema(mut self, schema: &str) -> Self {
        let options =
            self.postgres.get_or_insert_with(|| PgOptions { url: String::new(), schema: None, keep_changes: 100_000 });
        options.schema = Some(schema.to_owned());
        self
    }

    /// How many change-log rows PostgreSQL keeps at least (100,000 by default):
    /// rows older than the newest `rows` and older than one minute are pruned. An
    /// instance that falls further behind (disconnected, or too slow) reloads every
    /// table from one snapshot and applies the net difference, with events (see
    /// the README's PostgreSQL section).
    pub fn postgres_change_log(mut self, rows: u64) -> Self {
        let options =
            self.postgres.get_or_insert_with(|| PgOptions { url: String::new(), schema: None, keep_changes: 100_000 });
        options.keep_changes = rows;
        self
    }

    pub(super) fn open_postgres(self, options: PgOptions) -> Result<Store> {
        let _span = tracing::info_span!("open", postgres = %options.schema.as_deref().unwrap_or("public")).entered();
        let (collections, by_type) = self.collections()?;
        let relations = Relations::new(&collections)?;
        let schemas: Vec<CollectionSchema> = collections
            .iter()
            .map(|c| {
                let persisted = c.persisted();
                let parent_persisted =
                    |parent: &str| relations.by_name.get(parent).is_some_and(|&p| collections[p].persisted());
                let meta = c.index_meta();
                CollectionSchema {
                    name: c.name().to_owned(),
                    persisted,
                    // The Rust name, as the schema has recorded it from the start
                    // (and as it names foreign keys): a store made before ids were
                    // recorded by their JSON key still opens.
                    id_field: c
                        .record_fields()
                        .iter()
                        .find(|f| f.key == c.id_field() && !f.flatten)
                        .map_or(c.id_field(), |f| f.field)
                        .to_owned(),
                    unique: meta.into_iter().filter(|i| i.unique).map(|i| i.name).collect(),
                    foreign_keys: c
                        .foreign_keys()
                        .into_iter()
                        .filter(|fk| enforced(fk) && parent_persisted(fk.parent))
                        .map(|fk| (fk.field.to_owned(), fk.parent.to_owned()))
                        .collect(),
                }
            })
            .collect();
        let dir = PathBuf::from(format!("postgres:{}", options.schema.as_deref().unwrap_or("public")));
        // Before anything loads (see `Flusher::prepare`).
        let flusher = Flusher::prepare("shelf-flusher", self.flush_nice)
            .map_err(|e| Error::io("start flusher thread", &dir, e))?;
        let pg = Postgres::open(&options, &schemas)?;
        let floor = pg.floor();
        let fs = RealFs;
        let ctx = LoadCtx::new(&fs, &dir, false);
        for (pos, collection) in collections.iter().enumerate() {
            collection.load(&ctx, pg.source(pos), &|name| pg.read_index(pos, name))?;
        }
        let report = ctx.into_report();
        // The feed holds the commits this open applies, after `floor`: an earlier
        // cursor gets `FeedExpired`, never a gap.
        for collection in &collections {
            collection.start_feed_after(floor);
        }
        let meta = updated_meta(&Meta::empty(), &collections);
        let log = vec![Log::No; collections.len()];
        let inner = Arc::new(Inner {
            backend: Box::new(pg),
            dir,
            lock: Mutex::new(None),
            collections,
            by_type,
            meta: Mutex::new(meta),
            flush_state: FlushState::default(),
            writer: Mutex::new(()),
            commit_seq: std::sync::atomic::AtomicU64::new(floor),
            flush_watchers: Mutex::new(Vec::new()),
            outbox: Default::default(),
            related: relations.related,
            fk_children: relations.fk_children,
            by_name: relations.by_name,
            log,
            closed: AtomicBool::new(false),
            keep_feed: AtomicBool::new(true),
            report: std::sync::OnceLock::from(report),
            flusher: Mutex::new(Vec::new()),
            background: Default::default(),
            shared: crate::commit_shared::SharedState::new(floor),
        });
        let weak: Weak<Inner> = Arc::downgrade(&inner);
        let apply = Arc::new(move |delivery: Delivery<'_>| -> Result<()> {
            let Some(inner) = weak.upgrade() else { return Ok(()) };
            let Some(pg) = inner.backend.shared() else { return Ok(()) };
            match delivery {
                Delivery::Commits(rows) => inner.apply_changes(pg, rows),
                Delivery::Reload(snapshot) => inner.reload(pg, snapshot),
            }
        });
        if let Some(pg) = inner.backend.shared() {
            pg.start(apply)?;
        }
        let flusher = flusher.start(Arc::clone(&inner), self.flush_interval, |inner| {
            let _ = inner.flush();
        });
        *inner.flusher.lock() = vec![flusher];
        Ok(Store { inner: Arc::new(Shared { inner }) })
    }
}

impl Store {
    /// Waits until this instance has applied every commit that any instance made
    /// before the call: read-your-others'-writes. On a file store there is nothing
    /// to wait for. Requires the cargo feature `postgres`.
    ///
    /// # Errors
    ///
    /// [`Error::Postgres`] when PostgreSQL cannot be reached, or when a commit of
    /// the change log cannot be applied to this instance's types. An instance that
    /// fell behind the log's retention reloads first, and `sync` waits for that.
    pub fn sync(&self) -> Result<()> {
        self.check_open()?;
        self.inner().refuse_reentry("sync")?;
        match self.inner().backend.shared() {
            Some(pg) => pg.sync(),
            None => Ok(()),
        }
    }
}

/// What [`Store::copy_into`] copied: records per collection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyReport {
    /// `(collection, records)`, in registration order.
    pub collections: Vec<(&'static str, usize)>,
}

impl Store {
    /// Copies every persisted record of this store (a data directory, say) into
    /// `target`, a store on PostgreSQL with the same entity types registered: the
    /// way from one machine to several. The copy is one PostgreSQL transaction:
    /// all of it or nothing. Afterwards the record counts of every collection are
    /// compared, and every reference is checked ([`Store::verify`]); PostgreSQL's
    /// own foreign keys and unique keys have checked the copy too.
    ///
    /// `target` should be new: a record that it holds already makes the copy fail
    /// and leaves it unchanged. `memory` collections are not copied.
    ///
    /// ```no_run
    /// # use serde::{Deserialize, Serialize};
    /// # use shelf::{Entity, Store};
    /// # #[derive(Entity, Serialize, Deserialize, Clone, Debug)]
    /// # struct User { #[id] id: String }
    /// # fn main() -> shelf::Result<()> {
    /// let files = Store::builder("data").register::<User>().open()?;
    /// let shared = Store::builder("data").register::<User>().postgres("postgres://postgres@127.0.0.1/app").open()?;
    /// let report = files.copy_into(&shared)?;
    /// println!("{report:?}");
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Postgres`] when `target` is not on PostgreSQL, lacks a collection,
    /// already holds one of the records, or the counts or references disagree
    /// afterwards; the errors of reading and committing otherwise.
    pub fn copy_into(&self, target: &Store) -> Result<CopyReport> {
        let fail = |message: String| Error::Postgres { op: "copy into PostgreSQL", message };
        let (source, into) = (self.inner_checked()?, target.inner_checked()?);
        let Some(pg) = into.backend.shared() else {
            return Err(fail("the target store is not on PostgreSQL (open it with `postgres(url)`)".into()));
        };
        let mut json = String::from("[");
        let mut collections = Vec::new();
        for collection in source.collections.iter().filter(|c| c.persisted()) {
            let Some(&pos) = into.by_name.get(collection.name()) else {
                return Err(fail(format!("the target does not register collection `{}`", collection.name())));
            };
            let writes = collection.shared_all()?;
            collections.push((collection.name(), writes.len()));
            for write in &writes {
                into.push_write(pg, &mut json, pos, write, None)?;
            }
        }
        json.push(']');
        if json != "[]" {
            pg.commit_by_itself(&json, "[]").map_err(|refusal| match refusal {
                crate::backend::postgres::Refusal::Conflict(why) => {
                    fail(format!("the target already holds some of these records, or they break a key: {why}"))
                }
                crate::backend::postgres::Refusal::Failed(e) => e,
            })?;
        }
        target.sync()?;
        for (name, count) in &collections {
            let held = into.by_name.get(name).map_or(0, |&pos| into.collections[pos].len());
            if held != *count {
                return Err(fail(format!("collection `{name}`: {count} records copied, but the target holds {held}")));
            }
        }
        if let Some(dangling) = target.verify().first() {
            return Err(fail(format!("a reference does not resolve after the copy: {dangling:?}")));
        }
        Ok(CopyReport { collections })
    }
}
