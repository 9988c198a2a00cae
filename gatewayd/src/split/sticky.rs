//! Sticky hashing: a key maps to a fixed point in [0, 1); as a canary's weight grows, clients
//! already on the canary stay there (the boundary only moves one way).
//!
//! The hash is FNV-1a 64 and the mapping is pinned by a golden test: changing either reshuffles
//! every sticky client on upgrade.

/// FNV-1a 64-bit hash of a sticky key value.
pub fn sticky_hash(value: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in value {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // Finalizer (from splitmix64) so nearby keys spread over the whole range.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Scales a hash to a point in `0..total` (`total` > 0): the hash as a fraction of 2^64.
pub fn sticky_pick(hash: u64, total: u64) -> u64 {
    ((u128::from(hash) * u128::from(total)) >> 64) as u64
}
