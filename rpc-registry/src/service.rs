//! The registry's service: the [`Registry`] API over the shared state, with the token checked on every write,
//! watches as long polls woken by the service's revision, and the task that evicts leases as their timers fire.

use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;
use std::time::Duration;

use rpc_core::Context;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::AUTHORIZATION;
use crate::api::{Lease, LeaseRef, NewInstance, Registry, RegistryError, ServiceSummary, Snapshot};
use crate::config::RegistryConfig;
use crate::state::State;

/// What the service, its eviction task and the HTTP view share.
#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<State>,
    /// Wakes the eviction task when a lease is added to an empty timer wheel.
    added: Notify,
    pub(crate) config: RegistryConfig,
}

impl Shared {
    pub(crate) fn new(config: RegistryConfig) -> Arc<Shared> {
        let epoch = RandomState::new().hash_one(std::process::id()) | 1;
        Arc::new(Shared {
            state: Mutex::new(State::new(epoch, config.ttl)),
            added: Notify::new(),
            config,
        })
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Evicts leases as their timers fire, in expiry order, until the task is dropped.
    pub(crate) async fn run_evictions(self: Arc<Self>) {
        loop {
            let added = self.added.notified();
            // Taking a fired timer and evicting its lease happen under one lock, so a heartbeat can never
            // reset a timer that has already fired.
            let evicted = std::future::poll_fn(|cx| {
                let mut state = self.state();
                match state.expiries.poll_expired(cx) {
                    Poll::Ready(Some(fired)) => Poll::Ready(Some(state.expire(fired.into_inner()))),
                    Poll::Ready(None) => Poll::Ready(None),
                    Poll::Pending => Poll::Pending,
                }
            })
            .await;
            if evicted.is_none() {
                // No lease at all: wait for one.
                added.await;
            }
        }
    }

    /// Refuses a write without the registry's token.
    fn authorize(&self, what: &str) -> Result<(), RegistryError> {
        let Some(token) = &self.config.token else {
            return Ok(());
        };
        let sent =
            Context::current().and_then(|c| c.metadata().get(AUTHORIZATION).map(<[u8]>::to_vec));
        match sent {
            None => Err(RegistryError::Unauthenticated(format!(
                "{what} refused: this registry needs a token (metadata `{AUTHORIZATION}: Bearer <token>`), \
                 and the call carried none"
            ))),
            Some(value) if constant_time_eq(&value, format!("Bearer {token}").as_bytes()) => Ok(()),
            Some(_) => Err(RegistryError::Unauthenticated(format!(
                "{what} refused: the token the call carried is not this registry's"
            ))),
        }
    }
}

/// Compares without stopping at the first difference, so that response times do not leak the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The [`Registry`] API, served by the registry.
#[derive(Clone, Debug)]
pub struct RegistryService {
    shared: Arc<Shared>,
}

impl RegistryService {
    /// A registry with `config`, and the task that evicts expired leases (spawn it beside the server).
    pub fn new(
        config: RegistryConfig,
    ) -> (RegistryService, impl Future<Output = ()> + Send + 'static) {
        let shared = Shared::new(config);
        let evictions = Arc::clone(&shared).run_evictions();
        (RegistryService { shared }, evictions)
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

impl Registry for RegistryService {
    async fn register(&self, instance: NewInstance) -> Result<Lease, RegistryError> {
        self.shared.authorize("registration")?;
        let lease = self.shared.state().register(instance, Instant::now())?;
        self.shared.added.notify_one();
        Ok(lease)
    }

    async fn heartbeat(&self, lease: LeaseRef) -> Result<(), RegistryError> {
        self.shared.authorize("heartbeat")?;
        self.shared.state().heartbeat(&lease, Instant::now())
    }

    async fn deregister(&self, lease: LeaseRef) -> Result<(), RegistryError> {
        self.shared.authorize("deregistration")?;
        self.shared.state().deregister(&lease)
    }

    async fn instances(&self, service: String) -> Snapshot {
        self.shared.state().snapshot(&service)
    }

    async fn watch(&self, service: String, epoch: u64, since: u64, wait_ms: u64) -> Snapshot {
        let mut changed = {
            let mut state = self.shared.state();
            let snapshot = state.snapshot(&service);
            // A watcher of another registry process, or one behind, gets the instances at once.
            if epoch != state.epoch() || snapshot.revision != since {
                return snapshot;
            }
            state.subscribe(&service)
        };
        let wait = Duration::from_millis(wait_ms).min(self.shared.config.max_watch_wait);
        let _ = tokio::time::timeout(wait, changed.wait_for(|&revision| revision != since)).await;
        self.shared.state().snapshot(&service)
    }

    async fn services(&self) -> Vec<ServiceSummary> {
        self.shared.state().services()
    }
}
