//! The file-system seam: every byte Shelf reads or writes goes through [`Vfs`].
//!
//! [`RealFs`] is the operating system's file system and the default. Tests (and
//! applications that want to test their own failure handling) can pass another
//! implementation to [`StoreBuilder::vfs`](crate::StoreBuilder::vfs), for example
//! [`FaultFs`](crate::fs::FaultFs), which fails a chosen operation.

use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A file opened for writing through a [`Vfs`].
pub trait VfsFile: Write + Send {
    /// Flushes the file's data (and the metadata needed to read it) to stable storage.
    fn sync_data(&mut self) -> io::Result<()>;
}

/// A held directory lock; dropping it releases the lock.
pub trait VfsLock: Send + Sync + Debug {}

/// One entry of a directory listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// The file name (not the full path).
    pub name: String,
    /// Whether the entry is a directory.
    pub is_dir: bool,
}

/// The operations Shelf performs on files. All paths are absolute or relative to
/// the process's working directory, exactly as given to the builder.
pub trait Vfs: Send + Sync + Debug {
    /// Reads a whole file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Creates a new file (failing if it exists) and opens it for writing.
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn VfsFile>>;
    /// Renames `from` over `to`, replacing `to` atomically.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Makes the entries of a directory (creations, renames, removals) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Creates a directory and its parents; succeeds if it exists.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Lists a directory. A missing directory is `ErrorKind::NotFound`.
    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>>;
    /// Takes an exclusive, advisory lock on `path` (creating the file), without
    /// waiting. A lock held elsewhere is `ErrorKind::WouldBlock`.
    fn try_lock(&self, path: &Path) -> io::Result<Box<dyn VfsLock>>;
}

/// The operating system's file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct RealFs;

struct RealFile(File);

impl Write for RealFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl VfsFile for RealFile {
    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
}

#[derive(Debug)]
struct RealLock(#[allow(dead_code)] File);
impl VfsLock for RealLock {}

impl Vfs for RealFs {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        File::open(path)?.read_to_end(&mut buf)?;
        Ok(buf)
    }
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn VfsFile>> {
        let file = OpenOptions::new().write(true).create_new(true).open(path)?;
        Ok(Box::new(RealFile(file)))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        // On Unix a directory's entries are made durable by fsync on the directory.
        // Windows cannot open directories this way; NTFS journals renames itself.
        #[cfg(unix)]
        {
            File::open(path)?.sync_all()
        }
        #[cfg(not(unix))]
        {
            let _ = path;
            Ok(())
        }
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::create_dir_all(path)
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(path)? {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else {
                continue; // not UTF-8: never a name Shelf writes
            };
            out.push(DirEntry { name, is_dir: entry.file_type()?.is_dir() });
        }
        Ok(out)
    }
    fn try_lock(&self, path: &Path) -> io::Result<Box<dyn VfsLock>> {
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Box::new(RealLock(file))),
            Err(fs::TryLockError::WouldBlock) => Err(io::Error::new(io::ErrorKind::WouldBlock, "locked")),
            Err(fs::TryLockError::Error(e)) => Err(e),
        }
    }
}

/// Which operations a [`FaultFs`] counts and may fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// The error an operation fails with: `EIO`.
    Eio,
    /// `ENOSPC`, no space left on the device.
    NoSpace,
    /// A write that stores only part of its buffer and then fails.
    ShortWrite,
}

/// A [`Vfs`] over [`RealFs`] that fails the N-th mutating operation (create,
/// write, sync, rename, remove, directory sync), counting from 0. Reads, listings
/// and locks pass through uncounted.
///
/// ```
/// use shelf::fs::{FaultFs, FaultKind, Vfs};
/// let fs = FaultFs::new();
/// fs.fail_at(0, FaultKind::Eio);
/// let dir = std::env::temp_dir();
/// assert!(fs.sync_dir(&dir).is_err());
/// assert!(fs.sync_dir(&dir).is_ok()); // a fault fires once
/// ```
#[derive(Debug, Default)]
pub struct FaultFs {
    ops: AtomicU64,
    fail_at: AtomicU64,
    kind: parking_lot::Mutex<Option<FaultKind>>,
}

impl FaultFs {
    /// A file system that does not fail until told to.
    pub fn new() -> Arc<Self> {
        Arc::new(FaultFs {
            ops: AtomicU64::new(0),
            fail_at: AtomicU64::new(u64::MAX),
            kind: parking_lot::Mutex::new(None),
        })
    }
    /// Fails the operation `n` operations from now (0 = the next one), once.
    pub fn fail_at(&self, n: u64, kind: FaultKind) {
        *self.kind.lock() = Some(kind);
        self.fail_at.store(self.ops.load(Ordering::SeqCst) + n, Ordering::SeqCst);
    }
    /// Cancels a pending fault.
    pub fn heal(&self) {
        *self.kind.lock() = None;
        self.fail_at.store(u64::MAX, Ordering::SeqCst);
    }
    /// How many mutating operations have been counted so far.
    pub fn ops(&self) -> u64 {
        self.ops.load(Ordering::SeqCst)
    }
    /// Whether a fault is still pending (set and not yet fired).
    pub fn pending(&self) -> bool {
        self.kind.lock().is_some()
    }
    /// Counts one operation; returns the fault to inject, if this is the one.
    fn tick(&self) -> Option<FaultKind> {
        let n = self.ops.fetch_add(1, Ordering::SeqCst);
        if n == self.fail_at.load(Ordering::SeqCst) {
            self.fail_at.store(u64::MAX, Ordering::SeqCst);
            return self.kind.lock().take();
        }
        None
    }
    fn check(&self, what: &str) -> io::Result<()> {
        match self.tick() {
            None => Ok(()),
            Some(kind) => Err(fault_error(kind, what)),
        }
    }
}

fn fault_error(kind: FaultKind, what: &str) -> io::Error {
    match kind {
        FaultKind::Eio | FaultKind::ShortWrite => io::Error::other(format!("injected EIO in {what}")),
        FaultKind::NoSpace => io::Error::new(io::ErrorKind::StorageFull, format!("injected ENOSPC in {what}")),
    }
}

struct FaultFile {
    inner: Box<dyn VfsFile>,
    fs: Arc<FaultFs>,
}

impl Write for FaultFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.fs.tick() {
            None => self.inner.write(buf),
            Some(FaultKind::ShortWrite) if buf.len() > 1 => {
                self.inner.write_all(&buf[..buf.len() / 2])?;
                Err(io::Error::other("injected short write"))
            }
            Some(kind) => Err(fault_error(kind, "write")),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl VfsFile for FaultFile {
    fn sync_data(&mut self) -> io::Result<()> {
        self.fs.check("sync")?;
        self.inner.sync_data()
    }
}

/// `FaultFs` is used behind an `Arc`, so it implements [`Vfs`] there.
impl Vfs for Arc<FaultFs> {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        RealFs.read(path)
    }
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn VfsFile>> {
        self.check("create")?;
        Ok(Box::new(FaultFile { inner: RealFs.create_new(path)?, fs: Arc::clone(self) }))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.check("rename")?;
        RealFs.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.check("remove")?;
        RealFs.remove_file(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.check("sync dir")?;
        RealFs.sync_dir(path)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.check("create dir")?;
        RealFs.create_dir_all(path)
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        RealFs.read_dir(path)
    }
    fn try_lock(&self, path: &Path) -> io::Result<Box<dyn VfsLock>> {
        RealFs.try_lock(path)
    }
}
