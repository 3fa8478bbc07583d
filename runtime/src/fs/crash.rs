//! [`CrashFs`]: an in-memory [`Vfs`] that simulates power loss.
//!
//! Like redb's crash-test backend, it keeps two images of the disk: the *live* one,
//! which the running program reads and writes, and the *durable* one, which is what
//! a power cut would leave. [`CrashFs::crash`] replaces the live image by the durable
//! one.
//!
//! The model is deliberately strict (ext4 without `data=journal` is allowed to behave
//! this way):
//!
//! - A file is an inode with live and durable content. Writes, appends and truncations
//!   change the live content; `sync_data` on a handle makes the inode's current live
//!   content durable; a [`Vfs::barrier`]'s `sync` (the file system's `syncfs`) makes
//!   the live content of every file durable.
//! - A directory holds live and durable entries. Creating, renaming and removing
//!   files, and creating directories, change live entries only; [`Vfs::sync_dir`]
//!   makes the directory's live entries durable (additions, replacements, removals).
//! - After a crash a file is reachable only through durable directory entries, all the
//!   way from the root: a directory whose entry in its parent was never synced is lost
//!   with everything below it, and synced file content whose directory entry was not
//!   synced is unreachable.
//! - The root directory always exists.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::io::{self, Write};
use std::path::{Component, Path};
use std::sync::Arc;

use parking_lot::Mutex;

use super::{DirEntry, Vfs, VfsAppend, VfsBarrier, VfsFile, VfsLock};

/// The inode number of the root directory.
const ROOT: u64 = 0;

/// A directory entry: the kind and inode number of what it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Entry {
    File(u64),
    Dir(u64),
}

#[derive(Debug, Default)]
struct FileNode {
    live: Vec<u8>,
    durable: Vec<u8>,
}

#[derive(Debug, Default)]
struct DirNode {
    live: BTreeMap<String, Entry>,
    durable: BTreeMap<String, Entry>,
}

#[derive(Debug)]
struct State {
    files: HashMap<u64, FileNode>,
    dirs: HashMap<u64, DirNode>,
    next_ino: u64,
    /// Mutating operations performed so far.
    ops: u64,
    /// File and directory syncs performed so far.
    sync_points: u64,
    /// The machine dies when `ops` reaches this.
    limit: u64,
    /// Whether the machine is dead: every mutating operation fails until `crash`.
    dead: bool,
    /// Bumped by every crash; handles and locks of an older generation are stale.
    generation: u64,
    locks: HashSet<Vec<String>>,
    /// Whether [`Vfs::barrier`] is offered.
    barrier: bool,
}

impl State {
    fn new() -> Self {
        let mut dirs = HashMap::new();
        dirs.insert(ROOT, DirNode::default());
        State {
            files: HashMap::new(),
            dirs,
            next_ino: ROOT + 1,
            ops: 0,
            sync_points: 0,
            limit: u64::MAX,
            dead: false,
            generation: 0,
            locks: HashSet::new(),
            barrier: true,
        }
    }

    /// Counts one mutating operation, or fails it when the machine is (now) dead.
    fn tick(&mut self, what: &str) -> io::Result<()> {
        if !self.dead && self.ops >= self.limit {
            self.dead = true;
        }
        if self.dead {
            return Err(io::Error::other(format!("simulated power loss: {what} after the machine died")));
        }
        self.ops += 1;
        Ok(())
    }

    fn alloc(&mut self) -> u64 {
        let ino = self.next_ino;
        self.next_ino += 1;
        ino
    }

    fn dir(&self, ino: u64) -> &DirNode {
        self.dirs.get(&ino).expect("a directory entry names a live directory inode")
    }

    fn dir_mut(&mut self, ino: u64) -> &mut DirNode {
        self.dirs.get_mut(&ino).expect("a directory entry names a live directory inode")
    }

    /// The directory inode at `components`, through live entries.
    fn resolve_dir(&self, components: &[String], path: &Path) -> io::Result<u64> {
        let mut ino = ROOT;
        for name in components {
            match self.dir(ino).live.get(name) {
                Some(Entry::Dir(child)) => ino = *child,
                Some(Entry::File(_)) => return Err(not_a_directory(path)),
                None => return Err(not_found(path)),
            }
        }
        Ok(ino)
    }

    /// The parent directory inode and the file name of `path`.
    fn resolve_parent(&self, path: &Path) -> io::Result<(u64, String)> {
        let mut components = split(path)?;
        let Some(name) = components.pop() else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{} has no file name", path.display())));
        };
        Ok((self.resolve_dir(&components, path)?, name))
    }

    fn lookup(&self, path: &Path) -> io::Result<Entry> {
        let (parent, name) = self.resolve_parent(path)?;
        self.dir(parent).live.get(&name).copied().ok_or_else(|| not_found(path))
    }

    /// The file inode at `path`, through live entries.
    fn file_at(&self, path: &Path) -> io::Result<u64> {
        match self.lookup(path)? {
            Entry::File(ino) => Ok(ino),
            Entry::Dir(_) => Err(is_a_directory(path)),
        }
    }

    /// Power loss: the durable image becomes the live one.
    fn crash(&mut self) {
        for file in self.files.values_mut() {
            file.live.clone_from(&file.durable);
        }
        for dir in self.dirs.values_mut() {
            dir.live.clone_from(&dir.durable);
        }
        // Forget every inode that is not reachable from the root any more.
        let mut reachable_files = HashSet::new();
        let mut reachable_dirs = HashSet::from([ROOT]);
        let mut stack = vec![ROOT];
        while let Some(ino) = stack.pop() {
            for entry in self.dir(ino).live.values() {
                match *entry {
                    Entry::File(f) => {
                        reachable_files.insert(f);
                    }
                    Entry::Dir(d) => {
                        if reachable_dirs.insert(d) {
                            stack.push(d);
                        }
                    }
                }
            }
        }
        self.files.retain(|ino, _| reachable_files.contains(ino));
        self.dirs.retain(|ino, _| reachable_dirs.contains(ino));
        self.dead = false;
        self.limit = u64::MAX;
        self.locks.clear();
        self.generation += 1;
    }
}

/// The names along a path: root, prefix and `.` are dropped; `..` is refused.
fn split(path: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => names.push(name.to_string_lossy().into_owned()),
            Component::ParentDir => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{}: `..` is not supported by CrashFs", path.display()),
                ))
            }
            Component::Prefix(_) | Component::RootDir | Component::CurDir => {}
        }
    }
    Ok(names)
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{}: no such file or directory", path.display()))
}

fn not_a_directory(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotADirectory, format!("{}: a path component is not a directory", path.display()))
}

fn is_a_directory(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::IsADirectory, format!("{}: is a directory", path.display()))
}

fn stale() -> io::Error {
    io::Error::other("simulated power loss: this handle was opened before the crash")
}

/// An in-memory [`Vfs`] that keeps a live and a durable image and can lose power.
///
/// What a power cut keeps is what was synced: file content by `sync_data` on its
/// handle, directory entries (creations, renames, removals) by
/// [`sync_dir`](Vfs::sync_dir) on their directory, and a directory itself only once
/// its parent was synced. Reads see the live image.
///
/// [`crash_after`](CrashFs::crash_after) lets the machine die after a number of
/// mutating operations (create, write, append, sync, file-system sync, truncate,
/// rename, remove, directory sync, directory creation); from then on every mutating operation fails.
/// [`crash`](CrashFs::crash) is the power cut: the live image becomes the durable
/// one, the machine works again, locks are released and handles opened before it fail.
///
/// ```
/// use std::io::Write;
/// use std::path::Path;
/// use shelf::fs::{CrashFs, Vfs};
///
/// let fs = CrashFs::new();
/// fs.create_dir_all(Path::new("/data")).unwrap();
/// fs.sync_dir(Path::new("/")).unwrap();
/// let mut file = fs.create_new(Path::new("/data/a")).unwrap();
/// file.write_all(b"hello").unwrap();
/// file.sync_data().unwrap();
/// drop(file);
/// // The content is durable, but the directory entry is not yet.
/// fs.crash();
/// assert!(fs.read(Path::new("/data/a")).is_err());
///
/// let mut file = fs.create_new(Path::new("/data/a")).unwrap();
/// file.write_all(b"hello").unwrap();
/// file.sync_data().unwrap();
/// fs.sync_dir(Path::new("/data")).unwrap();
/// fs.crash();
/// assert_eq!(fs.read(Path::new("/data/a")).unwrap(), b"hello");
/// ```
pub struct CrashFs {
    state: Mutex<State>,
}

impl fmt::Debug for CrashFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.lock();
        f.debug_struct("CrashFs")
            .field("ops", &state.ops)
            .field("sync_points", &state.sync_points)
            .field("dead", &state.dead)
            .field("files", &state.files.len())
            .field("dirs", &state.dirs.len())
            .finish()
    }
}

impl CrashFs {
    /// An empty file system (only the root directory), that does not crash until told to.
    pub fn new() -> Arc<Self> {
        Arc::new(CrashFs { state: Mutex::new(State::new()) })
    }

    /// Lets `n` more mutating operations succeed; every one after them fails, as on a
    /// machine that lost power (0 = the next one fails). [`crash`](Self::crash) then
    /// drops what was not synced.
    pub fn crash_after(&self, n: u64) {
        let mut state = self.state.lock();
        state.limit = state.ops.saturating_add(n);
    }

    /// Power loss, now: the live image is replaced by the durable one, the machine
    /// works again (a pending [`crash_after`](Self::crash_after) is cancelled), all
    /// locks are released, and handles opened before fail from now on.
    pub fn crash(&self) {
        self.state.lock().crash();
    }

    /// Whether [`Vfs::barrier`] is offered (by default it is). Without it, a large
    /// batch of files syncs each file, as on a platform or file system whose
    /// `syncfs` Shelf does not trust; a test can check that path this way.
    pub fn set_barrier(&self, offered: bool) {
        self.state.lock().barrier = offered;
    }

    /// How many mutating operations succeeded so far.
    pub fn ops(&self) -> u64 {
        self.state.lock().ops
    }

    /// How many syncs (file `sync_data`, file-system sync or directory sync) succeeded so far.
    pub fn sync_points(&self) -> u64 {
        self.state.lock().sync_points
    }

    /// Whether the machine is dead: since the last [`crash`](Self::crash), an
    /// operation was refused because the [`crash_after`](Self::crash_after) limit was
    /// reached. A workload that stayed within the limit never sees this.
    pub fn is_dead(&self) -> bool {
        self.state.lock().dead
    }

    /// Counts one operation on a file handle's inode and runs `f` on the inode.
    fn with_file(&self, generation: u64, ino: u64, what: &str, f: impl FnOnce(&mut FileNode)) -> io::Result<()> {
        let mut state = self.state.lock();
        if state.generation != generation {
            return Err(stale());
        }
        state.tick(what)?;
        f(state.files.get_mut(&ino).ok_or_else(stale)?);
        if what == "sync" {
            state.sync_points += 1;
        }
        Ok(())
    }

    fn sync_file(&self, generation: u64, ino: u64) -> io::Result<()> {
        self.with_file(generation, ino, "sync", |file| file.durable.clone_from(&file.live))
    }
}

/// A file opened by [`Vfs::create_new`] on a [`CrashFs`].
struct CrashFile {
    fs: Arc<CrashFs>,
    ino: u64,
    generation: u64,
}

impl Write for CrashFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.fs.with_file(self.generation, self.ino, "write", |file| file.live.extend_from_slice(buf))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl VfsFile for CrashFile {
    fn sync_data(&mut self) -> io::Result<()> {
        self.fs.sync_file(self.generation, self.ino)
    }
}

/// A file opened by [`Vfs::open_append`] on a [`CrashFs`].
struct CrashAppend {
    fs: Arc<CrashFs>,
    ino: u64,
    generation: u64,
}

impl VfsAppend for CrashAppend {
    fn append(&self, buf: &[u8]) -> io::Result<()> {
        self.fs.with_file(self.generation, self.ino, "append", |file| file.live.extend_from_slice(buf))
    }
    fn sync_data(&self) -> io::Result<()> {
        self.fs.sync_file(self.generation, self.ino)
    }
    fn truncate(&self, len: u64) -> io::Result<()> {
        let len = usize::try_from(len).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "length too large"))?;
        self.fs.with_file(self.generation, self.ino, "truncate", |file| file.live.resize(len, 0))
    }
}

/// A lock taken by [`Vfs::try_lock`] on a [`CrashFs`]; released on drop.
struct CrashLock {
    fs: Arc<CrashFs>,
    key: Vec<String>,
    generation: u64,
}

impl fmt::Debug for CrashLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CrashLock").field("path", &self.key.join("/")).finish()
    }
}

impl VfsLock for CrashLock {}

impl Drop for CrashLock {
    fn drop(&mut self) {
        let mut state = self.fs.state.lock();
        // A crash released every lock; one taken since must not be released by a
        // handle of the previous life.
        if state.generation == self.generation {
            state.locks.remove(&self.key);
        }
    }
}

/// A [`Vfs::barrier`] on a [`CrashFs`]: its `sync` makes every file's content durable.
struct CrashBarrier {
    fs: Arc<CrashFs>,
    generation: u64,
}

impl VfsBarrier for CrashBarrier {
    fn sync(&self) -> io::Result<()> {
        let mut state = self.fs.state.lock();
        if state.generation != self.generation {
            return Err(stale());
        }
        state.tick("sync file system")?;
        for file in state.files.values_mut() {
            file.durable.clone_from(&file.live);
        }
        state.sync_points += 1;
        Ok(())
    }
    fn fs_id(&self) -> u64 {
        0
    }
}

/// `CrashFs` is used behind an `Arc`, so it implements [`Vfs`] there.
impl Vfs for Arc<CrashFs> {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let state = self.state.lock();
        let ino = state.file_at(path)?;
        Ok(state.files[&ino].live.clone())
    }

    fn create_new(&self, path: &Path) -> io::Result<Box<dyn VfsFile>> {
        let mut state = self.state.lock();
        state.tick("create")?;
        let (parent, name) = state.resolve_parent(path)?;
        if state.dir(parent).live.contains_key(&name) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{} exists", path.display())));
        }
        let ino = state.alloc();
        state.files.insert(ino, FileNode::default());
        state.dir_mut(parent).live.insert(name, Entry::File(ino));
        Ok(Box::new(CrashFile { fs: Arc::clone(self), ino, generation: state.generation }))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn VfsAppend>> {
        let mut state = self.state.lock();
        state.tick("open append")?;
        let (parent, name) = state.resolve_parent(path)?;
        let ino = match state.dir(parent).live.get(&name).copied() {
            Some(Entry::File(ino)) => ino,
            Some(Entry::Dir(_)) => return Err(is_a_directory(path)),
            None => {
                let ino = state.alloc();
                state.files.insert(ino, FileNode::default());
                state.dir_mut(parent).live.insert(name, Entry::File(ino));
                ino
            }
        };
        Ok(Box::new(CrashAppend { fs: Arc::clone(self), ino, generation: state.generation }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.tick("rename")?;
        let (from_dir, from_name) = state.resolve_parent(from)?;
        let entry = state.dir(from_dir).live.get(&from_name).copied().ok_or_else(|| not_found(from))?;
        let (to_dir, to_name) = state.resolve_parent(to)?;
        if from_dir == to_dir && from_name == to_name {
            return Ok(());
        }
        match (entry, state.dir(to_dir).live.get(&to_name)) {
            (_, None) | (Entry::File(_), Some(Entry::File(_))) => {}
            (Entry::File(_), Some(Entry::Dir(_))) => return Err(is_a_directory(to)),
            (Entry::Dir(_), Some(Entry::File(_))) => return Err(not_a_directory(to)),
            (Entry::Dir(_), Some(Entry::Dir(d))) => {
                if !state.dir(*d).live.is_empty() {
                    return Err(io::Error::new(
                        io::ErrorKind::DirectoryNotEmpty,
                        format!("{} is not empty", to.display()),
                    ));
                }
            }
        }
        state.dir_mut(from_dir).live.remove(&from_name);
        state.dir_mut(to_dir).live.insert(to_name, entry);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.tick("remove")?;
        state.file_at(path)?;
        let (parent, name) = state.resolve_parent(path)?;
        state.dir_mut(parent).live.remove(&name);
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.tick("sync dir")?;
        let ino = state.resolve_dir(&split(path)?, path)?;
        let dir = state.dir_mut(ino);
        dir.durable.clone_from(&dir.live);
        state.sync_points += 1;
        Ok(())
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.tick("create dir")?;
        let mut ino = ROOT;
        for name in split(path)? {
            ino = match state.dir(ino).live.get(&name).copied() {
                Some(Entry::Dir(child)) => child,
                Some(Entry::File(_)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!("{}: a path component is a file", path.display()),
                    ))
                }
                None => {
                    let child = state.alloc();
                    state.dirs.insert(child, DirNode::default());
                    state.dir_mut(ino).live.insert(name, Entry::Dir(child));
                    child
                }
            };
        }
        Ok(())
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        let state = self.state.lock();
        let ino = state.resolve_dir(&split(path)?, path)?;
        Ok(state
            .dir(ino)
            .live
            .iter()
            .map(|(name, entry)| DirEntry { name: name.clone(), is_dir: matches!(entry, Entry::Dir(_)) })
            .collect())
    }

    fn try_lock(&self, path: &Path) -> io::Result<Box<dyn VfsLock>> {
        let mut state = self.state.lock();
        let (parent, name) = state.resolve_parent(path)?;
        // Like the real lock, this creates the (empty) lock file, live only.
        match state.dir(parent).live.get(&name) {
            Some(Entry::File(_)) => {}
            Some(Entry::Dir(_)) => return Err(is_a_directory(path)),
            None => {
                let ino = state.alloc();
                state.files.insert(ino, FileNode::default());
                state.dir_mut(parent).live.insert(name, Entry::File(ino));
            }
        }
        let key = split(path)?;
        if !state.locks.insert(key.clone()) {
            return Err(io::Error::new(io::ErrorKind::WouldBlock, format!("{} is locked", path.display())));
        }
        Ok(Box::new(CrashLock { fs: Arc::clone(self), key, generation: state.generation }))
    }

    fn barrier(&self, dir: &Path) -> Option<io::Result<Box<dyn VfsBarrier>>> {
        let state = self.state.lock();
        if !state.barrier {
            return None;
        }
        let opened = split(dir).and_then(|names| state.resolve_dir(&names, dir)).map(|_| {
            Box::new(CrashBarrier { fs: Arc::clone(self), generation: state.generation }) as Box<dyn VfsBarrier>
        });
        Some(opened)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> &Path {
        Path::new(s)
    }

    /// A file system with a durable `/data` directory.
    fn setup() -> Arc<CrashFs> {
        let fs = CrashFs::new();
        fs.create_dir_all(p("/data")).unwrap();
        fs.sync_dir(p("/")).unwrap();
        fs
    }

    fn write(fs: &Arc<CrashFs>, path: &str, bytes: &[u8], sync: bool) {
        let mut file = fs.create_new(p(path)).unwrap();
        file.write_all(bytes).unwrap();
        if sync {
            file.sync_data().unwrap();
        }
    }

    fn names(fs: &Arc<CrashFs>, dir: &str) -> Vec<String> {
        fs.read_dir(p(dir)).unwrap().into_iter().map(|e| e.name).collect()
    }

    #[test]
    fn live_image_behaves_like_a_file_system() {
        let fs = setup();
        write(&fs, "/data/a", b"one", false);
        assert_eq!(fs.read(p("/data/a")).unwrap(), b"one");
        assert_eq!(fs.read(p("/data/b")).unwrap_err().kind(), io::ErrorKind::NotFound);
        assert_eq!(fs.create_new(p("/data/a")).err().unwrap().kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs.create_new(p("/nowhere/a")).err().unwrap().kind(), io::ErrorKind::NotFound);
        assert_eq!(fs.read_dir(p("/nowhere")).unwrap_err().kind(), io::ErrorKind::NotFound);
        assert_eq!(fs.remove_file(p("/data/b")).unwrap_err().kind(), io::ErrorKind::NotFound);
        assert_eq!(fs.rename(p("/data/b"), p("/data/c")).unwrap_err().kind(), io::ErrorKind::NotFound);
        write(&fs, "/data/b", b"two", false);
        fs.rename(p("/data/b"), p("/data/a")).unwrap();
        assert_eq!(fs.read(p("/data/a")).unwrap(), b"two");
        assert_eq!(names(&fs, "/data"), ["a"]);
        fs.create_dir_all(p("/data/sub/deep")).unwrap();
        fs.create_dir_all(p("/data/sub")).unwrap();
        assert_eq!(
            fs.read_dir(p("/data")).unwrap(),
            [DirEntry { name: "a".into(), is_dir: false }, DirEntry { name: "sub".into(), is_dir: true }]
        );
        assert!(fs.create_dir_all(p("/data/a/x")).is_err());
        assert_eq!(fs.read(p("/data/sub")).unwrap_err().kind(), io::ErrorKind::IsADirectory);
        // Path normalization: `.` and repeated separators do not matter.
        assert_eq!(fs.read(p("/data/sub/../a")).unwrap_err().kind(), io::ErrorKind::InvalidInput);
        assert_eq!(fs.read(p("/data//./a")).unwrap(), b"two");
    }

    #[test]
    fn unsynced_file_is_lost() {
        let fs = setup();
        write(&fs, "/data/a", b"content", false);
        fs.sync_dir(p("/data")).unwrap();
        fs.crash();
        // The entry survives, the content never made it.
        assert_eq!(fs.read(p("/data/a")).unwrap(), b"");

        let fs = setup();
        write(&fs, "/data/a", b"content", false);
        fs.crash();
        assert_eq!(fs.read(p("/data/a")).unwrap_err().kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn synced_content_without_a_synced_directory_entry_is_lost() {
        let fs = setup();
        write(&fs, "/data/a", b"content", true);
        fs.crash();
        assert_eq!(fs.read(p("/data/a")).unwrap_err().kind(), io::ErrorKind::NotFound);
        assert!(names(&fs, "/data").is_empty());
    }

    #[test]
    fn synced_file_and_synced_directory_survive() {
        let fs = setup();
        write(&fs, "/data/a", b"content", true);
        fs.sync_dir(p("/data")).unwrap();
        fs.crash();
        assert_eq!(fs.read(p("/data/a")).unwrap(), b"content");
        assert_eq!(fs.sync_points(), 3);
    }

    #[test]
    fn a_barrier_sync_makes_every_file_durable_but_no_directory_entry() {
        let fs = setup();
        let barrier = fs.barrier(p("/data")).unwrap().unwrap();
        write(&fs, "/data/a", b"a", false);
        fs.sync_dir(p("/data")).unwrap();
        write(&fs, "/data/b", b"b", false);
        barrier.sync().unwrap();
        fs.crash();
        assert_eq!(fs.read(p("/data/a")).unwrap(), b"a", "content synced by the barrier, entry by the directory");
        assert!(fs.read(p("/data/b")).is_err(), "the barrier does not sync directory entries");
        assert!(barrier.sync().is_err(), "a barrier opened before a crash is stale");
        assert!(fs.barrier(p("/missing")).unwrap().is_err());
        fs.set_barrier(false);
        assert!(fs.barrier(p("/data")).is_none());
    }

    #[test]
    fn unsynced_rename_reverts_to_the_old_content() {
        let fs = setup();
        write(&fs, "/data/a", b"old", true);
        fs.sync_dir(p("/data")).unwrap();
        write(&fs, "/data/tmp", b"new", true);
        fs.rename(p("/data/tmp"), p("/data/a")).unwrap();
        assert_eq!(fs.read(p("/data/a")).unwrap(), b"new");
        fs.crash();
        assert_eq!(fs.read(p("/data/a")).unwrap(), b"old");
        assert_eq!(names(&fs, "/data"), ["a"]);

        // The same with the directory synced: the new content is there for good.
        write(&fs, "/data/tmp", b"new", true);
        fs.rename(p("/data/tmp"), p("/data/a")).unwrap();
        fs.sync_dir(p("/data")).unwrap();
        fs.crash();
        assert_eq!(fs.read(p("/data/a")).unwrap(), b"new");
        assert_eq!(names(&fs, "/data"), ["a"]);
    }

    #[test]
    fn removal_without_a_directory_sync_comes_back() {
        let fs = setup();
        write(&fs, "/data/a", b"kept", true);
        fs.sync_dir(p("/data")).unwrap();
        fs.remove_file(p("/data/a")).unwrap();
        assert_eq!(fs.read(p("/data/a")).unwrap_err().kind(), io::ErrorKind::NotFound);
        fs.crash();
        assert_eq!(fs.read(p("/data/a")).unwrap(), b"kept");

        fs.remove_file(p("/data/a")).unwrap();
        fs.sync_dir(p("/data")).unwrap();
        fs.crash();
        assert_eq!(fs.read(p("/data/a")).unwrap_err().kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn directories_need_their_parent_synced() {
        let fs = CrashFs::new();
        fs.create_dir_all(p("/data/sub")).unwrap();
        write(&fs, "/data/sub/a", b"x", true);
        fs.sync_dir(p("/data/sub")).unwrap();
        fs.sync_dir(p("/data")).unwrap();
        // `/data` itself was never made durable in `/`: the whole subtree is lost.
        fs.crash();
        assert_eq!(fs.read_dir(p("/data")).unwrap_err().kind(), io::ErrorKind::NotFound);

        fs.create_dir_all(p("/data/sub")).unwrap();
        write(&fs, "/data/sub/a", b"x", true);
        fs.sync_dir(p("/data/sub")).unwrap();
        fs.sync_dir(p("/data")).unwrap();
        fs.sync_dir(p("/")).unwrap();
        fs.crash();
        assert_eq!(fs.read(p("/data/sub/a")).unwrap(), b"x");
    }

    #[test]
    fn append_and_sync_survives_and_the_unsynced_tail_is_lost() {
        let fs = setup();
        let wal = fs.open_append(p("/data/wal")).unwrap();
        fs.sync_dir(p("/data")).unwrap();
        wal.append(b"first ").unwrap();
        wal.append(b"second ").unwrap();
        wal.sync_data().unwrap();
        wal.append(b"tail").unwrap();
        assert_eq!(fs.read(p("/data/wal")).unwrap(), b"first second tail");
        fs.crash();
        assert_eq!(fs.read(p("/data/wal")).unwrap(), b"first second ");
        // A handle from before the crash is dead.
        assert!(wal.append(b"zombie").is_err());
        assert!(wal.sync_data().is_err());

        let wal = fs.open_append(p("/data/wal")).unwrap();
        wal.append(b"third").unwrap();
        wal.truncate(6).unwrap();
        assert_eq!(fs.read(p("/data/wal")).unwrap(), b"first ");
        fs.crash();
        assert_eq!(fs.read(p("/data/wal")).unwrap(), b"first second ", "an unsynced truncation is lost");
        let wal = fs.open_append(p("/data/wal")).unwrap();
        wal.truncate(6).unwrap();
        wal.sync_data().unwrap();
        fs.crash();
        assert_eq!(fs.read(p("/data/wal")).unwrap(), b"first ");
    }

    #[test]
    fn crash_after_makes_later_operations_fail() {
        let fs = setup();
        assert_eq!(fs.ops(), 2);
        fs.crash_after(2);
        let mut file = fs.create_new(p("/data/a")).unwrap();
        file.write_all(b"x").unwrap();
        assert!(!fs.is_dead());
        assert!(file.sync_data().is_err());
        assert!(fs.is_dead());
        assert!(fs.create_new(p("/data/b")).is_err());
        assert!(fs.sync_dir(p("/data")).is_err());
        assert!(fs.create_dir_all(p("/data/x")).is_err());
        assert!(fs.rename(p("/data/a"), p("/data/c")).is_err());
        assert!(fs.remove_file(p("/data/a")).is_err());
        // Reads still see the live image.
        assert_eq!(fs.read(p("/data/a")).unwrap(), b"x");
        assert_eq!(fs.ops(), 4);
        assert_eq!(fs.sync_points(), 1);
        fs.crash();
        assert!(!fs.is_dead());
        assert!(fs.read(p("/data/a")).is_err());
        fs.create_new(p("/data/b")).unwrap();
        assert_eq!(fs.ops(), 5);

        let fs = setup();
        fs.crash_after(0);
        assert!(fs.create_dir_all(p("/x")).is_err());
    }

    #[test]
    fn locks_are_exclusive_and_released_on_drop_and_at_a_crash() {
        let fs = setup();
        let lock = fs.try_lock(p("/data/LOCK")).unwrap();
        assert_eq!(fs.try_lock(p("/data/LOCK")).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        assert_eq!(names(&fs, "/data"), ["LOCK"]);
        drop(lock);
        let lock = fs.try_lock(p("/data/LOCK")).unwrap();
        fs.crash();
        let again = fs.try_lock(p("/data/LOCK")).unwrap();
        drop(lock); // a lock of the previous life must not release the new one
        assert_eq!(fs.try_lock(p("/data/LOCK")).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        drop(again);
        assert!(fs.try_lock(p("/nowhere/LOCK")).is_err());
    }
}
