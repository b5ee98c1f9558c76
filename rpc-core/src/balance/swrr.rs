//! [`SmoothWrr`], smooth weighted round-robin, nginx's algorithm: each pick adds every eligible instance's
//! effective weight to its current weight, picks the highest current weight, and takes the total off the one
//! picked. For weights {a:5, b:1, c:1} one cycle picks `a a b a c a a`: in proportion, and spread out.
//!
//! Feedback: a failed call lowers its instance's effective weight (by a quarter of its weight, never below 1,
//! so it still gets the occasional call that can restore it), a success restores it by one step; an
//! unreachable instance is skipped at once for [`SmoothWrr::down_for`]. A cancelled call says nothing. A change
//! of membership or weight keeps the other instances' state. It looks neither at the call nor at latency.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::down::{DEFAULT_DOWN_FOR, Down};
use super::{CallInfo, Instance, Outcome, Policy};

/// Smooth weighted round-robin with failure feedback, as a [`Policy`].
///
/// ```
/// use rpc_core::balance::{CallInfo, Instance, Policy, SmoothWrr};
/// # #[rpc_core::service] trait Svc { async fn m(&self); }
/// let wrr = SmoothWrr::default();
/// wrr.update(&[Instance::new("a", 5), Instance::new("b", 1), Instance::new("c", 1)]);
/// let metadata = rpc_core::Metadata::new();
/// let call = CallInfo::new(&SvcClient::METHODS[0], &metadata);
/// let picks: String = (0..7).map(|_| wrr.pick(&call, &[], tokio::time::Instant::now()).unwrap().to_string()).collect();
/// assert_eq!(picks, "aabacaa");
/// ```
#[derive(Debug, Default)]
pub struct SmoothWrr {
    state: Mutex<Swrr>,
}

impl SmoothWrr {
    /// The policy, skipping an unreachable instance for `down_for` (default [`DEFAULT_DOWN_FOR`]).
    pub fn with_down_for(down_for: Duration) -> SmoothWrr {
        SmoothWrr {
            state: Mutex::new(Swrr {
                down_for,
                ..Swrr::default()
            }),
        }
    }

    /// How long an unreachable instance is skipped.
    pub fn down_for(&self) -> Duration {
        self.state().down_for
    }

    /// The effective weight of `address`, if it is known.
    pub fn effective_weight(&self, address: &str) -> Option<i64> {
        self.state().effective_weight(address)
    }

    fn state(&self) -> MutexGuard<'_, Swrr> {
        crate::sync::lock(&self.state)
    }
}

impl Policy for SmoothWrr {
    fn update(&self, instances: &[Instance]) {
        self.state()
            .update(instances.iter().map(|i| (&*i.address, i.weight)));
    }

    fn pick(&self, _call: &CallInfo<'_>, skip: &[Arc<str>], now: Instant) -> Option<Arc<str>> {
        self.state().pick(skip, now)
    }

    fn report(&self, address: &str, outcome: Outcome, _latency: Duration, now: Instant) {
        self.state().report(address, outcome, now);
    }
}

#[derive(Debug, Clone)]
struct Peer {
    address: Arc<str>,
    weight: i64,
    effective: i64,
    current: i64,
    down: Down,
}

/// The selection state over a set of instances.
#[derive(Debug, Clone)]
struct Swrr {
    peers: Vec<Peer>,
    /// How long an unreachable instance is skipped before it is tried again.
    down_for: Duration,
}

impl Default for Swrr {
    fn default() -> Swrr {
        Swrr {
            peers: Vec::new(),
            down_for: DEFAULT_DOWN_FOR,
        }
    }
}

impl Swrr {
    /// Selection over `instances` (address, weight).
    #[cfg(test)]
    fn new<'a>(instances: impl IntoIterator<Item = (&'a str, u32)>) -> Swrr {
        let mut s = Swrr::default();
        s.update(instances);
        s
    }

    /// Takes a new set of instances: instances already known keep their state (a weight change resets only
    /// that instance's effective weight), new ones start fresh, gone ones are dropped.
    fn update<'a>(&mut self, instances: impl IntoIterator<Item = (&'a str, u32)>) {
        let mut next = Vec::new();
        for (address, weight) in instances {
            let weight = i64::from(weight);
            match self.peers.iter().position(|p| &*p.address == address) {
                Some(i) => {
                    let mut peer = self.peers.swap_remove(i);
                    if peer.weight != weight {
                        peer.weight = weight;
                        peer.effective = weight;
                    }
                    next.push(peer);
                }
                None => next.push(Peer {
                    address: Arc::from(address),
                    weight,
                    effective: weight,
                    current: 0,
                    down: Down::default(),
                }),
            }
        }
        self.peers = next;
    }

    /// The number of instances.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.peers.len()
    }

    /// The next instance, not one in `skip`. Instances marked down are left out while others are eligible;
    /// instances of weight 0 never.
    fn pick(&mut self, skip: &[Arc<str>], now: Instant) -> Option<Arc<str>> {
        let eligible = |p: &Peer, allow_down: bool| {
            p.weight > 0
                && !skip.iter().any(|s| **s == *p.address)
                && (allow_down || !p.down.at(now))
        };
        let allow_down = !self.peers.iter().any(|p| eligible(p, false));
        let mut total = 0;
        let mut best: Option<(usize, i64)> = None;
        for (i, p) in self.peers.iter_mut().enumerate() {
            if !eligible(p, allow_down) {
                continue;
            }
            p.current += p.effective;
            total += p.effective;
            if best.is_none_or(|(_, current)| p.current > current) {
                best = Some((i, p.current));
            }
        }
        let (best, _) = best?;
        self.peers[best].current -= total;
        Some(Arc::clone(&self.peers[best].address))
    }

    /// How a call to `address` went.
    fn report(&mut self, address: &str, outcome: Outcome, now: Instant) {
        let down_for = self.down_for;
        let Some(p) = self.peers.iter_mut().find(|p| &*p.address == address) else {
            return;
        };
        match outcome {
            Outcome::Success => {
                p.down.answered();
                if p.effective < p.weight {
                    p.effective += 1;
                }
            }
            Outcome::Cancelled => {}
            Outcome::Failure | Outcome::Unreachable => {
                p.effective = (p.effective - (p.weight / 4).max(1))
                    .max(1)
                    .min(p.weight.max(1));
                if outcome == Outcome::Unreachable {
                    p.down.unreachable(now, down_for);
                }
            }
        }
    }

    /// The effective weight of `address`, if it is known.
    fn effective_weight(&self, address: &str) -> Option<i64> {
        self.peers
            .iter()
            .find(|p| &*p.address == address)
            .map(|p| p.effective)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picks(s: &mut Swrr, n: usize) -> String {
        let now = Instant::now();
        (0..n)
            .map(|_| s.pick(&[], now).map(|a| a.to_string()).unwrap_or_default())
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn weights_5_1_1_give_the_nginx_sequence() {
        let mut s = Swrr::new([("a", 5), ("b", 1), ("c", 1)]);
        assert_eq!(picks(&mut s, 7), "aabacaa");
        assert_eq!(picks(&mut s, 14), "aabacaaaabacaa", "and the cycle repeats");
    }

    #[tokio::test(start_paused = true)]
    async fn picks_are_proportional_to_weights() {
        let mut s = Swrr::new([("a", 3), ("b", 2), ("c", 0), ("d", 1)]);
        let seq = picks(&mut s, 600);
        let count = |c| seq.chars().filter(|&x| x == c).count();
        assert_eq!(
            (count('a'), count('b'), count('c'), count('d')),
            (300, 200, 0, 100)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_membership_change_leaves_the_others_state_alone() {
        let mut s = Swrr::new([("a", 5), ("b", 1), ("c", 1)]);
        picks(&mut s, 3);
        let before: Vec<(String, i64)> = s
            .peers
            .iter()
            .map(|p| (p.address.to_string(), p.current))
            .collect();
        s.update([("a", 5), ("b", 1), ("c", 1), ("d", 2)]);
        let after: Vec<(String, i64)> = s
            .peers
            .iter()
            .map(|p| (p.address.to_string(), p.current))
            .collect();
        assert_eq!(&after[..3], &before[..]);
        assert_eq!(after[3], ("d".to_owned(), 0));
        s.update([("a", 5), ("c", 4)]);
        assert_eq!(s.len(), 2);
        assert_eq!(s.effective_weight("a"), Some(5));
        assert_eq!(
            s.effective_weight("c"),
            Some(4),
            "a weight change resets that instance alone"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn failures_lower_the_effective_weight_and_successes_restore_it_step_by_step() {
        let now = Instant::now();
        let mut s = Swrr::new([("a", 8), ("b", 8)]);
        s.report("a", Outcome::Failure, now);
        assert_eq!(s.effective_weight("a"), Some(6));
        for _ in 0..10 {
            s.report("a", Outcome::Failure, now);
        }
        assert_eq!(s.effective_weight("a"), Some(1), "never below 1");
        let seq = picks(&mut s, 90);
        assert_eq!(
            seq.chars().filter(|&c| c == 'a').count(),
            10,
            "1 in 9 while b is at 8"
        );
        for step in 2..=8 {
            s.report("a", Outcome::Success, now);
            assert_eq!(s.effective_weight("a"), Some(step));
        }
        s.report("a", Outcome::Success, now);
        assert_eq!(
            s.effective_weight("a"),
            Some(8),
            "no higher than the weight"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreachable_instance_is_skipped_at_once_then_tried_again() {
        let mut s = Swrr::new([("a", 5), ("b", 1)]);
        s.report("a", Outcome::Unreachable, Instant::now());
        assert_eq!(picks(&mut s, 5), "bbbbb");
        tokio::time::advance(DEFAULT_DOWN_FOR).await;
        assert!(picks(&mut s, 6).contains('a'));
    }

    #[tokio::test(start_paused = true)]
    async fn skipped_instances_are_not_picked_and_down_ones_are_a_last_resort() {
        let now = Instant::now();
        let mut s = Swrr::new([("a", 5), ("b", 1)]);
        let a: Arc<str> = Arc::from("a");
        assert_eq!(s.pick(std::slice::from_ref(&a), now).as_deref(), Some("b"));
        let b: Arc<str> = Arc::from("b");
        assert_eq!(s.pick(&[a, b], now), None);
        s.report("a", Outcome::Unreachable, now);
        s.report("b", Outcome::Unreachable, now);
        assert!(s.pick(&[], now).is_some(), "all down: try one anyway");
    }
}
