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
use crate::ids::IdMap;

/// Default of [`OutlierConfig::consecutive_failures`]: 5, as Envoy's `consecutive_5xx`.
pub const DEFAULT_CONSECUTIVE_FAILURES: u32 = 5;
/// Default of [`OutlierConfig::interval`]: 10 s, as Envoy's.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// Default of [`OutlierConfig::failure_rate`]: 0.5. Envoy's failure-percentage check ejects at 85% and is off
/// by default; half the calls failing while the peers answer is already an instance to route around.
pub const DEFAULT_FAILURE_RATE: f64 = 0.5;
/// Default of [`OutlierConfig::min_calls`]: 20 calls in an interval before its failure rate or latency counts.
pub const DEFAULT_MIN_CALLS: u32 = 20;
/// Default of [`OutlierConfig::slow_factor`]: 10 times the peers' median latency.
pub const DEFAULT_SLOW_FACTOR: f64 = 10.0;
/// Default of [`OutlierConfig::stall_after`]: 200 ms without an answer while calls are in flight.
pub const DEFAULT_STALL_AFTER: Duration = Duration::from_millis(200);
/// Default of [`OutlierConfig::base_ejection`]: 30 s, as Envoy's.
pub const DEFAULT_BASE_EJECTION: Duration = Duration::from_secs(30);
/// Default of [`OutlierConfig::max_ejection`]: 300 s, as Envoy's.
pub const DEFAULT_MAX_EJECTION: Duration = Duration::from_secs(300);
/// Default of [`OutlierConfig::max_ejection_percent`]: 10%, as Envoy's (and always at least one instance).
pub const DEFAULT_MAX_EJECTION_PERCENT: u32 = 10;

/// How a balanced client tells outliers apart. `enabled: false` turns detection off (pushback still holds an
/// instance back).
#[derive(Clone, Debug, PartialEq)]
pub struct OutlierConfig {
    /// Whether instances are ejected at all.
    pub enabled: bool,
    /// Failures in a row that eject an instance (default [`DEFAULT_CONSECUTIVE_FAILURES`]; 0: never).
    pub consecutive_failures: u32,
    /// The window of the failure-rate and latency checks, and the pace at which an instance's ejection count
    /// decays while it serves well (default [`DEFAULT_INTERVAL`]).
    pub interval: Duration,
    /// The share of failed calls over an interval that ejects (default [`DEFAULT_FAILURE_RATE`]; above 1:
    /// never).
    pub failure_rate: f64,
    /// Calls an instance must have ended in the interval for its failure rate and latency to count (default
    /// [`DEFAULT_MIN_CALLS`]).
    pub min_calls: u32,
    /// How far above its peers' median latency an instance's latency must be to eject it (default
    /// [`DEFAULT_SLOW_FACTOR`]); the latency check needs three instances with enough calls.
    pub slow_factor: f64,
    /// How long an instance may hold calls without answering any while its peers answer, before it is taken
    /// for stalled (default [`DEFAULT_STALL_AFTER`]; the slow factor times its own usual latency, or its
    /// peers' median, if that is longer, so that an instance that is merely slow is left to the latency check;
    /// `None`: no stall check, for services whose calls may legitimately take long, such as long polls).
    pub stall_after: Option<Duration>,
    /// The first ejection's length, multiplied by the number of ejections (default
    /// [`DEFAULT_BASE_EJECTION`]).
    pub base_ejection: Duration,
    /// The longest ejection (default [`DEFAULT_MAX_EJECTION`]).
    pub max_ejection: Duration,
    /// Most instances ejected at once, in percent of them (default [`DEFAULT_MAX_EJECTION_PERCENT`]); one may
    /// always be ejected, as long as another remains.
    pub max_ejection_percent: u32,
}

impl Default for OutlierConfig {
    fn default() -> OutlierConfig {
        OutlierConfig {
            enabled: true,
            consecutive_failures: DEFAULT_CONSECUTIVE_FAILURES,
            interval: DEFAULT_INTERVAL,
            failure_rate: DEFAULT_FAILURE_RATE,
            min_calls: DEFAULT_MIN_CALLS,
            slow_factor: DEFAULT_SLOW_FACTOR,
            stall_after: Some(DEFAULT_STALL_AFTER),
            base_ejection: DEFAULT_BASE_EJECTION,
            max_ejection: DEFAULT_MAX_EJECTION,
            max_ejection_percent: DEFAULT_MAX_EJECTION_PERCENT,
        }
    }
}

impl OutlierConfig {
    /// No ejections (pushback still holds instances back).
    pub fn disabled() -> OutlierConfig {
        OutlierConfig {
            enabled: false,
            ..OutlierConfig::default()
        }
    }
}

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

    /// The instances no call may go to now, if any (most of the time none, read without a lock).
    pub(crate) fn excluded(&self) -> Option<Vec<Arc<str>>> {
        if !self.any_excluded.load(Ordering::Acquire) {
            return None;
        }
        let now = Instant::now();
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
mod tests {
    use super::*;

    fn detector(n: usize) -> Outliers {
        let o = Outliers::new(OutlierConfig::default());
        let instances: Vec<Instance> = (0..n).map(|i| Instance::new(&format!("i{i}"), 1)).collect();
        o.update(&instances);
        o
    }

    fn call(o: &Outliers, address: &str, outcome: Outcome, ms: u64) -> Option<Ejected> {
        let now = Instant::now();
        o.started(address, now);
        o.finished(address, outcome, Duration::from_millis(ms), now)
    }

    fn excluded(o: &Outliers) -> Vec<String> {
        let mut v: Vec<String> = o
            .excluded()
            .unwrap_or_default()
            .iter()
            .map(|a| a.to_string())
            .collect();
        v.sort();
        v
    }

    #[tokio::test(start_paused = true)]
    async fn five_failures_in_a_row_eject_and_a_success_between_resets_the_count() {
        let o = detector(3);
        for _ in 0..4 {
            assert_eq!(call(&o, "i0", Outcome::Failure, 1), None);
        }
        assert_eq!(call(&o, "i0", Outcome::Success, 1), None);
        for _ in 0..4 {
            assert_eq!(call(&o, "i0", Outcome::Failure, 1), None);
        }
        let ejected = call(&o, "i0", Outcome::Failure, 1).expect("the fifth in a row ejects");
        assert_eq!(ejected.reason, "5 failures in a row");
        assert_eq!(ejected.duration, DEFAULT_BASE_EJECTION);
        assert_eq!(excluded(&o), ["i0"]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_ejection_ends_in_a_probe_a_failed_probe_ejects_for_longer_and_a_success_restores() {
        let o = detector(3);
        for _ in 0..5 {
            call(&o, "i1", Outcome::Unreachable, 1);
        }
        assert_eq!(excluded(&o), ["i1"]);
        tokio::time::advance(DEFAULT_BASE_EJECTION).await;
        assert!(o.tick(Instant::now()).is_empty());
        assert!(excluded(&o).is_empty(), "the probe may go");
        o.started("i1", Instant::now());
        assert_eq!(excluded(&o), ["i1"], "one probe at a time");
        let again = o
            .finished(
                "i1",
                Outcome::Failure,
                Duration::from_millis(1),
                Instant::now(),
            )
            .expect("a failed probe ejects at once");
        assert_eq!(
            again.duration,
            DEFAULT_BASE_EJECTION * 2,
            "longer each time"
        );
        tokio::time::advance(DEFAULT_BASE_EJECTION * 2).await;
        o.tick(Instant::now());
        assert_eq!(call(&o, "i1", Outcome::Success, 1), None);
        assert!(
            excluded(&o).is_empty(),
            "a good probe restores the instance"
        );
        assert_eq!(
            call(&o, "i1", Outcome::Failure, 1),
            None,
            "and its count starts over"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn at_most_ten_percent_are_ejected_but_always_one_and_never_the_last() {
        let o = detector(3);
        for _ in 0..5 {
            call(&o, "i0", Outcome::Failure, 1);
        }
        for _ in 0..10 {
            assert_eq!(
                call(&o, "i1", Outcome::Failure, 1),
                None,
                "one of 3 is the most"
            );
        }
        assert_eq!(excluded(&o), ["i0"]);

        let o = detector(20);
        for i in 0..3 {
            for _ in 0..5 {
                call(&o, &format!("i{i}"), Outcome::Failure, 1);
            }
        }
        assert_eq!(excluded(&o), ["i0", "i1"], "10% of 20");

        let o = detector(1);
        for _ in 0..10 {
            assert_eq!(
                call(&o, "i0", Outcome::Failure, 1),
                None,
                "the only instance stays"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_instance_that_holds_calls_without_answering_while_its_peers_answer_is_ejected() {
        let o = detector(4);
        let start = Instant::now();
        o.started("i3", start);
        o.started("i3", start);
        for _ in 0..3 {
            tokio::time::advance(Duration::from_millis(80)).await;
            for i in 0..3 {
                call(&o, &format!("i{i}"), Outcome::Success, 1);
            }
            let now = Instant::now();
            let ejected = o.tick(now);
            if now.duration_since(start) < DEFAULT_STALL_AFTER {
                assert!(ejected.is_empty(), "{ejected:?}");
            } else {
                assert_eq!(ejected.len(), 1);
                assert_eq!(&*ejected[0].address, "i3");
                assert!(
                    ejected[0]
                        .reason
                        .starts_with("2 calls in flight and no answer for 240 ms")
                );
            }
        }
        assert_eq!(excluded(&o), ["i3"]);
    }

    #[tokio::test(start_paused = true)]
    async fn calls_cancelled_on_a_stalled_instance_do_not_hide_its_stall() {
        let o = detector(3);
        let start = Instant::now();
        for _ in 0..3 {
            o.started("i0", start);
        }
        tokio::time::advance(Duration::from_millis(120)).await;
        // One of its calls is hedged elsewhere and cancelled here: no answer came.
        o.finished(
            "i0",
            Outcome::Cancelled,
            Duration::from_millis(60),
            Instant::now(),
        );
        call(&o, "i1", Outcome::Success, 1);
        tokio::time::advance(Duration::from_millis(80)).await;
        let ejected = o.tick(Instant::now());
        assert_eq!(ejected.len(), 1, "stalled since the first call, 200 ms ago");
        assert!(
            ejected[0]
                .reason
                .starts_with("2 calls in flight and no answer for 200 ms"),
            "{}",
            ejected[0].reason
        );
    }

    /// An instance that always takes 300 ms is slow, not stalled: the stall check waits for ten times its
    /// own usual latency, and leaves it to the latency check of the interval.
    #[tokio::test(start_paused = true)]
    async fn an_instance_slow_by_nature_is_not_taken_for_stalled() {
        let o = detector(3);
        call(&o, "i0", Outcome::Success, 300);
        o.started("i0", Instant::now());
        for _ in 0..10 {
            tokio::time::advance(Duration::from_millis(100)).await;
            call(&o, "i1", Outcome::Success, 1);
            assert!(
                o.tick(Instant::now()).is_empty(),
                "ejected after {:?}",
                Duration::from_millis(100)
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn when_every_instance_is_slow_nobody_is_taken_for_stalled() {
        let o = detector(3);
        for i in 0..3 {
            o.started(&format!("i{i}"), Instant::now());
        }
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(o.tick(Instant::now()).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_high_failure_rate_or_a_latency_far_above_the_peers_ejects_at_the_intervals_end() {
        let o = detector(4);
        o.tick(Instant::now());
        for round in 0..40 {
            // i0 fails every other call (never 5 in a row); i1 answers in 50 ms against 2 ms.
            let outcome = if round % 2 == 0 {
                Outcome::Failure
            } else {
                Outcome::Success
            };
            call(&o, "i0", outcome, 2);
            call(&o, "i1", Outcome::Success, 50);
            call(&o, "i2", Outcome::Success, 2);
            call(&o, "i3", Outcome::Success, 2);
        }
        assert!(
            o.tick(Instant::now()).is_empty(),
            "not before the interval ends"
        );
        tokio::time::advance(DEFAULT_INTERVAL).await;
        let mut ejected: Vec<(String, String)> = o
            .tick(Instant::now())
            .into_iter()
            .map(|e| (e.address.to_string(), e.reason))
            .collect();
        ejected.sort();
        // 10% of 4 is one: the first found is ejected, the other refused; both were found.
        assert_eq!(ejected.len(), 1, "{ejected:?}");
        let (address, reason) = &ejected[0];
        match address.as_str() {
            "i0" => assert_eq!(reason, "20 of its 40 calls failed in the last 10 s"),
            "i1" => assert!(reason.starts_with("latency 50000 us"), "{reason}"),
            other => panic!("{other} ejected"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn pushback_holds_an_instance_back_for_the_time_asked_without_an_ejection() {
        let o = detector(3);
        o.hold("i2", Duration::from_millis(250), Instant::now());
        assert_eq!(excluded(&o), ["i2"]);
        tokio::time::advance(Duration::from_millis(250)).await;
        o.tick(Instant::now());
        assert!(excluded(&o).is_empty());
        assert!(o.excluded().is_none(), "back to the lock-free answer");
    }

    #[tokio::test(start_paused = true)]
    async fn disabled_detection_ejects_nothing() {
        let o = Outliers::new(OutlierConfig::disabled());
        o.update(&[Instance::new("a", 1), Instance::new("b", 1)]);
        for _ in 0..10 {
            assert_eq!(call(&o, "a", Outcome::Failure, 1), None);
        }
        o.started("b", Instant::now());
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(o.tick(Instant::now()).is_empty());
    }
}
