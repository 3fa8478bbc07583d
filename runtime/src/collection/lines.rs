//! The lines of a whole-file collection, as its file holds them (see `Core::lines`).
//!
//! The lines read at open share one buffer instead of one allocation each. The
//! flusher replaces a record's line when the record changes; with a line per
//! allocation it freed, on its own thread, tens of thousands of small blocks the
//! opening thread had allocated. glibc's malloc parks such frees in the fast bins
//! of the opening thread's arena, and the next large allocation or coalescing free
//! in that arena (a writer's, when the application writes from the thread that
//! opened) walked them all: W9 (`collection_file`, 100,000 records) measured
//! updates of 10 to 19 ms, each inside `malloc_consolidate` on the writer. A line
//! of the shared buffer is dropped without a free. When the lines still in the
//! buffer fill less than half of it (and it is 64 KiB or more), they move to a
//! buffer of their size (`compact`): the buffer never holds more than twice the
//! bytes of its lines, so a collection whose records change unevenly does not
//! keep its whole file from open. That is one large allocation and one large
//! free, never small ones. The buffer goes when its last line does.

use std::collections::BTreeMap;

/// Every record's line, by id.
pub(super) struct Lines<I> {
    map: BTreeMap<I, Line>,
    /// The bytes of the lines read at open, back to back.
    loaded: Vec<u8>,
    /// How many lines of `map` are still in `loaded`.
    loaded_left: usize,
    /// How many bytes of `loaded` those lines hold.
    loaded_live: usize,
}

/// The size below which the shared buffer is never compacted.
const COMPACT_FROM: usize = 64 << 10;

/// One record's line, without its newline.
enum Line {
    /// `loaded[start..start + len]`.
    Loaded { start: usize, len: usize },
    /// Written since open.
    Own(Box<[u8]>),
}

impl<I> Default for Lines<I> {
    fn default() -> Self {
        Lines { map: BTreeMap::new(), loaded: Vec::new(), loaded_left: 0, loaded_live: 0 }
    }
}

impl<I: Ord> Lines<I> {
    /// Keeps the line of a record read at open (a later one for the same id wins).
    pub fn load(&mut self, id: I, line: &[u8]) {
        let start = self.loaded.len();
        self.loaded.extend_from_slice(line);
        self.loaded_left += 1;
        self.loaded_live += line.len();
        let old = self.map.insert(id, Line::Loaded { start, len: line.len() });
        self.forget(old);
    }

    /// Ends the loading: the shared buffer gives back the room it did not use.
    pub fn loaded(&mut self) {
        self.loaded.shrink_to_fit();
    }

    /// Sets the line of `id`.
    pub fn insert(&mut self, id: I, line: Box<[u8]>) {
        let old = self.map.insert(id, Line::Own(line));
        self.forget(old);
    }

    /// Removes the line of `id`.
    pub fn remove(&mut self, id: &I) {
        let old = self.map.remove(id);
        self.forget(old);
    }

    /// Lets go of a replaced or removed line; the shared buffer goes with its
    /// last, and is compacted when its lines fill less than half of it.
    fn forget(&mut self, old: Option<Line>) {
        if let Some(Line::Loaded { len, .. }) = old {
            self.loaded_left -= 1;
            self.loaded_live -= len;
            if self.loaded_left == 0 {
                self.loaded = Vec::new();
            } else if self.loaded.len() >= COMPACT_FROM && self.loaded_live < self.loaded.len() / 2 {
                self.compact();
            }
        }
    }

    /// Moves the lines still in the shared buffer to one of their size.
    fn compact(&mut self) {
        let mut buffer = Vec::with_capacity(self.loaded_live);
        for line in self.map.values_mut() {
            if let Line::Loaded { start, len } = line {
                let from = *start;
                *start = buffer.len();
                buffer.extend_from_slice(&self.loaded[from..from + *len]);
            }
        }
        self.loaded = buffer;
    }

    fn bytes<'a>(&'a self, line: &'a Line) -> &'a [u8] {
        match line {
            Line::Loaded { start, len } => &self.loaded[*start..*start + *len],
            Line::Own(bytes) => bytes,
        }
    }

    /// Every line, sorted by id, each ended by a newline: the collection file.
    pub fn jsonl(&self) -> Vec<u8> {
        let lines = || self.map.values().map(|line| self.bytes(line));
        let mut out = Vec::with_capacity(lines().map(|l| l.len() + 1).sum());
        for line in lines() {
            out.extend_from_slice(line);
            out.push(b'\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loaded_and_written_lines_make_the_file_in_id_order() {
        let mut lines = Lines::default();
        lines.load(2, b"{\"id\":2}");
        lines.load(1, b"{\"id\":1}");
        lines.load(2, b"{\"id\":2,\"v\":1}");
        lines.loaded();
        assert_eq!(lines.jsonl(), b"{\"id\":1}\n{\"id\":2,\"v\":1}\n");
        lines.insert(3, b"{\"id\":3}".to_vec().into());
        lines.insert(1, b"{\"id\":1,\"v\":2}".to_vec().into());
        assert_eq!(lines.jsonl(), b"{\"id\":1,\"v\":2}\n{\"id\":2,\"v\":1}\n{\"id\":3}\n");
        assert!(!lines.loaded.is_empty(), "line 2 is still in the shared buffer");
        lines.remove(&2);
        assert!(lines.loaded.is_empty() && lines.loaded.capacity() == 0, "its last line gone, the buffer is freed");
        assert_eq!(lines.jsonl(), b"{\"id\":1,\"v\":2}\n{\"id\":3}\n");
        lines.remove(&9);
        assert_eq!(lines.loaded_left, 0);
    }

    #[test]
    fn the_shared_buffer_never_holds_more_than_twice_its_lines() {
        let line = |i: u32, v: u32| format!("{{\"id\":{i},\"v\":{v},\"pad\":\"{}\"}}", "x".repeat(100)).into_bytes();
        let mut lines = Lines::default();
        for i in 0..2_000 {
            lines.load(i, &line(i, 0));
        }
        lines.loaded();
        let full = lines.loaded.len();
        assert!(full >= 2 * COMPACT_FROM, "the test needs a buffer that compacts: {full} bytes");
        // Replace the lines one by one, unevenly: every other one first.
        for i in (0..2_000).step_by(2).chain((1..1_990).step_by(2)) {
            lines.insert(i, line(i, 1).into());
            let held = lines.loaded.len();
            assert!(
                held < COMPACT_FROM || held <= 2 * lines.loaded_live,
                "after replacing {i}: the buffer holds {held} bytes for {} bytes of lines",
                lines.loaded_live
            );
        }
        assert_eq!(lines.loaded_left, 5, "lines 1991 to 1999 step 2 are still loaded");
        // Compacted down to below the threshold, where it stays: without compaction
        // it would hold every byte read at open.
        assert!(lines.loaded.len() < COMPACT_FROM, "the buffer was compacted: {} of {full} bytes", lines.loaded.len());
        let expected: Vec<u8> = (0..2_000u32)
            .flat_map(|i| {
                let mut l = line(i, u32::from(i < 1_990 || i % 2 == 0));
                l.push(b'\n');
                l
            })
            .collect();
        assert_eq!(lines.jsonl(), expected, "every line, moved or not, is the one last set");
    }
}
