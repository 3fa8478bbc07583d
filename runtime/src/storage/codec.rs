//! File content encoding: plain, or zstd-compressed (`compress`).

use std::io::{self, Read};

use crate::fs::DEFAULT_MAX_FILE_SIZE;

/// Encodes files one after another; see [`Codec::encoder`].
pub(crate) struct Encoder {
    codec: Codec,
    compressor: Option<zstd::bulk::Compressor<'static>>,
}

impl Encoder {
    /// `bytes` encoded: with `compress`, one whole zstd frame, which records the
    /// content size (the frames of [`Codec::encode`] do not); [`Codec::decode`]
    /// reads both.
    pub fn encode(&mut self, bytes: Vec<u8>) -> io::Result<Vec<u8>> {
        if !self.codec.compress {
            return Ok(bytes);
        }
        let compressor = match &mut self.compressor {
            Some(compressor) => compressor,
            none => none.insert(zstd::bulk::Compressor::new(self.codec.level)?),
        };
        compressor.compress(&bytes)
    }
}

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

    /// An encoder for many files in a row: with `compress`, one zstd context
    /// serves them all (a context per file cost about 100 µs each, more than
    /// writing the file: W8, per_record + compress).
    pub fn encoder(&self) -> Encoder {
        Encoder { codec: *self, compressor: None }
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
        self.decode_at_most(bytes, DEFAULT_MAX_FILE_SIZE)
    }

    /// [`Codec::decode`] with the bound `max`: a decompression bomb stops at
    /// `max + 1` bytes, whatever it would expand to.
    fn decode_at_most(&self, bytes: Vec<u8>, max: u64) -> io::Result<Vec<u8>> {
        if !self.compress {
            return Ok(bytes);
        }
        let decoder = zstd::stream::read::Decoder::new(bytes.as_slice())?;
        let mut out = Vec::new();
        decoder.take(max.saturating_add(1)).read_to_end(&mut out)?;
        if out.len() as u64 > max {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("decompresses to more than the {max} bytes Shelf reads whole"),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 19: a small compressed file that expands without bound (a zstd bomb)
    /// is refused once it passes the bound, not read until memory runs out.
    #[test]
    fn a_decompression_bomb_is_refused_at_the_bound() {
        let codec = Codec::new(true, 3);
        let bomb = codec.encode(vec![0u8; 64 << 20]).unwrap();
        assert!(bomb.len() < 64 << 10, "the bomb is small on disk: {} bytes", bomb.len());
        let err = codec.decode_at_most(bomb.clone(), 1 << 20).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("more than the 1048576 bytes"), "{err}");
        // Within the bound it decodes whole.
        assert_eq!(codec.decode_at_most(bomb, 64 << 20).unwrap().len(), 64 << 20);
    }

    #[test]
    fn an_encoder_reused_for_many_files_encodes_each_so_that_it_decodes_back() {
        for compress in [false, true] {
            let codec = Codec::new(compress, 3);
            let mut encoder = codec.encoder();
            for i in 0..50u32 {
                let bytes = format!("{{\"id\":{i},\"name\":\"{}\"}}\n", "x".repeat(i as usize)).into_bytes();
                let encoded = encoder.encode(bytes.clone()).unwrap();
                assert_eq!(encoded != bytes, compress, "compressed only with compress");
                assert_eq!(codec.decode(encoded).unwrap(), bytes, "file {i}, compress {compress}");
            }
        }
    }
}
