//! The registry fuzz harness, shared by the cargo-fuzz target `registry_requests` and the `cargo test` replay of
//! its seeds and past crashes (`rpc-registry/tests/fuzz_regressions.rs`).
//!
//! Input: up to [`MAX_OPS`] operations, each an opcode byte, a length byte and that many payload bytes. Most
//! operations decode their payload as a method's argument tuple with `decode_within`, as the server skeleton
//! does, and call that method on a [`RegistryService`] with small limits ([`config`]) on a paused clock; others
//! advance the clock, or build a request from a few bytes (a registration from tables of names, a heartbeat
//! from a lease granted earlier, a watch from the registry's real epoch and revision) and pass it through the
//! codec. The harness keeps its own model of the leases it was granted and checks after every operation, besides
//! "no panic":
//! - no service lists more than `max_instances_per_service` instances, all together no more than
//!   `max_instances`, and no more than `max_services` services have instances;
//! - the registry lists exactly the instances of the model, as registered: nothing nobody registered, nothing
//!   evicted before its TTL, nothing left listed past its TTL (plus the rounding of two timer wheels);
//! - registrations are accepted or refused as the limits say, a refused one changes nothing, a granted lease
//!   is new and its incarnation follows the address's last one;
//! - a heartbeat or deregistration is accepted exactly for a current lease named by its own id, incarnation,
//!   service and address (credentials are checked against the service a `LeaseRef` names, so one naming another
//!   service or address must renew or remove nothing); a refusal says the lease was superseded when a later
//!   lease holds its address, and unknown otherwise;
//! - within the registry's epoch a service's revision never goes back, except to 0 once it has no instance and
//!   nobody watches it (the registry then forgets it; watchers treat any other revision as a change), and its
//!   instances never change without a new revision;
//! - a watch answers at once when its epoch or revision is not the current one, and answers "unchanged" only
//!   after its wait;
//! - `status` lists the same services and instances at the same revisions, each with the age of its last
//!   heartbeat, and late exactly when that is over half the TTL;
//! - every listed instance's own `LeaseRef` is accepted by a heartbeat. A heartbeat renews the lease, so this is
//!   checked on the operation that asks for it and at the end of the input, not after every operation (that
//!   would keep every lease alive and leave expiry unexplored);
//! - at the end, once the clock passes the TTL with no heartbeat, every instance is evicted and every watch has
//!   answered.
//!
//! Opcodes (the byte modulo 13): 0 `register`, 1 `heartbeat`, 2 `deregister`, 3 `instances`, 4 `watch` (given
//! up after [`INLINE_WATCH`]), 5 `services`, 6 advance the clock by the payload's first byte modulo 16 ms,
//! 7 a registration built from tables, 8 and 9 a heartbeat and a deregistration of a lease granted earlier,
//! 10 a watch of a followed service with the real epoch and revision, 11 a heartbeat of every listed instance,
//! 12 `status`. The payload of 0 to 5 and 12 is the method's argument tuple; the others read a few bytes.

// Paths relative to this file, which `cargo test` and the fuzz target both include by `#[path]`.
#[path = "harness/calls.rs"]
mod calls;
#[path = "harness/checks.rs"]
mod checks;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rpc_core::codec::{Bincode, PayloadCodec};
use rpc_registry::api::{LeaseRef, NewInstance, Registry};
use rpc_registry::{RegistryConfig, RegistryService};
use serde::Serialize;
use serde::de::DeserializeOwned;

use calls::{Held, Watch};
use checks::{Seen, View};

/// Most operations of one input, to keep an execution short.
const MAX_OPS: usize = 64;
/// Most service names the harness follows beyond those with instances; each costs an `instances` call per check.
const MAX_NAMES: usize = 16;
/// The registry's TTL.
const TTL: Duration = Duration::from_millis(6);
/// The registry's longest watch.
const MAX_WATCH_WAIT: Duration = Duration::from_millis(5);
/// How long the harness awaits a watch it calls inline before dropping it (as a caller that gives up).
const INLINE_WATCH: Duration = Duration::from_millis(1);
/// How late an eviction may come: tokio-util's `DelayQueue` and tokio's timer each round a deadline up to the
/// next millisecond.
const EVICTION_SLACK: Duration = Duration::from_millis(3);
/// The servers' limit on the memory of decoded arguments, small enough that payloads reach it.
const MAX_DECODED_LEN: usize = 4096;
/// How many times the harness yields for the eviction task and spawned watches to catch up after an operation
/// that moved the clock or while watches run (each yield lets the timer fire, or one woken task run).
const SETTLE_YIELDS: usize = 8;

const MAX_INSTANCES: usize = 16;
const MAX_INSTANCES_PER_SERVICE: usize = 4;
const MAX_SERVICES: usize = 8;
const MAX_METADATA_ENTRIES: usize = 4;
const MAX_METADATA_BYTES: usize = 64;
const MAX_NAME_LEN: usize = 32;

/// Service names of the registrations the harness builds: ten valid ones (more than `max_services`), an empty
/// one and one over `max_name_len`.
const SERVICES: [&str; 12] = [
    "Calc",
    "Echo",
    "S2",
    "S3",
    "S4",
    "S5",
    "S6",
    "S7",
    "S8",
    "S9",
    "",
    "ServiceNameLongerThanThirtyTwoBytes",
];
/// Addresses of the registrations the harness builds: six valid ones (more than a service may have), an empty
/// one and one over `max_name_len`.
const ADDRESSES: [&str; 8] = [
    "10.0.0.1:7000",
    "10.0.0.2:7000",
    "10.0.0.3:7000",
    "10.0.0.4:7000",
    "10.0.0.5:7000",
    "10.0.0.6:7000",
    "",
    "address.longer.than.thirty-two.bytes:7000",
];

/// The registry's configuration: small limits and timings, writes open (no token, no address check).
fn config() -> RegistryConfig {
    RegistryConfig {
        ttl: TTL,
        max_watch_wait: MAX_WATCH_WAIT,
        max_instances: MAX_INSTANCES,
        max_instances_per_service: MAX_INSTANCES_PER_SERVICE,
        max_services: MAX_SERVICES,
        max_metadata_entries: MAX_METADATA_ENTRIES,
        max_metadata_bytes: MAX_METADATA_BYTES,
        max_name_len: MAX_NAME_LEN,
        ..RegistryConfig::default()
    }
}

/// Runs one input on a new current-thread runtime with a paused clock; panics if a property does not hold.
pub(crate) fn run(data: &[u8]) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime builds");
    runtime.block_on(async {
        let mut fuzz = Fuzz::start().await;
        let mut data = data;
        for _ in 0..MAX_OPS {
            let [op, len, rest @ ..] = data else {
                break;
            };
            let (payload, tail) = rest.split_at(usize::from(*len).min(rest.len()));
            data = tail;
            let moved = fuzz.op(*op, payload).await;
            if moved || !fuzz.watches.is_empty() {
                fuzz.settle().await;
            }
            fuzz.check().await;
        }
        fuzz.finish().await;
    });
}

/// Decodes a method's arguments as the server skeleton does: their tuple, within a limit on their memory.
fn decode<T: DeserializeOwned>(payload: &[u8]) -> Option<T> {
    Bincode.decode_within(payload, MAX_DECODED_LEN).ok()
}

/// Passes arguments the harness built through the codec, as a client's call would reach the server.
fn through_codec<T: Serialize + DeserializeOwned>(args: &T) -> T {
    let bytes = Bincode.to_vec(args).expect("arguments encode");
    Bincode
        .decode_within(&bytes, MAX_DECODED_LEN)
        .expect("arguments decode from their own encoding")
}

/// One input's registry, runtime state and model.
struct Fuzz {
    registry: RegistryService,
    epoch: u64,
    /// The current lease of each (service, address), as far as the harness knows.
    model: BTreeMap<(String, String), Held>,
    /// Every lease granted, as its holder would name it.
    granted: Vec<LeaseRef>,
    last_lease: u64,
    /// Service names the harness follows (those of the model are followed anyway).
    names: BTreeSet<String>,
    /// Services ever watched: a watch its caller gave up leaves the service's entry behind.
    watched: BTreeSet<String>,
    seen: BTreeMap<String, Seen>,
    watches: Vec<Watch>,
    /// The view of the last check: the registry as the next operation finds it (nothing runs in between).
    last: View,
}

impl Fuzz {
    async fn start() -> Fuzz {
        let (registry, evictions) = RegistryService::new(config()).expect("valid config");
        tokio::spawn(evictions);
        let epoch = registry.instances(String::new()).await.epoch;
        Fuzz {
            registry,
            epoch,
            model: BTreeMap::new(),
            granted: Vec::new(),
            last_lease: 0,
            names: BTreeSet::new(),
            watched: BTreeSet::new(),
            seen: BTreeMap::new(),
            watches: Vec::new(),
            last: View::default(),
        }
    }

    /// Runs one operation; returns whether it may have moved the clock or spawned a task.
    async fn op(&mut self, op: u8, payload: &[u8]) -> bool {
        let byte = |i: usize| payload.get(i).copied().unwrap_or(0);
        let op = op % 13;
        let moves = matches!(op, 4 | 6 | 10);
        match op {
            0 => {
                if let Some((new,)) = decode::<(NewInstance,)>(payload) {
                    self.register(new).await;
                }
            }
            1 => {
                if let Some((lease,)) = decode::<(LeaseRef,)>(payload) {
                    self.heartbeat(lease).await;
                }
            }
            2 => {
                if let Some((lease,)) = decode::<(LeaseRef,)>(payload) {
                    self.deregister(lease).await;
                }
            }
            3 => {
                if let Some((service,)) = decode::<(String,)>(payload) {
                    let snapshot = self.registry.instances(service.clone()).await;
                    self.check_answer(&service, &snapshot);
                }
            }
            4 => {
                if let Some((service, epoch, since, wait_ms)) =
                    decode::<(String, u64, u64, u64)>(payload)
                {
                    self.watch(service, epoch, since, wait_ms, None).await;
                }
            }
            5 => {
                if decode::<()>(payload).is_some() {
                    // Compared with the instances of every service by `check`.
                    let _ = self.registry.services().await;
                }
            }
            6 => tokio::time::advance(Duration::from_millis(u64::from(byte(0) % 16))).await,
            7 => {
                let new = made_registration(payload);
                self.register(through_codec(&(new,)).0).await;
            }
            8 | 9 => {
                if self.granted.is_empty() {
                    return false;
                }
                let mut lease = self.granted[usize::from(byte(0)) % self.granted.len()].clone();
                let other = &self.granted[usize::from(byte(2)) % self.granted.len()];
                match byte(1) % 6 {
                    0 => {}
                    1 => lease.incarnation = lease.incarnation.wrapping_add(1),
                    2 => lease.incarnation = lease.incarnation.wrapping_sub(1),
                    3 => lease.service.clone_from(&other.service),
                    4 => lease.address.clone_from(&other.address),
                    _ => lease.lease = other.lease,
                }
                let (lease,) = through_codec(&(lease,));
                if op == 8 {
                    self.heartbeat(lease).await;
                } else {
                    self.deregister(lease).await;
                }
            }
            10 => {
                let followed: Vec<&String> = self.names.iter().collect();
                let service = match followed.len() {
                    0 => SERVICES[usize::from(byte(0)) % SERVICES.len()].to_owned(),
                    n => followed[usize::from(byte(0)) % n].clone(),
                };
                let flags = byte(1);
                let epoch = if flags & 1 == 0 {
                    self.epoch
                } else {
                    self.epoch ^ 2
                };
                let since = if flags & 2 == 0 {
                    self.seen.get(&service).map_or(0, |s| s.revision)
                } else {
                    u64::from(byte(2))
                };
                let wait_ms = u64::from(byte(3) % 8);
                let spawned =
                    (flags & 4 != 0).then(|| Duration::from_millis(u64::from(byte(4) % 10)));
                self.learn(&service);
                let (service, epoch, since, wait_ms) =
                    through_codec(&(service, epoch, since, wait_ms));
                self.watch(service, epoch, since, wait_ms, spawned).await;
            }
            11 => self.heartbeat_every_instance().await,
            _ => {
                if let Some((service,)) = decode::<(Option<String>,)>(payload) {
                    self.check_status(service).await;
                }
            }
        }
        moves
    }

    /// Follows `service` from now on, up to [`MAX_NAMES`] names: those registered or watched by name from
    /// [`SERVICES`] (the names of reads alone are checked in their answer, not followed, so that random names do
    /// not crowd out the ones that matter).
    fn learn(&mut self, service: &str) {
        if self.names.len() < MAX_NAMES && !self.names.contains(service) {
            self.names.insert(service.to_owned());
        }
    }

    /// Lets the eviction task and the spawned watches run up to the current time.
    async fn settle(&self) {
        for _ in 0..SETTLE_YIELDS {
            tokio::task::yield_now().await;
        }
    }

    /// The end of an input: every listed instance's own lease is accepted; then, with no heartbeat for longer
    /// than the TTL, every instance is evicted and every watch has answered.
    async fn finish(&mut self) {
        self.heartbeat_every_instance().await;
        self.settle().await;
        self.check().await;
        tokio::time::advance(TTL + EVICTION_SLACK + Duration::from_millis(10)).await;
        self.settle().await;
        self.check().await;
        assert!(
            self.model.is_empty(),
            "instances outlived their TTL: {:?}",
            self.model.keys()
        );
        assert!(
            self.watches.is_empty(),
            "{} watches still running",
            self.watches.len()
        );
        assert!(self.registry.services().await.is_empty());
    }
}

/// A registration built from a few bytes: a service and an address from [`SERVICES`] and [`ADDRESSES`], a
/// weight, and up to five metadata entries of up to 19 bytes each.
fn made_registration(payload: &[u8]) -> NewInstance {
    let byte = |i: usize| payload.get(i).copied().unwrap_or(0);
    let entries = usize::from(byte(3) % 6);
    let value = "v".repeat(usize::from(byte(4) % 20));
    NewInstance {
        service: SERVICES[usize::from(byte(0)) % SERVICES.len()].to_owned(),
        address: ADDRESSES[usize::from(byte(1)) % ADDRESSES.len()].to_owned(),
        weight: u32::from(byte(2)),
        metadata: (0..entries)
            .map(|i| (format!("k{i}"), value.clone()))
            .collect(),
    }
}
