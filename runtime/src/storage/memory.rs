//! `#[storage(memory)]`: nothing on disk.

use std::path::PathBuf;

use super::{Change, RawRecord, Strategy};
use crate::batch::WriteBatch;
use crate::error::Result;
use crate::fs::Vfs;

/// Keeps nothing: records live as long as the process.
#[derive(Debug)]
pub(crate) struct Memory;

impl Strategy for Memory {
    fn dirs(&self) -> Vec<PathBuf> {
        Vec::new()
    }
    fn load(&self, _fs: &dyn Vfs, _sink: &mut dyn FnMut(RawRecord) -> Result<()>) -> Result<()> {
        Ok(())
    }
    fn stage(&self, _changes: Vec<Change>, _batch: &mut WriteBatch) {}
    fn quarantines_files(&self) -> bool {
        false
    }
}
