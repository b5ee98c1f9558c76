//! The server: an accept loop over a [`Listener`] (TCP, Unix domain sockets, or both) that takes every
//! connection it can hold (refusing one over the limit at once, with a reason), one task per connection (after
//! the transport's handshake, within its timeout: TLS over TCP when the server has TLS), and a graceful
//! shutdown that stops accepting, sends go-away on every connection and waits for calls in flight (up to the
//! drain timeout) before it returns. A server with HTTP ([`ServerBuilder::http`], feature `http`) tells each
//! connection's protocol from its first bytes and hands HTTP ones to [`crate::http`]; one without reads every
//! connection as frames straight away.
//!
//! # Layout
//! - `config`: [`ServerConfig`], the server's limits and timings.
//! - `admission`: the places of connections, and the budget of those still handshaking.
//! - `refuse`: telling a connection over the limit why it is closed.
//! - [`reflection`]: `rpc.Reflection`, the built-in service that says what the server serves.
//! - `registry`: services by method id.
//! - `request`, `response`: [`Request`] and [`Response`], a call as the layers see it.
//! - [`layer`]: the layers around every call (tracing, metrics, draining, the in-flight limit, the user's), in
//!   their order.
//! - `dispatch`: [`Dispatch`], the innermost service: the call's service decodes and runs it.
//! - `service`: [`Service`] (implemented by generated skeletons) and [`Call`].
//! - `json`: calls in JSON (protocol 1.2): which may come so, and their arguments by name.
//! - `connection`: one connection's read loop, the wire's refusals, and drain.
//! - `signal`: [`shutdown_signal`], SIGINT or SIGTERM, whichever comes first.
//! - `stream`: the server's side of streams: admitting one, routing the client's items and credit to it.
//! - `handler`: one call through its layers: polled once inline, then on a task of its own if it waits
//!   (deadline, cancel); panic isolation; the answer.
//! - this file: [`Server`], [`ServerBuilder`] and the accept loop.

pub(crate) mod admission;
mod answer;
mod compression;
pub mod config;
pub(crate) mod connection;
mod dispatch;
pub(crate) mod handler;
pub(crate) mod json;
pub mod layer;
pub mod reflection;
mod refuse;
pub(crate) mod registry;
mod request;
mod response;
mod service;
mod signal;
pub(crate) mod stream;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use admission::{Admission, Admitted, Slot};
pub use config::ServerConfig;
pub use dispatch::{Dispatch, Dispatching};
pub(crate) use handler::panic_message as panic_text;
use layer::{Layers, Metered, Own};
use registry::Registry;
pub use request::{Peer, Request};
pub use response::Response;
pub use service::{Call, Dispatched, Sent, Service, StreamSink};
pub use signal::{ShutdownSignal, shutdown_signal};
use tower_layer::{Identity, Stack};

pub use crate::transport::Listener;
#[cfg(unix)]
pub use crate::transport::bind_unix;
use crate::transport::{Counted, Handshake, Open, PeerAddr, Stream};

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
    /// The HTTP settings' CORS headers are not valid (feature `http`).
    #[cfg(feature = "http")]
    #[error(transparent)]
    Cors(#[from] crate::http::CorsError),
}

/// Builds a [`Server`] from services, layers and a configuration.
pub struct ServerBuilder<L = Identity> {
    services: Vec<Arc<dyn Service>>,
    config: ServerConfig,
    metrics: Option<crate::metrics::Metrics>,
    handshake: Handshake,
    layers: L,
    /// Serve `rpc.Reflection` too.
    reflection: bool,
    /// Answer HTTP on the same port too.
    #[cfg(feature = "http")]
    http: Option<crate::http::HttpConfig>,
}

impl Default for ServerBuilder {
    fn default() -> ServerBuilder {
        ServerBuilder {
            services: Vec::new(),
            config: ServerConfig::default(),
            metrics: None,
            handshake: Handshake::default(),
            layers: Identity::new(),
            reflection: true,
            #[cfg(feature = "http")]
            http: None,
        }
    }
}

impl<L> std::fmt::Debug for ServerBuilder<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = self.services.iter().map(|s| s.name()).collect();
        f.debug_struct("ServerBuilder")
            .field("services", &names)
            .field("config", &self.config)
            .finish()
    }
}

impl<L> ServerBuilder<L> {
    /// Serves `service` too (a generated `<Trait>Server`); several services share one listener.
    pub fn add_service(mut self, service: impl Service) -> ServerBuilder<L> {
        self.services.push(Arc::new(service));
        self
    }

    /// Uses `config` instead of the defaults.
    pub fn config(mut self, config: ServerConfig) -> ServerBuilder<L> {
        self.config = config;
        self
    }

    /// Puts `layer` around every call (a tower [`Layer`](tower_layer::Layer) of services of [`Request`] to
    /// [`Response`]): it sees the call before the layers added after it, and its answer after them. Inside the
    /// server's own layers (see [`layer`] for the order); [`layer::Only`] limits it to some services or methods.
    /// Each connection gets its own stack (`Layer::layer` runs once per connection). A layer's error answers
    /// the call with a status ([`layer::status_of`]).
    ///
    /// ```
    /// use rpc_core::server::{Request, Response};
    /// use rpc_core::Status;
    ///
    /// // Refuses calls without an API key; passes the others on.
    /// let auth = tower::layer::layer_fn(|inner| {
    ///     tower::service_fn(move |request: Request| {
    ///         let mut inner: rpc_core::server::Dispatch = Clone::clone(&inner);
    ///         async move {
    ///             if request.metadata().get_str("x-api-key") != Some("secret") {
    ///                 return Ok(Response::error(Status::Unauthenticated, "x-api-key missing"));
    ///             }
    ///             tower::Service::call(&mut inner, request).await
    ///         }
    ///     })
    /// });
    /// let builder = rpc_core::Server::builder().layer(auth);
    /// # let _ = builder;
    /// ```
    pub fn layer<N>(self, layer: N) -> ServerBuilder<Stack<N, L>> {
        ServerBuilder {
            services: self.services,
            config: self.config,
            metrics: self.metrics,
            handshake: self.handshake,
            layers: Stack::new(layer, self.layers),
            reflection: self.reflection,
            #[cfg(feature = "http")]
            http: self.http,
        }
    }

    /// Counts calls, connections and bytes into `metrics` (see [`crate::Metrics`]; expose them with
    /// [`crate::Metrics::serve_http`]).
    pub fn metrics(mut self, metrics: crate::metrics::Metrics) -> ServerBuilder<L> {
        self.metrics = Some(metrics);
        self
    }

    /// Serves over TLS (feature `tls`): each connection's handshake must finish within
    /// [`ServerConfig::handshake_timeout`]; with mutual TLS, handlers see the client's verified names through
    /// [`crate::Context::client_names`].
    /// Connections accepted from a Unix domain socket are not TLS (the socket's file permissions guard them).
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: crate::tls::ServerTls) -> ServerBuilder<L> {
        self.handshake = Handshake::tls(tls);
        self
    }

    /// Whether the server answers `rpc.Reflection` ([`reflection`]), which tells callers the services it serves
    /// and their methods: on unless turned off here. It passes through the server's layers like any service,
    /// so an [`layer::Authorize`] decides who may read it.
    pub fn reflection(mut self, on: bool) -> ServerBuilder<L> {
        self.reflection = on;
        self
    }

    /// Answers HTTP/1.1 on the same port too (feature `http`): `POST /{Service}/{method}` with the arguments as
    /// a JSON object keyed by name, answered in JSON (`docs/PROTOCOL.md` section 16). Each connection's first
    /// bytes (after the TLS handshake, if the server has TLS) say which protocol it speaks; binary clients are
    /// served as before. HTTP calls pass through the same layers as binary ones, and HTTP connections count
    /// against the same connection limits and drain with the server. Without it, nothing of HTTP is on the
    /// binary path: no sniffing, no extra read.
    ///
    /// ```
    /// # #[rpc_core::service] trait Calc { async fn add(&self, a: i64, b: i64) -> i64; }
    /// # struct C; impl Calc for C { async fn add(&self, a: i64, b: i64) -> i64 { a + b } }
    /// let server = rpc_core::Server::builder()
    ///     .add_service(CalcServer::new(C))
    ///     .http(rpc_core::http::HttpConfig::default())
    ///     .build()?;
    /// # let _ = server;
    /// # Ok::<(), rpc_core::BuildError>(())
    /// ```
    #[cfg(feature = "http")]
    pub fn http(mut self, config: crate::http::HttpConfig) -> ServerBuilder<L> {
        self.http = Some(config);
        self
    }

    /// The server, or why its services cannot be served together.
    pub fn build(mut self) -> Result<Server<L>, BuildError> {
        if self.reflection {
            let reflection = reflection::Reflector::of(&self.services);
            self.services.push(Arc::new(reflection));
        }
        let registry = Registry::new(self.services)?;
        let metered = Metered::new(self.metrics.clone(), registry.methods());
        #[cfg(feature = "http")]
        let http = match self.http {
            Some(http) => Some(Arc::new(crate::http::connection::Http::new(
                http,
                &self.config,
            )?)),
            None => None,
        };
        Ok(Server {
            registry: Arc::new(registry),
            config: Arc::new(self.config),
            handshake: self.handshake,
            layers: self.layers,
            metrics: self.metrics,
            metered,
            draining: Arc::new(AtomicBool::new(false)),
            #[cfg(feature = "http")]
            http,
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
#[derive(Clone)]
pub struct Server<L = Identity> {
    registry: Arc<Registry>,
    config: Arc<ServerConfig>,
    handshake: Handshake,
    layers: L,
    metrics: Option<crate::metrics::Metrics>,
    /// Each method's counters, if the server has metrics.
    metered: Metered,
    /// Set once the server starts to shut down: calls that arrive then are refused.
    draining: Arc<AtomicBool>,
    /// Its HTTP settings, if it answers HTTP too.
    #[cfg(feature = "http")]
    http: Option<Arc<crate::http::connection::Http>>,
}

impl<L> std::fmt::Debug for Server<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("registry", &self.registry)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A builder.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }
}

impl<L: Layers> Server<L> {
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
        self.draining.store(true, Ordering::Relaxed);
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
        let metrics = self.metrics.clone();
        let stack = self.stack();
        #[cfg(feature = "http")]
        let http = self.http.clone();
        async move {
            let mut stopping = draining.clone();
            let ready = tokio::select! {
                // A connection without a handshake to run is served, and told go-away, even if the drain began.
                biased;
                ready = handshake.run(stream, config.handshake_timeout) => ready,
                _ = stopping.wait_for(|&stop| stop) => None,
            };
            let Some(ready) = ready else { return };
            // Counted while this task runs (it ends, or is aborted, with the connection).
            let _open = Open::new(metrics.clone());
            let (reader, writer) = ready.stream.into_split();
            let (reader, writer) = (
                Counted::new(reader, metrics.clone()),
                Counted::new(writer, metrics),
            );
            let accepted = connection::Accepted {
                peer: Arc::new(Peer {
                    addr: Some(peer),
                    names: ready.names,
                }),
                slot,
            };
            #[cfg(feature = "http")]
            if let Some(http) = http {
                let serving = crate::http::connection::Serving::<L> {
                    accepted,
                    registry,
                    stack,
                    config,
                    http,
                };
                crate::http::connection::serve(reader, writer, serving, draining).await;
                return;
            }
            connection::run::<_, _, L>(reader, writer, accepted, registry, stack, config, draining)
                .await;
        }
    }

    /// Serves one connection over `io`, any byte stream (an in-memory pipe, a transport of the user's), until
    /// the peer leaves or a protocol error ends it: the same limits, layers and answers as a connection that
    /// `serve` accepted (HTTP too, if the server answers it), without a TLS handshake and without the server's
    /// count of connections. Returns when
    /// the connection has closed. It is not told of a shutdown of `serve`: drop its future to close it.
    ///
    /// ```
    /// # #[rpc_core::service] trait Echo { async fn echo(&self, s: String) -> String; }
    /// # struct E; impl Echo for E { async fn echo(&self, s: String) -> String { s } }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let server = rpc_core::Server::builder().add_service(EchoServer::new(E)).build().unwrap();
    /// let (ours, theirs) = tokio::io::duplex(64 * 1024);
    /// tokio::spawn(async move { server.serve_io(theirs).await });
    /// # drop(ours); }
    /// ```
    pub async fn serve_io<T>(&self, io: T)
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let Admitted::Slot(slot) = Admission::new(&self.config).admit() else {
            return;
        };
        let (reader, writer) = tokio::io::split(io);
        let accepted = connection::Accepted {
            peer: Arc::new(Peer::default()),
            slot,
        };
        // Never draining: the connection lives as long as its peer.
        let (_never, draining) = watch::channel(false);
        let (registry, config) = (Arc::clone(&self.registry), Arc::clone(&self.config));
        #[cfg(feature = "http")]
        if let Some(http) = self.http.clone() {
            let serving = crate::http::connection::Serving::<L> {
                accepted,
                registry,
                stack: self.stack(),
                config,
                http,
            };
            crate::http::connection::serve(reader, writer, serving, draining).await;
            return;
        }
        connection::run::<_, _, L>(
            reader,
            writer,
            accepted,
            registry,
            self.stack(),
            config,
            draining,
        )
        .await;
    }

    /// One connection's layers: the server's own, and the user's around [`Dispatch`] (see [`layer`]).
    fn stack(&self) -> (Own, L::Stack) {
        let own = Own::new(
            self.metered.clone(),
            Arc::clone(&self.draining),
            self.config.max_in_flight_per_connection,
        );
        let dispatch = Dispatch::new(Arc::clone(&self.registry), &self.config.codec);
        (own, self.layers.stack(dispatch))
    }
}
