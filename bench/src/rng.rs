//! The seeded RNG every benchmark uses, so that each picks the same keys and makes up
//! the same data run after run. Included by the main harness and by `src/bin/common`;
//! each uses a part of it.

/// xorshift64*: tiny, seeded, and good enough to pick keys and make up data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Fisher-Yates.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }

    /// `len` random lower-case letters and spaces.
    pub fn text(&mut self, len: usize) -> String {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz      ";
        (0..len).map(|_| ALPHABET[self.below(ALPHABET.len())] as char).collect()
    }

    /// `count` random user ids in `1..=n`, with repeats.
    pub fn ids(&mut self, n: usize, count: usize) -> Vec<u64> {
        (0..count).map(|_| self.below(n) as u64 + 1).collect()
    }

    /// `count` distinct user ids in `1..=n`, in random order.
    pub fn distinct_ids(&mut self, n: usize, count: usize) -> Vec<u64> {
        let mut all: Vec<u64> = (1..=n as u64).collect();
        for i in 0..count.min(n) {
            let j = i + self.below(n - i);
            all.swap(i, j);
        }
        all.truncate(count.min(n));
        all
    }
}
