//! Load balancing, as a balanced client sees it: a [`Policy`] picks the instance of each call with the call in
//! view (its method and metadata, so that a key can be hashed) and hears, when the call ends or is dropped, its
//! [`Outcome`] and latency; a [`Feed`] keeps the policy's instances current; a [`Discover`] (`rpc-registry`'s
//! discovery, say) makes a feed for a service and names the policy its clients use unless told otherwise.
//! [`Balancer`] puts a policy and a feed together for [`crate::Client::balanced`].
//!
//! Each policy is one file of this folder:
//! - [`SmoothWrr`] (`swrr.rs`): smooth weighted round-robin, nginx's: calls split exactly by weight.
//! - [`PeakEwma`] (`peak_ewma/`): power of two choices over a latency average that jumps to any slower answer
//!   and decays with time, times the calls in flight (Finagle's and Linkerd's cost); the default of
//!   [`Discover`], chosen from the chaos runs of `docs/RESILIENCE.md` (fewest slow calls when an instance
//!   stalls or slows down, the same success rate).
//! - [`LeastRequest`] (`least_request.rs`): the fewest calls in flight among two (or more) candidates drawn at
//!   random, Envoy's least request.
//! - [`RingHash`] (`ring_hash/`): consistent hashing of the call's key ([`CallInfo::key`], or a metadata
//!   entry's value) onto a ring of virtual nodes, so that a key keeps to one instance while membership allows.
//!
//! Which instances a client calls at all: `subset.rs`, a [`Subset`] of them by their labels (`version=v2`), and
//! [`Subset::of`] a discovery, whose feeds then hold only that subset.
//!
//! Beside the policies, `down.rs` is how each of them skips an instance it could not reach (for
//! [`DEFAULT_DOWN_FOR`]), and `outlier/` ([`OutlierConfig`]) is the balanced client's outlier detection:
//! it keeps ejected, stalled and pushed-back instances out of every policy's picks.
//!
//! ```
//! use std::sync::Arc;
//! use rpc_core::balance::{Balancer, Instance, SmoothWrr};
//!
//! let instances = vec![Instance::new("127.0.0.1:7001", 5), Instance::new("127.0.0.1:7002", 1)];
//! let balancer = Balancer::new(SmoothWrr::default(), instances);
//! let client = rpc_core::Client::balanced(balancer, rpc_core::ClientConfig::default());
//! # let _ = client;
//! ```

mod balancer;
mod down;
mod least_request;
mod outlier;
mod peak_ewma;
mod ring_hash;
mod subset;
mod swrr;
#[cfg(test)]
mod testing;

use std::sync::Arc;
use std::time::Duration;

use rpc_codec::Metadata;
use tokio::time::Instant;

use crate::method::MethodInfo;

pub use balancer::{Balancer, Picked};
pub use down::DEFAULT_DOWN_FOR;
pub use least_request::{DEFAULT_CHOICE_COUNT, LeastRequest};
pub use outlier::{
    DEFAULT_BASE_EJECTION, DEFAULT_CONSECUTIVE_FAILURES, DEFAULT_FAILURE_RATE, DEFAULT_INTERVAL,
    DEFAULT_MAX_EJECTION, DEFAULT_MAX_EJECTION_PERCENT, DEFAULT_MIN_CALLS, DEFAULT_SLOW_FACTOR,
    DEFAULT_STALL_AFTER, Ejected, OutlierConfig,
};
pub(crate) use outlier::{Live, Outliers};
pub use peak_ewma::{DEFAULT_DECAY, DEFAULT_FAILURE_PENALTY, DEFAULT_INITIAL_LATENCY, PeakEwma};
pub use ring_hash::{DEFAULT_MAX_POINTS, DEFAULT_POINTS_PER_WEIGHT, RingHash};
pub use subset::{InSubset, Labels, MAX_SUBSET_LEN, Subset, SubsetError, check_key};
pub use swrr::SmoothWrr;

/// An instance a policy may pick: its address, weight and labels.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Instance {
    /// `host:port`, as a client connects to it.
    pub address: Arc<str>,
    /// Its share of calls relative to the others' (policies that weigh instances use it; 0: never picked).
    pub weight: u32,
    /// What its registration says of it (`version=v2`, `zone=a`): what a [`Subset`] selects by.
    pub labels: Labels,
}

impl Instance {
    /// An instance at `address` of `weight`, without labels.
    pub fn new(address: &str, weight: u32) -> Instance {
        Instance {
            address: Arc::from(address),
            weight,
            labels: Labels::default(),
        }
    }

    /// The instance with these labels (instead of those it had).
    pub fn with_labels<K: Into<String>, V: Into<String>>(
        self,
        labels: impl IntoIterator<Item = (K, V)>,
    ) -> Instance {
        let labels = labels
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        Instance {
            labels: Arc::new(labels),
            ..self
        }
    }
}

/// The call a policy picks for.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct CallInfo<'a> {
    /// The service and method, and whether it is idempotent.
    pub method: &'static MethodInfo,
    /// The call's metadata, as it will be sent.
    pub metadata: &'a Metadata,
    /// The key the caller chose for the call ([`crate::CallOptions::hash_key`], a method argument say), hashed
    /// by [`hash_key`]; a policy that hashes calls to instances uses it before any other.
    pub key: Option<u64>,
    /// Whether the caller chose the call's deadline (a rule's deadline applies only to calls that did not).
    pub(crate) deadline_chosen: bool,
}

impl<'a> CallInfo<'a> {
    /// A call of `method` with `metadata`, and no key.
    pub fn new(method: &'static MethodInfo, metadata: &'a Metadata) -> CallInfo<'a> {
        CallInfo {
            method,
            metadata,
            key: None,
            deadline_chosen: true,
        }
    }

    /// The call, saying whether the caller chose its deadline.
    pub(crate) fn with_deadline_chosen(self, deadline_chosen: bool) -> CallInfo<'a> {
        CallInfo {
            deadline_chosen,
            ..self
        }
    }

    /// The call with the key the caller chose, already hashed ([`hash_key`]).
    pub fn with_key(self, key: Option<u64>) -> CallInfo<'a> {
        CallInfo { key, ..self }
    }
}

/// The hash of a call's key: the same on every machine and in every build (64-bit FNV-1a, then a finalizer that
/// spreads its bits), so that every client of a service sends a key to the same instance.
///
/// ```
/// use rpc_core::balance::hash_key;
/// assert_eq!(hash_key(b"user-42"), hash_key(b"user-42"));
/// assert_ne!(hash_key(b"user-42"), hash_key(b"user-43"));
/// ```
pub fn hash_key(key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // MurmurHash3's 64-bit finalizer: FNV's low bits alone spread poorly.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Whether `known` is `address`: by pointer first (a report names its instance with the address the policy
/// handed out, so it is found without comparing bytes), then by value.
pub(crate) fn is_address(known: &Arc<str>, address: &str) -> bool {
    (std::ptr::eq(known.as_ptr(), address.as_ptr()) && known.len() == address.len())
        || **known == *address
}

/// How a call to an instance went, as feedback to the [`Policy`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The instance answered (a value, an application error, or a refusal of a bad call).
    Success,
    /// The instance failed the call (deadline exceeded, an internal error, overload).
    Failure,
    /// The instance could not be reached, or its connection dropped, or it is draining: skip it for now.
    Unreachable,
    /// The caller stopped waiting (its future was dropped) before the instance answered.
    Cancelled,
}

/// Picks instances for calls and learns from their outcomes. Every method takes `&self`: a policy is shared by
/// every call of a client, and keeps its state behind its own lock (or atomics). Time is passed in, never read:
/// a policy is a state machine that tests drive on a paused clock, and a call reads the clock once for all of
/// its bookkeeping.
pub trait Policy: Send + Sync + 'static {
    /// Takes the current instances: called before the first pick and whenever the feed changes. Instances
    /// already known should keep what the policy learned of them.
    fn update(&self, instances: &[Instance]);

    /// The address of the instance for `call`, not one in `skip` (instances this call already tried), or
    /// `None` if no instance is left. `now` is the time of the pick, read once by the caller.
    fn pick(&self, call: &CallInfo<'_>, skip: &[Arc<str>], now: Instant) -> Option<Arc<str>>;

    /// How a call to `address` ended at `now`, `latency` after it was picked.
    fn report(&self, address: &str, outcome: Outcome, latency: Duration, now: Instant);
}

/// The instances of a service, kept current (by discovery, or fixed).
pub trait Feed: Send + Sync + 'static {
    /// Whether the instances changed since the last [`Feed::current`]: called before every pick, so it must
    /// be cheap (no lock).
    fn has_changed(&self) -> bool;

    /// The instances now; later calls of [`Feed::has_changed`] compare with these.
    fn current(&mut self) -> Vec<Instance>;
}

/// A fixed list of instances.
impl Feed for Vec<Instance> {
    fn has_changed(&self) -> bool {
        false
    }

    fn current(&mut self) -> Vec<Instance> {
        self.clone()
    }
}

/// Instances published through a tokio watch channel.
impl Feed for tokio::sync::watch::Receiver<Vec<Instance>> {
    fn has_changed(&self) -> bool {
        tokio::sync::watch::Receiver::has_changed(self).unwrap_or(false)
    }

    fn current(&mut self) -> Vec<Instance> {
        self.borrow_and_update().clone()
    }
}

/// Finds the instances of services: makes a [`Feed`] for one, and names the policy its clients use by default.
pub trait Discover {
    /// The instances of `service`, kept current.
    fn feed(&self, service: &str) -> Box<dyn Feed>;

    /// The policy a client of `service` uses unless it names one: [`PeakEwma`] with its defaults, which
    /// routes around slow and stalled instances best in `docs/RESILIENCE.md`'s runs.
    fn default_policy(&self, service: &str) -> Arc<dyn Policy> {
        let _ = service;
        Arc::new(PeakEwma::default())
    }

    /// The rules of `service` its clients follow, kept current, if this discovery has any (`rpc-registry`'s
    /// does: the rules applied to the registry). None by default.
    fn rules(&self, service: &str) -> Option<crate::client::RulesFeed> {
        let _ = service;
        None
    }
}

impl<T: Discover + ?Sized> Discover for &T {
    fn feed(&self, service: &str) -> Box<dyn Feed> {
        (**self).feed(service)
    }

    fn default_policy(&self, service: &str) -> Arc<dyn Policy> {
        (**self).default_policy(service)
    }

    fn rules(&self, service: &str) -> Option<crate::client::RulesFeed> {
        (**self).rules(service)
    }
}
