//! The server: an accept loop over a [`Listener`] (TCP, Unix domain sockets, or both) that takes every
//! connection it can hold (refusing one over the limit at once, with a reason), one task per connection (after
//! the transport's handshake, within its timeout: TLS over TCP when the server has TLS), and a graceful
//! shutdown that stops accepting, sends go-away on every connection and waits for calls in flight (up to the
//! drain timeout) before it returns.
//!
//! # Layout
//! - `config`: [`ServerConfig`], the server's limits and timings.
//! - `admission`: the places of connections, and the budget of those still handshaking.
//! - `refuse`: telling a connection over the limit why it is closed.
//! - `registry`: services by method id.
//! - `service`: [`Service`] (implemented by generated skeletons) and [`Call`].
//! - `connection`: one connection's read loop, refusals and drain.
//! - `signal`: [`shutdown_signal`], SIGINT or SIGTERM, whichever comes first.
//! - `handler`: one call: its context, span and counts; polled once inline, then on a task of its own if it
//!   waits (deadline, cancel); panic isolation; the answer.
//! - this file: [`Server`], [`ServerBuilder`] and the accept loop.

mod admission;
pub mod config;
mod connection;
mod handler;
mod refuse;
mod registry;
mod service;
mod signal;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use admission::{Admission, Admitted, Slot};
pub use config::ServerConfig;
use registry::Registry;
pub use service::{Call, Dispatched, Service};
pub use signal::{ShutdownSignal, shutdown_signal};

pub use crate::transport::Listener;
#[cfg(unix)]
pub use crate::transport::bind_unix;
use crate::transport::{Handshake, PeerAddr, Stream};

/// Why a server could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Two services have the same name.
    #[error("two services are named `{name}`")]
    DuplicateService {
        /// The name.
        name: &'static str,
    },
    /// Two methods of the services added hash to the same id.
    #[error("method id collision: {first} and {second} both hash to {id:#010x}; rename one")]
    MethodIdCollision {
        /// The id.
        id: u32,
        /// The method added first.
        first: String,
        /// The method added second.
        second: String,
    },
}

/// Builds a [`Server`] from services and a configuration.
#[derive(Default)]
pub struct ServerBuilder {
    services: Vec<Arc<dyn Service>>,
    config: ServerConfig,
    metrics: Option<crate::metrics::Metrics>,
    handshake: Handshake,
}

impl std::fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = self.services.iter().map(|s| s.name()).collect();
        f.debug_struct("ServerBuilder")
            .field("services", &names)
            .field("config", &self.config)
            .finish()
    }
}

impl ServerBuilder {
    /// Serves `service` too (a generated `<Trait>Server`); several services share one listener.
    pub fn add_service(mut self, service: impl Service) -> ServerBuilder {
        self.services.push(Arc::new(service));
        self
    }

    /// Uses `config` instead of the defaults.
    pub fn config(mut self, config: ServerConfig) -> ServerBuilder {
        self.config = config;
        self
    }

    /// Counts calls, connections and bytes into `metrics` (see [`crate::Metrics`]; expose them with
    /// [`crate::Metrics::serve_http`]).
    pub fn metrics(mut self, metrics: crate::metrics::Metrics) -> ServerBuilder {
        self.metrics = Some(metrics);
        self
    }

    /// Serves over TLS (feature `tls`): each connection's handshake must finish within
    /// [`ServerConfig::handshake_timeout`]; with mutual TLS, handlers see the client's verified names through
    /// [`crate::Context::client_names`].
    /// Connections accepted from a Unix domain socket are not TLS (the socket's file permissions guard them).
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: crate::tls::ServerTls) -> ServerBuilder {
        self.handshake = Handshake::tls(tls);
        self
    }

    /// The server, or why its services cannot be served together.
    pub fn build(self) -> Result<Server, BuildError> {
        Ok(Server {
            registry: Arc::new(Registry::new(self.services, self.metrics)?),
            config: Arc::new(self.config),
            handshake: self.handshake,
        })
    }
}

/// An RPC server: the services it dispatches to and its configuration.
///
/// ```no_run
/// # #[rpc_core::service] trait Greeter { async fn hello(&self, name: String) -> String; }
/// # struct Hi;
/// # impl Greeter for Hi { async fn hello(&self, name: String) -> String { name } }
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:7000").await?;
/// let server = rpc_core::Server::builder().add_service(GreeterServer::new(Hi)).build()?;
/// server.serve_with_shutdown(listener, async { tokio::signal::ctrl_c().await.ok(); }).await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Server {
    registry: Arc<Registry>,
    config: Arc<ServerConfig>,
    handshake: Handshake,
}

impl Server {
    /// A builder.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// The configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Serves connections from `listener` (a `TcpListener`, a `UnixListener`, or a [`Listener`] of several)
    /// until the task is dropped.
    pub async fn serve(self, listener: impl Into<Listener>) -> std::io::Result<()> {
        self.serve_with_shutdown(listener, std::future::pending())
            .await
    }

    /// Serves connections from `listener` until `shutdown` completes; then stops accepting, sends go-away on
    /// every connection, lets calls in flight finish (up to [`ServerConfig::drain_timeout`]) and returns once
    /// every connection has closed. The listening sockets close when it returns; a Unix socket's file stays
    /// (remove it if nothing is to serve there again).
    pub async fn serve_with_shutdown(
        self,
        listener: impl Into<Listener>,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let mut listener = listener.into();
        let admission = Admission::new(&self.config);
        let refusals = Arc::new(Semaphore::new(config::REFUSALS_AT_ONCE));
        let (drain, draining) = watch::channel(false);
        let mut connections = JoinSet::new();
        let mut refusing = JoinSet::new();
        let mut accept_errors = 0u32;
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                biased;
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => {
                        accept_errors = 0;
                        accepted
                    }
                    Err(_) => {
                        // Out of descriptors, or a connection reset before it was accepted: wait a little
                        // (longer each time, up to a second) rather than spin, and carry on.
                        accept_errors = accept_errors.saturating_add(1);
                        tokio::time::sleep(Duration::from_millis(10 << accept_errors.min(7))).await;
                        continue;
                    }
                },
            };
            while connections.try_join_next().is_some() {}
            while refusing.try_join_next().is_some() {}
            let slot = match admission.admit() {
                Admitted::Slot(slot) => slot,
                Admitted::Full => {
                    // Said at once, on a bounded budget; past it, the connection just closes.
                    if let Ok(permit) = Arc::clone(&refusals).try_acquire_owned() {
                        refusing.spawn(refuse::refuse(
                            stream,
                            refuse::reason(&self.config),
                            self.handshake.clone(),
                            permit,
                        ));
                    }
                    continue;
                }
            };
            let id = slot.id();
            let task = self.connection(stream, peer, slot, draining.clone());
            admission.started(id, connections.spawn(task));
        }
        drop(listener);
        refusing.abort_all();
        let _ = drain.send(true);
        while connections.join_next().await.is_some() {}
        Ok(())
    }

    /// Serves one accepted connection in its `slot`: the transport's handshake first (TLS, if the server has
    /// TLS and the connection is over TCP; within the handshake timeout, and given up if the server starts to
    /// shut down), then its calls.
    fn connection(
        &self,
        stream: Stream,
        peer: PeerAddr,
        slot: Slot,
        draining: watch::Receiver<bool>,
    ) -> impl Future<Output = ()> + Send + 'static {
        let registry = Arc::clone(&self.registry);
        let config = Arc::clone(&self.config);
        let handshake = self.handshake.clone();
        async move {
            let mut stopping = draining.clone();
            let ready = tokio::select! {
                // A connection without a handshake to run is served, and told go-away, even if the drain began.
                biased;
                ready = handshake.run(stream, config.handshake_timeout) => ready,
                _ = stopping.wait_for(|&stop| stop) => None,
            };
            let Some(ready) = ready else { return };
            let (reader, writer) = ready.stream.into_split();
            let peer = connection::Peer {
                addr: Some(peer),
                names: ready.names,
                slot,
            };
            connection::run(reader, writer, peer, registry, config, draining).await;
        }
    }
}
