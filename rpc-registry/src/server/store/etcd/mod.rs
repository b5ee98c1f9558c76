//! The etcd store (feature `etcd`, `rpc-registry serve --store etcd --etcd-endpoints URL,...`): several
//! registry replicas serve the same instances and rules, kept in etcd.
//!
//! Designed around etcd's costs (a lease renewal is a write through raft: etcd-io/etcd#18069):
//! - a heartbeat is never an etcd write. Each replica keeps the liveness of the instances registered with it
//!   in its own index, as the memory store does, and holds one etcd lease of its own, kept alive every third
//!   of its TTL; it writes only membership changes: a registration, a deregistration, an eviction.
//! - every instance key is attached to its replica's lease: when a replica dies, its lease ends and etcd
//!   removes the instances that did not move. They move within one heartbeat: a heartbeat to another replica is
//!   answered `UnknownLease` (only the replica that holds an instance renews it), and the instance registers
//!   there again, superseding its old key.
//! - revisions are etcd's: each replica applies etcd's changes to its index in revision order, from one watch
//!   of the whole prefix, and every replica of a cluster shares one epoch (the cluster's id). A watcher moves
//!   between replicas without missing or repeating a change. When etcd has compacted the revisions a replica
//!   needs, it reads the whole prefix again, as Kubernetes' watchers do on `410 Gone`, and applies the
//!   difference.
//!
//! Writes are transactions that compare the key's revision with what the index saw, so that two replicas
//! never overwrite each other's change unseen; a write answers once the replica's own index has applied it.
//!
//! Every replica must be given the same token and credentials file: an instance's owner is kept as the grant
//! that registered it (its index in the credentials), which another replica checks against its own.
//!
//! A replica that has not heard from etcd for two thirds of its lease's TTL refuses heartbeats (its lease, and
//! its instances with it, may end in etcd whatever it says): the instances' registrations then move to another
//! replica, as they do from one that hangs.
//!
//! # Layout
//! - this file: [`EtcdStore`], its configuration and its writes.
//! - `keys`: the keys and values in etcd.
//! - `follow`: the watch that applies etcd's changes to the index, and the lease's keep-alive.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp};
use rpc_core::rules::Rules;
use rpc_core::server::layer::LoadReport;
use tokio::sync::Notify;

use super::rules_store::RulesStore;
use super::state::{Limits, State};
use super::{Boxed, Index, OwnerCheck, Replica, Store, StoreStatus};
use crate::api::{
    Instance, Lease, LeaseRef, NewInstance, RegistryError, RemovalReason, RulesRevision,
};
use crate::server::config::RegistryConfig;
use crate::server::credentials::Identity;
use crate::server::service::shown;

mod follow;
pub(crate) mod keys;

use keys::{Keys, Marker, Stored};

/// How long a write waits for etcd, retries included (an election takes about a second), and for the
/// replica's own index to apply it: 5 s.
pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// How a replica reaches etcd and names itself.
#[derive(Clone, Debug)]
pub struct EtcdConfig {
    /// etcd's client URLs (`http://host:2379`); the client spreads over them and fails over between them.
    pub endpoints: Vec<String>,
    /// The prefix of every key (default `/rpc-registry/`): registries of several prefixes share one etcd.
    pub prefix: String,
    /// This replica's name, unique among the replicas (default: made at start from the host's process id and
    /// the time).
    pub replica: String,
    /// The address of this replica's RPC API as clients reach it, shown to operators.
    pub api: String,
    /// The address of its HTTP port, if it has one.
    pub http: Option<String>,
    /// How long etcd waits for one request before the client gives up on it (and retries within
    /// [`WRITE_TIMEOUT`]): 2 s.
    pub request_timeout: Duration,
    /// The TTL of this replica's etcd lease, if not the registry's TTL (the default): how long the instances it
    /// held outlive it in etcd. Their registrations move to another replica within a heartbeat, but each move
    /// is an etcd write: a replica that holds more instances than etcd writes in a TTL wants a longer lease,
    /// or they leave discovery until they have moved (docs/REGISTRY_SCALE.md). Whole seconds, at least 2.
    pub lease_ttl: Option<Duration>,
}

impl EtcdConfig {
    /// A configuration for `endpoints`, with the default prefix and a name made now.
    pub fn new(endpoints: Vec<String>) -> EtcdConfig {
        let made = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        EtcdConfig {
            endpoints,
            prefix: keys::DEFAULT_PREFIX.to_owned(),
            replica: format!("replica-{}-{made:x}", std::process::id()),
            api: String::new(),
            http: None,
            request_timeout: Duration::from_secs(2),
            lease_ttl: None,
        }
    }
}

/// Instances and rules in etcd, mirrored in this replica's index.
pub(crate) struct EtcdStore {
    index: Index,
    rules: RulesStore,
    client: etcd_client::Client,
    keys: Keys,
    config: EtcdConfig,
    /// The registry's TTL: the etcd lease's, and the instances'.
    ttl: Duration,
    max_weights: usize,
    /// This replica's etcd lease: its instances' keys live as long as it does.
    lease: AtomicI64,
    /// The last etcd revision the index applied.
    applied: tokio::sync::watch::Sender<i64>,
    /// Why etcd cannot be used now, if it cannot.
    problem: Mutex<Option<String>>,
    /// Every live replica, by name.
    replicas: Mutex<BTreeMap<String, Replica>>,
    /// The replica that holds each instance, by service and address.
    holders: Mutex<HashMap<(String, String), String>>,
    /// Wakes the evictions when a lease of this replica's is added to an empty timer wheel.
    added: Notify,
    /// When etcd last confirmed this replica's lease (granted, or kept alive).
    confirmed: Mutex<tokio::time::Instant>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("config", &self.config)
            .field("lease", &self.lease)
            .field("applied", &*self.applied.borrow())
            .finish_non_exhaustive()
    }
}

impl EtcdStore {
    /// Connects to etcd, takes this replica's lease, reads every key into the index and announces the replica.
    pub(crate) async fn open(
        config: &RegistryConfig,
        etcd: EtcdConfig,
    ) -> Result<EtcdStore, String> {
        let options = etcd_client::ConnectOptions::new()
            .with_connect_timeout(etcd.request_timeout)
            .with_timeout(etcd.request_timeout)
            .with_keep_alive(Duration::from_secs(2), etcd.request_timeout)
            // A member cut off from the others' quorum refuses at once rather than serve a stale watch.
            .with_require_leader(true);
        let client = etcd_client::Client::connect(&etcd.endpoints, Some(options))
            .await
            .map_err(|e| {
                let at = etcd.endpoints.join(",");
                rpc_core::text::quoted(&format!("cannot connect to etcd at {at}: {e}"), 512)
            })?;
        let ttl = config.ttl;
        let store = EtcdStore {
            // The epoch is the cluster's, read with the first snapshot.
            index: Index::new(State::new(1, ttl, Limits::of(config))),
            rules: RulesStore::open(None, config.max_rules_revisions)?,
            client,
            keys: Keys::new(&etcd.prefix),
            config: etcd,
            ttl,
            max_weights: config.max_instances,
            lease: AtomicI64::new(0),
            applied: tokio::sync::watch::Sender::new(0),
            problem: Mutex::new(None),
            replicas: Mutex::new(BTreeMap::new()),
            holders: Mutex::new(HashMap::new()),
            added: Notify::new(),
            confirmed: Mutex::new(tokio::time::Instant::now()),
        };
        let quoted = |e: String| rpc_core::text::quoted(&e, 512);
        store.grant().await.map_err(quoted)?;
        // An election under way (no leader: refused at once) or a member down may fail a read: try again
        // within the write timeout before giving up on the start.
        let deadline = tokio::time::Instant::now() + WRITE_TIMEOUT;
        loop {
            match store.snapshot().await {
                Ok(()) => break,
                Err(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => return Err(quoted(e)),
            }
        }
        Ok(store)
    }

    /// The etcd lease's TTL in whole seconds: [`EtcdConfig::lease_ttl`] or the registry's TTL, at least 2 s.
    fn lease_ttl(&self) -> i64 {
        let ttl = self.config.lease_ttl.unwrap_or(self.ttl);
        i64::try_from(ttl.as_secs_f64().ceil() as u64)
            .unwrap_or(i64::MAX)
            .max(2)
    }

    /// Takes a new etcd lease for this replica and announces the replica under it.
    async fn grant(&self) -> Result<(), String> {
        let mut client = self.client.clone();
        let granted = client
            .lease_grant(self.lease_ttl(), None)
            .await
            .map_err(|e| format!("cannot take an etcd lease: {e}"))?;
        self.lease.store(granted.id(), Ordering::Relaxed);
        self.confirmed();
        let me = Replica {
            name: self.config.replica.clone(),
            api: self.config.api.clone(),
            http: self.config.http.clone(),
        };
        let value = serde_json::to_vec(&me).map_err(|e| e.to_string())?;
        client
            .put(
                self.keys.replica(&me.name),
                value,
                Some(PutOptions::new().with_lease(granted.id())),
            )
            .await
            .map_err(|e| format!("cannot announce the replica in etcd: {e}"))?;
        Ok(())
    }

    /// etcd confirmed this replica's lease now.
    pub(super) fn confirmed(&self) {
        *rpc_core::sync::lock(&self.confirmed) = tokio::time::Instant::now();
    }

    /// Runs the transaction `txn` makes, made again for each attempt (the replica's lease may have changed
    /// meanwhile), retrying while etcd cannot answer (an election, a member down) within [`WRITE_TIMEOUT`];
    /// answers whether its comparisons held and the revision it saw or made.
    async fn commit(
        &self,
        what: &str,
        txn: impl Fn() -> Txn,
    ) -> Result<(bool, i64), RegistryError> {
        let deadline = tokio::time::Instant::now() + WRITE_TIMEOUT;
        let mut pause = Duration::from_millis(50);
        loop {
            let mut client = self.client.clone();
            match client.txn(txn()).await {
                Ok(done) => {
                    let revision = done.header().map_or(0, |h| h.revision());
                    return Ok((done.succeeded(), revision));
                }
                Err(e) if tokio::time::Instant::now() + pause < deadline => {
                    self.set_problem(Some(format!("etcd: {e}")));
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
                Err(e) => {
                    return Err(RegistryError::NotStored(format!(
                        "{what} could not be written to etcd within {WRITE_TIMEOUT:?}: {}",
                        shown(&e.to_string())
                    )));
                }
            }
        }
    }

    /// Waits until the index has applied `revision` (a write of this replica's), within [`WRITE_TIMEOUT`].
    async fn applied(&self, what: &str, revision: i64) -> Result<(), RegistryError> {
        let mut applied = self.applied.subscribe();
        match tokio::time::timeout(WRITE_TIMEOUT, applied.wait_for(|&at| at >= revision)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(RegistryError::NotStored(format!(
                "{what} was written to etcd at revision {revision}, but etcd's watch has not reported it \
                 within {WRITE_TIMEOUT:?}"
            ))),
        }
    }

    /// Waits a little for the index to reach `revision` after a comparison failed: another replica's write
    /// that the index has yet to apply. (That revision may be of a key outside the prefix, which no watch
    /// reports: the wait is short, and the caller tries again either way.)
    async fn caught_up(&self, revision: i64) {
        let mut applied = self.applied.subscribe();
        let _ = tokio::time::timeout(
            Duration::from_millis(500),
            applied.wait_for(|&at| at >= revision),
        )
        .await;
    }

    /// Records why etcd cannot be used now (escaped and cut: it quotes etcd's errors), or that it can.
    fn set_problem(&self, problem: Option<String>) {
        let problem = problem.map(|p| rpc_core::text::quoted(&p, 512));
        *rpc_core::sync::lock(&self.problem) = problem;
    }

    /// Removes the instance at `address` of `service` if its key is still at revision `lease`, recording why.
    async fn remove(
        &self,
        service: &str,
        address: &str,
        lease: u64,
        reason: RemovalReason,
    ) -> Result<bool, RegistryError> {
        let key = self.keys.instance(service, address);
        let marker = serde_json::to_vec(&Marker {
            address: address.to_owned(),
            reason,
        })
        .map_err(|e| RegistryError::NotStored(e.to_string()))?;
        let txn = || {
            Txn::new()
                .when([Compare::mod_revision(
                    key.clone(),
                    CompareOp::Equal,
                    i64::try_from(lease).unwrap_or(i64::MAX),
                )])
                .and_then([
                    TxnOp::put(self.keys.service(service), marker.clone(), None),
                    TxnOp::delete(key.clone(), None),
                ])
        };
        let (removed, revision) = self.commit("the removal", txn).await?;
        if removed {
            self.applied("the removal", revision).await?;
        }
        Ok(removed)
    }
}

impl Store for EtcdStore {
    fn index(&self) -> &Index {
        &self.index
    }

    fn register<'a>(
        &'a self,
        new: NewInstance,
        owner: Identity,
        check: OwnerCheck<'a>,
    ) -> Boxed<'a, Result<Lease, RegistryError>> {
        Box::pin(async move {
            let key = self.keys.instance(&new.service, &new.address);
            // Two tries: another replica may write the same address between our read and our write.
            for _ in 0..2 {
                let (incarnation, seen) = {
                    let mut state = self.index.write();
                    check(state.owner(&new.service, &new.address))?;
                    let incarnation = state.admit(&new)?;
                    (incarnation, state.lease_at(&new.service, &new.address))
                };
                let stored = Stored {
                    instance: Instance {
                        service: new.service.clone(),
                        address: new.address.clone(),
                        weight: new.weight,
                        metadata: new.metadata.clone(),
                        lease: 0,
                        incarnation,
                    },
                    owner: keys::owner_text(&owner),
                    replica: self.config.replica.clone(),
                };
                let value = serde_json::to_vec(&stored)
                    .map_err(|e| RegistryError::Invalid(e.to_string()))?;
                let seen = i64::try_from(seen.unwrap_or(0)).unwrap_or(i64::MAX);
                let txn = || {
                    let lease = self.lease.load(Ordering::Relaxed);
                    Txn::new()
                        .when([Compare::mod_revision(key.clone(), CompareOp::Equal, seen)])
                        .and_then([TxnOp::put(
                            key.clone(),
                            value.clone(),
                            Some(PutOptions::new().with_lease(lease)),
                        )])
                };
                let (written, revision) = self.commit("the registration", txn).await?;
                if !written {
                    self.caught_up(revision).await;
                    continue;
                }
                self.applied("the registration", revision).await?;
                {
                    let ttl_ms = self.ttl.as_millis() as u64;
                    return Ok(Lease {
                        id: revision as u64,
                        incarnation,
                        ttl_ms,
                        heartbeat_ms: (ttl_ms / 3).max(1),
                    });
                }
            }
            Err(RegistryError::NotStored(format!(
                "{} at {} changed in etcd twice while it registered: try again",
                shown(&new.service),
                shown(&new.address)
            )))
        })
    }

    fn renew(
        &self,
        lease: &LeaseRef,
        load: Option<LoadReport>,
        check: OwnerCheck<'_>,
    ) -> Result<(), RegistryError> {
        // Past two thirds of the lease's TTL without word from etcd, the lease may end there (and the instances
        // with it) whatever this replica says: refuse, so that the instance moves to a replica that reaches it.
        let silent = rpc_core::sync::lock(&self.confirmed).elapsed();
        let limit = Duration::from_secs(u64::try_from(self.lease_ttl()).unwrap_or(2)) * 2 / 3;
        if silent > limit {
            return Err(RegistryError::NotStored(format!(
                "this registry replica has not reached etcd for {} ms: heartbeat another replica",
                silent.as_millis()
            )));
        }
        super::renew_in(&self.index, lease, load, check)
    }

    fn deregister<'a>(
        &'a self,
        lease: LeaseRef,
        check: OwnerCheck<'a>,
    ) -> Boxed<'a, Result<bool, RegistryError>> {
        Box::pin(async move {
            {
                let state = self.index.read();
                check(state.lease_owner(&lease))?;
                match state.current(&lease) {
                    Ok(()) => {}
                    Err(RegistryError::UnknownLease { .. }) => return Ok(false),
                    Err(e) => return Err(e),
                }
            }
            self.remove(
                &lease.service,
                &lease.address,
                lease.lease,
                RemovalReason::Deregistered,
            )
            .await
        })
    }

    fn run(self: Arc<Self>, evicted: Box<dyn Fn() + Send + Sync>) -> Boxed<'static, ()> {
        Box::pin(follow::run(self, evicted))
    }

    fn rules(&self) -> &RulesStore {
        &self.rules
    }

    fn apply_rules<'a>(
        &'a self,
        rules: &'a Rules,
        origin: String,
    ) -> Boxed<'a, Result<RulesRevision, RegistryError>> {
        Box::pin(async move {
            let json = serde_json::to_string(rules).map_err(|e| {
                RegistryError::InvalidRules(format!("cannot be written as JSON: {e}"))
            })?;
            for _ in 0..2 {
                let next = self.rules.next_revision(&rules.service)?;
                let revision = RulesRevision {
                    service: rules.service.clone(),
                    revision: next,
                    rules: json.clone(),
                    applied_at_ms: super::rules_store::now_ms(),
                    origin: origin.clone(),
                };
                let key = self.keys.rules(&rules.service, next);
                let value = serde_json::to_vec(&revision)
                    .map_err(|e| RegistryError::NotStored(e.to_string()))?;
                let txn = || {
                    Txn::new()
                        .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                        .and_then([TxnOp::put(key.clone(), value.clone(), None)])
                };
                let (written, at) = self.commit("the rules", txn).await?;
                if !written {
                    self.caught_up(at).await;
                    continue;
                }
                self.applied("the rules", at).await?;
                {
                    return Ok(revision);
                }
            }
            Err(RegistryError::NotStored(format!(
                "the rules of {} changed in etcd twice while they were applied: try again",
                shown(&rules.service)
            )))
        })
    }

    fn set_weight<'a>(
        &'a self,
        service: &'a str,
        address: &'a str,
        weight: Option<u32>,
    ) -> Boxed<'a, Result<Option<Instance>, RegistryError>> {
        Box::pin(async move {
            {
                let state = self.index.read();
                super::memory::check_weight(&state, service, address, weight)?;
                let set = state.weights();
                let mut next = super::weights::Weights::clone(&set);
                next.set(service, address, weight);
                super::memory::check_weight_count(set.len(), next.len(), self.max_weights)?;
            }
            let key = self.keys.weight(service, address);
            let txn = || match weight {
                Some(weight) => {
                    Txn::new().and_then([TxnOp::put(key.clone(), weight.to_string(), None)])
                }
                // Undoing a weight that is not set writes nothing (and no revision would come to wait for).
                None => Txn::new()
                    .when([Compare::version(key.clone(), CompareOp::Greater, 0)])
                    .and_then([TxnOp::delete(key.clone(), None)]),
            };
            let (written, revision) = self.commit("the weight", txn).await?;
            if written {
                self.applied("the weight", revision).await?;
            }
            let mut state = self.index.read();
            let listing = state.listing(service);
            Ok(listing
                .instances
                .iter()
                .find(|i| i.address == address)
                .map(|listed| Instance::clone(listed)))
        })
    }

    fn status(&self) -> StoreStatus {
        let problem = rpc_core::sync::lock(&self.problem).clone();
        StoreStatus {
            kind: "etcd",
            healthy: problem.is_none(),
            problem,
            replica: Some(self.config.replica.clone()),
            replicas: rpc_core::sync::lock(&self.replicas)
                .values()
                .cloned()
                .collect(),
        }
    }

    fn replicated(&self) -> bool {
        true
    }

    fn holder(&self, service: &str, address: &str) -> Option<String> {
        rpc_core::sync::lock(&self.holders)
            .get(&(service.to_owned(), address.to_owned()))
            .cloned()
    }
}
