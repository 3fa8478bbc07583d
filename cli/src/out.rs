//! Standard output for a tool in a pipeline: buffered, and a closed pipe (`| head`)
//! is remembered so that the command can end quietly instead of failing.

use std::io::{self, BufWriter, StdoutLock, Write};

/// Buffered stdout that notes a broken pipe.
pub struct Out {
    inner: BufWriter<StdoutLock<'static>>,
    broken: bool,
}

impl Out {
    /// Locks stdout.
    pub fn new() -> Self {
        Out { inner: BufWriter::new(io::stdout().lock()), broken: false }
    }

    /// Whether a write met a closed pipe: the reader has gone, and the command
    /// should stop quietly.
    pub fn broken(&self) -> bool {
        self.broken
    }

    fn note<T>(&mut self, result: io::Result<T>) -> io::Result<T> {
        if let Err(e) = &result {
            if e.kind() == io::ErrorKind::BrokenPipe {
                self.broken = true;
            }
        }
        result
    }
}

impl Write for Out {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let result = self.inner.write(buf);
        self.note(result)
    }

    fn flush(&mut self) -> io::Result<()> {
        let result = self.inner.flush();
        self.note(result)
    }
}
