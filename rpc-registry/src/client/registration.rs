//! Registration: an instance registers, then heartbeats in the background (every third of the registry's TTL);
//! when the registry no longer knows the lease (it expired, the registry restarted, or the heartbeat reached a
//! replica that never granted it) it registers again at once; a heartbeat that reaches no registry is tried
//! again soon (from 100 ms, doubling up to the interval), when the connection may have moved to another
//! replica. When a newer incarnation of the same address superseded it, or the registry refuses it for a
//! reason that retrying will not change (another identity owns the instance, its token is no longer
//! accepted), it stops and says so in its [`Status`]; on shutdown it deregisters. A registration whose answer
//! never came may still have taken effect: the instance then recognises that registration as its own instead
//! of stopping (see [`Status::Superseded`]).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rpc_core::{ClientConfig, RpcError, ToSocketAddrs};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::api::{Lease, LeaseRef, NewInstance, RegistryClient, RegistryError};
use crate::client::handle::RegistryHandle;
use crate::token::TokenError;

/// Why a registration failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegistrationError {
    /// The registry could not be reached or failed the call.
    #[error("the registry could not be reached: {0}")]
    Unreachable(#[from] RpcError),
    /// The registry refused.
    #[error("the registry refused: {0}")]
    Refused(#[from] RegistryError),
    /// The token breaks the rule of [`crate::check_token`]; nothing was sent.
    #[error("the registration's registry token is not usable: {0}")]
    Token(#[from] TokenError),
}

/// How a registration behaves. Its `Debug` hides the token.
#[derive(Clone)]
pub struct RegistrationConfig {
    /// The registry's token, if it wants one (it does for writes when it was started with one); it meets
    /// [`crate::check_token`].
    pub token: Option<String>,
    /// Heartbeat interval; `None` (the default) uses the registry's: a third of its TTL.
    pub heartbeat: Option<Duration>,
    /// The connection to the registry that [`Registration::register`] asks for; it shares one with every
    /// registration and discovery of this process that asks for the same registry with an equal config (see
    /// [`RegistryHandle::shared`]). Its backoff bounds how soon heartbeats resume after the registry comes
    /// back. Default [`RegistryHandle::default_config`] (attempts at most 250 ms apart, well under a heartbeat
    /// interval). [`Registration::register_with`] uses its handle's connection instead.
    pub client: ClientConfig,
    /// The server's load meter (`rpc_core::server::layer::LoadMeter`, a layer of the server's), if it
    /// reports its load: each heartbeat then carries what the meter counted since the last. Default: none.
    pub load: Option<rpc_core::server::layer::LoadMeter>,
}

impl std::fmt::Debug for RegistrationConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Every field, the token hidden: a configuration may be logged.
        let RegistrationConfig {
            token,
            heartbeat,
            client,
            load,
        } = self;
        f.debug_struct("RegistrationConfig")
            .field("token", &crate::token::hidden(token))
            .field("heartbeat", heartbeat)
            .field("client", client)
            .field("load", &load.is_some())
            .finish()
    }
}

impl Default for RegistrationConfig {
    fn default() -> RegistrationConfig {
        RegistrationConfig {
            token: None,
            heartbeat: None,
            client: RegistryHandle::default_config(),
            load: None,
        }
    }
}

/// Where a registration stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// Registered under this lease, heartbeating.
    Active(Lease),
    /// A newer registration of the same address, not this one's, took over: heartbeats stopped, and the
    /// registry sends this instance's calls to the newer one. (A registration of this one whose answer was
    /// late or lost is recognised as its own, by its weight and metadata, and taken over instead.)
    Superseded(Lease),
    /// The registry refused a heartbeat of this lease, or the registration made again after it lost the lease,
    /// for a reason that retrying will not change ([`is_final`]): another identity owns the instance, the token
    /// is no longer accepted, the registration is no longer valid. Heartbeats stopped; the registry evicts the
    /// instance within its TTL if it still lists it. The error is the registry's, as it answered.
    Refused(Lease, RegistryError),
}

/// Whether the registry's refusal `error` of a heartbeat or a registration would come again however often the
/// instance retried: [`RegistryError::Unauthenticated`] (the call's credentials do not cover the service, or
/// another identity owns the instance) and [`RegistryError::Invalid`]. A full registry
/// ([`RegistryError::LimitExceeded`]), a failed address check ([`RegistryError::AddressRefused`], which may
/// time out) and a disk that took no write ([`RegistryError::NotStored`]) may clear; [`RegistryError::UnknownLease`] and [`RegistryError::Superseded`] have answers of
/// their own.
pub fn is_final(error: &RegistryError) -> bool {
    match error {
        RegistryError::Unauthenticated(_)
        | RegistryError::Invalid(_)
        | RegistryError::InvalidRules(_)
        | RegistryError::NotFound(_) => true,
        RegistryError::UnknownLease { .. }
        | RegistryError::Superseded { .. }
        | RegistryError::LimitExceeded(_)
        | RegistryError::AddressRefused(_)
        | RegistryError::NotStored(_) => false,
    }
}

/// A registered instance, heartbeating in the background. Dropping it stops the heartbeats (the registry
/// evicts the instance within its TTL); [`Registration::deregister`] removes it at once.
#[derive(Debug)]
pub struct Registration {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
    status: watch::Receiver<Status>,
}

#[derive(Debug)]
struct Shared {
    /// Keeps the connection shared while the registration lives, and moves it when heartbeats go untaken.
    handle: RegistryHandle,
    registry: RegistryClient,
    instance: NewInstance,
    lease: Mutex<Lease>,
}

impl Shared {
    fn lease(&self) -> MutexGuard<'_, Lease> {
        rpc_core::sync::lock(&self.lease)
    }

    fn lease_ref(&self) -> LeaseRef {
        self.lease()
            .reference(&self.instance.service, &self.instance.address)
    }
}

impl Registration {
    /// Registers `instance` with the registry at `registry` and starts heartbeating, over the connection this
    /// process shares for that registry and `config.client` ([`RegistryHandle::shared`]).
    ///
    /// `registry` may list the addresses of several replicas (a `&[SocketAddr]`, as
    /// [`crate::resolve_registries`] makes): the instance registers with the first that answers; when that
    /// one dies (its connection refused or closed), the next heartbeat, within a heartbeat interval, goes to
    /// another, and the instance registers there at once if it does not hold the lease. The token goes to
    /// whichever replica answers.
    ///
    /// ```no_run
    /// use std::net::SocketAddr;
    /// use rpc_registry::{NewInstance, Registration, RegistrationConfig};
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let replicas: [SocketAddr; 2] = ["127.0.0.1:7070".parse()?, "127.0.0.1:7071".parse()?];
    /// let instance = NewInstance {
    ///     service: "Calc".into(),
    ///     address: "127.0.0.1:7001".into(),
    ///     weight: 1,
    ///     metadata: Default::default(),
    /// };
    /// let registration = Registration::register(&replicas[..], instance, RegistrationConfig::default()).await?;
    /// # let _ = registration;
    /// # Ok(()) }
    /// ```
    pub async fn register(
        registry: impl ToSocketAddrs,
        instance: NewInstance,
        config: RegistrationConfig,
    ) -> Result<Registration, RegistrationError> {
        let handle = RegistryHandle::shared(registry, &config.client).await?;
        Registration::register_with(&handle, instance, config).await
    }

    /// Registers `instance` with the registry of `registry` and starts heartbeating over its connection
    /// (`config.client` is not used).
    pub async fn register_with(
        registry: &RegistryHandle,
        instance: NewInstance,
        config: RegistrationConfig,
    ) -> Result<Registration, RegistrationError> {
        let client = registry.stub(config.token.as_deref())?;
        let lease = client.register(instance.clone()).await??;
        let shared = Arc::new(Shared {
            handle: registry.clone(),
            registry: client,
            instance,
            lease: Mutex::new(lease),
        });
        let (status_tx, status) = watch::channel(Status::Active(lease));
        let task = tokio::spawn(heartbeat_loop(
            Arc::clone(&shared),
            (config.heartbeat, config.load),
            status_tx,
        ));
        Ok(Registration {
            shared,
            task,
            status,
        })
    }

    /// The current lease (it changes when the instance registers again).
    pub fn lease(&self) -> Lease {
        *self.shared.lease()
    }

    /// Where the registration stands, as a value that changes.
    pub fn status(&self) -> watch::Receiver<Status> {
        self.status.clone()
    }

    /// Stops heartbeating and removes the instance from the registry at once.
    pub async fn deregister(self) -> Result<(), RegistrationError> {
        self.task.abort();
        let lease = self.shared.lease_ref();
        self.shared.registry.deregister(lease).await??;
        Ok(())
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the registry holds at the instance's address, after a heartbeat was refused as superseded.
enum Holder {
    /// A registration of this instance whose answer never came: the lease to go on with.
    Own(Lease),
    /// Another instance's registration.
    Other,
    /// The registry could not be asked, or holds nothing there any more: look again at the next heartbeat.
    Unknown,
}

impl Shared {
    /// The time between two heartbeats.
    fn interval(&self, fixed: Option<Duration>) -> Duration {
        fixed.unwrap_or_else(|| Duration::from_millis(self.lease().heartbeat_ms.max(1)))
    }

    /// How long a registration made again may wait for its answer: what the TTL leaves after one heartbeat
    /// interval (so that its lease is renewed in time), and at least one interval.
    fn register_deadline(&self, interval: Duration) -> Duration {
        Duration::from_millis(self.lease().ttl_ms)
            .saturating_sub(interval)
            .max(interval)
    }

    /// Takes `lease` as the instance's lease.
    fn adopt(&self, lease: Lease, status: &watch::Sender<Status>) {
        *self.lease() = lease;
        status.send_replace(Status::Active(lease));
    }

    /// Who holds the instance's address: a newer lease with the instance's own weight and metadata is taken
    /// for a registration of its own whose answer was lost.
    async fn holder(&self, deadline: Duration) -> Holder {
        let known = *self.lease();
        let asked = self
            .registry
            .with_deadline(deadline)
            .instances(self.instance.service.clone())
            .await;
        let Ok(snapshot) = asked else {
            return Holder::Unknown;
        };
        match snapshot
            .instances
            .into_iter()
            .find(|i| i.address == self.instance.address)
        {
            Some(i)
                if i.lease > known.id
                    && i.weight == self.instance.weight
                    && i.metadata == self.instance.metadata =>
            {
                Holder::Own(Lease {
                    id: i.lease,
                    incarnation: i.incarnation,
                    ..known
                })
            }
            Some(_) => Holder::Other,
            None => Holder::Unknown,
        }
    }
}

async fn heartbeat_loop(
    shared: Arc<Shared>,
    (fixed, load): (Option<Duration>, Option<rpc_core::server::layer::LoadMeter>),
    status: watch::Sender<Status>,
) {
    // A registry that does not take load reports (an older one) gets plain heartbeats from then on.
    let mut load = load;
    // Set when a registration made again ended without an answer that may have reached the registry (its
    // deadline passed, or the connection dropped after it was sent): the registry may hold a lease of this
    // instance that it never heard of, which supersedes the one it knows.
    let mut unsure = false;
    // Heartbeats (or registrations made again) in a row that did not reach a registry.
    let mut unreached = 0u32;
    // Heartbeats (or registrations made again) in a row that the registry did not take, reached or not.
    let mut failed = 0u32;
    let mut next = Instant::now() + shared.interval(fixed);
    loop {
        tokio::time::sleep_until(next).await;
        let interval = shared.interval(fixed);
        next = Instant::now() + interval;
        let lease = shared.lease_ref();
        let registry = shared.registry.with_deadline(interval);
        // Whether this round's failure says the registry in use cannot serve this instance: silent past the
        // deadline, or unable to keep the lease.
        let mut silent = false;
        let renewed = match &load {
            Some(meter) => match registry
                .heartbeat_with_load(lease.clone(), meter.take())
                .await
            {
                Err(e) if e.code() == rpc_core::Status::Unimplemented => {
                    load = None;
                    registry.heartbeat(lease).await
                }
                other => other,
            },
            None => registry.heartbeat(lease).await,
        };
        if renewed.is_ok() {
            unreached = 0;
        }
        match renewed {
            Ok(Ok(())) => failed = 0,
            Ok(Err(RegistryError::UnknownLease { .. })) => {
                // Expired, or the registry restarted: register again at once.
                let sent = Instant::now();
                let registry = shared
                    .registry
                    .with_deadline(shared.register_deadline(interval));
                match registry.register(shared.instance.clone()).await {
                    Ok(Ok(lease)) => {
                        shared.adopt(lease, &status);
                        unsure = false;
                        failed = 0;
                        // The lease's TTL runs from when the registry took it, after `sent`.
                        next = sent + interval;
                    }
                    Ok(Err(refused)) if is_final(&refused) => {
                        status.send_replace(Status::Refused(*shared.lease(), refused));
                        return;
                    }
                    // Refused for now (the registry is full, or cannot reach its store): try again soon.
                    Ok(Err(refused)) => {
                        silent = matches!(refused, RegistryError::NotStored(_));
                        failed = failed.saturating_add(1);
                        next = next.min(Instant::now() + retry_pause(failed, interval));
                    }
                    Err(e) => {
                        silent = e.code() == rpc_core::Status::DeadlineExceeded;
                        unsure |= !e.is_not_processed();
                        unreached = unreached.saturating_add(1);
                        failed = failed.saturating_add(1);
                        next = next.min(Instant::now() + retry_pause(unreached, interval));
                    }
                }
            }
            Ok(Err(RegistryError::Superseded { .. })) => {
                if unsure {
                    match shared.holder(interval).await {
                        Holder::Own(lease) => {
                            shared.adopt(lease, &status);
                            unsure = false;
                            // Renew the lease taken over at once: its TTL has been running.
                            next = Instant::now();
                            continue;
                        }
                        Holder::Unknown => continue,
                        Holder::Other => {}
                    }
                }
                status.send_replace(Status::Superseded(*shared.lease()));
                return;
            }
            Ok(Err(refused)) if is_final(&refused) => {
                status.send_replace(Status::Refused(*shared.lease(), refused));
                return;
            }
            // A refusal that may clear (a replica that lost its store, say): try again soon.
            Ok(Err(refused)) => {
                silent = matches!(refused, RegistryError::NotStored(_));
                failed = failed.saturating_add(1);
                next = next.min(Instant::now() + retry_pause(failed, interval));
            }
            // No registry answered (the one in use died, say): try again soon, when the connection may have
            // moved to another replica, rather than a whole interval later.
            Err(e) => {
                silent = e.code() == rpc_core::Status::DeadlineExceeded;
                unreached = unreached.saturating_add(1);
                failed = failed.saturating_add(1);
                next = next.min(Instant::now() + retry_pause(unreached, interval));
            }
        }
        // A registry that stays silent on a connection that stands (a hung process, a host cut off: no reset
        // ever comes), or that cannot keep the lease (a replica cut off from its store), is left for the next
        // of its addresses after a few such heartbeats, counted over the connection. Other failures do not
        // count: a refusal another replica would repeat, or a call failed by a connection that closed (which
        // moves by itself).
        match (failed, silent) {
            (0, _) => shared.handle.heartbeat_taken(),
            (_, true) => shared.handle.heartbeat_failed(),
            _ => {}
        }
    }
}

/// The pause before trying again after `n` heartbeats (or registrations made again) in a row reached no
/// registry: [`MIN_RETRY_PAUSE`], doubling, at most the heartbeat `interval`, so that a registry that is down
/// for long is asked no more often than it is heartbeaten.
fn retry_pause(n: u32, interval: Duration) -> Duration {
    MIN_RETRY_PAUSE
        .saturating_mul(1 << n.saturating_sub(1).min(16))
        .min(interval)
}

/// The pause before a heartbeat that reached no registry is tried again, the first time: 100 ms. (Retries that
/// come within the connection's own pause between two attempts to connect fail at once, unsent; the doubling
/// pauses soon outlast it: [`crate::client::handle::DEFAULT_BACKOFF_MAX`] by default.)
pub const MIN_RETRY_PAUSE: Duration = Duration::from_millis(100);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_that_reached_no_registry_is_retried_soon_then_less_often() {
        let interval = Duration::from_millis(1000);
        let pauses: Vec<u128> = (1..=6)
            .map(|n| retry_pause(n, interval).as_millis())
            .collect();
        assert_eq!(pauses, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(retry_pause(u32::MAX, interval), interval);
        assert_eq!(
            retry_pause(1, Duration::from_millis(30)),
            Duration::from_millis(30)
        );
    }
}
