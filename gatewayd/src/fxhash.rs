//! A multiply-rotate hash (rustc's FxHash) for maps looked up once or more per request: route
//! buckets by host and path segment, upstream pools by endpoint. Their keys come from our own
//! config, so an attacker only chooses what is looked up, never what collides in the table, and
//! SipHash's protection would be paid on every request for nothing.

use std::hash::{BuildHasherDefault, Hasher};

/// `HashMap` hasher state.
pub type FxBuildHasher = BuildHasherDefault<FxHasher>;

/// A `HashMap` with [`FxHasher`].
pub type FxHashMap<K, V> = std::collections::HashMap<K, V, FxBuildHasher>;

/// The hasher.
#[derive(Debug, Default, Clone, Copy)]
pub struct FxHasher(u64);

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(c);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u16(&mut self, n: u16) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher as _;

    use super::*;

    fn hash(s: &str) -> u64 {
        FxBuildHasher::default().hash_one(s)
    }

    #[test]
    fn distinguishes_close_keys() {
        let keys = [
            "api",
            "apj",
            "api/",
            "",
            "a",
            "abcdefgh",
            "abcdefghi",
            "abcdefgi",
        ];
        let mut seen: Vec<u64> = keys.iter().map(|k| hash(k)).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), keys.len());
    }

    #[test]
    fn works_as_a_map() {
        let mut m: FxHashMap<Box<str>, usize> = FxHashMap::default();
        for i in 0..1000 {
            m.insert(format!("s-{i:04}").into(), i);
        }
        assert_eq!(m.get("s-0420"), Some(&420));
        assert_eq!(m.get("s-1000"), None);
    }
}
