//! [`PeakEwma`], power of two choices over peak EWMA, the cost Finagle and Linkerd balance by: each instance
//! keeps a moving average of its latency that decays with time and jumps at once to any slower answer (the
//! "peak"), and a count of its calls in flight; its cost is `latency × (in_flight + 1) / weight`. Each pick
//! draws two distinct eligible instances at random and takes the cheaper, so a slow or busy instance loses
//! nearly every comparison at once and wins them back only as the others' costs rise or its own average decays.
//!
//! The average: an answer of latency `x`, `t` after the instance's last one, takes the average `m` to `x` if
//! `x` is above `m·w` (the peak), else to `m·w + x·(1 − w)`, with `w = e^(−t / decay)`. Between answers the
//! average decays towards zero as `m·w`, so an instance left idle because it was slow is tried again once its
//! average has fallen to its peers' (about `decay × ln(ratio)` later: 23 s for ten times slower at 10 s), and
//! its answer then sets it right.
//!
//! An instance not heard from yet is priced at the mean of the averages of those that have been (at
//! [`PeakEwma::with_initial_latency`] while none has): a new instance gets about an average instance's share
//! at once, and its count of calls in flight keeps it from a flood before its first answer. A failed call
//! counts as an answer [`PeakEwma::with_failure_penalty`] times slower than the instance's average (or its own
//! latency, if longer): failures are often fast, and must not make a failing instance look attractive. An
//! unreachable instance is skipped for [`PeakEwma::with_down_for`], and tried only as a last resort meanwhile;
//! a cancelled call only ends its count in flight. Weights are capacities: an instance of weight 2 costs half
//! as much as one of weight 1 at the same latency and load, so under load it holds about twice the calls in
//! flight (idle, at equal latency, it wins every comparison with a lighter one).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::down::{DEFAULT_DOWN_FOR, Down};
use super::{CallInfo, Instance, Outcome, Policy, is_address};

/// Default of [`PeakEwma::with_decay`]: 10 s, as Finagle and Linkerd use.
pub const DEFAULT_DECAY: Duration = Duration::from_secs(10);

/// Default of [`PeakEwma::with_initial_latency`]: 10 ms.
pub const DEFAULT_INITIAL_LATENCY: Duration = Duration::from_millis(10);

/// Default of [`PeakEwma::with_failure_penalty`]: 2 (each failure in a row doubles the instance's average).
pub const DEFAULT_FAILURE_PENALTY: f64 = 2.0;

/// The least [`PeakEwma::with_decay`] takes: 1 ms.
const MIN_DECAY: Duration = Duration::from_millis(1);

/// An average below this (1 µs) counts as this in a cost, so that calls in flight still weigh when latencies
/// round to nothing (an answer measured on a paused clock takes no time).
const FLOOR_NS: f64 = 1_000.0;

/// Failures raise an average to 60 s at most, so that a long run of them is forgotten in minutes, not never.
const CEILING_NS: f64 = 60e9;

/// Power of two choices over peak-EWMA latency and calls in flight, as a [`Policy`].
///
/// ```
/// use std::time::Duration;
/// use rpc_core::balance::{CallInfo, Instance, Outcome, PeakEwma, Policy};
/// # #[rpc_core::service] trait Svc { async fn m(&self); }
/// let policy = PeakEwma::default().with_decay(Duration::from_secs(5));
/// policy.update(&[Instance::new("a", 1), Instance::new("b", 1)]);
/// // `a` answered in 100 ms, `b` in 1 ms: `b` takes the calls while `a`'s average stays the higher.
/// policy.report("a", Outcome::Success, Duration::from_millis(100), tokio::time::Instant::now());
/// policy.report("b", Outcome::Success, Duration::from_millis(1), tokio::time::Instant::now());
/// let metadata = rpc_core::Metadata::new();
/// let call = CallInfo::new(&SvcClient::METHODS[0], &metadata);
/// for _ in 0..10 {
///     let picked = policy.pick(&call, &[], tokio::time::Instant::now()).unwrap();
///     assert_eq!(&*picked, "b");
///     policy.report(&picked, Outcome::Success, Duration::from_millis(1), tokio::time::Instant::now());
/// }
/// assert_eq!(policy.in_flight("b"), Some(0));
/// ```
#[derive(Debug)]
pub struct PeakEwma {
    /// How fast the average forgets: an answer `decay` old weighs `1/e` of its first weight.
    decay: Duration,
    /// The latency of instances not heard from while no instance has been.
    initial_latency: Duration,
    /// How much slower than the average a failure counts (at least 1).
    failure_penalty: f64,
    /// How long an unreachable instance is skipped.
    down_for: Duration,
    state: Mutex<Vec<Peer>>,
}

impl Default for PeakEwma {
    fn default() -> PeakEwma {
        PeakEwma {
            decay: DEFAULT_DECAY,
            initial_latency: DEFAULT_INITIAL_LATENCY,
            failure_penalty: DEFAULT_FAILURE_PENALTY,
            down_for: DEFAULT_DOWN_FOR,
            state: Mutex::new(Vec::new()),
        }
    }
}

impl PeakEwma {
    /// How fast the average forgets (default [`DEFAULT_DECAY`], at least 1 ms): an answer `decay` old weighs
    /// `1/e` of its first weight, and an idle instance's average falls to `1/e` of itself in `decay`.
    pub fn with_decay(self, decay: Duration) -> PeakEwma {
        PeakEwma {
            decay: decay.max(MIN_DECAY),
            ..self
        }
    }

    /// The latency of an instance not heard from yet while no instance has been (default
    /// [`DEFAULT_INITIAL_LATENCY`]); once one has, a new instance is priced at the mean of the averages.
    pub fn with_initial_latency(self, initial_latency: Duration) -> PeakEwma {
        PeakEwma {
            initial_latency,
            ..self
        }
    }

    /// How many times slower than its average a failed call counts (default [`DEFAULT_FAILURE_PENALTY`], at
    /// least 1); a failure that took longer than that counts as its own latency.
    pub fn with_failure_penalty(self, failure_penalty: f64) -> PeakEwma {
        PeakEwma {
            failure_penalty: failure_penalty.max(1.0),
            ..self
        }
    }

    /// How long an unreachable instance is skipped (default [`DEFAULT_DOWN_FOR`]).
    pub fn with_down_for(self, down_for: Duration) -> PeakEwma {
        PeakEwma { down_for, ..self }
    }

    /// The calls to `address` in flight (picked, not yet reported), if it is known.
    pub fn in_flight(&self, address: &str) -> Option<u32> {
        self.state()
            .iter()
            .find(|p| &*p.address == address)
            .map(|p| p.in_flight)
    }

    /// The latency average of `address` now, if it is known and has answered.
    pub fn latency_estimate(&self, address: &str) -> Option<Duration> {
        let now = Instant::now();
        let peers = self.state();
        let peer = peers.iter().find(|p| &*p.address == address)?;
        let nanos = peer.average(now, self.decay_ns())?;
        Some(Duration::from_nanos(nanos.round() as u64))
    }

    fn decay_ns(&self) -> f64 {
        nanos(self.decay)
    }

    fn state(&self) -> MutexGuard<'_, Vec<Peer>> {
        crate::sync::lock(&self.state)
    }
}

impl Policy for PeakEwma {
    fn update(&self, instances: &[Instance]) {
        let now = Instant::now();
        let mut peers = self.state();
        let mut next = Vec::with_capacity(instances.len());
        for instance in instances {
            match peers.iter().position(|p| p.address == instance.address) {
                Some(known) => {
                    let mut peer = peers.swap_remove(known);
                    peer.weight = instance.weight;
                    next.push(peer);
                }
                None => next.push(Peer {
                    address: Arc::clone(&instance.address),
                    weight: instance.weight,
                    average: None,
                    stamp: now,
                    in_flight: 0,
                    down: Down::default(),
                }),
            }
        }
        *peers = next;
    }

    fn pick(&self, _call: &CallInfo<'_>, skip: &[Arc<str>], now: Instant) -> Option<Arc<str>> {
        let mut peers = self.state();
        let usable = |p: &Peer, allow_down: bool| {
            p.weight > 0
                && !skip.iter().any(|s| **s == *p.address)
                && (allow_down || !p.down.at(now))
        };
        // How many are eligible, and the first of them, in one pass (one instance is the common case).
        let eligible = |allow_down: bool| {
            peers
                .iter()
                .enumerate()
                .filter(|(_, p)| usable(p, allow_down))
                .fold((0, None), |(count, first), (i, _)| {
                    (count + 1, first.or(Some(i)))
                })
        };
        let mut allow_down = false;
        let (mut count, mut only) = eligible(false);
        if count == 0 {
            allow_down = true;
            (count, only) = eligible(true);
        }
        let nth = |n: usize| {
            peers
                .iter()
                .enumerate()
                .filter(|(_, p)| usable(p, allow_down))
                .nth(n)
                .map(|(i, _)| i)
        };
        let chosen = match count {
            0 => return None,
            1 => only?,
            _ => {
                let decay = self.decay_ns();
                let initial = nanos(self.initial_latency);
                let first = crate::random::below(count);
                let mut second = crate::random::below(count - 1);
                if second >= first {
                    second += 1;
                }
                let (first, second) = (nth(first)?, nth(second)?);
                // Computed once, and only if a candidate has not answered yet.
                let mut unheard = None;
                let mut cost = |i: usize| {
                    let peer: &Peer = &peers[i];
                    let latency = peer.average(now, decay).unwrap_or_else(|| {
                        *unheard.get_or_insert_with(|| mean_average(&peers, now, decay, initial))
                    });
                    latency.max(FLOOR_NS) * f64::from(peer.in_flight.saturating_add(1))
                        / f64::from(peer.weight)
                };
                if cost(second) < cost(first) {
                    second
                } else {
                    first
                }
            }
        };
        let peer = &mut peers[chosen];
        peer.in_flight = peer.in_flight.saturating_add(1);
        Some(Arc::clone(&peer.address))
    }

    fn report(&self, address: &str, outcome: Outcome, latency: Duration, now: Instant) {
        let decay = self.decay_ns();
        let mut peers = self.state();
        let Some(i) = peers.iter().position(|p| is_address(&p.address, address)) else {
            return;
        };
        let sample = match outcome {
            Outcome::Failure => {
                let initial = nanos(self.initial_latency);
                let average = peers[i]
                    .average(now, decay)
                    .unwrap_or_else(|| mean_average(&peers, now, decay, initial));
                nanos(latency).max(average.max(FLOOR_NS) * self.failure_penalty)
            }
            _ => nanos(latency),
        };
        let peer = &mut peers[i];
        peer.in_flight = peer.in_flight.saturating_sub(1);
        match outcome {
            Outcome::Cancelled => {}
            Outcome::Unreachable => {
                if peer.down.unreachable(now, self.down_for) {
                    tracing::debug!(
                        address,
                        down_for = ?self.down_for,
                        "peak ewma: instance unreachable, skipped for now"
                    );
                }
            }
            Outcome::Success | Outcome::Failure => {
                if outcome == Outcome::Success && peer.down.answered() {
                    tracing::debug!(address, "peak ewma: instance answered, no longer skipped");
                }
                peer.observe(sample, now, decay);
            }
        }
    }
}

/// What the policy knows of one instance.
#[derive(Debug)]
struct Peer {
    address: Arc<str>,
    weight: u32,
    /// The latency average in nanoseconds as of `stamp`; `None` before the first answer.
    average: Option<f64>,
    /// When `average` was last set.
    stamp: Instant,
    in_flight: u32,
    down: Down,
}

impl Peer {
    /// The average at `now`, decayed since its last answer; `decay` in nanoseconds.
    fn average(&self, now: Instant, decay: f64) -> Option<f64> {
        self.average
            .map(|average| average * kept(now.saturating_duration_since(self.stamp), decay))
    }

    /// Takes an answer of `sample` nanoseconds at `now`: the new peak, or blended in.
    fn observe(&mut self, sample: f64, now: Instant, decay: f64) {
        let sample = sample.min(CEILING_NS);
        self.average = Some(match self.average {
            None => sample,
            Some(average) => {
                let w = kept(now.saturating_duration_since(self.stamp), decay);
                let decayed = average * w;
                if sample > decayed {
                    sample
                } else {
                    decayed + sample * (1.0 - w)
                }
            }
        });
        self.stamp = now;
    }
}

fn nanos(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e9
}

/// The share of an average kept after `elapsed`: `e^(−elapsed / decay)`, `decay` in nanoseconds.
fn kept(elapsed: Duration, decay: f64) -> f64 {
    let x = nanos(elapsed) / decay;
    if x < 1e-3 {
        // Calls a fraction of the decay apart (nearly all of them): the series to x², off by under x³/6
        // (2e-10), at a fraction of `exp`'s cost.
        1.0 - x + x * x / 2.0
    } else {
        (-x).exp()
    }
}

/// The mean average at `now` of the instances that have answered, or `initial` if none has.
fn mean_average(peers: &[Peer], now: Instant, decay: f64, initial: f64) -> f64 {
    let (sum, count) = peers
        .iter()
        .filter_map(|p| p.average(now, decay))
        .fold((0.0, 0u32), |(sum, count), average| {
            (sum + average, count + 1)
        });
    if count == 0 {
        initial
    } else {
        sum / f64::from(count)
    }
}

#[cfg(test)]
mod tests;
