//! `#[storage(per_record)]`: `<dir>/<collection>/<encoded-id>.json`, one entity per file.

use std::path::PathBuf;

use super::{Change, RawRecord, Strategy};
use crate::batch::{is_temp, WriteBatch};
use crate::error::{Error, Result};
use crate::fs::Vfs;

/// The extension of a record file.
pub(crate) const EXT: &str = ".json";

/// One JSON file per record in the collection's directory.
#[derive(Debug)]
pub(crate) struct PerRecord {
    dir: PathBuf,
}

impl PerRecord {
    pub fn new(dir: PathBuf) -> Self {
        PerRecord { dir }
    }

    fn path(&self, stem: &str) -> PathBuf {
        self.dir.join(format!("{stem}{EXT}"))
    }
}

impl Strategy for PerRecord {
    fn dirs(&self) -> Vec<PathBuf> {
        vec![self.dir.clone()]
    }

    fn load(&self, fs: &dyn Vfs, sink: &mut dyn FnMut(RawRecord) -> Result<()>) -> Result<()> {
        let entries = match fs.read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io("list", &self.dir, e)),
        };
        for entry in entries {
            if entry.is_dir || is_temp(&entry.name) {
                continue;
            }
            let Some(stem) = entry.name.strip_suffix(EXT) else {
                tracing::warn!(file = %self.dir.join(&entry.name).display(), "ignoring a file that is not a record");
                continue;
            };
            let path = self.dir.join(&entry.name);
            let bytes = fs.read(&path).map_err(|e| Error::io("read", &path, e))?;
            sink(RawRecord { stem: Some(stem.to_owned()), path, bytes })?;
        }
        Ok(())
    }

    fn stage(&self, changes: Vec<Change>, batch: &mut WriteBatch) {
        for change in changes {
            let path = self.path(&change.stem);
            match change.bytes {
                Some(bytes) => batch.write(path, bytes),
                None => batch.remove(path),
            }
        }
    }

    fn quarantines_files(&self) -> bool {
        true
    }
}
