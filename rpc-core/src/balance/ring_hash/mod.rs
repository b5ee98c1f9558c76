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

use super::down::{DEFAULT_DOWN_FOR, Down};
use super::{CallInfo, Instance, Outcome, Policy, hash_key};

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
/// let home = ring.pick(&call, &[], tokio::time::Instant::now()).unwrap();
/// for _ in 0..10 {
///     assert_eq!(ring.pick(&call, &[], tokio::time::Instant::now()).unwrap(), home, "every call of a tenant goes to its instance");
/// }
/// // Skipped (a retry, say), the call goes on to the next instance on the ring.
/// assert_ne!(ring.pick(&call, &[home], tokio::time::Instant::now()).unwrap(), ring.pick(&call, &[], tokio::time::Instant::now()).unwrap());
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
                down: ring
                    .peers
                    .iter()
                    .find(|p| p.address == instance.address)
                    .map_or_else(Down::default, |p| p.down),
            })
            .collect();
        ring.peers = peers;
        ring.rebuild(self.points_per_weight, self.max_points);
    }

    fn pick(&self, call: &CallInfo<'_>, skip: &[Arc<str>], now: Instant) -> Option<Arc<str>> {
        let key = call
            .key
            .or_else(|| {
                let name = self.metadata_key.as_deref()?;
                call.metadata.get(name).map(hash_key)
            })
            .unwrap_or_else(crate::random::next_u64);
        self.state().pick(key, skip, now)
    }

    fn report(&self, address: &str, outcome: Outcome, _latency: Duration, now: Instant) {
        let mut ring = self.state();
        let Some(peer) = ring.peers.iter_mut().find(|p| &*p.address == address) else {
            return;
        };
        match outcome {
            Outcome::Unreachable => {
                if peer.down.unreachable(now, self.down_for) {
                    tracing::debug!(
                        address,
                        down_for = ?self.down_for,
                        "ring hash: instance unreachable, its keys go to the next ones for now"
                    );
                }
            }
            Outcome::Success => {
                if peer.down.answered() {
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
    down: Down,
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
                if !skip.iter().any(|s| **s == *peer.address) && (allow_down || !peer.down.at(now))
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
mod tests;
