//! The peer stores, behind one small interface so that every workload runs them the
//! same way: SQLite (rusqlite, bundled), redb and native_db.
//!
//! Every write here is one transaction, committed durably unless the peer's settings
//! say otherwise ([`PeerKind::durable`]). Reads run inside one read transaction per
//! [`Reader`], held over a whole batch of lookups: the peers' best case.

mod native;
mod redb_peer;
mod sqlite;

use std::path::Path;

use crate::data::{Order, User};
use crate::BoxError;

pub type Result<T> = std::result::Result<T, BoxError>;

/// A peer store, open on one directory. Shared by the writer threads of W2.
pub trait Peer: Send + Sync {
    /// Inserts users and orders in one transaction.
    fn load(&self, users: &[User], orders: &[Order]) -> Result<()>;
    /// Inserts one user in its own transaction.
    fn insert_one(&self, user: &User) -> Result<()>;
    /// Changes the `age` of these users, in one transaction.
    fn update(&self, ids: &[u64]) -> Result<()>;
    /// A read transaction for a batch of lookups.
    fn reader(&self) -> Result<Box<dyn Reader + '_>>;
}

/// Lookups inside one read transaction; each result is decoded into the plain types.
pub trait Reader {
    fn get(&mut self, id: u64) -> Result<Option<User>>;
    fn by_email(&mut self, email: &str) -> Result<Option<User>>;
    fn orders_of(&mut self, user_id: u64) -> Result<Vec<Order>>;
}

/// Which peer, with which settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerKind {
    /// SQLite in WAL mode with `synchronous=FULL`: every commit fsyncs the WAL.
    SqliteFull,
    /// SQLite in WAL mode with `synchronous=NORMAL`: commits are not synced, the WAL is
    /// synced at checkpoints. Not durable per commit; shown for the batched workloads.
    SqliteNormal,
    /// redb with `Durability::Immediate` (its default).
    Redb,
    /// native_db, on redb with its default `Durability::Immediate`.
    NativeDb,
}

/// The durable peers, the ones "best peer" is chosen from.
pub const DURABLE: [PeerKind; 3] = [PeerKind::SqliteFull, PeerKind::Redb, PeerKind::NativeDb];

impl PeerKind {
    /// The subject name in the table.
    pub fn subject(self) -> &'static str {
        match self {
            PeerKind::SqliteFull | PeerKind::SqliteNormal => "sqlite",
            PeerKind::Redb => "redb",
            PeerKind::NativeDb => "native_db",
        }
    }

    /// The case name in the table: the settings that matter.
    pub fn case(self) -> &'static str {
        match self {
            PeerKind::SqliteFull => "WAL, synchronous=FULL",
            PeerKind::SqliteNormal => "WAL, synchronous=NORMAL",
            PeerKind::Redb => "Durability::Immediate",
            PeerKind::NativeDb => "default (redb Immediate)",
        }
    }

    /// Whether a commit that returned is on disk.
    pub fn durable(self) -> bool {
        self != PeerKind::SqliteNormal
    }

    /// Every setting, for the report.
    pub fn settings(self) -> &'static str {
        match self {
            PeerKind::SqliteFull | PeerKind::SqliteNormal => sqlite::SETTINGS,
            PeerKind::Redb => redb_peer::SETTINGS,
            PeerKind::NativeDb => native::SETTINGS,
        }
    }

    /// Opens the peer's database in `dir`, creating it (and its tables) if needed.
    pub fn open(self, dir: &Path) -> Result<Box<dyn Peer>> {
        Ok(match self {
            PeerKind::SqliteFull => Box::new(sqlite::Sqlite::open(dir, "FULL")?),
            PeerKind::SqliteNormal => Box::new(sqlite::Sqlite::open(dir, "NORMAL")?),
            PeerKind::Redb => Box::new(redb_peer::Redb::open(dir)?),
            PeerKind::NativeDb => Box::new(native::NativeDb::open(dir)?),
        })
    }
}
