//! File content encoding: plain, or zstd-compressed (`compress`).

use std::io::{self, Read};

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

    pub fn decode(&self, bytes: Vec<u8>) -> io::Result<Vec<u8>> {
        if self.compress {
            zstd::decode_all(bytes.as_slice())
        } else {
            Ok(bytes)
        }
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
