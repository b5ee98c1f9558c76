//! The in-memory store, the default: the index is the truth, every write lands in it at once, a lease's timer
//! in the expiry wheel evicts it, and rules and weights are kept in the data directory, if the registry has one,
//! so that a restarted registry serves them again.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::task::Poll;

use rpc_core::rules::Rules;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::rules_store::RulesStore;
use super::state::{Limits, State};
use super::weights::Weights;
use super::{Boxed, Index, OwnerCheck, Store, StoreStatus};
use crate::api::{Instance, Lease, LeaseRef, NewInstance, RegistryError, RulesRevision};
use crate::server::config::{ConfigError, RegistryConfig};
use crate::server::credentials::Identity;
use crate::server::service::shown;

/// Everything in this process.
#[derive(Debug)]
pub(crate) struct MemoryStore {
    index: Index,
    /// Wakes the eviction task when a lease is added to an empty timer wheel.
    added: Notify,
    rules: RulesStore,
    data_dir: Option<PathBuf>,
    /// The most weights that may be set: `max_instances`.
    max_weights: usize,
    /// Held while operators' weights are written, so that the file gets them in the order they take effect.
    weights_written: Mutex<()>,
}

impl MemoryStore {
    /// The store of `config` under registry `epoch`, with the rules and weights of its data directory.
    pub(crate) fn open(config: &RegistryConfig, epoch: u64) -> Result<MemoryStore, ConfigError> {
        let rules = RulesStore::open(config.data_dir.as_deref(), config.max_rules_revisions)
            .map_err(ConfigError::Rules)?;
        let mut state = State::new(epoch, config.ttl, Limits::of(config));
        if let Some(dir) = &config.data_dir {
            state.restore_weights(Weights::load(dir).map_err(ConfigError::Weights)?);
        }
        Ok(MemoryStore {
            index: Index::new(state),
            added: Notify::new(),
            rules,
            data_dir: config.data_dir.clone(),
            max_weights: config.max_instances,
            weights_written: Mutex::new(()),
        })
    }
}

impl Store for MemoryStore {
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
            let lease = {
                let mut state = self.index.write();
                // A registration of an address already registered supersedes that instance: only its owner may.
                check(state.owner(&new.service, &new.address))?;
                state.register_as(new, owner, Instant::now())?
            };
            self.added.notify_one();
            Ok(lease)
        })
    }

    fn deregister<'a>(
        &'a self,
        lease: LeaseRef,
        check: OwnerCheck<'a>,
    ) -> Boxed<'a, Result<bool, RegistryError>> {
        Box::pin(async move {
            let mut state = self.index.write();
            check(state.lease_owner(&lease))?;
            state.deregister(&lease)
        })
    }

    fn run(self: Arc<Self>, evicted: Box<dyn Fn() + Send + Sync>) -> Boxed<'static, ()> {
        Box::pin(async move {
            loop {
                let added = self.added.notified();
                // Taking a fired timer and evicting its lease happen under one lock, so a heartbeat can never
                // reset a timer that has already fired.
                let fired = std::future::poll_fn(|cx| {
                    let mut state = self.index.write();
                    match state.expiries.poll_expired(cx) {
                        Poll::Ready(Some(fired)) => {
                            if state.expire(fired.into_inner()).is_some() {
                                evicted();
                            }
                            Poll::Ready(Some(()))
                        }
                        Poll::Ready(None) => Poll::Ready(None),
                        Poll::Pending => Poll::Pending,
                    }
                })
                .await;
                if fired.is_none() {
                    // No lease at all: wait for one.
                    added.await;
                }
            }
        })
    }

    fn rules(&self) -> &RulesStore {
        &self.rules
    }

    fn apply_rules<'a>(
        &'a self,
        rules: &'a Rules,
        origin: String,
    ) -> Boxed<'a, Result<RulesRevision, RegistryError>> {
        Box::pin(async move { self.rules.apply(rules, origin) })
    }

    fn set_weight<'a>(
        &'a self,
        service: &'a str,
        address: &'a str,
        weight: Option<u32>,
    ) -> Boxed<'a, Result<Option<Instance>, RegistryError>> {
        Box::pin(async move {
            // Written to the data directory first, if the registry has one, then in force.
            let _writing = rpc_core::sync::lock(&self.weights_written);
            let mut next = {
                let state = self.index.read();
                check_weight(&state, service, address, weight)?;
                Weights::clone(&state.weights())
            };
            let before = next.len();
            next.set(service, address, weight);
            check_weight_count(before, next.len(), self.max_weights)?;
            if let Some(dir) = &self.data_dir {
                next.save(dir).map_err(|e| {
                    RegistryError::NotStored(format!(
                        "the weight could not be stored, so it was not set: {e}"
                    ))
                })?;
            }
            let now = self.index.write().set_weight(service, address, weight);
            Ok(now.map(|listed| Instance::clone(&listed)))
        })
    }

    fn status(&self) -> StoreStatus {
        StoreStatus::alone()
    }
}

/// Refuses to set a weight where no instance is: setting one needs an instance at the address; undoing does not.
pub(super) fn check_weight(
    state: &State,
    service: &str,
    address: &str,
    weight: Option<u32>,
) -> Result<(), RegistryError> {
    if weight.is_some() && state.owner(service, address).is_none() {
        return Err(RegistryError::NotFound(format!(
            "no instance of {} is registered at {}: a weight is set for an instance that is there",
            shown(service),
            shown(address)
        )));
    }
    Ok(())
}

/// Refuses one weight more than `limit` (`max_instances`).
pub(super) fn check_weight_count(
    before: usize,
    after: usize,
    limit: usize,
) -> Result<(), RegistryError> {
    if after > before && after > limit {
        return Err(RegistryError::LimitExceeded(format!(
            "{before} weights are set, the limit (max_instances): undo one first"
        )));
    }
    Ok(())
}
