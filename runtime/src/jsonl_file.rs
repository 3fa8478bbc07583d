//! Files of JSON lines that start with a header line: the codec the feed files
//! (`feed_file`) and staged imports (`import_file`) share.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::batch::{SyncMode, WriteBatch};
use crate::error::{Error, Result};
use crate::fs::Vfs;

/// The header, then one line per item, each a JSON object and `\n`.
pub(crate) fn encode<H: Serialize, L: Serialize>(header: &H, lines: &[L]) -> serde_json::Result<Vec<u8>> {
    let mut out = serde_json::to_vec(header)?;
    out.push(b'\n');
    for line in lines {
        serde_json::to_writer(&mut out, line)?;
        out.push(b'\n');
    }
    Ok(out)
}

/// The header and the items with their line numbers (from 1; blank lines are
/// skipped). An error names the line.
pub(crate) fn decode<H: DeserializeOwned, L: DeserializeOwned>(
    bytes: &[u8],
) -> std::result::Result<(H, Vec<(usize, L)>), String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let (_, first) = lines.next().ok_or("empty")?;
    let header: H = serde_json::from_str(first).map_err(|e| format!("line 1 (the header): {e}"))?;
    let mut items = Vec::new();
    for (n, line) in lines {
        let item: L = serde_json::from_str(line).map_err(|e| format!("line {}: {e}", n + 1))?;
        items.push((n + 1, item));
    }
    Ok((header, items))
}

/// The files in `dir` (none when it does not exist).
pub(crate) fn list(fs: &dyn Vfs, dir: &Path) -> Result<Vec<PathBuf>> {
    match fs.read_dir(dir) {
        Ok(entries) => Ok(entries.into_iter().filter(|e| !e.is_dir).map(|e| dir.join(e.name)).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::io("list", dir, e)),
    }
}

/// Removes `files`, durably.
pub(crate) fn remove_all(fs: &dyn Vfs, files: Vec<PathBuf>) -> Result<()> {
    let mut batch = WriteBatch::default();
    for file in files {
        batch.remove(file);
    }
    if batch.is_empty() {
        return Ok(());
    }
    batch.commit(fs, SyncMode::Batched)
}
