//! The error of the inspection tools.

use std::path::PathBuf;

/// Why an inspection or maintenance operation could not be carried out. Problems
/// *found* in the data are not errors: [`verify`](super::DataDir::verify) reports them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InspectError {
    /// The directory has no `shelf.json`.
    #[error("{dir} is not a Shelf data directory: it has no shelf.json")]
    NotADataDir {
        /// The directory.
        dir: PathBuf,
    },
    /// A `Store` (in this or another process) holds the directory's lock.
    #[error("data directory {dir} is locked by another process (an open Store); close it and try again")]
    Locked {
        /// The directory.
        dir: PathBuf,
    },
    /// `shelf.json` lists no collection by that name.
    #[error("no collection `{name}` in shelf.json (it lists: {known})")]
    UnknownCollection {
        /// The name asked for.
        name: String,
        /// The collections it lists, comma-separated.
        known: String,
    },
    /// The operation needs files, and the collection is kept in memory.
    #[error("collection `{name}` is kept in memory (#[storage(memory)]): it has no files")]
    MemoryCollection {
        /// The collection.
        name: String,
    },
    /// The data (or the input) is not what the operation can work with.
    #[error("{0}")]
    Invalid(String),
    /// A file operation or a read of Shelf's files failed.
    #[error(transparent)]
    Shelf(#[from] crate::Error),
}

impl InspectError {
    /// An I/O error on `path` while doing `op`.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, e: std::io::Error) -> Self {
        InspectError::Shelf(crate::Error::io(op, path, e))
    }
}
