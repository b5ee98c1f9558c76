//! [`LeastRequest`], least outstanding requests as Envoy balances: each pick draws
//! [`LeastRequest::with_choice_count`] distinct eligible instances at random (two by default: the power of two
//! choices) and takes the one with the fewest calls in flight for its weight. It needs no latency figures: a
//! slow or stuck instance holds its calls longer, so it has more in flight and loses the comparisons.
//!
//! Weights: the candidates are drawn with probability in proportion to weight, and compared by
//! `in_flight / weight`, ties going to the one drawn first. Idle (nothing in flight anywhere), every
//! comparison is a tie, so calls go in proportion to weight; under load the comparison keeps calls in flight in
//! proportion to weight. With equal weights this is exactly Envoy's P2C. (Envoy, when weights differ, turns to
//! a round-robin schedule of `weight / (in_flight + 1)^active_request_bias`; drawing by weight gives the same
//! proportions at bias 1 without a second algorithm, so there is no bias to set.)
//!
//! An unreachable instance is skipped for [`LeastRequest::with_down_for`] and tried only as a last resort
//! meanwhile, until an answer from it ends the down time; every outcome ends its call's count in flight.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::down::{DEFAULT_DOWN_FOR, Down};
use super::{CallInfo, Instance, Outcome, Policy};

/// Default of [`LeastRequest::with_choice_count`]: 2, Envoy's (the power of two choices).
pub const DEFAULT_CHOICE_COUNT: usize = 2;

/// Fewest calls in flight among a few random candidates, as a [`Policy`].
///
/// ```
/// use std::time::Duration;
/// use rpc_core::balance::{CallInfo, Instance, LeastRequest, Outcome, Policy};
/// # #[rpc_core::service] trait Svc { async fn m(&self); }
/// let policy = LeastRequest::default();
/// policy.update(&[Instance::new("a", 1), Instance::new("b", 1)]);
/// let metadata = rpc_core::Metadata::new();
/// let call = CallInfo::new(&SvcClient::METHODS[0], &metadata);
/// // One call stays in flight on the instance it went to: the next calls go to the other.
/// let stuck = policy.pick(&call, &[], tokio::time::Instant::now()).unwrap();
/// for _ in 0..10 {
///     let picked = policy.pick(&call, &[], tokio::time::Instant::now()).unwrap();
///     assert_ne!(picked, stuck);
///     policy.report(&picked, Outcome::Success, Duration::from_millis(1), tokio::time::Instant::now());
/// }
/// assert_eq!(policy.in_flight(&stuck), Some(1));
/// ```
#[derive(Debug)]
pub struct LeastRequest {
    /// How many candidates each pick compares (at least 1).
    choice_count: usize,
    /// How long an unreachable instance is skipped.
    down_for: Duration,
    state: Mutex<State>,
}

impl Default for LeastRequest {
    fn default() -> LeastRequest {
        LeastRequest {
            choice_count: DEFAULT_CHOICE_COUNT,
            down_for: DEFAULT_DOWN_FOR,
            state: Mutex::new(State::default()),
        }
    }
}

impl LeastRequest {
    /// How many distinct candidates each pick draws and compares (default [`DEFAULT_CHOICE_COUNT`], at least
    /// 1): more spreads load more evenly and reacts faster to a busy instance, at the cost of herding calls
    /// onto the idlest; as many as there are instances compares them all.
    pub fn with_choice_count(self, choice_count: usize) -> LeastRequest {
        LeastRequest {
            choice_count: choice_count.max(1),
            ..self
        }
    }

    /// How long an unreachable instance is skipped (default [`DEFAULT_DOWN_FOR`]).
    pub fn with_down_for(self, down_for: Duration) -> LeastRequest {
        LeastRequest { down_for, ..self }
    }

    /// The calls to `address` in flight (picked, not yet reported), if it is known.
    pub fn in_flight(&self, address: &str) -> Option<u32> {
        self.state()
            .peers
            .iter()
            .find(|p| &*p.address == address)
            .map(|p| p.in_flight)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        crate::sync::lock(&self.state)
    }
}

impl Policy for LeastRequest {
    fn update(&self, instances: &[Instance]) {
        let mut state = self.state();
        let mut next = Vec::with_capacity(instances.len());
        for instance in instances {
            match state
                .peers
                .iter()
                .position(|p| p.address == instance.address)
            {
                Some(known) => {
                    let mut peer = state.peers.swap_remove(known);
                    peer.weight = instance.weight;
                    next.push(peer);
                }
                None => next.push(Peer {
                    address: Arc::clone(&instance.address),
                    weight: instance.weight,
                    in_flight: 0,
                    down: Down::default(),
                }),
            }
        }
        state.peers = next;
    }

    fn pick(&self, _call: &CallInfo<'_>, skip: &[Arc<str>], now: Instant) -> Option<Arc<str>> {
        self.state().pick(self.choice_count, skip, now)
    }

    fn report(&self, address: &str, outcome: Outcome, _latency: Duration, now: Instant) {
        let mut state = self.state();
        let Some(peer) = state.peers.iter_mut().find(|p| &*p.address == address) else {
            return;
        };
        peer.in_flight = peer.in_flight.saturating_sub(1);
        match outcome {
            Outcome::Unreachable => {
                if peer.down.unreachable(now, self.down_for) {
                    tracing::debug!(
                        address,
                        down_for = ?self.down_for,
                        "least request: instance unreachable, skipped for now"
                    );
                }
            }
            Outcome::Success => {
                if peer.down.answered() {
                    tracing::debug!(
                        address,
                        "least request: instance answered, no longer skipped"
                    );
                }
            }
            Outcome::Failure | Outcome::Cancelled => {}
        }
    }
}

/// What the policy knows of one instance.
#[derive(Debug)]
struct Peer {
    address: Arc<str>,
    weight: u32,
    in_flight: u32,
    down: Down,
}

#[derive(Debug, Default)]
struct State {
    peers: Vec<Peer>,
    /// The candidates of the pick under way (indices into `peers`), kept to spare an allocation per pick.
    drawn: Vec<usize>,
}

impl State {
    /// The eligible instance with the fewest calls in flight for its weight among `choices` drawn by weight,
    /// not one in `skip`; instances down only if no other is left.
    fn pick(&mut self, choices: usize, skip: &[Arc<str>], now: Instant) -> Option<Arc<str>> {
        let State { peers, drawn } = self;
        let usable = |p: &Peer, allow_down: bool| {
            p.weight > 0
                && !skip.iter().any(|s| **s == *p.address)
                && (allow_down || !p.down.at(now))
        };
        let total = |allow_down: bool| -> u64 {
            peers
                .iter()
                .filter(|p| usable(p, allow_down))
                .map(|p| u64::from(p.weight))
                .sum()
        };
        let mut allow_down = false;
        let mut left = total(false);
        if left == 0 {
            allow_down = true;
            left = total(true);
        }
        drawn.clear();
        let mut best: Option<usize> = None;
        while drawn.len() < choices && left > 0 {
            // A point in the weights of the instances not drawn yet, and the instance it falls on.
            let mut point = draw_below(left);
            let Some(i) = peers.iter().enumerate().position(|(i, p)| {
                if !usable(p, allow_down) || drawn.contains(&i) {
                    return false;
                }
                let weight = u64::from(p.weight);
                if point < weight {
                    return true;
                }
                point -= weight;
                false
            }) else {
                break;
            };
            drawn.push(i);
            left -= u64::from(peers[i].weight);
            best = match best {
                Some(b) if !lighter(&peers[i], &peers[b]) => Some(b),
                _ => Some(i),
            };
        }
        let peer = &mut peers[best?];
        peer.in_flight = peer.in_flight.saturating_add(1);
        Some(Arc::clone(&peer.address))
    }
}

/// Whether `a` has fewer calls in flight for its weight than `b` (exactly: `a.in_flight / a.weight <
/// b.in_flight / b.weight`, cross-multiplied).
fn lighter(a: &Peer, b: &Peer) -> bool {
    u64::from(a.in_flight) * u64::from(b.weight) < u64::from(b.in_flight) * u64::from(a.weight)
}

/// A random number below `n` (> 0).
fn draw_below(n: u64) -> u64 {
    match usize::try_from(n) {
        Ok(n) => crate::random::below(n) as u64,
        // Only where `usize` is narrower than the sum of the weights.
        Err(_) => crate::random::below(usize::MAX) as u64,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::balance::testing::{instances_of, pick};

    const MS: Duration = Duration::from_millis(1);

    fn policy_of(instances: &[(&str, u32)]) -> LeastRequest {
        let policy = LeastRequest::default();
        policy.update(&instances_of(instances));
        policy
    }

    /// `calls` calls one after the other, each answered before the next: how many each instance took.
    fn one_by_one(policy: &LeastRequest, calls: usize) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for _ in 0..calls {
            let address = pick(policy, &[]).expect("an instance");
            policy.report(&address, Outcome::Success, MS, Instant::now());
            *counts.entry(address).or_default() += 1;
        }
        counts
    }

    fn skipping(addresses: &[&str]) -> Vec<Arc<str>> {
        addresses.iter().map(|a| Arc::from(*a)).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn an_instance_holding_calls_gets_none_while_others_are_idle() {
        let policy = policy_of(&[("a", 1), ("b", 1), ("c", 1)]);
        for _ in 0..3 {
            assert_eq!(pick(&policy, &skipping(&["b", "c"])).as_deref(), Some("a"));
        }
        let counts = one_by_one(&policy, 300);
        assert_eq!(counts.get("a"), None, "{counts:?}");
        // `b` and `c` split the rest: each is the lighter of a pair with `a`, and wins half of their own pairs.
        for address in ["b", "c"] {
            let n = counts.get(address).copied().unwrap_or(0);
            assert!((110..=190).contains(&n), "{counts:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn calls_in_flight_stay_even_and_every_outcome_ends_them() {
        let policy = policy_of(&[("a", 1), ("b", 1)]);
        for round in 1..=10 {
            pick(&policy, &[]).unwrap();
            pick(&policy, &[]).unwrap();
            assert_eq!(policy.in_flight("a"), Some(round));
            assert_eq!(policy.in_flight("b"), Some(round));
        }
        let outcomes = [
            Outcome::Success,
            Outcome::Failure,
            Outcome::Cancelled,
            Outcome::Unreachable,
        ];
        for (n, outcome) in outcomes.into_iter().cycle().take(20).enumerate() {
            let address = if n % 2 == 0 { "a" } else { "b" };
            policy.report(address, outcome, MS, Instant::now());
        }
        assert_eq!(policy.in_flight("a"), Some(0));
        assert_eq!(policy.in_flight("b"), Some(0));
        policy.report("a", Outcome::Success, MS, Instant::now());
        assert_eq!(policy.in_flight("a"), Some(0), "never below zero");
    }

    #[tokio::test(start_paused = true)]
    async fn weights_are_honoured_in_proportion_idle_and_under_load() {
        let policy = policy_of(&[("a", 3), ("b", 1)]);
        let counts = one_by_one(&policy, 1000);
        let a = counts.get("a").copied().unwrap_or(0);
        // 750 expected; a fair draw lands within 680..820 all but never (over 5 standard deviations).
        assert!((680..=820).contains(&a), "{counts:?}");

        // Under load (no call answers), calls in flight settle at 3 to 1.
        for _ in 0..400 {
            pick(&policy, &[]).unwrap();
        }
        let (a, b) = (
            policy.in_flight("a").unwrap(),
            policy.in_flight("b").unwrap(),
        );
        assert!((297..=303).contains(&a), "a {a}, b {b}");
    }

    #[tokio::test(start_paused = true)]
    async fn as_many_choices_as_instances_always_finds_the_fewest() {
        let policy = LeastRequest::default().with_choice_count(4);
        policy.update(&instances_of(&[("a", 1), ("b", 1), ("c", 1), ("d", 1)]));
        for _ in 0..40 {
            pick(&policy, &[]).unwrap();
        }
        for address in ["a", "b", "c", "d"] {
            assert_eq!(policy.in_flight(address), Some(10));
        }
        policy.report("c", Outcome::Success, MS, Instant::now());
        assert_eq!(pick(&policy, &[]).as_deref(), Some("c"));

        // One choice: a draw by weight alone, blind to calls in flight.
        let blind = LeastRequest::default().with_choice_count(0);
        blind.update(&instances_of(&[("a", 1), ("b", 1)]));
        for _ in 0..3 {
            assert_eq!(pick(&blind, &skipping(&["b"])).as_deref(), Some("a"));
        }
        let counts = one_by_one(&blind, 200);
        assert!(counts.get("a").copied().unwrap_or(0) >= 60, "{counts:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn skipped_and_weightless_instances_are_never_picked_and_down_ones_only_as_a_last_resort()
    {
        let policy = policy_of(&[("a", 1), ("b", 1), ("z", 0)]);
        for _ in 0..20 {
            assert_eq!(pick(&policy, &skipping(&["a"])).as_deref(), Some("b"));
            policy.report("b", Outcome::Success, MS, Instant::now());
        }
        assert_eq!(pick(&policy, &skipping(&["a", "b"])), None);

        policy.report("b", Outcome::Unreachable, MS, Instant::now());
        let counts = one_by_one(&policy, 20);
        assert_eq!(counts.get("a"), Some(&20), "{counts:?}");
        assert_eq!(
            pick(&policy, &skipping(&["a"])).as_deref(),
            Some("b"),
            "down, but the last one left"
        );
        policy.report("b", Outcome::Cancelled, MS, Instant::now());
        tokio::time::advance(DEFAULT_DOWN_FOR).await;
        let counts = one_by_one(&policy, 40);
        assert!(counts.contains_key("b"), "back after down_for: {counts:?}");
        assert!(!counts.contains_key("z"), "{counts:?}");

        policy.report("a", Outcome::Unreachable, MS, Instant::now());
        policy.report("a", Outcome::Success, MS, Instant::now());
        let counts = one_by_one(&policy, 40);
        assert!(
            counts.contains_key("a"),
            "an answer ends the down time: {counts:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_update_keeps_the_calls_in_flight_of_known_instances() {
        let policy = policy_of(&[("a", 1), ("b", 1)]);
        for _ in 0..4 {
            pick(&policy, &[]).unwrap();
        }
        policy.update(&instances_of(&[("b", 2), ("c", 1)]));
        assert_eq!(policy.in_flight("a"), None);
        assert_eq!(policy.in_flight("b"), Some(2));
        assert_eq!(policy.in_flight("c"), Some(0));
        policy.report("a", Outcome::Success, MS, Instant::now());
    }
}
