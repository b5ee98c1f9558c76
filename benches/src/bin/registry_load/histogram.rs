//! A lock-free histogram of durations in microseconds: exact below 1,024 µs, then 64 buckets per power of two
//! (within 1.6 %), up to about 70 minutes. Recording is one relaxed atomic add, so a thousand callers on two
//! threads record without contending on a lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Values below this are counted exactly.
const LINEAR: u64 = 1024;
/// Buckets per power of two above [`LINEAR`].
const SUB: u64 = 64;
/// Powers of two above [`LINEAR`] (2^10 µs to 2^32 µs).
const OCTAVES: u64 = 22;

/// Counts of durations.
pub(crate) struct Histogram {
    buckets: Vec<AtomicU64>,
}

impl Histogram {
    pub(crate) fn new() -> Histogram {
        Histogram {
            buckets: (0..LINEAR + SUB * OCTAVES)
                .map(|_| AtomicU64::new(0))
                .collect(),
        }
    }

    fn bucket(us: u64) -> usize {
        if us < LINEAR {
            return us as usize;
        }
        let octave = u64::from(63 - us.leading_zeros()) - 10;
        if octave >= OCTAVES {
            return (LINEAR + SUB * OCTAVES - 1) as usize;
        }
        let sub = (us >> (octave + 10 - 6)) & (SUB - 1);
        (LINEAR + octave * SUB + sub) as usize
    }

    /// The smallest value of bucket `i`.
    fn low(i: usize) -> u64 {
        let i = i as u64;
        if i < LINEAR {
            return i;
        }
        let octave = (i - LINEAR) / SUB;
        let sub = (i - LINEAR) % SUB;
        (1 << (octave + 10)) + (sub << (octave + 10 - 6))
    }

    pub(crate) fn record(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.buckets[Histogram::bucket(us)].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// The value at quantile `q` (0 to 1), in milliseconds; `None` if nothing was recorded.
    pub(crate) fn quantile_ms(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((total as f64 * q).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            seen += b.load(Ordering::Relaxed);
            if seen >= rank {
                return Some(Histogram::low(i) as f64 / 1000.0);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_hold_their_values_within_two_percent() {
        for us in [0, 1, 1023, 1024, 1500, 65_535, 1_000_000, 123_456_789] {
            let low = Histogram::low(Histogram::bucket(us));
            assert!(
                low <= us && us - low <= us / 60,
                "{us} in a bucket from {low}"
            );
        }
        let h = Histogram::new();
        for ms in 1..=100 {
            h.record(Duration::from_millis(ms));
        }
        assert_eq!(h.count(), 100);
        let p50 = h.quantile_ms(0.5).unwrap();
        assert!((49.0..=50.0).contains(&p50), "{p50}");
    }
}
