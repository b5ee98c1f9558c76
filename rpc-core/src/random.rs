//! Cheap randomness for policies (power-of-two choices, fault percentages, jitter): a xorshift generator per
//! thread, seeded from the standard library's random hasher keys. Not for anything secret.

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

thread_local! {
    static STATE: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    // Never zero: xorshift stays at zero forever.
    RandomState::new().hash_one(0x9e37_79b9_7f4a_7c15_u64) | 1
}

/// A random `u64`.
pub(crate) fn next_u64() -> u64 {
    STATE.with(|state| {
        let mut x = state.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.set(x);
        x
    })
}

/// A random fraction in `[0, 1)`.
pub(crate) fn fraction() -> f64 {
    // The top 53 bits, as many as an `f64`'s mantissa holds.
    (next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// A random index below `n` (`n` > 0).
pub(crate) fn below(n: usize) -> usize {
    // Multiply-shift: unbiased enough for picking among instances, and no division.
    ((u128::from(next_u64()) * n as u128) >> 64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_and_indices_stay_in_range_and_spread() {
        let mut counts = [0usize; 4];
        for _ in 0..4000 {
            let f = fraction();
            assert!((0.0..1.0).contains(&f), "{f}");
            counts[below(4)] += 1;
        }
        // Each of 4 buckets expects 1000; a fair generator lands within 800..1200 all but never.
        assert!(
            counts.iter().all(|&c| (800..1200).contains(&c)),
            "{counts:?}"
        );
    }
}
