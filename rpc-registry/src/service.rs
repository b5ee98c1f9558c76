//! The registry's service: the [`Registry`] API over the shared state, with credentials checked on every write
//! (and the registered address, if configured), watches as long polls woken by the service's revision, and the
//! task that evicts leases as their timers fire.

use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;

use rpc_core::Context;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::AUTHORIZATION;
use crate::api::{
    Lease, LeaseRef, NewInstance, Registry, RegistryError, ServiceStatus, ServiceSummary, Snapshot,
    Watched,
};
use crate::config::{AddressCheck, RegistryConfig};
use crate::state::{Limits, State};
use crate::stats::Stats;

/// What the service, its eviction task and the HTTP view share.
#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<State>,
    /// Wakes the eviction task when a lease is added to an empty timer wheel.
    added: Notify,
    pub(crate) config: RegistryConfig,
    pub(crate) stats: Stats,
    /// When the registry started.
    pub(crate) started: Instant,
    /// Set when the registry begins to shut down: waiting watches answer at once.
    closing: tokio::sync::watch::Sender<bool>,
}

impl Shared {
    pub(crate) fn new(config: RegistryConfig) -> Arc<Shared> {
        let epoch = RandomState::new().hash_one(std::process::id()) | 1;
        Arc::new(Shared {
            state: Mutex::new(State::new(epoch, config.ttl, Limits::of(&config))),
            added: Notify::new(),
            config,
            stats: Stats::default(),
            started: Instant::now(),
            closing: tokio::sync::watch::Sender::new(false),
        })
    }

    /// The registry is shutting down: watches waiting for a change answer now, and new ones at once.
    pub(crate) fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Completes once the registry is shutting down.
    pub(crate) async fn closed(&self) {
        let mut closing = self.closing.subscribe();
        let _ = closing.wait_for(|&closing| closing).await;
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
                    Poll::Ready(Some(fired)) => {
                        if state.expire(fired.into_inner()).is_some() {
                            self.stats.evicted();
                        }
                        Poll::Ready(Some(()))
                    }
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

    /// Refuses a write (`what`) of `service` that carries no credential covering it.
    fn authorize(&self, what: &str, service: &str) -> Result<(), RegistryError> {
        if self.config.is_open() {
            return Ok(());
        }
        let context = Context::current();
        let token = context
            .as_ref()
            .and_then(|c| c.metadata().get(AUTHORIZATION))
            .map(|value| value.strip_prefix(b"Bearer ").unwrap_or(value));
        let names = context.as_ref().map_or(&[][..], |c| c.client_names());
        self.config
            .credentials
            .authorize(self.config.token.as_deref(), what, service, token, names)
            .map_err(RegistryError::Unauthenticated)
    }

    /// Checks the address an instance registers, as configured.
    async fn check_address(&self, new: &NewInstance) -> Result<(), RegistryError> {
        let refused = |why: String| {
            Err(RegistryError::AddressRefused(format!(
                "{} at {}: {why}",
                new.service, new.address
            )))
        };
        match self.config.address_check {
            AddressCheck::Off => Ok(()),
            AddressCheck::Peer => {
                let Ok(addr) = new.address.parse::<std::net::SocketAddr>() else {
                    return refused(String::from(
                        "the peer check needs the address as IP:port (address_check: peer)",
                    ));
                };
                let peer = Context::current().and_then(|c| c.peer());
                let Some(peer) = peer else {
                    return refused(String::from(
                        "the caller's address is unknown (address_check: peer)",
                    ));
                };
                let canonical = |ip: std::net::IpAddr| ip.to_canonical();
                if canonical(addr.ip()) == canonical(peer.ip()) {
                    Ok(())
                } else {
                    refused(format!(
                        "the address's IP {} is not the caller's {} (address_check: peer)",
                        addr.ip(),
                        peer.ip()
                    ))
                }
            }
            AddressCheck::Reachable => {
                let timeout = self.config.address_check_timeout;
                match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&new.address))
                    .await
                {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => refused(format!(
                        "it does not accept connections: {e} (address_check: reachable)"
                    )),
                    Err(_) => refused(format!(
                        "it did not accept a connection within {timeout:?} (address_check: reachable)"
                    )),
                }
            }
        }
    }
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
        let shared = &self.shared;
        shared
            .stats
            .refused(shared.authorize("registration", &instance.service))?;
        shared
            .stats
            .refused(shared.check_address(&instance).await)?;
        let lease = shared
            .stats
            .refused(shared.state().register(instance, Instant::now()))?;
        shared.stats.registered();
        shared.added.notify_one();
        Ok(lease)
    }

    async fn heartbeat(&self, lease: LeaseRef) -> Result<(), RegistryError> {
        let shared = &self.shared;
        shared
            .stats
            .refused(shared.authorize("heartbeat", &lease.service))?;
        shared
            .stats
            .refused(shared.state().heartbeat(&lease, Instant::now()))?;
        shared.stats.heartbeat();
        Ok(())
    }

    async fn deregister(&self, lease: LeaseRef) -> Result<(), RegistryError> {
        let shared = &self.shared;
        shared
            .stats
            .refused(shared.authorize("deregistration", &lease.service))?;
        if shared.stats.refused(shared.state().deregister(&lease))? {
            shared.stats.deregistered();
        }
        Ok(())
    }

    // Reads build their answers outside the state's lock: see `read.rs`.
    async fn instances(&self, service: String) -> Snapshot {
        self.shared.instances(&service)
    }

    async fn watch(&self, service: String, epoch: u64, since: u64, wait_ms: u64) -> Snapshot {
        self.shared.watch(&service, epoch, since, wait_ms).await
    }

    async fn watch_changes(
        &self,
        service: String,
        epoch: u64,
        since: u64,
        wait_ms: u64,
    ) -> Watched {
        self.shared
            .watch_changes(&service, epoch, since, wait_ms)
            .await
    }

    async fn services(&self) -> Vec<ServiceSummary> {
        self.shared.services()
    }

    async fn status(&self, service: Option<String>) -> Vec<ServiceStatus> {
        self.shared.status(service.as_deref())
    }
}
