//! The file-system seam: every byte Shelf reads or writes goes through [`Vfs`].
//!
//! [`RealFs`] is the operating system's file system and the default. Tests (and
//! applications that want to test their own failure handling) can pass another
//! implementation to [`StoreBuilder::vfs`](crate::StoreBuilder::vfs), for example
//! [`FaultFs`], which fails a chosen operation.
//!
//! [`RealFs`] reads only regular files (symbolic links are followed): a FIFO, a
//! socket, a device or a directory where Shelf expects a file is refused with
//! `ErrorKind::InvalidInput` ("not a regular file (FIFO)"), never opened in a way
//! that blocks. Every read is bounded by the size the file reported when it was
//! opened (a file that grows meanwhile is refused), and a whole-file read by
//! [`DEFAULT_MAX_FILE_SIZE`].

mod crash;
mod fault;
#[cfg(target_os = "linux")]
pub(crate) mod ofd;

pub use crash::CrashFs;
pub use fault::{FaultFs, FaultKind};

use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;

/// The largest file [`RealFs::read`](Vfs::read) reads whole: 1 GiB. A larger file is
/// refused with `ErrorKind::InvalidData` naming its size, rather than read until
/// memory runs out. Shelf's own whole-file reads are of single records, index
/// files, `shelf.json` and WAL segments, all far below it. Streamed reads
/// ([`Vfs::open_read`], used for collection files) are bounded by the file's size
/// only, as they never hold the file whole.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 1 << 30;

/// `O_NONBLOCK`, so that opening a FIFO for reading returns at once instead of
/// waiting for a writer (the open file is then refused as not regular).
#[cfg(target_os = "linux")]
const O_NONBLOCK: i32 = 0o4000;
#[cfg(any(
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly"
))]
const O_NONBLOCK: i32 = 0x0004;

/// What kind of file `file_type` is, for messages.
fn kind_of(file_type: fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return "FIFO";
        }
        if file_type.is_socket() {
            return "socket";
        }
        if file_type.is_char_device() {
            return "character device";
        }
        if file_type.is_block_device() {
            return "block device";
        }
    }
    if file_type.is_dir() {
        "directory"
    } else if file_type.is_symlink() {
        "symbolic link"
    } else {
        "special file"
    }
}

/// Fails with `ErrorKind::InvalidInput` unless `meta` describes a regular file.
fn check_regular(meta: &fs::Metadata) -> io::Result<()> {
    if meta.is_file() {
        return Ok(());
    }
    Err(io::Error::new(io::ErrorKind::InvalidInput, format!("not a regular file ({})", kind_of(meta.file_type()))))
}

/// Opens `path` for reading if it is a regular file (following symbolic links),
/// without ever blocking on a FIFO or a device, and returns it with its size.
/// Anything else is `ErrorKind::InvalidInput`, "not a regular file (FIFO)" and so on.
pub(crate) fn open_regular(path: &Path) -> io::Result<(File, u64)> {
    // Checked before opening, so that no special file is opened at all where the
    // platform has no non-blocking open; and again on the open file, in case the
    // path was replaced in between.
    check_regular(&fs::metadata(path)?)?;
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(any(
        target_os = "linux",
        target_os = "macos",
        target_os = "ios",
        target_os = "freebsd",
        target_os = "netbsd",
        target_os = "openbsd",
        target_os = "dragonfly"
    ))]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // No effect on a regular file's reads.
        options.custom_flags(O_NONBLOCK);
    }
    let file = options.open(path)?;
    let meta = file.metadata()?;
    check_regular(&meta)?;
    Ok((file, meta.len()))
}

/// Reads a whole regular file, bounded by its size when opened and by `max` bytes:
/// a larger file is `ErrorKind::InvalidData`, as is one that grew while being read.
pub(crate) fn read_regular(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let (file, len) = open_regular(path)?;
    if len > max {
        return Err(too_large(len, max));
    }
    let mut buf = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(len.saturating_add(1)).read_to_end(&mut buf)?;
    if buf.len() as u64 > len {
        return Err(grew(len));
    }
    Ok(buf)
}

fn too_large(len: u64, max: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("file is {len} bytes, larger than the {max} bytes Shelf reads whole"),
    )
}

fn grew(len: u64) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("file grew past its size of {len} bytes while being read"))
}

/// A reader of a regular file that fails, instead of reading on, if the file holds
/// more than the size it had when opened.
struct Bounded {
    inner: io::Take<File>,
    len: u64,
}

impl Read for Bounded {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 && self.inner.limit() == 0 {
            // One byte past the size was allowed, only to notice growth.
            return Err(grew(self.len));
        }
        Ok(n)
    }
}

/// A file opened for writing through a [`Vfs`].
pub trait VfsFile: Write + Send {
    /// Flushes the file's data (and the metadata needed to read it) to stable storage.
    fn sync_data(&mut self) -> io::Result<()>;
}

/// A file opened for appending through a [`Vfs`], shared by the threads that append
/// to it and the thread that syncs it. Used for WAL segments.
pub trait VfsAppend: Send + Sync {
    /// Appends the whole buffer at the end of the file.
    fn append(&self, buf: &[u8]) -> io::Result<()>;
    /// Makes everything appended so far durable.
    fn sync_data(&self) -> io::Result<()>;
    /// Cuts the file to `len` bytes (used to drop a record whose append failed).
    fn truncate(&self, len: u64) -> io::Result<()>;
}

/// A held directory lock; dropping it releases the lock.
pub trait VfsLock: Send + Sync + Debug {}

/// A sync of a whole file system, opened before the files it must cover are
/// written; see [`Vfs::barrier`].
pub trait VfsBarrier: Send {
    /// Makes durable the data of every file written on this file system since the
    /// barrier opened, and fails if any write-back on the file system failed since
    /// then (or since this barrier's last `sync`).
    fn sync(&self) -> io::Result<()>;
    /// Which file system the barrier covers: barriers with equal ids cover the same
    /// one, and one `sync` serves them all.
    fn fs_id(&self) -> u64;
}

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
    /// Reads a whole file. An implementation over a real file system should refuse
    /// what is not a regular file and bound the read, as [`RealFs`] does: `open`
    /// must never block on a FIFO nor read a device until memory runs out.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Opens a file for streaming reads. The default reads it whole.
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(io::Cursor::new(self.read(path)?)))
    }
    /// Creates a new file (failing if it exists) and opens it for writing.
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn VfsFile>>;
    /// Opens a file for appending, creating it if it does not exist.
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn VfsAppend>>;
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
    /// Opens a [`VfsBarrier`] on the file system that holds the directory `dir`, or
    /// `None` when this file system cannot make many files durable at once; a batch
    /// of files then syncs each one. The default is `None`. Shelf asks for batches
    /// of 64 files written or more; an error opening it also makes the batch sync
    /// each file.
    ///
    /// [`RealFs`] uses `syncfs(2)` on Linux 5.17 and later, on ext4, XFS, btrfs and
    /// tmpfs; elsewhere `None`. Before 5.8 `syncfs` did not report write-back
    /// errors, and before 5.17 it dropped the error of the file system's own sync
    /// (a failed journal commit or cache flush); other file systems may not flush
    /// the disk's cache at all (vfat) or pass errors up (FUSE, overlayfs). A failed
    /// sync must never be reported as durable.
    fn barrier(&self, dir: &Path) -> Option<io::Result<Box<dyn VfsBarrier>>> {
        let _ = dir;
        None
    }
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

struct RealAppend(File);

impl VfsAppend for RealAppend {
    fn append(&self, buf: &[u8]) -> io::Result<()> {
        (&self.0).write_all(buf)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn truncate(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
}

/// The directory lock: a `flock` (and, on Linux, an OFD lock) on `LOCK`'s open file
/// description.
#[derive(Debug)]
struct RealLock(File);
impl VfsLock for RealLock {}

impl Drop for RealLock {
    /// Unlocks before the file closes. Closing alone releases the locks only once
    /// every descriptor of the description is closed, and a child process another
    /// thread is spawning holds a copy until it `exec`s: a `shelf` command run right
    /// after `close` then found the directory locked (a flaky CLI test). Unlocking
    /// releases them for every copy at once.
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        if let Err(e) = ofd::unmark(&self.0) {
            tracing::debug!(error = %e, "could not release the OFD lock; closing the file releases it");
        }
        if let Err(e) = self.0.unlock() {
            tracing::debug!(error = %e, "could not unlock the directory lock; closing the file releases it");
        }
    }
}

impl Vfs for RealFs {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        read_regular(path, DEFAULT_MAX_FILE_SIZE)
    }
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn Read + Send>> {
        let (file, len) = open_regular(path)?;
        Ok(Box::new(Bounded { inner: file.take(len.saturating_add(1)), len }))
    }
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn VfsFile>> {
        let file = OpenOptions::new().write(true).create_new(true).open(path)?;
        Ok(Box::new(RealFile(file)))
    }
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn VfsAppend>> {
        let file = OpenOptions::new().append(true).create(true).open(path)?;
        Ok(Box::new(RealAppend(file)))
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
            Ok(()) => {
                // Lets readers see the lock without taking it (see `ofd`). Where the
                // kernel or file system has no OFD locks, the `flock` alone holds.
                #[cfg(target_os = "linux")]
                if let Err(e) = ofd::mark(&file) {
                    if e.kind() == io::ErrorKind::WouldBlock {
                        // Let go of the `flock` just taken, for every copy of the
                        // descriptor (see `RealLock`'s drop).
                        let _ = file.unlock();
                        return Err(e);
                    }
                }
                Ok(Box::new(RealLock(file)))
            }
            Err(fs::TryLockError::WouldBlock) => Err(io::Error::new(io::ErrorKind::WouldBlock, "locked")),
            Err(fs::TryLockError::Error(e)) => Err(e),
        }
    }
    #[cfg(target_os = "linux")]
    fn barrier(&self, dir: &Path) -> Option<io::Result<Box<dyn VfsBarrier>>> {
        use std::os::unix::fs::MetadataExt;
        if !syncfs_reports_errors() {
            return None;
        }
        // Opened before the files are written: `syncfs` reports the write-back
        // errors since this descriptor was opened.
        let open = || -> io::Result<Option<Box<dyn VfsBarrier>>> {
            let dir = File::open(dir)?;
            if !syncfs_trusted(&dir)? {
                return Ok(None);
            }
            let dev = dir.metadata()?.dev();
            Ok(Some(Box::new(RealBarrier { dir, dev })))
        };
        open().transpose()
    }
}

/// `syncfs` on an open directory: see [`Vfs::barrier`].
#[cfg(target_os = "linux")]
struct RealBarrier {
    dir: File,
    dev: u64,
}

#[cfg(target_os = "linux")]
impl VfsBarrier for RealBarrier {
    fn sync(&self) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        // SAFETY: `syncfs` takes an open descriptor, which `self.dir` holds for the call.
        if unsafe { libc::syncfs(self.dir.as_raw_fd()) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
    fn fs_id(&self) -> u64 {
        self.dev
    }
}

/// Whether this kernel's `syncfs` reports every error of the sync: Linux 5.17 or
/// later (5.8 added write-back errors; 5.17 stopped dropping the file system's own).
#[cfg(target_os = "linux")]
fn syncfs_reports_errors() -> bool {
    static ANSWER: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ANSWER.get_or_init(|| {
        // SAFETY: `utsname` is a plain C struct, all zeroes valid; `uname` fills it.
        let mut name: libc::utsname = unsafe { std::mem::zeroed() };
        // SAFETY: a valid pointer to a `utsname` the call may write.
        if unsafe { libc::uname(&mut name) } != 0 {
            return false;
        }
        let release: Vec<u8> = name.release.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
        kernel_at_least(&String::from_utf8_lossy(&release), (5, 17))
    })
}

/// Whether the file system of `dir`'s open descriptor is one whose `syncfs` makes
/// file data durable and reports its errors: ext4, XFS, btrfs, tmpfs.
#[cfg(target_os = "linux")]
fn syncfs_trusted(dir: &File) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    const EXT4: i64 = 0xEF53;
    const XFS: i64 = 0x5846_5342;
    const BTRFS: i64 = 0x9123_683E;
    const TMPFS: i64 = 0x0102_1994;
    // SAFETY: `statfs` is a plain C struct, all zeroes valid; `fstatfs` fills it.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: an open descriptor and a valid pointer to a `statfs` the call may write.
    if unsafe { libc::fstatfs(dir.as_raw_fd(), &mut stat) } != 0 {
        return Err(io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)] // `f_type`'s integer type differs between targets
    let kind = stat.f_type as i64;
    Ok([EXT4, XFS, BTRFS, TMPFS].contains(&kind))
}

/// Whether a kernel release such as `6.1.0-18-amd64` is at least `major.minor`.
/// A release that does not parse is not.
#[cfg(target_os = "linux")]
fn kernel_at_least(release: &str, (major, minor): (u32, u32)) -> bool {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let number = |part: Option<&str>| part.and_then(|p| p.parse::<u32>().ok());
    match (number(parts.next()), number(parts.next())) {
        (Some(a), Some(b)) => (a, b) >= (major, minor),
        _ => false,
    }
}

/// Creates `dir` and any missing parents, and makes each new directory entry
/// durable by syncing its parent. An existing directory is left as it is.
pub(crate) fn create_dir_durable(fs: &dyn Vfs, dir: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut cursor = Some(dir);
    while let Some(path) = cursor {
        if path.as_os_str().is_empty() {
            break;
        }
        match fs.read_dir(path) {
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::NotFound => missing.push(path),
            Err(e) => return Err(e),
        }
        cursor = path.parent();
    }
    if missing.is_empty() {
        return Ok(());
    }
    fs.create_dir_all(dir)?;
    for path in missing.iter().rev() {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs.sync_dir(parent)?;
        }
    }
    Ok(())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// A copy of the lock's descriptor, as a child process spawned by another thread
    /// holds until it `exec`s: found through `/proc/self/fd`.
    fn copy_of_descriptor_of(path: &Path) -> std::os::fd::OwnedFd {
        use std::os::fd::{BorrowedFd, RawFd};
        for entry in fs::read_dir("/proc/self/fd").unwrap() {
            let entry = entry.unwrap();
            if fs::read_link(entry.path()).ok().as_deref() == Some(path) {
                let fd: RawFd = entry.file_name().to_str().unwrap().parse().unwrap();
                // SAFETY: the descriptor is open (the lock holds it) for this call.
                let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
                return borrowed.try_clone_to_owned().unwrap();
            }
        }
        panic!("no descriptor of {}", path.display());
    }

    #[test]
    fn kernel_releases_compare_by_major_and_minor() {
        assert!(kernel_at_least("5.17.0", (5, 17)));
        assert!(kernel_at_least("6.1.0-18-amd64", (5, 17)));
        assert!(kernel_at_least("6.18.44-fc-v1300", (5, 17)));
        assert!(!kernel_at_least("5.16.20", (5, 17)));
        assert!(!kernel_at_least("5.8", (5, 17)));
        assert!(!kernel_at_least("4.19.0-26-amd64", (5, 17)));
        assert!(!kernel_at_least("", (5, 17)));
        assert!(!kernel_at_least("garbage", (5, 17)));
    }

    #[test]
    fn a_barrier_makes_files_written_after_it_opened_durable() {
        let dir = tempfile::tempdir().unwrap();
        let Some(barrier) = RealFs.barrier(dir.path()) else {
            let trusted = syncfs_trusted(&File::open(dir.path()).unwrap()).unwrap();
            assert!(!(syncfs_reports_errors() && trusted), "a kernel from 5.17 on, on ext4 or alike, has a barrier");
            return;
        };
        let barrier = barrier.unwrap();
        let mut file = RealFs.create_new(&dir.path().join("f")).unwrap();
        file.write_all(b"data").unwrap();
        barrier.sync().unwrap();
        let other = RealFs.barrier(dir.path()).unwrap().unwrap();
        assert_eq!(other.fs_id(), barrier.fs_id(), "one directory, one file system");
        assert_eq!(fs::read(dir.path().join("f")).unwrap(), b"data");
    }

    #[test]
    fn a_dropped_lock_is_free_though_a_copy_of_its_descriptor_lives() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().canonicalize().unwrap().join("LOCK");
        let lock = RealFs.try_lock(&path).unwrap();
        assert_eq!(RealFs.try_lock(&path).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        let copy = copy_of_descriptor_of(&path);
        drop(lock);
        assert!(!ofd::marked(&path).unwrap(), "the OFD lock is released with the lock");
        let again = RealFs.try_lock(&path);
        assert!(again.is_ok(), "the lock is free after drop: {:?}", again.err());
        drop(copy);
    }
}
