//! `#[storage(collection_file)]`: the whole collection in `<dir>/<collection>.jsonl`
//! (`.jsonl.zst` with `compress`), one compact JSON entity per line, sorted by id.
//! A flush that finds the collection changed rewrites the file atomically.
//!
//! A UTF-8 byte order mark at the start of the file (as some editors add) is
//! skipped on load, with a warning: it holds no data, JSON does not allow it, and the
//! next flush of the collection writes the file without it.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use super::codec::Codec;
use super::{Quarantine, RawRecord, Strategy};
use crate::batch::WriteBatch;
use crate::error::{Error, Result};
use crate::fs::{Vfs, DEFAULT_MAX_FILE_SIZE};

/// The UTF-8 byte order mark, skipped at the start of a file.
pub(crate) const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// The whole collection in one file.
#[derive(Debug)]
pub(crate) struct CollectionFile {
    dir: PathBuf,
    path: PathBuf,
    codec: Codec,
}

impl CollectionFile {
    pub fn new(dir: &Path, collection: &str, codec: Codec) -> Self {
        let path = dir.join(format!("{collection}.jsonl{}", codec.ext()));
        CollectionFile { dir: dir.to_path_buf(), path, codec }
    }
}

/// Reads one line into `line`, as `read_until` does, but refuses a line longer than
/// `max` bytes: a decompression bomb without newlines stops there instead of filling
/// memory.
fn read_line_at_most(reader: &mut impl BufRead, line: &mut Vec<u8>, max: u64) -> std::io::Result<usize> {
    let read = reader.by_ref().take(max.saturating_add(1)).read_until(b'\n', line)?;
    if read as u64 > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a line is longer than the {max} bytes Shelf reads as one record"),
        ));
    }
    Ok(read)
}

impl Strategy for CollectionFile {
    fn dirs(&self) -> Vec<PathBuf> {
        vec![self.dir.clone()]
    }

    fn load(&self, fs: &dyn Vfs, sink: &mut dyn FnMut(RawRecord<'_>) -> Result<()>) -> Result<()> {
        let file = match fs.open_read(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io("open", &self.path, e)),
        };
        // Streamed line by line: the file is never held whole in memory.
        let reader = self.codec.reader(file).map_err(|e| Error::io("decompress", &self.path, e))?;
        let mut lines = BufReader::new(reader);
        let mut line = Vec::new();
        let mut number = 0;
        loop {
            line.clear();
            number += 1;
            let read = read_line_at_most(&mut lines, &mut line, DEFAULT_MAX_FILE_SIZE)
                .map_err(|e| Error::io("read", PathBuf::from(format!("{}:{number}", self.path.display())), e))?;
            if read == 0 {
                return Ok(());
            }
            let mut bytes = line.as_slice();
            if number == 1 {
                if let Some(rest) = bytes.strip_prefix(UTF8_BOM) {
                    tracing::warn!(file = %self.path.display(), "ignoring the UTF-8 byte order mark at the start of the file; the next flush writes it without one");
                    bytes = rest;
                }
            }
            if bytes.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            sink(RawRecord { file: &self.path, line: Some(number), stem: None, bytes })?;
        }
    }

    fn whole_file(&self) -> bool {
        true
    }

    fn stage_all(&self, jsonl: Vec<u8>, batch: &mut WriteBatch) -> Result<()> {
        let bytes = self.codec.encode(jsonl).map_err(|e| Error::io("compress", &self.path, e))?;
        batch.write(self.path.clone(), bytes);
        Ok(())
    }

    fn files(&self, fs: &dyn Vfs) -> Result<Vec<PathBuf>> {
        // Opened, not read: the file may be large (and is streamed when loaded).
        match fs.open_read(&self.path) {
            Ok(_) => Ok(vec![self.path.clone()]),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(Error::io("read", &self.path, e)),
        }
    }

    fn quarantine(&self) -> Quarantine {
        Quarantine::CopyFileAndSkip
    }
}

#[cfg(test)]
mod line_tests {
    use super::*;

    /// Issue 19: a compressed collection file that expands to an endless line (a
    /// zstd bomb) is refused at the bound, not read until memory runs out.
    #[test]
    fn an_endless_line_is_refused_at_the_bound() {
        let codec = Codec::new(true, 3);
        let bomb = codec.encode(vec![b'x'; 32 << 20]).unwrap();
        let reader = codec.reader(Box::new(std::io::Cursor::new(bomb))).unwrap();
        let mut lines = BufReader::new(reader);
        let mut line = Vec::new();
        let err = read_line_at_most(&mut lines, &mut line, 1 << 20).unwrap_err();
        assert!(err.to_string().contains("longer than the 1048576 bytes"), "{err}");
        assert!(line.len() <= (1 << 20) + 1, "read {} bytes past the bound", line.len());
        // Lines within the bound are read one by one.
        let mut two = BufReader::new(std::io::Cursor::new(b"{\"a\":1}\n{\"b\":2}\n".to_vec()));
        line.clear();
        assert_eq!(read_line_at_most(&mut two, &mut line, 8).unwrap(), 8);
        assert_eq!(line, b"{\"a\":1}\n");
    }
}
