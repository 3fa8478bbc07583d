//! An open-file-description lock beside the directory lock, so that readers can
//! *see* that a `Store` holds a directory without taking the lock themselves.
//!
//! The directory lock is a `flock`, which another process can only learn about by
//! trying it (and so, for a moment, holding it) or by reading `/proc/locks`. That
//! file is rendered a page per `read`, from the position the last `read` reached:
//! when other locks come and go between two reads, an entry is skipped, and a held
//! lock can look free. An OFD lock (`F_OFD_SETLK`, Linux 3.15) can be queried with
//! `F_OFD_GETLK`, which answers in one call and takes nothing.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

/// A whole-file lock request of `kind` (`F_WRLCK`, `F_UNLCK`, ...).
fn whole_file(kind: libc::c_int) -> libc::flock {
    // SAFETY: `flock` is a plain C struct; all zeroes is a valid value of it.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = kind as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock
}

/// Places a write OFD lock over the whole of `file`, which the caller already holds
/// the `flock` of. Fails with `WouldBlock` if another open file holds one.
pub(super) fn mark(file: &File) -> io::Result<()> {
    let mut lock = whole_file(libc::F_WRLCK);
    // SAFETY: `fd` is open for the call, and `lock` is a valid `flock` it may write.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &mut lock) };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EACCES) => Err(io::Error::new(io::ErrorKind::WouldBlock, "locked")),
        _ => Err(e),
    }
}

/// Whether an open file other than the caller's holds an OFD lock on `path`.
pub(crate) fn marked(path: &Path) -> io::Result<bool> {
    let file = File::open(path)?;
    let mut lock = whole_file(libc::F_WRLCK);
    // SAFETY: as in `mark`; `F_OFD_GETLK` only reports, and takes no lock.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_GETLK, &mut lock) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(lock.l_type != libc::F_UNLCK as libc::c_short)
}

/// Lets go of the OFD lock `mark` placed on `file`'s open file description, for
/// every descriptor of it (one a child process inherited too).
pub(super) fn unmark(file: &File) -> io::Result<()> {
    let mut lock = whole_file(libc::F_UNLCK);
    // SAFETY: as in `mark`; `F_UNLCK` releases what this description holds.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &mut lock) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
