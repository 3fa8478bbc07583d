//! [`Store`] and [`StoreBuilder`]: opening a data directory and owning it.

use std::any::TypeId;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::backend::files::{CollectionFiles, Files};
use crate::backend::Backend;
use crate::batch::{write_atomic, SyncMode};
use crate::collection::{Core, ErasedCollection, Log};
use crate::entity::{Entity, StorageKind};
use crate::error::{Error, Result};
use crate::feed::FeedRetention;
use crate::flush::{FlushState, FlushStats, Flusher, Health};
use crate::fs::{create_dir_durable, RealFs, Vfs, VfsLock};
use crate::handle::Collection;
use crate::meta::{CollectionMeta, FieldMeta, ForeignKeyMeta, Layout, Meta};
use crate::migrate;
use crate::recover::{LoadCtx, RecoveryReport};
use crate::relation::{Dangling, ForeignKeySpec};
use crate::wal::{replay, Wal, WalSync, WAL_DIR};

mod feed;
mod import;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "postgres")]
pub use postgres::CopyReport;

/// The name of the lock file in the data directory.
pub const LOCK_FILE: &str = "LOCK";

/// The default time between background flushes.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(2);

struct Registration {
    type_id: TypeId,
    make: fn(FeedRetention) -> Arc<dyn ErasedCollection>,
}

fn make_core<T: Entity>(feed: FeedRetention) -> Arc<dyn ErasedCollection> {
    let core = Core::<T>::new();
    core.watchers().set_retention(feed);
    Arc::new(core)
}

/// The default of [`StoreBuilder::flush_nice`]: the background flusher's sync
/// threads run at nice 10, below the application's writers.
pub const DEFAULT_FLUSH_NICE: i32 = 10;

/// The default zstd level for `compress`.
pub const DEFAULT_COMPRESSION_LEVEL: i32 = 3;

/// Configures and opens a [`Store`]. Made by [`Store::builder`].
#[must_use = "a builder does nothing until `.open()`"]
pub struct StoreBuilder {
    dir: PathBuf,
    registrations: Vec<Registration>,
    flush_interval: Duration,
    quarantine: bool,
    fs: Arc<dyn Vfs>,
    sync_mode: SyncMode,
    wal_sync: WalSync,
    repair_wal: bool,
    compression_level: i32,
    allow_migration_to_memory: bool,
    feed_retention: FeedRetention,
    flush_nice: i32,
    #[cfg(feature = "postgres")]
    postgres: Option<crate::backend::postgres::PgOptions>,
}

impl fmt::Debug for StoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreBuilder")
            .field("dir", &self.dir)
            .field("collections", &self.registrations.len())
            .field("flush_interval", &self.flush_interval)
            .field("flush_nice", &self.flush_nice)
            .field("quarantine_corrupt", &self.quarantine)
            .finish()
    }
}

impl StoreBuilder {
    /// Registers an entity type. Registering a type twice is harmless.
    pub fn register<T: Entity>(mut self) -> Self {
        let type_id = TypeId::of::<T>();
        if !self.registrations.iter().any(|r| r.type_id == type_id) {
            self.registrations.push(Registration { type_id, make: make_core::<T> });
        }
        self
    }

    /// How often the background flusher writes dirty records; 2 s by default. A
    /// crash loses at most the writes of this window (for collections without a WAL).
    pub fn flush_interval(mut self, interval: Duration) -> Self {
        self.flush_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// How much the threads that the background flusher starts to write and sync
    /// many files lower their CPU priority (a `nice` increment, Linux only);
    /// [`DEFAULT_FLUSH_NICE`] (10) by default, `0` keeps the priority of the
    /// thread that opened the store.
    ///
    /// A flush of 64 files or more (record files of `per_record` collections)
    /// writes them on a thread of its own and makes them durable with one
    /// `syncfs` (Linux 5.17 and later, on ext4, XFS, btrfs or tmpfs), or writes and syncs them on up to 16
    /// threads (elsewhere), while your threads write; at the
    /// same priority, on a machine with few cores, they take the CPU from a writer
    /// for whole scheduler slices (milliseconds). At nice 10 the writers come
    /// first. The cost: when every core is busy with your own work, such flushes
    /// get less CPU and take longer, so records without a WAL stay undurable
    /// longer.
    ///
    /// Everything else runs at the opener's priority: the flusher thread itself
    /// (it serializes and compresses, and takes the locks your writers take, so it
    /// must not wait for the CPU while holding one), a flush of fewer files (a
    /// collection file), the PostgreSQL backend's flusher, flushes you call
    /// ([`Store::flush`](crate::Store::flush), `close`), and the commits to `wal`
    /// collections (their sync runs on the committing threads or, under
    /// `WalSync::Every`, on a thread at normal priority).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = shelf::Store::builder(dir.path()).flush_nice(0).open()?;
    /// # Ok::<(), shelf::Error>(())
    /// ```
    pub fn flush_nice(mut self, nice: i32) -> Self {
        self.flush_nice = nice.clamp(0, 19);
        self
    }

    /// On open, move record files that cannot be parsed to `<dir>/_quarantine/` and
    /// go on, instead of failing. What was moved is in [`Store::recovery_report`].
    /// Off by default: a corrupt file makes `open` fail with
    /// [`Error::CorruptRecord`], naming the file.
    pub fn quarantine_corrupt(mut self, enabled: bool) -> Self {
        self.quarantine = enabled;
        self
    }

    /// Replaces the file system, e.g. with [`FaultFs`](crate::fs::FaultFs) to test
    /// how an application copes with I/O errors.
    pub fn vfs(mut self, fs: impl Vfs + 'static) -> Self {
        self.fs = Arc::new(fs);
        self
    }

    /// When commits to `wal` collections are durable; [`WalSync::Always`] by default.
    pub fn wal_sync(mut self, policy: WalSync) -> Self {
        self.wal_sync = policy;
        self
    }

    /// On open, if the WAL has a bad record followed by valid ones, cut the log at the
    /// bad record (dropping what follows, reported in [`Store::recovery_report`])
    /// instead of failing with [`Error::WalCorrupt`]. Off by default.
    pub fn repair_wal(mut self, enabled: bool) -> Self {
        self.repair_wal = enabled;
        self
    }

    /// The zstd level of `compress` collections (1 fastest to 22 smallest; 3 by default).
    pub fn compression_level(mut self, level: i32) -> Self {
        self.compression_level = level.clamp(1, 22);
        self
    }

    /// Lets `open` migrate a persisted collection whose declaration changed to
    /// `#[storage(memory)]`, which deletes its files. Off by default: such an open
    /// fails with [`Error::Meta`] and touches nothing.
    pub fn allow_migration_to_memory(mut self, allowed: bool) -> Self {
        self.allow_migration_to_memory = allowed;
        self
    }

    /// How many events each collection keeps for a subscriber that resumes with
    /// [`Collection::watch_from`]; none by default (the feed is off).
    ///
    /// The feed lives in memory. It survives a clean close: [`Store::close`] (or
    /// dropping the last handle) writes each persisted collection's feed to
    /// `_feed/<collection>.jsonl`, and the next open puts it back, so a subscriber
    /// resumes across a restart with no gap. It does not survive a crash, an open
    /// without a feed, or `shelf compact` (a `shelf import` is applied at the next
    /// open with events, so the feed goes on across it); a memory
    /// collection's feed never survives (its records do not either). Then the feed
    /// starts empty, and a cursor from before gets [`Error::FeedExpired`] (reload,
    /// then subscribe again).
    ///
    /// Each open with a feed takes the next range of sequence numbers, recorded in
    /// `shelf.json` (one atomic rewrite at open, which also raises the directory to
    /// format version 2, so older builds refuse it rather than misread it): range
    /// `n` counts from `(n - 1) << 40`, above every number an earlier open gave out.
    /// The first open of a new directory takes range 1 (counting from 0); a
    /// directory opened before without a feed starts at range 2. So a cursor is
    /// never read as a position in another open's history. The limits: one open
    /// numbers fewer than 2^40 commits (127 days at 100,000 commits a second), and
    /// a directory has at most 2^24 opens with a feed (then open fails with
    /// [`Error::Meta`]); numbers pass 2^53 after 8,192 of them, so send them to
    /// JavaScript clients as strings.
    pub fn feed_retention(mut self, retention: FeedRetention) -> Self {
        self.feed_retention = retention;
        self
    }

    /// How flushes sync files. Only for measuring: the default is the fast one.
    #[doc(hidden)]
    pub fn sync_mode(mut self, mode: SyncMode) -> Self {
        self.sync_mode = mode;
        self
    }

    /// Opens the store: locks the directory, removes leftover temp files, loads every
    /// registered collection and starts the background flusher.
    ///
    /// # Errors
    ///
    /// [`Error::Locked`] when another `Store` holds the directory,
    /// [`Error::Meta`] when `shelf.json` is unreadable or from a newer Shelf,
    /// [`Error::CorruptRecord`] for an unparsable record file (unless
    /// [`quarantine_corrupt`](Self::quarantine_corrupt)), [`Error::Io`] otherwise.
    #[cfg_attr(not(feature = "postgres"), allow(unused_mut))]
    pub fn open(mut self) -> Result<Store> {
        #[cfg(feature = "postgres")]
        if let Some(options) = self.postgres.take() {
            return self.open_postgres(options);
        }
        let _span = tracing::info_span!("open", dir = %self.dir.display()).entered();
        let fs = Arc::clone(&self.fs);
        let dir = self.dir.clone();
        create_dir_durable(fs.as_ref(), &dir).map_err(|e| Error::io("create data directory", &dir, e))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = take_lock(fs.as_ref(), &dir, &lock_path)?;

        // Before anything loads (see `Flusher::prepare`).
        let start_thread = |e| Error::io("start flusher thread", &dir, e);
        let flusher = Flusher::prepare("shelf-flusher", self.flush_nice).map_err(start_thread)?;
        let wal_syncer = match self.wal_sync {
            WalSync::Every(_) => Some(Flusher::prepare("shelf-wal-sync", 0).map_err(start_thread)?),
            _ => None,
        };
        let (collections, by_type) = self.collections()?;

        let relations = Relations::new(&collections)?;
        let old_meta = Meta::load(fs.as_ref(), &dir)?;
        let mut meta = updated_meta(&old_meta, &collections);
        // Sequence numbers of an open with a change feed start above every earlier
        // open's. The feed is the last clean close's, or empty: then an earlier
        // open's cursor gets `FeedExpired`, never another open's events under the
        // same numbers.
        let fresh = old_meta.collections.is_empty();
        let seq_base = if self.feed_retention.enabled() { meta.start_feed_epoch(&dir, fresh)? } else { 0 };
        let feed_open =
            feed::FeedOpen { enabled: self.feed_retention.enabled(), last_epoch: old_meta.feed_epoch, fresh, seq_base };

        let ctx = LoadCtx::new(fs.as_ref(), &dir, self.quarantine);
        ctx.sweep_temps(&dir)?;
        let files = Files::new(
            dir.clone(),
            Arc::clone(&fs),
            self.sync_mode,
            collections
                .iter()
                .map(|c| {
                    let (name, spec, level) = (c.name(), c.spec(), self.compression_level);
                    CollectionFiles::new(Arc::clone(&fs), &dir, name, spec, c.has_indices(), level)
                })
                .collect(),
        );
        let mut migrations = Vec::new();
        for (pos, collection) in collections.iter().enumerate() {
            for sub in files.collection(pos).dirs() {
                ctx.sweep_temps(&sub)?;
                create_dir_durable(fs.as_ref(), &sub).map_err(|e| Error::io("create directory", &sub, e))?;
            }
            if let Some(next) = meta.collections.get(collection.name()).and_then(|m| m.next_id) {
                collection.set_next_auto(next);
            }
            migrate::finish_cleanup(fs.as_ref(), &dir, &mut meta, collection.name(), self.compression_level)?;
            let declared = Layout::of(collection.spec());
            let recorded = meta.collections.get(collection.name()).map_or(declared, |m| m.layout);
            let stored = if collection.persisted() || recorded.storage != StorageKind::Memory {
                migrate::layout_on_disk(
                    fs.as_ref(),
                    &dir,
                    collection.name(),
                    recorded,
                    declared,
                    self.compression_level,
                )?
            } else {
                recorded
            };
            if stored != recorded {
                if let Some(entry) = meta.collections.get_mut(collection.name()) {
                    entry.layout = stored;
                }
            }
            let stored_indices = |name: &str| files.read_index(pos, name);
            if stored == declared {
                collection.load(&ctx, files.source(pos), &stored_indices)?;
                let strays = files.collection(pos).strays()?;
                for stray in &strays {
                    tracing::warn!(collection = collection.name(), file = %stray.display(), "a file Shelf did not write is in the collection's directory; it is left alone");
                }
                ctx.note_strays(strays);
                continue;
            }
            if migrate::needs_opt_in(stored, declared) && !self.allow_migration_to_memory {
                return Err(Error::Meta {
                    path: Meta::path(&dir),
                    message: format!(
                        "collection `{}` is stored on disk ({:?}) but now declared #[storage(memory)]; that would delete its files, so open with `allow_migration_to_memory(true)` to do it",
                        collection.name(),
                        stored.storage
                    ),
                });
            }
            let from = CollectionFiles::new(
                Arc::clone(&fs),
                &dir,
                collection.name(),
                stored.spec(),
                false,
                self.compression_level,
            );
            for sub in from.dirs() {
                ctx.sweep_temps(&sub)?;
            }
            collection.load(&ctx, &from, &stored_indices)?;
            migrations.push((pos, stored));
        }
        let wal = open_wal(&fs, &dir, &collections, &self, &ctx)?;
        let log = log_modes(&collections, &relations.wal_children, wal.is_some());
        for (pos, stored) in migrations {
            let collection = collections[pos].as_ref();
            let declared = files.collection(pos);
            migrate::migrate(fs.as_ref(), &dir, &mut meta, collection, declared, stored, self.compression_level)?;
        }
        // Late, once nothing else can fail the open: a failed open keeps the feed
        // files (the records did not change). Removed before the first commit.
        feed::restore(fs.as_ref(), &dir, &collections, &feed_open, &ctx)?;
        if meta != old_meta {
            write_atomic(fs.as_ref(), Meta::path(&dir), meta.to_bytes(&dir)?)?;
        }
        let staged = import::read(fs.as_ref(), &dir, &collections, &ctx)?;

        let inner = Arc::new(Inner {
            backend: Box::new(files.with_wal(wal)),
            dir: dir.clone(),
            lock: Mutex::new(Some(lock)),
            collections,
            by_type,
            meta: Mutex::new(meta),
            flush_state: FlushState::default(),
            writer: Mutex::new(()),
            commit_seq: std::sync::atomic::AtomicU64::new(seq_base),
            flush_watchers: Mutex::new(Vec::new()),
            outbox: Default::default(),
            related: relations.related,
            fk_children: relations.fk_children,
            by_name: relations.by_name,
            log,
            closed: AtomicBool::new(false),
            keep_feed: AtomicBool::new(true),
            report: std::sync::OnceLock::new(),
            flusher: Mutex::new(Vec::new()),
            background: Default::default(),
            #[cfg(feature = "postgres")]
            shared: crate::commit_shared::SharedState::default(),
        });
        let mut threads = vec![flusher.start(Arc::clone(&inner), self.flush_interval, |inner| {
            // Errors are recorded in Health and logged by `flush`.
            let _ = inner.flush();
        })];
        if let (WalSync::Every(interval), true, Some(syncer)) = (self.wal_sync, inner.backend.logs(), wal_syncer) {
            threads.push(syncer.start(Arc::clone(&inner), interval, |inner| {
                // A failure poisons the store; writers and `health` report it.
                if let Some(Err(e)) = inner.backend.cut().map(|cut| inner.backend.sync_log(cut)) {
                    inner.flush_state.record_failure(inner.poisoned_or(e));
                }
            }));
        }
        *inner.flusher.lock() = threads;
        for dangling in inner.dangling(false) {
            tracing::warn!(?dangling, "a record references a parent that does not exist");
        }
        // Records replayed from the WAL are dirty: the background flusher writes them,
        // and the WAL keeps them until it has. Index files found missing or stale are
        // rewritten by the final flush of `close`.
        let store = Store { inner: Arc::new(Shared { inner }) };
        // Staged imports go in through the commit path, now that it runs; the store
        // is not handed out before they are durable (on an error, its drop closes it).
        let imports = match import::apply(fs.as_ref(), &store.inner.inner, staged, &ctx) {
            Ok(imports) => imports,
            Err(e) => {
                // The staged file stays, and the next open applies it again: a feed
                // kept now would hold its events twice.
                store.inner.inner.keep_feed.store(false, Ordering::SeqCst);
                return Err(e);
            }
        };
        let mut report = ctx.into_report();
        report.imports = imports;
        let _ = store.inner.inner.report.set(report);
        Ok(store)
    }
}

/// A store's collections, in registration order.
type Collections = Vec<Arc<dyn ErasedCollection>>;

impl StoreBuilder {
    /// The registered collections, empty, and their positions by type; an error
    /// when two types claim one collection name.
    fn collections(&self) -> Result<(Collections, HashMap<TypeId, usize>)> {
        let mut collections: Vec<Arc<dyn ErasedCollection>> = Vec::new();
        let mut by_type = HashMap::new();
        for registration in &self.registrations {
            let collection = (registration.make)(self.feed_retention);
            if let Some(first) = collections.iter().find(|c| c.name() == collection.name()) {
                return Err(Error::DuplicateCollection {
                    collection: collection.name().to_owned(),
                    first: first.type_name(),
                    second: collection.type_name(),
                });
            }
            by_type.insert(registration.type_id, collections.len());
            collections.push(collection);
        }
        Ok((collections, by_type))
    }
}

/// Takes the directory lock. A lock held elsewhere is retried for a short while
/// before `Locked` is returned: a process that forks while another `Store` of this
/// process has just closed keeps a copy of the lock until its child calls `exec`.
fn take_lock(fs: &dyn Vfs, dir: &Path, lock_path: &Path) -> Result<Box<dyn VfsLock>> {
    const ATTEMPTS: u32 = 20;
    for attempt in 1..=ATTEMPTS {
        match fs.try_lock(lock_path) {
            Ok(lock) => return Ok(lock),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && attempt < ATTEMPTS => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                return Err(Error::Locked { dir: dir.to_path_buf() })
            }
            Err(e) => return Err(Error::io("lock", lock_path, e)),
        }
    }
    Err(Error::Locked { dir: dir.to_path_buf() })
}

/// Recovers the WAL (replaying its records into the loaded collections) and opens
/// it for appending. `None` when no collection uses it and no log is left over.
fn open_wal(
    fs: &Arc<dyn Vfs>,
    dir: &Path,
    collections: &[Arc<dyn ErasedCollection>],
    builder: &StoreBuilder,
    ctx: &LoadCtx,
) -> Result<Option<Wal>> {
    let wal_dir = dir.join(WAL_DIR);
    let needed = collections.iter().any(|c| c.spec().wal);
    if !needed && replay::list_segments(fs.as_ref(), &wal_dir)?.is_empty() {
        return Ok(None);
    }
    let recovered = replay::recover(fs.as_ref(), &wal_dir, builder.repair_wal)?;
    for (lsn, payload) in &recovered.records {
        apply_wal_record(collections, *lsn, payload)?;
    }
    if !recovered.records.is_empty() {
        tracing::info!(records = recovered.records.len(), "replayed the WAL");
    }
    ctx.note_wal(recovered.records.len(), recovered.truncated_bytes);
    Wal::open(Arc::clone(fs), dir, builder.wal_sync, recovered.segments, recovered.last_lsn).map(Some)
}

/// Applies one replayed WAL record: a JSON array of `{"c","id","v"}` writes.
fn apply_wal_record(collections: &[Arc<dyn ErasedCollection>], lsn: u64, payload: &[u8]) -> Result<()> {
    // The value stays raw JSON here and is parsed once, as the record type, with
    // the same nesting limit as a record file: what the write-time check accepted.
    let entries = crate::wal::record::decode_writes::<serde_json::Value>(payload)
        .map_err(|message| Error::WalReplay { lsn, message })?;
    for entry in entries {
        let Some(collection) = collections.iter().find(|c| c.name() == entry.collection) else {
            return Err(Error::WalReplay {
                lsn,
                message: format!(
                    "it writes to collection `{}`, which is not registered; register its type to recover it",
                    entry.collection
                ),
            });
        };
        collection.replay(entry.id, entry.value.map(|v| v.get().as_bytes()), entry.parent).map_err(|message| {
            Error::WalReplay { lsn, message: format!("collection `{}`: {message}", entry.collection) }
        })?;
    }
    Ok(())
}

/// Per collection, which of its writes a commit logs (with a WAL at all).
fn log_modes(collections: &[Arc<dyn ErasedCollection>], wal_children: &[bool], wal: bool) -> Vec<Log> {
    let mode = |(collection, referenced): (&Arc<dyn ErasedCollection>, &bool)| match wal {
        false => Log::No,
        true if collection.spec().wal => Log::All,
        true if *referenced => Log::Removals,
        true => Log::No,
    };
    collections.iter().zip(wal_children).map(mode).collect()
}

/// The foreign-key graph between registered collections.
struct Relations {
    related: Vec<Vec<usize>>,
    fk_children: Vec<Vec<(usize, ForeignKeySpec)>>,
    by_name: HashMap<&'static str, usize>,
    wal_children: Vec<bool>,
}

impl Relations {
    fn new(collections: &[Arc<dyn ErasedCollection>]) -> Result<Self> {
        let by_name: HashMap<&'static str, usize> =
            collections.iter().enumerate().map(|(i, c)| (c.name(), i)).collect();
        let mut fk_children = vec![Vec::new(); collections.len()];
        let mut edges = vec![Vec::new(); collections.len()];
        for (child, collection) in collections.iter().enumerate() {
            for spec in collection.foreign_keys() {
                let Some(&parent) = by_name.get(spec.parent) else {
                    return Err(Error::UnregisteredParent {
                        collection: collection.name().to_owned(),
                        field: spec.field.to_owned(),
                        parent: spec.parent.to_owned(),
                    });
                };
                fk_children[parent].push((child, spec));
                edges[parent].push(child);
                edges[child].push(parent);
            }
        }
        // Connected components: a commit locks the whole component it touches.
        let mut related = vec![Vec::new(); collections.len()];
        for start in 0..collections.len() {
            if edges[start].is_empty() {
                continue;
            }
            let mut seen = vec![start];
            let mut i = 0;
            while i < seen.len() {
                for &next in &edges[seen[i]] {
                    if !seen.contains(&next) {
                        seen.push(next);
                    }
                }
                i += 1;
            }
            seen.sort_unstable();
            related[start] = seen;
        }
        let wal_children =
            fk_children.iter().map(|children| children.iter().any(|(c, _)| collections[*c].spec().wal)).collect();
        Ok(Relations { related, fk_children, by_name, wal_children })
    }
}

/// `shelf.json` with an entry for every registered collection. An existing entry
/// keeps its layout: a changed declaration is migrated by `open`, which updates it.
fn updated_meta(old: &Meta, collections: &[Arc<dyn ErasedCollection>]) -> Meta {
    let mut meta = old.clone();
    for collection in collections {
        let spec = collection.spec();
        let entry = meta.collections.entry(collection.name().to_owned()).or_insert_with(|| CollectionMeta {
            entity: String::new(),
            layout: Layout::of(spec),
            wal: spec.wal,
            id_field: None,
            cleanup: None,
            migrating: None,
            next_id: None,
            foreign_keys: Vec::new(),
            indices: Vec::new(),
            fields: Vec::new(),
        });
        entry.entity = collection.type_name().to_owned();
        entry.wal = spec.wal;
        entry.id_field = Some(collection.id_field().to_owned());
        entry.foreign_keys = collection
            .foreign_keys()
            .into_iter()
            .map(|fk| ForeignKeyMeta {
                field: collection.key_of(fk.field).to_owned(),
                parent: fk.parent.to_owned(),
                check: fk.check,
            })
            .collect();
        entry.indices = collection.index_meta();
        entry.fields = collection.record_fields().iter().map(FieldMeta::of).collect();
    }
    meta
}

/// The shared state behind every [`Store`] handle.
pub(crate) struct Inner {
    pub(crate) dir: PathBuf,
    /// How records become durable: the seam every commit and flush goes through.
    pub(crate) backend: Box<dyn Backend>,
    lock: Mutex<Option<Box<dyn VfsLock>>>,
    pub(crate) collections: Vec<Arc<dyn ErasedCollection>>,
    by_type: HashMap<TypeId, usize>,
    pub(crate) meta: Mutex<Meta>,
    pub(crate) flush_state: FlushState,
    closed: AtomicBool,
    /// Set once, at the end of open.
    report: std::sync::OnceLock<RecoveryReport>,
    /// Whether `close` keeps the change feed for the next open (not after an open
    /// that failed while applying a staged import).
    pub(crate) keep_feed: AtomicBool,
    /// Serializes writers; see [`crate::commit`].
    pub(crate) writer: Mutex<()>,
    /// The sequence number of the last commit (for events and flush notifications).
    pub(crate) commit_seq: std::sync::atomic::AtomicU64,
    /// Subscribers of [`Store::watch_flushes`].
    pub(crate) flush_watchers: Mutex<Vec<crate::stream::Notify<u64>>>,
    /// Changes waiting for their commit (or an earlier one) to be durable.
    pub(crate) outbox: crate::commit::Outbox,
    /// Per collection: every collection connected to it by foreign keys, which a
    /// commit touching it locks too.
    pub(crate) related: Vec<Vec<usize>>,
    /// Per parent collection: `(child collection, foreign key)` referencing it.
    pub(crate) fk_children: Vec<Vec<(usize, ForeignKeySpec)>>,
    /// Collection positions by name.
    pub(crate) by_name: HashMap<&'static str, usize>,
    /// Per collection: which of its writes a commit logs. A collection that `wal`
    /// collections reference has its removals logged; see [`Log::Removals`].
    pub(crate) log: Vec<Log>,
    /// The background threads: the flusher, and the WAL syncer for `WalSync::Every`.
    flusher: Mutex<Vec<Flusher>>,
    /// The thread that syncs for async writers and runs `flush_async`.
    pub(crate) background: crate::nonblocking::Background,
    /// Which PostgreSQL commits are applied to memory.
    #[cfg(feature = "postgres")]
    pub(crate) shared: crate::commit_shared::SharedState,
}

impl Inner {
    fn dangling(&self, unchecked: bool) -> Vec<Dangling> {
        let exists = |parent: &str, id: &dyn std::any::Any| {
            self.by_name.get(parent).is_some_and(|&p| self.collections[p].contains_id(id))
        };
        self.collections.iter().flat_map(|c| c.dangling(&exists, unchecked)).collect()
    }

    /// Stops the background threads, waiting for a flush in progress to end.
    fn stop_threads(&self) {
        let threads = std::mem::take(&mut *self.flusher.lock());
        for mut thread in threads {
            thread.stop();
        }
        self.background.stop(&self.dir);
        #[cfg(feature = "postgres")]
        if let Some(pg) = self.backend.shared() {
            pg.stop();
        }
    }

    /// Whether `close` has completed.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Final flush, then closed for writes, threads stopped and the directory
    /// unlocked. On a flush error the store stays open and nothing is lost.
    fn close(&self) -> Result<()> {
        if self.is_closed() {
            return Ok(());
        }
        self.refuse_reentry("close")?;
        if let Err(poisoned) = self.check_poisoned() {
            // A poisoned store writes nothing more: it lets go of the directory, and
            // the next open recovers what is durable.
            self.closed.store(true, Ordering::SeqCst);
            self.stop_threads();
            self.lock.lock().take();
            return Err(poisoned);
        }
        self.flush()?;
        {
            // Writers check `closed` under the writer lock: after this, none commits.
            let _writer = self.writer.lock();
            self.closed.store(true, Ordering::SeqCst);
        }
        if let Err(e) = self.flush_with(true) {
            self.closed.store(false, Ordering::SeqCst);
            return Err(e);
        }
        // Nothing commits any more and the log is durable: every event is
        // published once the queue is drained, and the feed ends with the records.
        self.drain_events();
        let feeds = match self.keep_feed.load(Ordering::SeqCst) {
            true => feed::encode_all(&self.collections, self.meta.lock().feed_epoch),
            false => Vec::new(),
        };
        if let Err(e) = self.backend.keep_feeds(feeds) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "the change feed is not kept for the next open");
        }
        self.stop_threads();
        self.lock.lock().take();
        Ok(())
    }
}

/// What every [`Store`] handle shares. Its drop is the teardown of the store: the
/// background threads hold the [`Inner`], never this, so the teardown always runs on
/// the thread that drops the last handle, before that drop returns.
pub(crate) struct Shared {
    inner: Arc<Inner>,
}

impl std::ops::Deref for Shared {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Err(e) = self.inner.close() {
            tracing::error!(dir = %self.inner.dir.display(), error = %e, "the flush on drop failed; changes since the last flush are lost");
            self.inner.stop_threads();
            self.inner.lock.lock().take();
        }
    }
}

/// An open data directory: the entry point of Shelf.
///
/// A `Store` is a cheap handle (`Clone + Send + Sync`); all clones share one state.
/// It holds the directory lock and runs a background flusher. When the last handle
/// (including collection handles) is dropped, it flushes and unlocks; call
/// [`close`](Store::close) to do that explicitly and see any error.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use shelf::{Entity, Store};
///
/// #[derive(Entity, Serialize, Deserialize, Clone, Debug, PartialEq)]
/// struct Task {
///     #[id(auto)]
///     id: u64,
///     title: String,
/// }
///
/// # fn main() -> shelf::Result<()> {
/// let dir = tempfile::tempdir().unwrap();
/// let store = Store::builder(dir.path()).register::<Task>().open()?;
/// let tasks = store.collection::<Task>()?;
/// let id = tasks.insert(Task { id: 0, title: "write docs".into() })?;
/// assert_eq!(tasks.get(&id).unwrap().title, "write docs");
/// store.close()?;
///
/// let store = Store::builder(dir.path()).register::<Task>().open()?;
/// assert_eq!(store.collection::<Task>()?.len(), 1);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Store {
    inner: Arc<Shared>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.inner.dir)
            .field("collections", &self.inner.collections.len())
            .finish()
    }
}

impl Store {
    /// Starts configuring a store in `dir`. The directory is created if needed.
    pub fn builder(dir: impl AsRef<Path>) -> StoreBuilder {
        StoreBuilder {
            dir: dir.as_ref().to_path_buf(),
            registrations: Vec::new(),
            flush_interval: DEFAULT_FLUSH_INTERVAL,
            quarantine: false,
            fs: Arc::new(RealFs),
            sync_mode: SyncMode::default(),
            wal_sync: WalSync::default(),
            repair_wal: false,
            compression_level: DEFAULT_COMPRESSION_LEVEL,
            allow_migration_to_memory: false,
            feed_retention: FeedRetention::default(),
            flush_nice: DEFAULT_FLUSH_NICE,
            #[cfg(feature = "postgres")]
            postgres: None,
        }
    }

    /// The typed handle of a registered entity type: `<Type>Collection`, generated
    /// by the derive, which dereferences to [`Collection<T>`].
    ///
    /// # Errors
    ///
    /// [`Error::NotRegistered`] when `T` was not registered on the builder.
    pub fn collection<T: Entity>(&self) -> Result<T::Handle> {
        let (core, index) = self.collection_core::<T>()?;
        Ok(T::Handle::from(Collection::new(core, index, self.clone())))
    }

    /// The collection core of `T` and its position.
    pub(crate) fn collection_core<T: Entity>(&self) -> Result<(Arc<Core<T>>, usize)> {
        let not_registered = || Error::NotRegistered { type_name: std::any::type_name::<T>() };
        let index = *self.inner.by_type.get(&TypeId::of::<T>()).ok_or_else(not_registered)?;
        let core = Arc::clone(&self.inner.collections[index])
            .as_any_arc()
            .downcast::<Core<T>>()
            .map_err(|_| not_registered())?;
        Ok((core, index))
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    /// The shared state, for the async writes' background thread.
    pub(crate) fn inner_arc(&self) -> Arc<Inner> {
        Arc::clone(&self.inner.inner)
    }

    /// The shared state, or [`Error::Closed`].
    pub(crate) fn inner_checked(&self) -> Result<&Inner> {
        self.check_open()?;
        Ok(&self.inner)
    }

    /// Writes every dirty record now and waits until it is durable.
    ///
    /// On error the data stays dirty, [`health`](Store::health) reports the error,
    /// and the next flush (explicit or in the background) tries again.
    ///
    /// **Blocking:** for the whole flush: serializing the dirty records, writing and
    /// syncing their files (`cargo run --release -p shelf-bench -- w8` measures it
    /// against the disk's batched-sync line). Writers are not held up meanwhile.
    /// From async code use [`flush_async`](Store::flush_async).
    pub fn flush(&self) -> Result<FlushStats> {
        self.check_open()?;
        self.inner.flush()
    }

    /// Flushes, stops the background flusher and releases the directory lock. After
    /// `close`, every handle of this store returns [`Error::Closed`] on writes.
    ///
    /// If the flush fails, the store stays open and the error is returned: fix the
    /// cause and call `close` again.
    pub fn close(&self) -> Result<()> {
        self.inner.close()
    }

    /// Whether flushes are succeeding, and how much is waiting to be written. A
    /// poisoned store (see [`Error::Poisoned`]) reports that as its `last_error`.
    pub fn health(&self) -> Health {
        let mut health = self.inner.flush_state.health();
        if let Err(poisoned) = self.inner.check_poisoned() {
            health.last_error = Some(poisoned);
        }
        health.dirty = self.inner.collections.iter().map(|c| c.dirty_count()).sum();
        health
    }

    /// What `open` found and repaired: removed temp files and quarantined files.
    pub fn recovery_report(&self) -> &RecoveryReport {
        static NOTHING: RecoveryReport = RecoveryReport::none();
        self.inner.report.get().unwrap_or(&NOTHING)
    }

    /// Counters of every collection, the last flush and the WAL.
    pub fn stats(&self) -> crate::stats::Stats {
        let last = self.inner.flush_state.last();
        let collections = self
            .inner
            .collections
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let (files, bytes) = last.as_ref().and_then(|(_, per)| per.get(i).copied()).unwrap_or((0, 0));
                crate::stats::CollectionStats {
                    name: c.name(),
                    storage: c.spec(),
                    records: c.len(),
                    dirty: c.dirty_count(),
                    last_flush_files: files,
                    last_flush_bytes: bytes,
                }
            })
            .collect();
        crate::stats::Stats {
            collections,
            last_flush: last.map(|(report, _)| report),
            last_error: self.inner.flush_state.health().last_error,
            wal: self.inner.backend.log_stats(),
        }
    }

    /// Subscribes to flush completions: after each successful flush, the sequence
    /// number of the last commit it made durable in the record files (events carry
    /// commit sequence numbers; see [`watch`](crate::watch)). Dropping the receiver
    /// unsubscribes.
    pub fn watch_flushes(&self) -> std::sync::mpsc::Receiver<u64> {
        self.watch_flushes_stream().into_receiver()
    }

    /// [`watch_flushes`](Store::watch_flushes) as a
    /// [`Subscription`](crate::stream::Subscription): a `Stream` for any executor.
    pub fn watch_flushes_stream(&self) -> crate::stream::Subscription<u64> {
        let (tx, rx) = crate::stream::Notify::pair();
        self.inner.flush_watchers.lock().push(tx);
        rx
    }

    /// Checks every foreign key (with `check`) of every record and returns the
    /// references to records that do not exist. Writes keep references valid; a
    /// dangling one comes from files changed outside Shelf or written with
    /// `check = false` on the other side. Open reports them as warnings.
    pub fn verify(&self) -> Vec<Dangling> {
        self.inner.dangling(false)
    }

    /// [`verify`](Self::verify), and the references of `check = false` keys too:
    /// those may name a missing parent by design, so `verify` leaves them out, and
    /// this lists them on request.
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # use shelf::{Entity, Store};
    /// #[derive(Entity, Serialize, Deserialize, Clone, Debug)]
    /// struct User { #[id] id: String }
    ///
    /// #[derive(Entity, Serialize, Deserialize, Clone, Debug)]
    /// struct Visit {
    ///     #[id(auto)] id: u64,
    ///     #[belongs_to(User, check = false)] user_id: String,
    /// }
    ///
    /// # fn main() -> shelf::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::builder(dir.path()).register::<User>().register::<Visit>().open()?;
    /// store.collection::<Visit>()?.insert(Visit { id: 0, user_id: "ghost".into() })?;
    /// assert!(store.verify().is_empty());
    /// assert_eq!(store.verify_all().len(), 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn verify_all(&self) -> Vec<Dangling> {
        self.inner.dangling(true)
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    pub(crate) fn check_open(&self) -> Result<()> {
        if self.inner.is_closed() {
            return Err(Error::Closed { dir: self.inner.dir.clone() });
        }
        Ok(())
    }
}
