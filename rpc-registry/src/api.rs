//! The registry's own API, a `#[service]` trait served over rpc-core like any other: register, heartbeat,
//! deregister (writes, which need the registry's token when it has one), and instances, watch, watch_changes,
//! subscribe (a stream of changes, protocol 1.1), services, status (reads).
//!
//! Compatibility: a method is named on the wire by `"Registry.method"`, and bincode refuses a value with fields
//! it does not know; so a type that travels is never extended, and a new answer comes with a new method
//! (`watch_changes` answers [`Watched`], a [`Snapshot`] with the removals since the watcher's revision, while
//! `watch` keeps answering the [`Snapshot`] that older clients decode).

use std::collections::BTreeMap;

use rpc_core::service;
use serde::{Deserialize, Serialize};

/// An instance of a service, as registered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// The service it serves.
    pub service: String,
    /// Where it serves: `host:port`.
    pub address: String,
    /// Its share of the calls, relative to the other instances' weights.
    pub weight: u32,
    /// Free-form labels (zone, version, ...).
    pub metadata: BTreeMap<String, String>,
    /// The lease that keeps it registered.
    pub lease: u64,
    /// How many times this address registered for this service (on this registry); the highest wins.
    pub incarnation: u64,
}

/// A request to register an instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewInstance {
    /// The service it serves.
    pub service: String,
    /// Where it serves: `host:port`.
    pub address: String,
    /// Its share of the calls; 0 registers it without sending it calls.
    pub weight: u32,
    /// Free-form labels.
    pub metadata: BTreeMap<String, String>,
}

/// What keeps an instance registered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The lease id.
    pub id: u64,
    /// The instance's incarnation.
    pub incarnation: u64,
    /// Time after the last heartbeat at which the registry evicts the instance, in milliseconds.
    pub ttl_ms: u64,
    /// How often the registry expects heartbeats, in milliseconds (a third of the TTL).
    pub heartbeat_ms: u64,
}

impl Lease {
    /// The reference a heartbeat or a deregistration of this lease carries, for the instance of `service` at
    /// `address` it was granted to.
    ///
    /// ```
    /// let lease = rpc_registry::Lease { id: 7, incarnation: 2, ttl_ms: 3000, heartbeat_ms: 1000 };
    /// let held = lease.reference("Calc", "10.0.0.1:7000");
    /// assert_eq!((held.lease, held.incarnation, held.service.as_str()), (7, 2, "Calc"));
    /// ```
    pub fn reference(&self, service: &str, address: &str) -> LeaseRef {
        LeaseRef {
            lease: self.id,
            incarnation: self.incarnation,
            service: service.to_owned(),
            address: address.to_owned(),
        }
    }
}

/// Identifies a lease in a heartbeat or a deregistration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRef {
    /// The lease id.
    pub lease: u64,
    /// The incarnation it was granted to.
    pub incarnation: u64,
    /// The service it registered.
    pub service: String,
    /// The address it registered.
    pub address: String,
}

/// The instances of a service at a revision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The service.
    pub service: String,
    /// The registry process's identity: a restarted registry has a new one, and its revisions start again.
    pub epoch: u64,
    /// The registry's revision when the service last changed.
    pub revision: u64,
    /// Its instances, by address.
    pub instances: Vec<Instance>,
}

/// Why an instance left its service's list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "lowercase")]
pub enum RemovalReason {
    /// Its lease holder deregistered it (a graceful shutdown).
    #[error("deregistered")]
    Deregistered,
    /// No heartbeat came within the TTL: the registry evicted it.
    #[error("evicted (no heartbeat within the TTL)")]
    Evicted,
    /// A newer registration of the same address took its place (a restarted instance); the address stays listed
    /// with the new incarnation.
    #[error("superseded (the address registered again)")]
    Superseded,
}

/// An instance removed from a service, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removal {
    /// The removed instance's address.
    pub address: String,
    /// Its lease.
    pub lease: u64,
    /// Its incarnation.
    pub incarnation: u64,
    /// Why it was removed.
    pub reason: RemovalReason,
    /// The registry's revision of the removal.
    pub revision: u64,
}

/// A watch's answer with what became of the instances that left: the answer of
/// [`Registry::watch_changes`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watched {
    /// The instances now, as [`Registry::watch`] answers them.
    pub snapshot: Snapshot,
    /// The instances removed from the service after the watcher's revision and up to the snapshot's, oldest
    /// first, each with its reason; empty for a first call (`since` 0) or a call from another epoch. The
    /// registry remembers its last 1,000 changes, all services together: removals older than that are left
    /// out, and `complete` is then false.
    pub removed: Vec<Removal>,
    /// Whether `removed` lists every removal since the watcher's revision.
    pub complete: bool,
}

impl From<Snapshot> for Watched {
    /// A snapshot without removals (the answer of [`Registry::watch`]), so not complete.
    fn from(snapshot: Snapshot) -> Watched {
        Watched {
            snapshot,
            removed: Vec::new(),
            complete: false,
        }
    }
}

/// A service and how many instances it has.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSummary {
    /// The service's name.
    pub name: String,
    /// Its registered instances.
    pub instances: usize,
    /// The revision of its last change.
    pub revision: u64,
}

/// How an instance's heartbeats stand, as the registry sees them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InstanceState {
    /// Its last heartbeat came within half the TTL.
    Up,
    /// No heartbeat for over half the TTL: it missed at least one, and is evicted at the TTL unless one comes.
    Late,
}

/// An instance with how its heartbeats stand: the answer of [`Registry::status`], as older clients decode it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceStatus {
    /// The instance as clients see it: with the weight an operator set for it, if one did.
    pub instance: Instance,
    /// Up or late.
    pub state: InstanceState,
    /// Milliseconds since its last heartbeat (or its registration).
    pub heartbeat_age_ms: u64,
}

/// An instance with how its heartbeats stand, the weight it registered with and its load: the answer of
/// [`Registry::report`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceReport {
    /// The instance as clients see it, and how its heartbeats stand.
    pub status: InstanceStatus,
    /// The weight it registered with; `status.instance.weight` differs when an operator set another (0 drains
    /// it).
    pub registered_weight: u32,
    /// What its load reports say over the registry's window, if it sends them.
    pub load: Option<LoadSummary>,
}

/// A service's instances as [`Registry::report`] answers them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceReport {
    /// The service's name.
    pub name: String,
    /// The revision of its last change.
    pub revision: u64,
    /// Its instances, by address.
    pub instances: Vec<InstanceReport>,
}

/// Where a registry keeps its state, its replicas, and which replica holds each instance, as
/// [`Registry::placement`] answers them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// The store: `memory` (this process alone) or `etcd` (shared by replicas).
    pub store: String,
    /// The name of the replica that answered, if the store has replicas.
    pub replica: Option<String>,
    /// Every live replica, this one included, by name.
    pub replicas: Vec<ReplicaInfo>,
    /// The replica that holds each instance (the one its heartbeats renew it with), by service and address;
    /// empty when the store has no replicas.
    pub held: Vec<Held>,
}

/// A registry replica.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaInfo {
    /// Its name.
    pub name: String,
    /// The address of its RPC API, as it advertises it.
    pub api: String,
    /// The address of its HTTP port, if it has one.
    pub http: Option<String>,
}

/// Which replica holds an instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    /// The instance's service.
    pub service: String,
    /// The instance's address.
    pub address: String,
    /// Its incarnation.
    pub incarnation: u64,
    /// The replica that holds it.
    pub replica: String,
}

/// An instance's load over the last reports the registry keeps (at most [`LOAD_WINDOW`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadSummary {
    /// Reports in the window.
    pub reports: u32,
    /// The milliseconds they cover.
    pub window_ms: u64,
    /// Calls answered in them.
    pub calls: u64,
    /// Of them, those that failed.
    pub errors: u64,
    /// The highest 99th percentile latency among them, in microseconds.
    pub p99_us: u64,
    /// Calls under way at the last report.
    pub in_flight: u64,
}

/// The load reports the registry keeps per instance: 10 (ten heartbeats, 10 s at the default TTL).
pub const LOAD_WINDOW: usize = 10;

/// A service with each instance's status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// The service's name.
    pub name: String,
    /// The registry's revision when the service last changed.
    pub revision: u64,
    /// Its instances, by address.
    pub instances: Vec<InstanceStatus>,
}

impl From<ServiceStatus> for ServiceReport {
    /// A status as a report says it, from a registry that answers no reports: each instance's own weight taken
    /// to be the one clients see, and no load.
    fn from(status: ServiceStatus) -> ServiceReport {
        ServiceReport {
            name: status.name,
            revision: status.revision,
            instances: status
                .instances
                .into_iter()
                .map(|status| InstanceReport {
                    registered_weight: status.instance.weight,
                    status,
                    load: None,
                })
                .collect(),
        }
    }
}

/// One applied revision of a service's rules.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RulesRevision {
    /// The service.
    pub service: String,
    /// Its number: 1 for the first document applied to the service, one more for each after (a rollback too).
    pub revision: u64,
    /// The document, as JSON (`rpc_core::rules::Rules`), checked before it was applied.
    pub rules: String,
    /// When it was applied, in milliseconds since the Unix epoch.
    pub applied_at_ms: u64,
    /// What it came from: `apply`, or `rollback to N`.
    pub origin: String,
}

/// Why the registry refused a write.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum RegistryError {
    /// The registry needs a token and none, or a wrong one, came.
    #[error("{0}")]
    Unauthenticated(String),
    /// The lease is not known: it expired, or the registry restarted. Register again.
    #[error(
        "lease {lease} is unknown to the registry (it expired, or the registry restarted): register again"
    )]
    UnknownLease {
        /// The lease id.
        lease: u64,
    },
    /// A newer registration of the same address replaced this lease; its holder must stop.
    #[error(
        "lease {lease} (incarnation {incarnation}) was superseded by {}: a newer instance took over",
        successor(.incarnation, .current)
    )]
    Superseded {
        /// The lease id.
        lease: u64,
        /// Its incarnation.
        incarnation: u64,
        /// The current incarnation of the address.
        current: u64,
    },
    /// The registration itself is not valid.
    #[error("invalid registration: {0}")]
    Invalid(String),
    /// The registration would cross one of the registry's limits.
    #[error("registration refused: {0}")]
    LimitExceeded(String),
    /// The registered address failed the registry's address check.
    #[error("registration refused: {0}")]
    AddressRefused(String),
    /// A rules document failed its checks: every problem, with its field.
    #[error("rules refused: {0}")]
    InvalidRules(String),
    /// What a request names does not exist (a revision, say).
    #[error("{0}")]
    NotFound(String),
    /// A write of rules or of a weight did not reach the disk, so it did not take effect. (Added after the
    /// variants above: a client from before it reads such a refusal as an answer it cannot decode.)
    #[error("{0}")]
    NotStored(String),
}

/// What superseded a lease of `incarnation`, the address being at incarnation `current` now: a later
/// incarnation, or, when the lease expired first and the count started again, a later registration.
fn successor(incarnation: &u64, current: &u64) -> String {
    if current > incarnation {
        format!("incarnation {current} of the same address")
    } else {
        format!(
            "a later registration of the same address, made after this lease expired (now at incarnation \
             {current})"
        )
    }
}

/// The registry's API.
#[service(name = "Registry")]
pub trait Registry {
    /// Registers an instance; a registration of an address already registered for the service supersedes
    /// the earlier one. Needs the token.
    async fn register(&self, instance: NewInstance) -> Result<Lease, RegistryError>;

    /// Renews a lease. Needs the token.
    #[idempotent]
    async fn heartbeat(&self, lease: LeaseRef) -> Result<(), RegistryError>;

    /// Renews a lease, with the instance's load since its last report. Needs the token.
    async fn heartbeat_with_load(
        &self,
        lease: LeaseRef,
        load: rpc_core::server::layer::LoadReport,
    ) -> Result<(), RegistryError>;

    /// Removes an instance at once (graceful shutdown). Needs the token.
    #[idempotent]
    async fn deregister(&self, lease: LeaseRef) -> Result<(), RegistryError>;

    /// The instances of `service` now.
    #[idempotent]
    async fn instances(&self, service: String) -> Snapshot;

    /// The instances of `service` once they differ from revision `since` of registry `epoch`: at once if they
    /// already do, else as soon as they change, or after `wait_ms` (capped by the registry) with no change.
    #[idempotent]
    async fn watch(&self, service: String, epoch: u64, since: u64, wait_ms: u64) -> Snapshot;

    /// As [`Registry::watch`], with the instances removed since revision `since` and why (see [`Watched`]).
    #[idempotent]
    async fn watch_changes(&self, service: String, epoch: u64, since: u64, wait_ms: u64)
    -> Watched;

    /// The instances of `service` as a stream (protocol 1.1), in place of repeated watches: the first item at
    /// once, as [`Registry::watch_changes`] answers a watcher at `since` of registry `epoch`; then an item as
    /// soon as the service changes, with the removals since the item before, or after `wait_ms` (at least 1 s,
    /// capped by the registry) unchanged, so that the watcher knows the stream lives. It ends when the registry
    /// shuts down, or cannot track one more service.
    #[idempotent]
    async fn subscribe(
        &self,
        service: String,
        epoch: u64,
        since: u64,
        wait_ms: u64,
    ) -> impl rpc_core::Stream<Item = Watched>;

    /// Every service with instances.
    #[idempotent]
    async fn services(&self) -> Vec<ServiceSummary>;

    /// The instances of `service` (of every service, if `None`) with how their heartbeats stand; services
    /// without instances are left out.
    #[idempotent]
    async fn status(&self, service: Option<String>) -> Vec<ServiceStatus>;

    /// As [`Registry::status`], with each instance's own weight (beside the one an operator set) and its load
    /// reports.
    #[idempotent]
    async fn report(&self, service: Option<String>) -> Vec<ServiceReport>;

    /// Where this registry keeps its state, its replicas, and which replica holds each instance of `service`
    /// (of every service, if `None`). A registry older than the store seam answers `Unimplemented`.
    #[idempotent]
    async fn placement(&self, service: Option<String>) -> Placement;

    /// Applies a rules document (JSON, `rpc_core::rules::Rules`) to the service it names, as its next revision,
    /// once it passes every check. Needs the registry's own token, unless the registry is open.
    async fn apply_rules(&self, rules: String) -> Result<RulesRevision, RegistryError>;

    /// The rules of `service` in force, if any.
    #[idempotent]
    async fn rules(&self, service: String) -> Option<RulesRevision>;

    /// Every revision of `service`'s rules, oldest first.
    #[idempotent]
    async fn rules_history(&self, service: String) -> Vec<RulesRevision>;

    /// Applies the document of an earlier revision again, as the next revision. Needs the registry's own
    /// token, unless the registry is open.
    async fn rollback_rules(
        &self,
        service: String,
        revision: u64,
    ) -> Result<RulesRevision, RegistryError>;

    /// Sets the weight clients see for the instance at `address` of `service` in place of the one it
    /// registered with (0 drains it: no client picks it), or, with `None`, gives it back its own. The weight
    /// holds for later registrations of the address too, until undone, and survives a restart of a registry
    /// with a data directory. Answers the instance as clients now see it (`None` when no instance holds the
    /// address, which only an undo accepts). Needs the registry's own token, unless the registry is open.
    #[idempotent]
    async fn set_weight(
        &self,
        service: String,
        address: String,
        weight: Option<u32>,
    ) -> Result<Option<Instance>, RegistryError>;

    /// The rules of `service` once their revision differs from `since`: at once if it already does, else as
    /// soon as it changes, or after `wait_ms` (capped by the registry) with no change.
    #[idempotent]
    async fn watch_rules(&self, service: String, since: u64, wait_ms: u64)
    -> Option<RulesRevision>;
}
