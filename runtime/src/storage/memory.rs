//! `#[storage(memory)]`: nothing on disk.

use std::path::PathBuf;

use super::{Quarantine, RawRecord, Strategy};
use crate::error::Result;
use crate::fs::Vfs;

/// Keeps nothing: records live as long as the process.
#[derive(Debug)]
pub(crate) struct Memory;

impl Strategy for Memory {
    fn dirs(&self) -> Vec<PathBuf> {
        Vec::new()
    }
    fn load(&self, _fs: &dyn Vfs, _sink: &mut dyn FnMut(RawRecord<'_>) -> Result<()>) -> Result<()> {
        Ok(())
    }
    fn files(&self, _fs: &dyn Vfs) -> Result<Vec<PathBuf>> {
        Ok(Vec::new())
    }
    fn quarantine(&self) -> Quarantine {
        Quarantine::MoveFile
    }
}
