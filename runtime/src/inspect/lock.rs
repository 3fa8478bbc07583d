//! The directory lock: taken by the writers, and looked at (never taken) by readers.

use std::path::Path;

use super::{InspectError, Result};
use crate::fs::{RealFs, Vfs, VfsLock};
use crate::store::LOCK_FILE;

/// Takes the directory lock, or says that a `Store` holds it.
pub(crate) fn lock(dir: &Path) -> Result<Box<dyn VfsLock>> {
    let path = dir.join(LOCK_FILE);
    RealFs.try_lock(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::WouldBlock => InspectError::Locked { dir: dir.to_path_buf() },
        _ => InspectError::io("lock", path, e),
    })
}

/// Whether a process holds the lock on `dir/LOCK`, or `None` when that cannot be
/// told. Trying the lock would tell, but would also make a `Store` opening at that
/// moment fail, so on Linux this reads the kernel's list of locks instead; elsewhere
/// it cannot tell.
pub(crate) fn is_locked(dir: &Path) -> Option<bool> {
    let path = dir.join(LOCK_FILE);
    match std::fs::metadata(&path) {
        Ok(meta) => held(&meta),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(false),
        Err(_) => None,
    }
}

#[cfg(target_os = "linux")]
fn held(meta: &std::fs::Metadata) -> Option<bool> {
    use std::os::unix::fs::MetadataExt;
    let dev = meta.dev();
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    // Lines like `1: FLOCK  ADVISORY  WRITE 9131 fe:00:10297352 0 EOF`; a line with
    // `->` is a process waiting for the lock, not holding it.
    let target = format!("{major:02x}:{minor:02x}:{}", meta.ino());
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    Some(locks.lines().filter(|line| !line.contains("->")).any(|line| line.split_whitespace().any(|t| t == target)))
}

#[cfg(not(target_os = "linux"))]
fn held(_meta: &std::fs::Metadata) -> Option<bool> {
    None
}
