//! [`Outliers`]: outlier detection and circuit breaking per instance, as a balanced client applies them. An
//! instance is ejected (no call is sent to it) after [`OutlierConfig::consecutive_failures`] failures in a row,
//! when its failure rate over an [`OutlierConfig::interval`] passes [`OutlierConfig::failure_rate`], when its
//! latency is far above its peers' ([`OutlierConfig::slow_factor`] times their median), or when it stalls:
//! calls are in flight to it and none has come back for [`OutlierConfig::stall_after`] (or the slow factor
//! times its peers' median latency, if that is longer) while its peers answer. An ejection lasts
//! [`OutlierConfig::base_ejection`] times the number of times the instance was ejected (at most
//! [`OutlierConfig::max_ejection`]); then one call at a time probes it (half-open): a success brings it back,
//! a failure ejects it again for longer. At most [`OutlierConfig::max_ejection_percent`] of the instances are
//! ejected at once, but always one may be (as Envoy does), and never the last one standing.
//!
//! A server's pushback ([`crate::RETRY_AFTER`]) holds its instance back for the time it asked, without counting
//! as an ejection.
//!
//! Time is passed in: the detector is a plain state machine, tested on a paused clock. The balanced client
//! closes the connection to an instance it ejects, so that its calls in flight fail over at once (see
//! `client/balanced.rs`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::{Instance, Outcome};

mod config;

use crate::ids::IdMap;
pub use config::{
    DEFAULT_BASE_EJECTION, DEFAULT_CONSECUTIVE_FAILURES, DEFAULT_FAILURE_RATE, DEFAULT_INTERVAL,
    DEFAULT_MAX_EJECTION, DEFAULT_MAX_EJECTION_PERCENT, DEFAULT_MIN_CALLS, DEFAULT_SLOW_FACTOR,
    DEFAULT_STALL_AFTER, OutlierConfig,
};

/// An instance the detector just ejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ejected {
    /// The instance's address.
    pub address: Arc<str>,
    /// Why, for the error of the calls it fails over and for the log.
    pub reason: String,
    /// For how long.
    pub duration: Duration,
}

/// Where an instance stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Health {
    Serving,
    /// No call goes to it until then.
    Ejected {
        until: Instant,
    },
    /// Its ejection ended: one call at a time probes it.
    Probing,
}

#[derive(Debug)]
struct Peer {
    address: Arc<str>,
    health: Health,
    /// Times ejected, decayed by one per healthy interval.
    ejections: u32,
    consecutive_failures: u32,
    /// Calls and failures ended in the current interval.
    calls: u32,
    failures: u32,
    /// Latency in nanoseconds, smoothed (an average over about the last eight calls); 0 before the first.
    latency_ns: u64,
    in_flight: u32,
    /// Since when calls have been in flight with none answered: the start of the oldest unanswered stretch.
    waiting_since: Option<Instant>,
    /// Pushback: no call before this.
    held_until: Option<Instant>,
}

impl Peer {
    fn new(address: &Arc<str>) -> Peer {
        Peer {
            address: Arc::clone(address),
            health: Health::Serving,
            ejections: 0,
            consecutive_failures: 0,
            calls: 0,
            failures: 0,
            latency_ns: 0,
            in_flight: 0,
            waiting_since: None,
            held_until: None,
        }
    }

    /// Whether no new call may go to it now.
    fn excluded(&self, now: Instant) -> bool {
        let held = self.held_until.is_some_and(|until| now < until);
        let ejected = match self.health {
            Health::Serving => false,
            Health::Ejected { until } => now < until,
            // One probe at a time.
            Health::Probing => self.in_flight > 0,
        };
        held || ejected
    }
}

#[derive(Debug)]
struct State {
    /// By address, with a cheap hash (addresses come from the feed, and their number is bounded by it).
    peers: IdMap<Arc<str>, Peer>,
    /// When the current interval ends.
    interval_ends: Option<Instant>,
}

/// The detector: what a balanced client knows of each instance's health.
#[derive(Debug)]
pub(crate) struct Outliers {
    config: OutlierConfig,
    state: Mutex<State>,
    /// Whether any instance is excluded (ejected, probed or held back): read before every pick without the
    /// lock, so that a healthy set costs nothing more.
    any_excluded: AtomicBool,
}

impl Outliers {
    pub(crate) fn new(config: OutlierConfig) -> Outliers {
        Outliers {
            config,
            state: Mutex::new(State {
                peers: IdMap::default(),
                interval_ends: None,
            }),
            any_excluded: AtomicBool::new(false),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        crate::sync::lock(&self.state)
    }

    /// Takes the current instances: known ones keep their state, gone ones are forgotten.
    pub(crate) fn update(&self, instances: &[Instance]) {
        let mut state = self.state();
        let mut next = IdMap::with_capacity_and_hasher(instances.len(), Default::default());
        for instance in instances {
            let peer = state
                .peers
                .remove(&instance.address)
                .unwrap_or_else(|| Peer::new(&instance.address));
            next.insert(Arc::clone(&instance.address), peer);
        }
        state.peers = next;
        self.refresh_excluded(&state, Instant::now());
    }

    /// The instances no call may go to at `now`, if any (most of the time none, read without a lock).
    pub(crate) fn excluded(&self, now: Instant) -> Option<Vec<Arc<str>>> {
        if !self.any_excluded.load(Ordering::Acquire) {
            return None;
        }
        let state = self.state();
        let excluded: Vec<Arc<str>> = state
            .peers
            .iter()
            .filter(|(_, p)| p.excluded(now))
            .map(|(a, _)| Arc::clone(a))
            .collect();
        self.refresh_excluded(&state, now);
        Some(excluded)
    }

    fn refresh_excluded(&self, state: &State, now: Instant) {
        let any = state.peers.values().any(|p| {
            p.excluded(now) || matches!(p.health, Health::Ejected { .. } | Health::Probing)
        });
        self.any_excluded.store(any, Ordering::Release);
    }

    /// A call to `address` starts.
    pub(crate) fn started(&self, address: &str, now: Instant) {
        let mut state = self.state();
        if let Some(peer) = state.peers.get_mut(address) {
            peer.in_flight += 1;
            peer.waiting_since.get_or_insert(now);
            if peer.health == Health::Probing {
                self.any_excluded.store(true, Ordering::Release);
            }
        }
    }

    /// A call to `address` ended so, `latency` after it started; the ejection it caused, if any. The path of a
    /// success (nearly every call) takes the lock once and looks at no other instance.
    pub(crate) fn finished(
        &self,
        address: &str,
        outcome: Outcome,
        latency: Duration,
        now: Instant,
    ) -> Option<Ejected> {
        let mut state = self.state();
        let peer = state.peers.get_mut(address)?;
        peer.in_flight = peer.in_flight.saturating_sub(1);
        if peer.in_flight == 0 {
            peer.waiting_since = None;
        }
        let failed = match outcome {
            Outcome::Success => false,
            Outcome::Failure | Outcome::Unreachable => true,
            // Says nothing of the instance, and is no answer from it: a stalled instance whose calls are
            // cancelled (hedged elsewhere, say) is still stalled.
            Outcome::Cancelled => return None,
        };
        // An answer: the wait for the next one starts now.
        if peer.in_flight > 0 {
            peer.waiting_since = Some(now);
        }
        peer.calls += 1;
        if !failed {
            let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX).max(1);
            peer.latency_ns = match peer.latency_ns {
                0 => ns,
                // An average over about the last eight calls.
                avg => avg - avg / 8 + ns / 8,
            };
            peer.consecutive_failures = 0;
            if peer.health == Health::Probing {
                peer.health = Health::Serving;
                tracing::info!(instance = %peer.address, "outlier detection: the probe succeeded; the instance serves again");
                self.refresh_excluded(&state, now);
            }
            return None;
        }
        peer.failures += 1;
        peer.consecutive_failures += 1;
        // The calls an ejection failed over say nothing more of the instance.
        if !self.config.enabled || matches!(peer.health, Health::Ejected { .. }) {
            return None;
        }
        let reason = if peer.health == Health::Probing {
            "the probe after its ejection failed".to_owned()
        } else if self.config.consecutive_failures > 0
            && peer.consecutive_failures >= self.config.consecutive_failures
        {
            format!("{} failures in a row", peer.consecutive_failures)
        } else {
            return None;
        };
        let key = Arc::clone(&peer.address);
        let total = state.peers.len();
        let ejected_now = count_ejected(&state, now);
        let peer = state.peers.get_mut(address)?;
        let ejected = eject(&self.config, &key, peer, reason, now, total, ejected_now);
        self.refresh_excluded(&state, now);
        ejected
    }

    /// Pushback: no call goes to `address` for `after`.
    pub(crate) fn hold(&self, address: &str, after: Duration, now: Instant) {
        let mut state = self.state();
        if let Some(peer) = state.peers.get_mut(address) {
            let until = now + after;
            peer.held_until = Some(peer.held_until.map_or(until, |u| u.max(until)));
            self.any_excluded.store(true, Ordering::Release);
        }
    }

    /// The periodic checks: ended ejections become probes, stalled instances are ejected, and at the end of
    /// each interval the failure rates and latencies are compared. Returns the ejections it made.
    pub(crate) fn tick(&self, now: Instant) -> Vec<Ejected> {
        let mut ejected = Vec::new();
        let mut state = self.state();
        for (address, peer) in &mut state.peers {
            if let Health::Ejected { until } = peer.health
                && now >= until
            {
                peer.health = Health::Probing;
                tracing::info!(instance = %address, "outlier detection: ejection over; probing the instance");
            }
            if peer.held_until.is_some_and(|until| now >= until) {
                peer.held_until = None;
            }
        }
        if self.config.enabled {
            self.check_stalls(&mut state, now, &mut ejected);
            let interval_over = *state
                .interval_ends
                .get_or_insert(now + self.config.interval)
                <= now;
            if interval_over {
                self.check_interval(&mut state, now, &mut ejected);
                state.interval_ends = Some(now + self.config.interval);
            }
        }
        self.refresh_excluded(&state, now);
        ejected
    }

    /// Ejects instances that hold calls without answering while their peers answer.
    fn check_stalls(&self, state: &mut State, now: Instant, ejected: &mut Vec<Ejected>) {
        let Some(floor) = self.config.stall_after else {
            return;
        };
        let median = median_latency(state, None, 0).unwrap_or_default();
        let factor = self.config.slow_factor;
        // Far longer than the instance usually takes (or its peers, before it has answered), and the floor.
        let limit_of = |p: &Peer| {
            let usual = median.max(Duration::from_nanos(p.latency_ns));
            floor.max(usual.mul_f64(factor))
        };
        let stalled: Vec<(Arc<str>, Duration, Duration)> = state
            .peers
            .iter()
            .filter(|(_, p)| p.health == Health::Serving && p.in_flight > 0)
            .filter_map(|(a, p)| {
                let waited = now.duration_since(p.waiting_since?);
                let limit = limit_of(p);
                (waited >= limit).then(|| (Arc::clone(a), waited, limit))
            })
            .collect();
        for (address, waited, limit) in stalled {
            // Only while some peer answers: if every instance is slow, it is the load, not one instance.
            let peers_answer = state.peers.iter().any(|(a, p)| {
                *a != address
                    && !matches!(p.health, Health::Ejected { .. })
                    && p.waiting_since
                        .is_none_or(|since| now.duration_since(since) < limit)
            });
            if !peers_answer {
                continue;
            }
            let total = state.peers.len();
            let count = count_ejected(state, now);
            let Some(peer) = state.peers.get_mut(&address) else {
                continue;
            };
            let reason = format!(
                "{} calls in flight and no answer for {} ms while its peers answer",
                peer.in_flight,
                waited.as_millis()
            );
            ejected.extend(eject(
                &self.config,
                &address,
                peer,
                reason,
                now,
                total,
                count,
            ));
        }
    }

    /// At the end of an interval: ejects instances whose failure rate or latency stands out, decays the
    /// ejection counts of those that served well, and starts the next interval's counts.
    fn check_interval(&self, state: &mut State, now: Instant, ejected: &mut Vec<Ejected>) {
        let config = &self.config;
        let mut outliers = Vec::new();
        for (address, peer) in &state.peers {
            if peer.health != Health::Serving || peer.calls < config.min_calls {
                continue;
            }
            let rate = f64::from(peer.failures) / f64::from(peer.calls);
            if rate >= config.failure_rate {
                let reason = format!(
                    "{} of its {} calls failed in the last {} s",
                    peer.failures,
                    peer.calls,
                    config.interval.as_secs()
                );
                outliers.push((Arc::clone(address), reason));
                continue;
            }
            let mine = (peer.latency_ns > 0).then(|| Duration::from_nanos(peer.latency_ns));
            if let (Some(mine), Some(median)) =
                (mine, median_latency(state, Some(address), config.min_calls))
                && mine > median.mul_f64(config.slow_factor)
            {
                let reason = format!(
                    "latency {} us against its peers' median {} us",
                    mine.as_micros(),
                    median.as_micros()
                );
                outliers.push((Arc::clone(address), reason));
            }
        }
        for (address, reason) in outliers {
            let total = state.peers.len();
            let count = count_ejected(state, now);
            if let Some(peer) = state.peers.get_mut(&address) {
                ejected.extend(eject(config, &address, peer, reason, now, total, count));
            }
        }
        for peer in state.peers.values_mut() {
            if peer.health == Health::Serving && peer.failures == 0 {
                peer.ejections = peer.ejections.saturating_sub(1);
            }
            peer.calls = 0;
            peer.failures = 0;
        }
    }
}

/// Instances ejected or probing (a probe counts: it is not yet trusted).
fn count_ejected(state: &State, now: Instant) -> usize {
    state
        .peers
        .values()
        .filter(|p| match p.health {
            Health::Ejected { until } => now < until,
            Health::Probing => true,
            Health::Serving => false,
        })
        .count()
}

/// The median of the smoothed latencies of the instances other than `except` with at least `min_calls` calls
/// this interval; `None` with fewer than two such instances.
fn median_latency(state: &State, except: Option<&Arc<str>>, min_calls: u32) -> Option<Duration> {
    let mut latencies: Vec<Duration> = state
        .peers
        .iter()
        .filter(|(a, p)| Some(*a) != except && p.calls >= min_calls && p.health == Health::Serving)
        .filter(|(_, p)| p.latency_ns > 0)
        .map(|(_, p)| Duration::from_nanos(p.latency_ns))
        .collect();
    if latencies.len() < 2 {
        return None;
    }
    latencies.sort_unstable();
    Some(latencies[latencies.len() / 2])
}

/// Ejects `peer` for `reason`, unless too many instances are ejected already (`ejected` of `total`).
fn eject(
    config: &OutlierConfig,
    address: &Arc<str>,
    peer: &mut Peer,
    reason: String,
    now: Instant,
    total: usize,
    ejected: usize,
) -> Option<Ejected> {
    // A probe that fails was counted among the ejected: it does not need room of its own.
    let already = usize::from(peer.health == Health::Probing);
    let allowed = (total * config.max_ejection_percent as usize / 100).max(1);
    if ejected - already >= allowed || total - (ejected - already) <= 1 {
        tracing::warn!(
            instance = %address,
            %reason,
            ejected,
            total,
            "outlier detection: not ejected, too many instances are ejected already"
        );
        return None;
    }
    peer.ejections = peer.ejections.saturating_add(1);
    let duration = config
        .base_ejection
        .saturating_mul(peer.ejections)
        .min(config.max_ejection);
    peer.health = Health::Ejected {
        until: now + duration,
    };
    peer.consecutive_failures = 0;
    tracing::warn!(
        instance = %address,
        %reason,
        duration_ms = duration.as_millis() as u64,
        "outlier detection: instance ejected"
    );
    Some(Ejected {
        address: Arc::clone(address),
        reason,
        duration,
    })
}

#[cfg(test)]
mod tests;
