//! File content encoding: plain, or zstd-compressed (`compress`).

use std::io::{self, Read};

use crate::fs::DEFAULT_MAX_FILE_SIZE;

/// How a strategy's files are encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Codec {
    compress: bool,
    level: i32,
}

impl Codec {
    pub fn new(compress: bool, level: i32) -> Self {
        Codec { compress, level }
    }

    /// The extra file extension, `.zst` when compressed.
    pub fn ext(&self) -> &'static str {
        if self.compress {
            ".zst"
        } else {
            ""
        }
    }

    pub fn encode(&self, bytes: Vec<u8>) -> io::Result<Vec<u8>> {
        if self.compress {
            zstd::encode_all(bytes.as_slice(), self.level)
        } else {
            Ok(bytes)
        }
    }

    /// Decodes a whole file. Decompressed content is bounded like a file read, by
    /// [`DEFAULT_MAX_FILE_SIZE`]: a small file that expands past it is refused.
    pub fn decode(&self, bytes: Vec<u8>) -> io::Result<Vec<u8>> {
        if !self.compress {
            return Ok(bytes);
        }
        let decoder = zstd::stream::read::Decoder::new(bytes.as_slice())?;
        let mut out = Vec::new();
        decoder.take(DEFAULT_MAX_FILE_SIZE.saturating_add(1)).read_to_end(&mut out)?;
        if out.len() as u64 > DEFAULT_MAX_FILE_SIZE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("decompresses to more than the {DEFAULT_MAX_FILE_SIZE} bytes Shelf reads whole"),
            ));
        }
        Ok(out)
    }

    /// A reader of decoded content over a reader of the file.
    pub fn reader<'a>(&self, file: Box<dyn Read + Send + 'a>) -> io::Result<Box<dyn Read + Send + 'a>> {
        if self.compress {
            Ok(Box::new(zstd::stream::read::Decoder::new(file)?))
        } else {
            Ok(file)
        }
    }
}
