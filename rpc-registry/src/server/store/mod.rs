//! The store seam: where the registry keeps its two kinds of state, instances (ephemeral: leases renewed by
//! heartbeats, rebuilt by re-registration) and rules (durable: revisioned documents), with the weights
//! operators set beside them. [`Store`] is the trait the service writes through; [`memory::MemoryStore`] (the
//! default) keeps everything in this process, and `etcd::EtcdStore` (feature `etcd`) keeps it in etcd, so that
//! several registry replicas serve the same instances and rules.
//!
//! Every store keeps an [`Index`]: the instances of every service in memory, with their revisions and history,
//! which every read of the registry (its API, its HTTP view) takes from. Only the store writes the index: the
//! memory store as each write happens, the etcd store as etcd's watch reports each change, in revision order.
//! Heartbeats never leave the process: they renew a lease in the index of the replica that holds it.
//!
//! # Layout
//! - this file: [`Store`], [`Index`] and its read guard [`Reading`], [`StoreStatus`].
//! - `state` (leases, revisions, the expiry wheel; `state/mirror.rs`: changes a store elsewhere reports),
//!   `listing` (each service's instances as immutable lists that reads share), `history` (the last changes,
//!   with why instances left): the index itself.
//! - `rules_store` (every revision of each service's rules, with their watchers), `weights` (the weights
//!   operators set), `data_dir` (whole-file writes to the data directory that keeps those two for the memory
//!   store).
//! - `memory`: the in-memory store; `etcd` (feature `etcd`): the etcd store.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};

use rpc_core::rules::Rules;
use rpc_core::server::layer::LoadReport;
use serde::Serialize;

use crate::api::{Instance, Lease, LeaseRef, NewInstance, RegistryError, RulesRevision};
use crate::server::credentials::Identity;

pub(crate) mod data_dir;
#[cfg(feature = "etcd")]
pub(crate) mod etcd;
pub(crate) mod history;
pub(crate) mod listing;
pub(crate) mod memory;
pub(crate) mod rules_store;
pub(crate) mod state;
pub(crate) mod weights;

use rules_store::RulesStore;
use state::State;

/// A boxed future of a store's, so that the service holds any store as `Arc<dyn Store>`.
pub(crate) type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The service's check that the caller may act on the instance that the given identity registered (`None`: no
/// instance holds the address). A store runs it where it decides, so that no other write slips in between.
pub(crate) type OwnerCheck<'a> =
    &'a (dyn Fn(Option<&Identity>) -> Result<(), RegistryError> + Sync);

/// Where the registry keeps instances, rules and weights. Writes are checked by the service first (sizes,
/// credentials, addresses); the store checks what needs its state (limits, owners, incarnations).
pub(crate) trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// The instances as reads see them.
    fn index(&self) -> &Index;

    /// Registers `new` for `owner`, superseding the instance at its address if `check` allows.
    fn register<'a>(
        &'a self,
        new: NewInstance,
        owner: Identity,
        check: OwnerCheck<'a>,
    ) -> Boxed<'a, Result<Lease, RegistryError>>;

    /// Renews `lease` (a heartbeat), adding `load` to its instance's report. Never leaves the process: a
    /// replica renews only the leases it holds, and answers `UnknownLease` for others (whose instances then
    /// register again with it).
    fn renew(
        &self,
        lease: &LeaseRef,
        load: Option<LoadReport>,
        check: OwnerCheck<'_>,
    ) -> Result<(), RegistryError> {
        renew_in(self.index(), lease, load, check)
    }

    /// Removes the instance of `lease` if `check` allows; `Ok(false)` if it was already gone.
    fn deregister<'a>(
        &'a self,
        lease: LeaseRef,
        check: OwnerCheck<'a>,
    ) -> Boxed<'a, Result<bool, RegistryError>>;

    /// The store's own work, until dropped: evicting leases as their timers fire (calling `evicted` for each),
    /// and, for a store elsewhere, following its changes.
    fn run(self: Arc<Self>, evicted: Box<dyn Fn() + Send + Sync>) -> Boxed<'static, ()>;

    /// Every revision of every service's rules, as reads see them.
    fn rules(&self) -> &RulesStore;

    /// Applies `rules` (checked) as the next revision of their service.
    fn apply_rules<'a>(
        &'a self,
        rules: &'a Rules,
        origin: String,
    ) -> Boxed<'a, Result<RulesRevision, RegistryError>>;

    /// Sets (or, with `None`, undoes) an operator's weight for `address` in `service`; answers the instance as
    /// clients now see it.
    fn set_weight<'a>(
        &'a self,
        service: &'a str,
        address: &'a str,
        weight: Option<u32>,
    ) -> Boxed<'a, Result<Option<Instance>, RegistryError>>;

    /// What the store is and how it fares, for `/healthz` and the dashboard.
    fn status(&self) -> StoreStatus;

    /// Whether several registry processes share this store's epoch and revisions (replicas): a watcher may
    /// then come with a revision this replica has yet to apply.
    fn replicated(&self) -> bool {
        false
    }

    /// Which replica holds the instance at `address` of `service`, if the store has replicas.
    fn holder(&self, _service: &str, _address: &str) -> Option<String> {
        None
    }
}

/// Renews `lease` in `index`, if `check` allows: what every store's heartbeat does in the end.
fn renew_in(
    index: &Index,
    lease: &LeaseRef,
    load: Option<LoadReport>,
    check: OwnerCheck<'_>,
) -> Result<(), RegistryError> {
    let mut state = index.write();
    let owner = state.lease_owner(lease);
    check(owner)?;
    let listed = state.heartbeat(lease, tokio::time::Instant::now())?;
    // Under the lock: an operator's weight swaps the instance's entry, and the report must reach the entry in
    // force.
    if let (Some(listed), Some(load)) = (listed, load) {
        listed.add_load(load);
    }
    Ok(())
}

/// Where a registry keeps instances and rules.
#[derive(Clone, Debug, Default)]
pub enum StoreConfig {
    /// In this process (the default): rules and weights in the data directory, if there is one.
    #[default]
    Memory,
    /// In etcd, shared by every replica that names the same endpoints and prefix.
    #[cfg(feature = "etcd")]
    Etcd(etcd::EtcdConfig),
}

/// What a store is and how it fares.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct StoreStatus {
    /// `memory` or `etcd`.
    pub(crate) kind: &'static str,
    /// Whether it can take writes now.
    pub(crate) healthy: bool,
    /// What is wrong, if it is not healthy.
    pub(crate) problem: Option<String>,
    /// This replica's name, if the store has replicas.
    pub(crate) replica: Option<String>,
    /// Every live replica (this one included), if the store has replicas.
    pub(crate) replicas: Vec<Replica>,
}

impl StoreStatus {
    /// The status of a store that is this process alone.
    pub(crate) fn alone() -> StoreStatus {
        StoreStatus {
            kind: "memory",
            healthy: true,
            problem: None,
            replica: None,
            replicas: Vec::new(),
        }
    }
}

/// A registry replica, as the others see it.
pub(crate) type Replica = crate::api::ReplicaInfo;

/// The instances of every service, in memory: what reads take from, and what the store writes.
#[derive(Debug)]
pub(crate) struct Index {
    state: Mutex<State>,
}

impl Index {
    pub(crate) fn new(state: State) -> Index {
        Index {
            state: Mutex::new(state),
        }
    }

    /// The index for reading, under its lock: take `Arc`s and copy after releasing it.
    pub(crate) fn read(&self) -> Reading<'_> {
        Reading(self.write())
    }

    /// The index for writing: the store's alone.
    fn write(&self) -> MutexGuard<'_, State> {
        rpc_core::sync::lock(&self.state)
    }
}

/// The index under its lock, for reading: the state's `&self` methods, and the reads that cache what they build.
pub(crate) struct Reading<'a>(MutexGuard<'a, State>);

impl std::ops::Deref for Reading<'_> {
    type Target = State;

    fn deref(&self) -> &State {
        &self.0
    }
}

impl Reading<'_> {
    /// The instances of `service` at its revision.
    pub(crate) fn listing(&mut self, service: &str) -> Arc<listing::Listing> {
        self.0.listing(service)
    }

    /// Every service with instances.
    pub(crate) fn listings(&mut self) -> listing::Listings {
        self.0.listings()
    }

    /// The revision of `service` to watch (see [`State::subscribe`]).
    pub(crate) fn subscribe(&mut self, service: &str) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.0.subscribe(service)
    }

    /// Drops the entry of `service` if it has no instance and nobody watches it.
    pub(crate) fn forget_if_unused(&mut self, service: &str) {
        self.0.forget_if_unused(service)
    }
}
