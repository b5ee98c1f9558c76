//! [`RingHash`], consistent hashing on a ring (Karger's, with Ketama's virtual nodes): every instance puts
//! [`RingHash::with_points_per_weight`] points per unit of weight on a ring of 64-bit hashes, at hashes of its
//! address alone; a call's key goes to the first point at or after its hash, walking on past points of
//! instances the call skips or that are down. So every client of a service sends a key to the same instance, an
//! instance of weight 2 owns about twice the keys of one of weight 1, and an instance that joins takes keys only
//! from the others (about `1/N` of all), one that leaves hands only its own to the others. The ring is built on
//! [`Policy::update`] when membership or weights change; a pick is a binary search, without allocating.
//!
//! Why a ring and not Maglev: Maglev's table gives O(1) lookups and a more even spread, but when an instance
//! joins, some keys also move between instances that stayed; on a ring every key that moves, moves to the one
//! that joined. A ring also gives the fallback for a skipped or down instance for free (the next point), and
//! its points depend on nothing but each instance's address and weight.
//!
//! The key of a call: [`CallInfo::key`] if the caller chose one, else the value of the metadata entry named by
//! [`RingHash::on_metadata`] (hashed with [`super::hash_key`]), else a random one: a call without a key goes
//! to a random instance, in proportion to weight. An unreachable instance is skipped for
//! [`RingHash::with_down_for`] (its keys go to the next instances on the ring meanwhile, and come back), and
//! tried only as a last resort; failures and cancellations move no key (an outlier detector's job).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::{CallInfo, DEFAULT_DOWN_FOR, Instance, Outcome, Policy, hash_key};

/// Default of [`RingHash::with_points_per_weight`]: 160, Ketama's (memcached clients') points per server; the
/// keys an instance owns then vary by about 8% (`1/√160`) around its share.
pub const DEFAULT_POINTS_PER_WEIGHT: u32 = 160;

/// Default of [`RingHash::with_max_points`]: 262,144 points (4 MiB at 16 bytes a point), enough for 1,638
/// units of weight at [`DEFAULT_POINTS_PER_WEIGHT`].
pub const DEFAULT_MAX_POINTS: usize = 1 << 18;

/// Consistent hashing of a call's key onto a ring of instances, as a [`Policy`].
///
/// ```
/// use rpc_core::balance::{CallInfo, Instance, Policy, RingHash};
/// # #[rpc_core::service] trait Svc { async fn m(&self); }
/// let ring = RingHash::on_metadata("x-tenant");
/// ring.update(&[Instance::new("a", 1), Instance::new("b", 1), Instance::new("c", 1)]);
/// let tenant = rpc_core::Metadata::from_pairs([("x-tenant", "acme")]).unwrap();
/// let call = CallInfo::new(&SvcClient::METHODS[0], &tenant);
/// let home = ring.pick(&call, &[]).unwrap();
/// for _ in 0..10 {
///     assert_eq!(ring.pick(&call, &[]).unwrap(), home, "every call of a tenant goes to its instance");
/// }
/// // Skipped (a retry, say), the call goes on to the next instance on the ring.
/// assert_ne!(ring.pick(&call, &[home]).unwrap(), ring.pick(&call, &[]).unwrap());
/// ```
#[derive(Debug)]
pub struct RingHash {
    /// The metadata entry whose value keys a call without a key of its own.
    metadata_key: Option<Box<str>>,
    /// Points on the ring per unit of weight (at least 1).
    points_per_weight: u32,
    /// The most points on the ring (at least 1).
    max_points: usize,
    /// How long an unreachable instance is skipped.
    down_for: Duration,
    state: Mutex<Ring>,
}

impl Default for RingHash {
    fn default() -> RingHash {
        RingHash {
            metadata_key: None,
            points_per_weight: DEFAULT_POINTS_PER_WEIGHT,
            max_points: DEFAULT_MAX_POINTS,
            down_for: DEFAULT_DOWN_FOR,
            state: Mutex::new(Ring::default()),
        }
    }
}

impl RingHash {
    /// A ring that keys a call without a key of its own ([`CallInfo::key`]) by the value of its metadata entry
    /// `key` (a tenant, a user, a session).
    pub fn on_metadata(key: &str) -> RingHash {
        RingHash {
            metadata_key: Some(Box::from(key)),
            ..RingHash::default()
        }
    }

    /// Points on the ring per unit of weight (default [`DEFAULT_POINTS_PER_WEIGHT`], at least 1): more spread
    /// keys more evenly, and cost memory and a longer rebuild.
    pub fn with_points_per_weight(self, points_per_weight: u32) -> RingHash {
        RingHash {
            points_per_weight: points_per_weight.max(1),
            ..self
        }
        .rebuilt()
    }

    /// The most points on the ring (default [`DEFAULT_MAX_POINTS`], at least 1). Above it, every instance gets
    /// fewer points per unit of weight (at least one point): then a change of membership moves keys between the
    /// instances that stayed too.
    pub fn with_max_points(self, max_points: usize) -> RingHash {
        RingHash {
            max_points: max_points.max(1),
            ..self
        }
        .rebuilt()
    }

    /// How long an unreachable instance is skipped (default [`DEFAULT_DOWN_FOR`]).
    pub fn with_down_for(self, down_for: Duration) -> RingHash {
        RingHash { down_for, ..self }
    }

    /// The number of points on the ring.
    pub fn points(&self) -> usize {
        self.state().points.len()
    }

    fn rebuilt(mut self) -> RingHash {
        let (points_per_weight, max_points) = (self.points_per_weight, self.max_points);
        self.state
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .rebuild(points_per_weight, max_points);
        self
    }

    fn state(&self) -> MutexGuard<'_, Ring> {
        crate::sync::lock(&self.state)
    }
}

impl Policy for RingHash {
    fn update(&self, instances: &[Instance]) {
        let mut ring = self.state();
        let same = |a: &Instance, p: &Peer| a.address == p.address && a.weight == p.weight;
        if instances.len() == ring.peers.len()
            && instances
                .iter()
                .all(|i| ring.peers.iter().any(|p| same(i, p)))
            && ring
                .peers
                .iter()
                .all(|p| instances.iter().any(|i| same(i, p)))
        {
            return;
        }
        let peers = instances
            .iter()
            .map(|instance| Peer {
                address: Arc::clone(&instance.address),
                weight: instance.weight,
                down_until: ring
                    .peers
                    .iter()
                    .find(|p| p.address == instance.address)
                    .and_then(|p| p.down_until),
            })
            .collect();
        ring.peers = peers;
        ring.rebuild(self.points_per_weight, self.max_points);
    }

    fn pick(&self, call: &CallInfo<'_>, skip: &[Arc<str>]) -> Option<Arc<str>> {
        let key = call
            .key
            .or_else(|| {
                let name = self.metadata_key.as_deref()?;
                call.metadata.get(name).map(hash_key)
            })
            .unwrap_or_else(crate::random::next_u64);
        self.state().pick(key, skip, Instant::now())
    }

    fn report(&self, address: &str, outcome: Outcome, _latency: Duration) {
        let now = Instant::now();
        let mut ring = self.state();
        let Some(peer) = ring.peers.iter_mut().find(|p| &*p.address == address) else {
            return;
        };
        match outcome {
            Outcome::Unreachable => {
                if peer.down_until.is_none_or(|until| until <= now) {
                    tracing::debug!(
                        address,
                        down_for = ?self.down_for,
                        "ring hash: instance unreachable, its keys go to the next ones for now"
                    );
                }
                peer.down_until = Some(now + self.down_for);
            }
            Outcome::Success => {
                if peer.down_until.take().is_some() {
                    tracing::debug!(address, "ring hash: instance answered, its keys are back");
                }
            }
            Outcome::Failure | Outcome::Cancelled => {}
        }
    }
}

/// What the ring knows of one instance.
#[derive(Debug)]
struct Peer {
    address: Arc<str>,
    weight: u32,
    down_until: Option<Instant>,
}

/// One virtual node: a hash on the ring and the instance (index into `peers`) that owns it.
#[derive(Clone, Copy, Debug)]
struct Point {
    hash: u64,
    peer: u32,
}

#[derive(Debug, Default)]
struct Ring {
    peers: Vec<Peer>,
    /// Sorted by hash (ties by address, so that every client builds the same ring).
    points: Vec<Point>,
    /// How many times the ring was built.
    #[cfg(test)]
    rebuilds: usize,
}

impl Ring {
    /// Puts `points_per_weight` points per unit of weight of each instance on the ring, fewer if that makes
    /// more than `max_points`; an instance of weight 0 gets none.
    fn rebuild(&mut self, points_per_weight: u32, max_points: usize) {
        #[cfg(test)]
        {
            self.rebuilds += 1;
        }
        let total_weight: u64 = self.peers.iter().map(|p| u64::from(p.weight)).sum();
        let scale =
            f64::from(points_per_weight).min(max_points as f64 / total_weight.max(1) as f64);
        self.points.clear();
        for (index, peer) in self.peers.iter().enumerate() {
            if peer.weight == 0 {
                continue;
            }
            let count = (f64::from(peer.weight) * scale).round().max(1.0) as u64;
            let base = hash_key(peer.address.as_bytes());
            self.points.extend((0..count).map(|n| Point {
                hash: point_hash(base, n),
                peer: index as u32,
            }));
        }
        let peers = &self.peers;
        self.points.sort_unstable_by(|a, b| {
            a.hash.cmp(&b.hash).then_with(|| {
                peers[a.peer as usize]
                    .address
                    .cmp(&peers[b.peer as usize].address)
            })
        });
        self.points.shrink_to_fit();
    }

    /// The owner of the first point at or after `key` that is not in `skip` and not down; a down one if no
    /// other is left. A binary search, then a walk past the points of instances left out (none, most often).
    fn pick(&self, key: u64, skip: &[Arc<str>], now: Instant) -> Option<Arc<str>> {
        let start = self.points.partition_point(|p| p.hash < key);
        for allow_down in [false, true] {
            let walk = self.points[start..].iter().chain(&self.points[..start]);
            for point in walk {
                let peer = &self.peers[point.peer as usize];
                if !skip.iter().any(|s| **s == *peer.address)
                    && (allow_down || peer.down_until.is_none_or(|until| until <= now))
                {
                    return Some(Arc::clone(&peer.address));
                }
            }
        }
        None
    }
}

/// The hash of an instance's `n`th point, from the hash of its address: SplitMix64's mix of the two, so that
/// points depend on nothing but the address and an instance's weight only adds or removes its last points.
fn point_hash(address: u64, n: u64) -> u64 {
    let mut z = address.wrapping_add((n + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rpc_codec::Metadata;

    use super::*;
    use crate::method::MethodInfo;

    static METHOD: MethodInfo = MethodInfo {
        service: "Svc",
        name: "m",
        id: 0,
        idempotent: false,
    };

    const KEYS: u64 = 10_000;

    fn instances(count: usize) -> Vec<Instance> {
        (0..count)
            .map(|i| Instance::new(&format!("10.0.0.{i}:7000"), 1))
            .collect()
    }

    fn owner(ring: &RingHash, key: u64, skip: &[Arc<str>]) -> Option<String> {
        let metadata = Metadata::new();
        let call = CallInfo::new(&METHOD, &metadata).with_key(Some(key));
        ring.pick(&call, skip).map(|a| a.to_string())
    }

    /// The owner of each of [`KEYS`] keys.
    fn owners(ring: &RingHash) -> Vec<String> {
        (0..KEYS)
            .map(|k| owner(ring, hash_key(&k.to_le_bytes()), &[]).expect("an instance"))
            .collect()
    }

    fn shares(owners: &[String]) -> BTreeMap<&str, f64> {
        let mut shares = BTreeMap::new();
        for owner in owners {
            *shares.entry(owner.as_str()).or_default() += 1.0 / owners.len() as f64;
        }
        shares
    }

    #[tokio::test(start_paused = true)]
    async fn an_instance_that_joins_takes_about_a_share_of_keys_and_only_from_the_others() {
        let ring = RingHash::default();
        ring.update(&instances(10));
        let before = owners(&ring);
        let mut eleven = instances(10);
        eleven.push(Instance::new("10.0.0.10:7000", 1));
        ring.update(&eleven);
        let after = owners(&ring);
        let moved: Vec<usize> = (0..before.len())
            .filter(|&k| before[k] != after[k])
            .collect();
        assert!(
            moved.iter().all(|&k| after[k] == "10.0.0.10:7000"),
            "every moved key moved to the new instance"
        );
        let share = moved.len() as f64 / KEYS as f64;
        assert!(
            (0.7 / 11.0..1.3 / 11.0).contains(&share),
            "moved share {share:.4}, expected about 1/11 = {:.4}",
            1.0 / 11.0
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_instance_that_leaves_hands_over_its_own_keys_and_no_other() {
        let ring = RingHash::default();
        ring.update(&instances(10));
        let before = owners(&ring);
        let mut nine = instances(10);
        let gone = nine.remove(3);
        ring.update(&nine);
        let after = owners(&ring);
        for k in 0..before.len() {
            let was_its = before[k] == *gone.address;
            assert_eq!(
                before[k] != after[k],
                was_its,
                "key {k}: {} -> {}",
                before[k],
                after[k]
            );
        }
        let share = shares(&before)[&*gone.address];
        assert!(
            (0.7 / 10.0..1.3 / 10.0).contains(&share),
            "moved share {share:.4}, expected about 1/10"
        );
        // Its keys spread over the others rather than all falling to one neighbour.
        let heirs: std::collections::BTreeSet<&String> = (0..before.len())
            .filter(|&k| before[k] == *gone.address)
            .map(|k| &after[k])
            .collect();
        assert!(heirs.len() >= 5, "{heirs:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn weights_set_each_instances_share_of_keys_and_a_change_moves_keys_only_to_or_from_it() {
        let ring = RingHash::default();
        let weighted = |b| {
            [
                Instance::new("a", 2),
                Instance::new("b", b),
                Instance::new("c", 1),
                Instance::new("z", 0),
            ]
        };
        ring.update(&weighted(1));
        assert_eq!(ring.points(), 4 * DEFAULT_POINTS_PER_WEIGHT as usize);
        let before = owners(&ring);
        let shares_before = shares(&before);
        assert!(
            (0.42..0.58).contains(&shares_before["a"]),
            "{shares_before:?}"
        );
        assert!(
            (0.18..0.32).contains(&shares_before["b"]),
            "{shares_before:?}"
        );
        assert!(!shares_before.contains_key("z"), "{shares_before:?}");

        ring.update(&weighted(2));
        let after = owners(&ring);
        for k in 0..before.len() {
            if before[k] != after[k] {
                assert_eq!(
                    after[k], "b",
                    "key {k} moved elsewhere than to the heavier instance"
                );
            }
        }
        let b = shares(&after)["b"];
        assert!(
            (0.33..0.47).contains(&b),
            "b owns {b:.3}, expected about 2/5"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_calls_key_then_its_metadata_decide_and_without_either_calls_spread() {
        let ring = RingHash::on_metadata("x-tenant");
        ring.update(&instances(3));
        let tenant = |name: &str| Metadata::from_pairs([("x-tenant", name)]).unwrap();
        let pick = |metadata: &Metadata, key: Option<u64>| {
            let call = CallInfo::new(&METHOD, metadata).with_key(key);
            ring.pick(&call, &[]).unwrap().to_string()
        };
        let acme = tenant("acme");
        let home = pick(&acme, None);
        for _ in 0..20 {
            assert_eq!(pick(&acme, None), home);
        }
        assert_eq!(
            pick(&acme, None),
            owner(&ring, hash_key(b"acme"), &[]).unwrap(),
            "the value hashed as a key of the caller's would be"
        );
        // The caller's key comes first: some key goes elsewhere than acme's instance, whatever the metadata.
        let elsewhere = (0..100u64)
            .map(|k| hash_key(&k.to_le_bytes()))
            .find(|&k| owner(&ring, k, &[]).unwrap() != home)
            .expect("a key on another instance");
        assert_ne!(pick(&acme, Some(elsewhere)), home);

        let mut counts = BTreeMap::new();
        let none = Metadata::new();
        for _ in 0..300 {
            *counts.entry(pick(&none, None)).or_insert(0) += 1;
        }
        assert_eq!(counts.len(), 3, "{counts:?}");
        assert!(counts.values().all(|&n| n >= 50), "{counts:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_skipped_or_down_instances_keys_go_to_the_next_on_the_ring_and_come_back() {
        let ring = RingHash::default();
        ring.update(&instances(5));
        let before = owners(&ring);
        let home = before[0].clone();
        let skip = [Arc::<str>::from(home.as_str())];
        let key = hash_key(&0u64.to_le_bytes());
        let next = owner(&ring, key, &skip).unwrap();
        assert_ne!(next, home);
        for _ in 0..10 {
            assert_eq!(
                owner(&ring, key, &skip).unwrap(),
                next,
                "the same next one each time"
            );
        }

        ring.report(&home, Outcome::Failure, Duration::ZERO);
        assert_eq!(owners(&ring), before, "a failure moves no key");
        ring.report(&home, Outcome::Unreachable, Duration::ZERO);
        let down = owners(&ring);
        for k in 0..before.len() {
            assert_eq!(before[k] != down[k], before[k] == home, "key {k}");
        }
        let everyone: Vec<Arc<str>> = instances(5).into_iter().map(|i| i.address).collect();
        let others: Vec<Arc<str>> = everyone.iter().filter(|a| ***a != *home).cloned().collect();
        assert_eq!(
            owner(&ring, key, &others),
            Some(home.clone()),
            "down: a last resort"
        );
        assert_eq!(owner(&ring, key, &everyone), None);

        tokio::time::advance(DEFAULT_DOWN_FOR).await;
        assert_eq!(owners(&ring), before, "back after down_for");
        ring.report(&home, Outcome::Unreachable, Duration::ZERO);
        ring.report(&home, Outcome::Success, Duration::ZERO);
        assert_eq!(owners(&ring), before, "back at its first answer");
    }

    #[tokio::test(start_paused = true)]
    async fn the_ring_is_rebuilt_only_when_membership_or_weights_change() {
        let ring = RingHash::default();
        let mut five = instances(5);
        ring.update(&five);
        ring.report("10.0.0.2:7000", Outcome::Unreachable, Duration::ZERO);
        five.reverse();
        ring.update(&five);
        assert_eq!(ring.state().rebuilds, 1, "same instances, another order");
        five[0].weight = 3;
        ring.update(&five);
        assert_eq!(ring.state().rebuilds, 2);
        five.pop();
        ring.update(&five);
        assert_eq!(ring.state().rebuilds, 3);
        assert!(
            ring.state()
                .peers
                .iter()
                .any(|p| &*p.address == "10.0.0.2:7000" && p.down_until.is_some()),
            "what was learned is kept"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn every_client_builds_the_same_ring_and_the_bound_on_points_holds() {
        let (one, other) = (RingHash::default(), RingHash::default());
        let mut ten = instances(10);
        one.update(&ten);
        ten.reverse();
        other.update(&ten);
        assert_eq!(owners(&one), owners(&other));

        let small = RingHash::default().with_max_points(100);
        small.update(&instances(10));
        assert_eq!(small.points(), 100);
        let huge = RingHash::default().with_max_points(1_000);
        huge.update(&[Instance::new("a", u32::MAX), Instance::new("b", 1)]);
        assert_eq!(huge.points(), 1_001, "at least one point each");
        let rebuilt = RingHash::default();
        rebuilt.update(&instances(2));
        assert_eq!(rebuilt.with_points_per_weight(10).points(), 20);
    }
}
