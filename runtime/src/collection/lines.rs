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
//! of the shared buffer is dropped without a free; the buffer goes when its last
//! line does.

use std::collections::BTreeMap;

/// Every record's line, by id.
pub(super) struct Lines<I> {
    map: BTreeMap<I, Line>,
    /// The bytes of the lines read at open, back to back.
    loaded: Vec<u8>,
    /// How many lines of `map` are still in `loaded`.
    loaded_left: usize,
}

/// One record's line, without its newline.
enum Line {
    /// `loaded[start..start + len]`.
    Loaded { start: usize, len: usize },
    /// Written since open.
    Own(Box<[u8]>),
}

impl<I> Default for Lines<I> {
    fn default() -> Self {
        Lines { map: BTreeMap::new(), loaded: Vec::new(), loaded_left: 0 }
    }
}

impl<I: Ord> Lines<I> {
    /// Keeps the line of a record read at open (a later one for the same id wins).
    pub fn load(&mut self, id: I, line: &[u8]) {
        let start = self.loaded.len();
        self.loaded.extend_from_slice(line);
        self.loaded_left += 1;
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

    /// Lets go of a replaced or removed line; the shared buffer goes with its last.
    fn forget(&mut self, old: Option<Line>) {
        if let Some(Line::Loaded { .. }) = old {
            self.loaded_left -= 1;
            if self.loaded_left == 0 {
                self.loaded = Vec::new();
            }
        }
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
}
