//! Maps keyed by ids (request ids, method ids, and the addresses of a balanced client's instances): keys that need
//! no keyed hash (SipHash costs more than the map operation here), only a multiply that spreads them over the
//! high bits, which hashbrown uses for its control bytes, folded into the low bits, which pick the bucket. A
//! server's map holds request ids its peer chose; the fold keeps ids that differ only in their high bits
//! (multiples of 2^20, say) from sharing one bucket, and `max_in_flight_per_connection` bounds what any choice
//! of ids can cost. Addresses come from the client's own feed, whose size bounds them.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// The hasher of [`IdMap`]: a Fibonacci multiply of the integer key.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Strings (instance addresses): eight bytes at a time, each word folded in and spread by the multiply.
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
            self.0 = (self.0.rotate_left(29) ^ word).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut last = [0u8; 8];
            last[..rest.len()].copy_from_slice(rest);
            let word = u64::from_le_bytes(last) ^ ((rest.len() as u64) << 56);
            self.0 = (self.0.rotate_left(29) ^ word).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
        self.0 ^= self.0 >> 32;
    }

    fn write_u32(&mut self, id: u32) {
        self.write_u64(u64::from(id));
    }

    fn write_u64(&mut self, id: u64) {
        let h = id.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = h ^ (h >> 32);
    }
}

/// A map keyed by ids.
pub(crate) type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_spread_over_the_high_bits_and_the_low_bits() {
        use std::hash::BuildHasher;
        let build = BuildHasherDefault::<IdHasher>::default();
        let tops: std::collections::HashSet<u64> =
            (1u64..=128).map(|id| build.hash_one(id) >> 57).collect();
        assert!(
            tops.len() > 64,
            "the top 7 bits take {} values of 128",
            tops.len()
        );
        // Ids that differ only in their high bits still pick different buckets (the low bits).
        let lows: std::collections::HashSet<u64> = (1u64..=128)
            .map(|i| build.hash_one(i << 20) & 127)
            .collect();
        assert!(
            lows.len() > 64,
            "the low 7 bits take {} values of 128",
            lows.len()
        );
        let mut map: IdMap<u64, u64> = IdMap::default();
        for id in 0..10_000 {
            map.insert(id, id * 2);
        }
        assert!((0..10_000).all(|id| map.get(&id) == Some(&(id * 2))));
    }
}
