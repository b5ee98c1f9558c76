//! Hedging: for an `#[idempotent]` method, when the first attempt has not answered after a delay, a balanced
//! client sends a second attempt to another instance and takes whichever answers first; the other is
//! cancelled. The delay is fixed, or a percentile of the method's recent latencies ([`HedgeDelay`]), so that
//! only the slowest calls (5% of them at the 95th percentile) are sent twice. Hedged attempts spend the retry
//! budget (`budget.rs`), so hedging cannot double the load of a service that is slow everywhere.

use std::sync::Mutex;
use std::time::Duration;

use crate::ids::IdMap;
use crate::method::MethodInfo;

/// Default of [`HedgeConfig::delay`]: the 95th percentile of the method's latency.
pub const DEFAULT_HEDGE_PERCENTILE: f64 = 95.0;
/// Default of [`HedgeConfig::min_delay`]: 1 ms.
pub const DEFAULT_HEDGE_MIN_DELAY: Duration = Duration::from_millis(1);
/// Default of [`HedgeConfig::min_samples`]: 20 calls of a method before its percentile is trusted.
pub const DEFAULT_HEDGE_MIN_SAMPLES: u32 = 20;

/// When the second attempt of a hedged call goes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum HedgeDelay {
    /// After this long.
    After(Duration),
    /// After this percentile (0 to 100) of the method's recent latencies, once
    /// [`HedgeConfig::min_samples`] calls have been seen (no hedge before that).
    Percentile(f64),
}

/// Hedging of a balanced client's idempotent calls.
///
/// ```
/// use std::time::Duration;
/// use rpc_core::ClientConfig;
/// use rpc_core::client::layer::{HedgeConfig, HedgeDelay};
///
/// let config = ClientConfig {
///     hedge: Some(HedgeConfig { delay: HedgeDelay::After(Duration::from_millis(20)), ..HedgeConfig::default() }),
///     ..ClientConfig::default()
/// };
/// # let _ = config;
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct HedgeConfig {
    /// When the second attempt goes (default: [`HedgeDelay::Percentile`] of
    /// [`DEFAULT_HEDGE_PERCENTILE`]).
    pub delay: HedgeDelay,
    /// The shortest delay, whatever the percentile says (default [`DEFAULT_HEDGE_MIN_DELAY`]).
    pub min_delay: Duration,
    /// Calls of a method seen before its percentile is used (default [`DEFAULT_HEDGE_MIN_SAMPLES`]).
    pub min_samples: u32,
}

impl Default for HedgeConfig {
    fn default() -> HedgeConfig {
        HedgeConfig {
            delay: HedgeDelay::Percentile(DEFAULT_HEDGE_PERCENTILE),
            min_delay: DEFAULT_HEDGE_MIN_DELAY,
            min_samples: DEFAULT_HEDGE_MIN_SAMPLES,
        }
    }
}

/// Buckets of the latency histogram: four per doubling, from 1 µs to about 70 minutes.
const BUCKETS: usize = 128;
/// Counts are halved once a method has this many, so that the percentile follows recent calls.
const DECAY_AT: u32 = 1000;

/// Recent latencies of one method, on a logarithmic scale (a bucket is within 19% of its neighbours).
#[derive(Debug)]
struct Histogram {
    counts: [u32; BUCKETS],
    total: u32,
}

impl Histogram {
    fn new() -> Histogram {
        Histogram {
            counts: [0; BUCKETS],
            total: 0,
        }
    }

    fn bucket(latency: Duration) -> usize {
        let us = latency.as_micros().min(u128::from(u64::MAX)) as u64 + 1;
        let log2 = 63 - us.leading_zeros() as usize;
        // The two bits below the leading one pick the quarter of the doubling.
        let quarter = if log2 >= 2 {
            ((us >> (log2 - 2)) & 3) as usize
        } else {
            0
        };
        (log2 * 4 + quarter).min(BUCKETS - 1)
    }

    /// The upper bound of `bucket`, in µs.
    fn upper(bucket: usize) -> u64 {
        let (log2, quarter) = (bucket / 4, (bucket % 4) as u64);
        let base = 1u64 << log2;
        base + (base / 4) * (quarter + 1)
    }

    fn record(&mut self, latency: Duration) {
        self.counts[Histogram::bucket(latency)] += 1;
        self.total += 1;
        if self.total >= DECAY_AT {
            self.total = 0;
            for c in &mut self.counts {
                *c /= 2;
                self.total += *c;
            }
        }
    }

    fn percentile(&self, p: f64) -> Duration {
        let wanted = (f64::from(self.total) * p / 100.0).ceil().max(1.0) as u32;
        let mut seen = 0;
        for (bucket, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= wanted {
                return Duration::from_micros(Histogram::upper(bucket));
            }
        }
        Duration::from_micros(Histogram::upper(BUCKETS - 1))
    }
}

/// The hedging of one balanced client: its configuration and each method's recent latencies.
#[derive(Debug)]
pub(crate) struct Hedging {
    config: HedgeConfig,
    latencies: Mutex<IdMap<u32, Histogram>>,
}

impl Hedging {
    pub(crate) fn new(config: HedgeConfig) -> Hedging {
        Hedging {
            config,
            latencies: Mutex::new(IdMap::default()),
        }
    }

    /// How long after the first attempt a call of `method` sends its second, if it is hedged now.
    pub(crate) fn delay(&self, method: &MethodInfo) -> Option<Duration> {
        if !method.idempotent {
            return None;
        }
        let delay = match self.config.delay {
            HedgeDelay::After(delay) => delay,
            HedgeDelay::Percentile(p) => {
                let latencies = crate::sync::lock(&self.latencies);
                let histogram = latencies.get(&method.id)?;
                if histogram.total < self.config.min_samples {
                    return None;
                }
                histogram.percentile(p)
            }
        };
        Some(delay.max(self.config.min_delay))
    }

    /// A call of `method` answered after `latency` (its first attempt's, when that one answered).
    pub(crate) fn record(&self, method: &MethodInfo, latency: Duration) {
        if matches!(self.config.delay, HedgeDelay::After(_)) || !method.idempotent {
            return;
        }
        crate::sync::lock(&self.latencies)
            .entry(method.id)
            .or_insert_with(Histogram::new)
            .record(latency);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_bound_their_latencies_within_a_quarter() {
        for us in [0u64, 1, 5, 99, 100, 1_000, 12_345, 1_000_000] {
            let bucket = Histogram::bucket(Duration::from_micros(us));
            let upper = Histogram::upper(bucket);
            assert!(upper > us, "{us} µs in a bucket up to {upper}");
            assert!(
                upper as f64 <= (us + 1) as f64 * 1.25 + 1.0,
                "{us} -> {upper}"
            );
        }
    }

    #[test]
    fn the_95th_percentile_follows_the_slowest_twentieth() {
        let mut h = Histogram::new();
        for i in 0..100u64 {
            let ms = if i < 94 { 1 } else { 50 };
            h.record(Duration::from_millis(ms));
        }
        let p95 = h.percentile(95.0);
        assert!(
            p95 >= Duration::from_millis(50) && p95 < Duration::from_millis(63),
            "{p95:?}"
        );
        let p90 = h.percentile(90.0);
        assert!(p90 < Duration::from_micros(1300), "{p90:?}");
    }

    #[test]
    fn only_idempotent_methods_with_enough_samples_are_hedged() {
        static IDEMPOTENT: MethodInfo = MethodInfo {
            service: "S",
            name: "get",
            id: 1,
            idempotent: true,
        };
        static WRITE: MethodInfo = MethodInfo {
            service: "S",
            name: "put",
            id: 2,
            idempotent: false,
        };
        let hedging = Hedging::new(HedgeConfig::default());
        assert_eq!(hedging.delay(&IDEMPOTENT), None, "no samples yet");
        for _ in 0..DEFAULT_HEDGE_MIN_SAMPLES {
            hedging.record(&IDEMPOTENT, Duration::from_millis(3));
            hedging.record(&WRITE, Duration::from_millis(3));
        }
        let delay = hedging.delay(&IDEMPOTENT).expect("hedged");
        assert!(
            delay >= Duration::from_millis(3) && delay < Duration::from_millis(4),
            "{delay:?}"
        );
        assert_eq!(hedging.delay(&WRITE), None);
        let fixed = Hedging::new(HedgeConfig {
            delay: HedgeDelay::After(Duration::from_micros(10)),
            ..HedgeConfig::default()
        });
        assert_eq!(
            fixed.delay(&IDEMPOTENT),
            Some(DEFAULT_HEDGE_MIN_DELAY),
            "never below the minimum"
        );
    }
}
