//! Clusters for registry tests: registries on 127.0.0.1 that can be killed and restarted on the same port, and
//! instances of the `Where` service (which says which instance answered) registered with them.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use rpc_core::{Server, service};
use rpc_registry::{NewInstance, Registration, RegistrationConfig, RegistryConfig};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Which instance answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Served {
    /// The argument, echoed.
    pub n: u64,
    /// The address of the instance that answered.
    pub by: String,
}

/// A service whose answers name the instance that served them.
#[service]
pub trait Where {
    /// Echoes `n` with the instance's address; safe to call twice.
    #[idempotent]
    async fn serve(&self, n: u64) -> Served;
}

/// The instance's implementation.
#[derive(Clone, Debug)]
pub struct Here {
    /// Its own address.
    pub address: String,
}

impl Where for Here {
    async fn serve(&self, n: u64) -> Served {
        Served {
            n,
            by: self.address.clone(),
        }
    }
}

/// A running registry.
#[derive(Debug)]
pub struct RunningRegistry {
    /// Its API.
    pub addr: SocketAddr,
    /// Its HTTP view.
    pub http: SocketAddr,
    task: JoinHandle<std::io::Result<()>>,
}

impl RunningRegistry {
    /// Stops the registry at once, dropping its state (as a crash would).
    pub fn kill(self) {
        self.task.abort();
    }
}

/// Starts a registry with `config` on 127.0.0.1 at `port` (0: one the OS assigns).
pub async fn start_registry(config: RegistryConfig, port: u16) -> std::io::Result<RunningRegistry> {
    let rpc = TcpListener::bind(("127.0.0.1", port)).await?;
    let http = TcpListener::bind("127.0.0.1:0").await?;
    let (addr, http_addr) = (rpc.local_addr()?, http.local_addr()?);
    let task = tokio::spawn(rpc_registry::serve(
        config,
        rpc,
        Some(http),
        std::future::pending(),
    ));
    Ok(RunningRegistry {
        addr,
        http: http_addr,
        task,
    })
}

/// A running instance of `Where`, registered.
#[derive(Debug)]
pub struct Instance {
    /// Where it serves.
    pub address: String,
    server: JoinHandle<std::io::Result<()>>,
    /// Its registration.
    pub registration: Registration,
}

impl Instance {
    /// Kills the instance: its connections close and its heartbeats stop, without deregistering.
    pub fn kill(self) {
        self.server.abort();
        drop(self.registration);
    }
}

/// Starts an instance of `Where` and registers it with `registry` at `weight`.
pub async fn start_instance(
    registry: SocketAddr,
    weight: u32,
    config: RegistrationConfig,
) -> Result<Instance, Box<dyn std::error::Error>> {
    start_labelled_instance(registry, weight, &[], config).await
}

/// Starts an instance of `Where` and registers it with `registry` at `weight`, with `labels`. The server counts
/// its load with the meter of `config.load`, if any, which the registration then reports with its heartbeats.
pub async fn start_labelled_instance(
    registry: SocketAddr,
    weight: u32,
    labels: &[(&str, &str)],
    config: RegistrationConfig,
) -> Result<Instance, Box<dyn std::error::Error>> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?.to_string();
    let server = Server::builder()
        .layer(config.load.clone().unwrap_or_default())
        .add_service(WhereServer::new(Here {
            address: address.clone(),
        }))
        .build()?;
    let server = tokio::spawn(server.serve(listener));
    let mut instance = new_instance(&address, weight);
    instance.metadata = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let registration = Registration::register(registry, instance, config).await?;
    Ok(Instance {
        address,
        server,
        registration,
    })
}

/// Registers `address` as an instance of `service` (weight 1, no metadata) with the registry at `registry`;
/// the registration heartbeats until it is dropped.
pub async fn register(registry: SocketAddr, service: &str, address: &str) -> Registration {
    let instance = NewInstance {
        service: service.to_owned(),
        address: address.to_owned(),
        weight: 1,
        metadata: BTreeMap::new(),
    };
    Registration::register(registry, instance, RegistrationConfig::default())
        .await
        .unwrap_or_else(|e| panic!("{service} at {address} registers: {e}"))
}

/// A registration of `Where` at `address`.
pub fn new_instance(address: &str, weight: u32) -> NewInstance {
    NewInstance {
        service: String::from("Where"),
        address: address.to_owned(),
        weight,
        metadata: BTreeMap::new(),
    }
}

/// The body of `GET path` on the HTTP server at `addr`, with its status code.
pub async fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let (status, _, body) = crate::prom::http_get(addr, path)
        .await
        .map_err(std::io::Error::other)?;
    let code = status
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((code, body))
}

/// A client of `Where` spread over its instances that `discovery` finds by smooth weighted round-robin, which
/// follows weights alone (the discovery's default, peak EWMA, follows latency too).
pub fn round_robin(discovery: &rpc_registry::Discovery) -> WhereClient {
    <WhereClient as rpc_core::Stub>::discover_with_policy(
        discovery,
        "Where",
        std::sync::Arc::new(rpc_core::balance::SmoothWrr::default()),
        rpc_core::ClientConfig::default(),
    )
}
