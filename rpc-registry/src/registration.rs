//! Registration: an instance registers, then heartbeats in the background (every third of the registry's TTL);
//! when the registry no longer knows the lease (it expired, or the registry restarted) it registers again at
//! once; when a newer incarnation of the same address superseded it, it stops; on shutdown it deregisters.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rpc_core::{ClientConfig, RpcError, ToSocketAddrs};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::{Lease, LeaseRef, NewInstance, RegistryClient, RegistryError};
use crate::handle::RegistryHandle;

/// Why a registration failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegistrationError {
    /// The registry could not be reached or failed the call.
    #[error("the registry could not be reached: {0}")]
    Unreachable(#[from] RpcError),
    /// The registry refused.
    #[error("the registry refused: {0}")]
    Refused(#[from] RegistryError),
}

/// How a registration behaves.
#[derive(Clone, Debug)]
pub struct RegistrationConfig {
    /// The registry's token, if it wants one (it does for writes when it was started with one).
    pub token: Option<String>,
    /// Heartbeat interval; `None` (the default) uses the registry's: a third of its TTL.
    pub heartbeat: Option<Duration>,
    /// The connection to the registry that [`Registration::register`] asks for; it shares one with every
    /// registration and discovery of this process that asks for the same registry with an equal config (see
    /// [`RegistryHandle::shared`]). Its backoff bounds how soon heartbeats resume after the registry comes
    /// back. Default [`RegistryHandle::default_config`] (attempts at most 250 ms apart, well under a heartbeat
    /// interval). [`Registration::register_with`] uses its handle's connection instead.
    pub client: ClientConfig,
}

impl Default for RegistrationConfig {
    fn default() -> RegistrationConfig {
        RegistrationConfig {
            token: None,
            heartbeat: None,
            client: RegistryHandle::default_config(),
        }
    }
}

/// Where a registration stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Registered under this lease, heartbeating.
    Active(Lease),
    /// A newer incarnation of the same address took over; heartbeats stopped.
    Superseded(Lease),
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
    /// Keeps the connection shared while the registration lives.
    _handle: RegistryHandle,
    registry: RegistryClient,
    instance: NewInstance,
    lease: Mutex<Lease>,
}

impl Shared {
    fn lease(&self) -> MutexGuard<'_, Lease> {
        self.lease
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn lease_ref(&self) -> LeaseRef {
        let lease = *self.lease();
        LeaseRef {
            lease: lease.id,
            incarnation: lease.incarnation,
            service: self.instance.service.clone(),
            address: self.instance.address.clone(),
        }
    }
}

impl Registration {
    /// Registers `instance` with the registry at `registry` and starts heartbeating, over the connection this
    /// process shares for that registry and `config.client` ([`RegistryHandle::shared`]).
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
            _handle: registry.clone(),
            registry: client,
            instance,
            lease: Mutex::new(lease),
        });
        let (status_tx, status) = watch::channel(Status::Active(lease));
        let task = tokio::spawn(heartbeat_loop(
            Arc::clone(&shared),
            config.heartbeat,
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

async fn heartbeat_loop(
    shared: Arc<Shared>,
    fixed: Option<Duration>,
    status: watch::Sender<Status>,
) {
    loop {
        let interval =
            fixed.unwrap_or_else(|| Duration::from_millis(shared.lease().heartbeat_ms.max(1)));
        tokio::time::sleep(interval).await;
        let lease = shared.lease_ref();
        match shared
            .registry
            .with_deadline(interval)
            .heartbeat(lease)
            .await
        {
            Ok(Ok(())) => {}
            Ok(Err(RegistryError::UnknownLease { .. })) => {
                // Expired, or the registry restarted: register again at once.
                let registry = shared.registry.with_deadline(interval);
                if let Ok(Ok(lease)) = registry.register(shared.instance.clone()).await {
                    *shared.lease() = lease;
                    status.send_replace(Status::Active(lease));
                }
            }
            Ok(Err(RegistryError::Superseded { .. })) => {
                status.send_replace(Status::Superseded(*shared.lease()));
                return;
            }
            // A refusal or an unreachable registry: try again next time.
            Ok(Err(_)) | Err(_) => {}
        }
    }
}
