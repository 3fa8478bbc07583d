//! [`FaultFs`]: a [`Vfs`] that fails a chosen operation, for fault-injection tests.

use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::{DirEntry, RealFs, Vfs, VfsAppend, VfsBarrier, VfsFile, VfsLock};

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
/// write, append, sync, file-system sync, truncate, rename, remove, directory sync),
/// counting from 0. Its [`Vfs::barrier`] is [`RealFs`]'s. Reads, listings
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

struct FaultAppend {
    inner: Box<dyn VfsAppend>,
    fs: Arc<FaultFs>,
}

impl VfsAppend for FaultAppend {
    fn append(&self, buf: &[u8]) -> io::Result<()> {
        match self.fs.tick() {
            None => self.inner.append(buf),
            Some(FaultKind::ShortWrite) if buf.len() > 1 => {
                self.inner.append(&buf[..buf.len() / 2])?;
                Err(io::Error::other("injected short write"))
            }
            Some(kind) => Err(fault_error(kind, "append")),
        }
    }
    fn sync_data(&self) -> io::Result<()> {
        self.fs.check("sync")?;
        self.inner.sync_data()
    }
    fn truncate(&self, len: u64) -> io::Result<()> {
        self.fs.check("truncate")?;
        self.inner.truncate(len)
    }
}

/// [`RealFs`]'s barrier; its `sync` is a counted operation.
struct FaultBarrier {
    inner: Box<dyn VfsBarrier>,
    fs: Arc<FaultFs>,
}

impl VfsBarrier for FaultBarrier {
    fn sync(&self) -> io::Result<()> {
        self.fs.check("sync file system")?;
        self.inner.sync()
    }
    fn fs_id(&self) -> u64 {
        self.inner.fs_id()
    }
}

/// `FaultFs` is used behind an `Arc`, so it implements [`Vfs`] there.
impl Vfs for Arc<FaultFs> {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        RealFs.read(path)
    }
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn std::io::Read + Send>> {
        RealFs.open_read(path)
    }
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn VfsFile>> {
        self.check("create")?;
        Ok(Box::new(FaultFile { inner: RealFs.create_new(path)?, fs: Arc::clone(self) }))
    }
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn VfsAppend>> {
        self.check("open append")?;
        Ok(Box::new(FaultAppend { inner: RealFs.open_append(path)?, fs: Arc::clone(self) }))
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
    fn barrier(&self, dir: &Path) -> Option<io::Result<Box<dyn VfsBarrier>>> {
        let fs = Arc::clone(self);
        RealFs.barrier(dir).map(|inner| inner.map(|inner| Box::new(FaultBarrier { inner, fs }) as Box<dyn VfsBarrier>))
    }
}
