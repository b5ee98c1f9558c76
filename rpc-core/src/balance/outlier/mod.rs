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
//! Time is passed in: the detector is a plain state machine, tested on a paused clock. What it counts on every
//! call is in `live.rs` ([`Live`], atomics the balanced client keeps beside each connection), so that the start
//! and the success of a call take no lock; the rest of an instance's state is here, under the lock. The
//! balanced client closes the connection to an instance it ejects, so that its calls in flight fail over at
//! once (see `client/balanced.rs`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::{Instance, Outcome};

mod config;
mod live;

use crate::ids::IdMap;
pub use config::{
    DEFAULT_BASE_EJECTION, DEFAULT_CONSECUTIVE_FAILURES, DEFAULT_FAILURE_RATE, DEFAULT_INTERVAL,
    DEFAULT_MAX_EJECTION, DEFAULT_MAX_EJECTION_PERCENT, DEFAULT_MIN_CALLS, DEFAULT_SLOW_FACTOR,
    DEFAULT_STALL_AFTER, OutlierConfig,
};
use live::Epoch;
pub(crate) use live::Live;

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
    /// Pushback: no call before this.
    held_until: Option<Instant>,
    /// What every call counts.
    live: Arc<Live>,
}

impl Peer {
    fn new(address: &Arc<str>) -> Peer {
        Peer {
            address: Arc::clone(address),
            health: Health::Serving,
            ejections: 0,
            held_until: None,
            live: Arc::default(),
        }
    }

    fn latency_ns(&self) -> u64 {
        self.live.latency_ns()
    }

    /// Whether no new call may go to it now.
    fn excluded(&self, now: Instant) -> bool {
        let held = self.held_until.is_some_and(|until| now < until);
        let ejected = match self.health {
            Health::Serving => false,
            Health::Ejected { until } => now < until,
            // One probe at a time.
            Health::Probing => self.live.in_flight() > 0,
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
    /// How [`Live`] keeps instants.
    epoch: Epoch,
    state: Mutex<State>,
    /// Whether any instance is excluded (ejected, probed or held back): read before every pick without the
    /// lock, so that a healthy set costs nothing more.
    any_excluded: AtomicBool,
}

impl Outliers {
    pub(crate) fn new(config: OutlierConfig) -> Outliers {
        Outliers {
            config,
            epoch: Epoch::new(Instant::now()),
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

    /// The counts of `address`, for [`Outliers::started_on`] and [`Outliers::finished_on`], if it is known.
    pub(crate) fn live(&self, address: &str) -> Option<Arc<Live>> {
        self.state().peers.get(address).map(|p| Arc::clone(&p.live))
    }

    /// A call to `address` starts.
    #[cfg(test)]
    pub(crate) fn started(&self, address: &str, now: Instant) {
        if let Some(live) = self.live(address) {
            self.started_on(&live, now);
        }
    }

    /// A call ended: see [`Outliers::finished_on`].
    #[cfg(test)]
    pub(crate) fn finished(
        &self,
        address: &str,
        outcome: Outcome,
        latency: Duration,
        now: Instant,
    ) -> Option<Ejected> {
        let live = self.live(address)?;
        self.finished_on(&live, address, outcome, latency, now)
    }

    /// A call to the instance of `live` starts at `now`.
    pub(crate) fn started_on(&self, live: &Live, now: Instant) {
        live.started(|| self.epoch.encode(now));
        if live.probing.load(Ordering::Acquire) {
            self.any_excluded.store(true, Ordering::Release);
        }
    }

    /// A call to `address` (counted in `live`) ended so, `latency` after it started; the ejection it caused, if
    /// any. A success (nearly every call) takes no lock, unless it is a probe's.
    pub(crate) fn finished_on(
        &self,
        live: &Live,
        address: &str,
        outcome: Outcome,
        latency: Duration,
        now: Instant,
    ) -> Option<Ejected> {
        // A cancelled call says nothing of the instance, and is no answer from it: a stalled instance whose
        // calls are cancelled (hedged elsewhere, say) is still stalled.
        live.ended(|| self.epoch.encode(now), outcome != Outcome::Cancelled);
        match outcome {
            Outcome::Cancelled => return None,
            Outcome::Success => {
                live.succeeded(latency);
                if live.probing.load(Ordering::Acquire) {
                    self.probe_succeeded(live, now);
                }
                return None;
            }
            Outcome::Failure | Outcome::Unreachable => {}
        }
        let consecutive = live.failed();
        if !self.config.enabled {
            return None;
        }
        let mut state = self.state();
        let peer = state.peers.get(address)?;
        // The calls an ejection failed over say nothing more of the instance; counts of an instance that left
        // and came back are not its own.
        if !std::ptr::eq(&*peer.live, live) || matches!(peer.health, Health::Ejected { .. }) {
            return None;
        }
        let reason = if peer.health == Health::Probing {
            "the probe after its ejection failed".to_owned()
        } else if self.config.consecutive_failures > 0
            && consecutive >= self.config.consecutive_failures
        {
            format!("{consecutive} failures in a row")
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

    /// A probe's success brings its instance back.
    fn probe_succeeded(&self, live: &Live, now: Instant) {
        let mut state = self.state();
        let Some(peer) = state
            .peers
            .values_mut()
            .find(|p| std::ptr::eq(&*p.live, live))
        else {
            return;
        };
        if peer.health == Health::Probing {
            peer.health = Health::Serving;
            live.probing.store(false, Ordering::Release);
            tracing::info!(instance = %peer.address, "outlier detection: the probe succeeded; the instance serves again");
            self.refresh_excluded(&state, now);
        }
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
                peer.live.probing.store(true, Ordering::Release);
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
            let usual = median.max(Duration::from_nanos(p.latency_ns()));
            floor.max(usual.mul_f64(factor))
        };
        let epoch = self.epoch;
        let waiting_since = |p: &Peer| epoch.decode(p.live.waiting_since.load(Ordering::Relaxed));
        let stalled: Vec<(Arc<str>, Duration, Duration)> = state
            .peers
            .iter()
            .filter(|(_, p)| p.health == Health::Serving && p.live.in_flight() > 0)
            .filter_map(|(a, p)| {
                let waited = now.saturating_duration_since(waiting_since(p)?);
                let limit = limit_of(p);
                (waited >= limit).then(|| (Arc::clone(a), waited, limit))
            })
            .collect();
        for (address, waited, limit) in stalled {
            // Only while some peer answers: if every instance is slow, it is the load, not one instance.
            let peers_answer = state.peers.iter().any(|(a, p)| {
                *a != address
                    && !matches!(p.health, Health::Ejected { .. })
                    && waiting_since(p)
                        .is_none_or(|since| now.saturating_duration_since(since) < limit)
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
                peer.live.in_flight(),
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
            let (calls, failures) = (
                peer.live.calls(),
                peer.live.failures.load(Ordering::Relaxed),
            );
            if peer.health != Health::Serving || calls < config.min_calls {
                continue;
            }
            let rate = f64::from(failures) / f64::from(calls);
            if rate >= config.failure_rate {
                let reason = format!(
                    "{failures} of its {calls} calls failed in the last {} s",
                    config.interval.as_secs()
                );
                outliers.push((Arc::clone(address), reason));
                continue;
            }
            let mine = (peer.latency_ns() > 0).then(|| Duration::from_nanos(peer.latency_ns()));
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
            let failures = peer.live.failures.swap(0, Ordering::Relaxed);
            peer.live.calls.store(0, Ordering::Relaxed);
            if peer.health == Health::Serving && failures == 0 {
                peer.ejections = peer.ejections.saturating_sub(1);
            }
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
        .filter(|(a, p)| {
            Some(*a) != except && p.live.calls() >= min_calls && p.health == Health::Serving
        })
        .filter(|(_, p)| p.latency_ns() > 0)
        .map(|(_, p)| Duration::from_nanos(p.latency_ns()))
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
    peer.live.probing.store(false, Ordering::Release);
    peer.live.consecutive_failures.store(0, Ordering::Relaxed);
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
