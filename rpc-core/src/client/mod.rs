//! The client: calls with deadlines that travel as budgets, to one server address (one multiplexed connection,
//! remade with backoff after it drops) or spread over the instances of a service by a [`crate::balance::Balancer`],
//! with bounded retries on other instances.
//!
//! # Layout
//! - [`layer`]: the layers around every call (tracing, metrics, the user's tower layers, retries), in their
//!   order, and the [`layer::Request`] and [`layer::Response`] the user's layers see.
//! - `connection`: one connection's reader, writer and deadline tasks.
//! - `calls`: a connection's calls in flight and their deadlines.
//! - `direct`: one address: its connection, reconnection with backoff, a call's round trip.
//! - `balanced`: many instances: picking among those not ejected, per-instance clients, each call's attempts
//!   (attempt timeout, retries, hedging), and the task that applies feed changes and stall checks.
//! - `routes`: the rules a balanced client follows ([`RulesFeed`]), and the subset each call's route draws.
//! - `stream`: streams (protocol 1.1): opening one, the connection's open streams, routing the server's frames.
//! - `transport`: the innermost service of the user's layers: a call's encoded request sent as it is.
//! - `config`: [`ClientConfig`], the client's limits and timings.
//! - this file: [`Client`] and the typed call path.

mod balanced;
mod calls;
mod compression;
pub mod config;
mod connection;
mod direct;
pub mod layer;
mod routes;
mod stream;
mod transport;

use std::net::SocketAddr;
use std::sync::Arc;

use rpc_codec::{Bincode, PayloadCodec, Status};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::ToSocketAddrs;
use tokio::time::Instant;
use tracing::Instrument;

use balanced::Balanced;
pub use config::ClientConfig;
use connection::Reply;
use direct::{Direct, Target};
pub use routes::RulesFeed;

/// The answer to a call in JSON ([`Client::call_json`]): JSON text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JsonAnswer {
    /// The method's value.
    Value(bytes::Bytes),
    /// The method's own error (a method returning `Result<T, E>` answered `Err`).
    AppError(bytes::Bytes),
}

use crate::balance::{Balancer, CallInfo};
use crate::error::{PayloadSide, RpcError, payload_status};
use crate::method::MethodInfo;
use crate::metrics::Ended;
use crate::options::CallOptions;
use crate::payload::{Args, Payload};

/// A client of one server address, or of the instances of a service. Cheap to clone: clones share their
/// connections.
///
/// A client of one address ([`Client::connect`]) keeps one connection and remakes it on demand: when it drops,
/// every call in flight fails at once with `Unavailable`, and the next call connects again (to the next of
/// several equivalent addresses if the one it had stopped answering, see [`Client::lazy_with`]). After a failed
/// attempt, the following ones wait for a backoff (doubling from [`ClientConfig::backoff_min`] to
/// [`ClientConfig::backoff_max`], with jitter); calls made meanwhile fail at once with `Unavailable` rather than
/// hang. A server that refuses the connection (a `GoAway` with a status other than `Ok`, as a server at its
/// connection limit sends) fails the calls on it at once with its status and reason (`ResourceExhausted`:
/// `server at its connection limit of 1024`), certainly not processed, and counts as a failed attempt: calls
/// during the backoff that follows fail with the same status and reason.
///
/// A client serves no methods: a `Request` the server sends is answered `Unimplemented` (`this peer serves
/// no methods`), a `OneWay` is dropped, and a `Ping` is answered `Pong`.
///
/// A balanced client ([`Client::balanced`]) asks its [`Balancer`] for an instance per call and keeps such a
/// connection to each instance it uses. A call that certainly did not run, or an `#[idempotent]` call that
/// failed with a status of [`ClientConfig::retry_on`] or ran out of [`ClientConfig::attempt_timeout`], is
/// retried on another instance, within the retry budget ([`ClientConfig::retry_budget`]); slow idempotent
/// calls may be hedged ([`ClientConfig::hedge`]). Instances that fail, lag far behind their peers or stall
/// are ejected for a while ([`ClientConfig::outliers`]), and the calls in flight to an instance that is
/// ejected or leaves the service fail over at once (idempotent ones) or fail with `Unavailable`.
#[derive(Clone, Debug)]
pub struct Client {
    target: Kind,
    /// The user's layers around the target, if there are some.
    layers: Option<layer::Stack>,
}

#[derive(Clone, Debug)]
pub(crate) enum Kind {
    Direct(Arc<Direct>),
    Balanced(Arc<Balanced>),
}

impl Kind {
    fn config(&self) -> &ClientConfig {
        match self {
            Kind::Direct(d) => &d.config,
            Kind::Balanced(b) => &b.config,
        }
    }

    /// A call's round trip to the one address, or to an instance the balancer picks (with `key`, the caller's
    /// key of the call, in view).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn round_trip<P: Payload + ?Sized>(
        &self,
        call: CallInfo<'_>,
        args: &P,
        deadline: Instant,
        now: Instant,
        span: Option<&tracing::Span>,
    ) -> Result<Reply, RpcError> {
        match self {
            Kind::Direct(d) => {
                d.round_trip(call.method, args, call.metadata, deadline, now, span)
                    .await
            }
            Kind::Balanced(b) => b.round_trip(call, args, deadline, now, span).await,
        }
    }
}

impl Client {
    /// Connects to `addr` with the default configuration.
    pub async fn connect(addr: impl ToSocketAddrs) -> Result<Client, RpcError> {
        Client::connect_with(addr, ClientConfig::default()).await
    }

    /// Connects to `addr` with `config`. Fails if the first connection cannot be made.
    pub async fn connect_with(
        addr: impl ToSocketAddrs,
        config: ClientConfig,
    ) -> Result<Client, RpcError> {
        let client = Client::lazy_with(addr, config).await?;
        if let Kind::Direct(direct) = &client.target {
            direct.connection().await?;
        }
        Ok(client)
    }

    /// A client of `addr` that connects on its first call.
    ///
    /// `addr` may stand for several addresses of equivalent servers (a name that resolves to several, or a
    /// slice of `SocketAddr`s, such as a registry's replicas): each connection attempt tries them in turn until
    /// one answers. A new client starts at one drawn at random, so that the clients of one list spread over it;
    /// later attempts start at the address that answered last, and after a failed attempt at the next one, so
    /// that a dead address is not the first one tried each time. A single address behaves as it always has.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), rpc_core::RpcError> {
    /// use std::net::SocketAddr;
    /// let replicas: [SocketAddr; 2] = ["127.0.0.1:7070".parse().unwrap(), "127.0.0.1:7071".parse().unwrap()];
    /// let client = rpc_core::Client::lazy_with(&replicas[..], rpc_core::ClientConfig::default()).await?;
    /// # let _ = client; Ok(()) }
    /// ```
    pub async fn lazy_with(
        addr: impl ToSocketAddrs,
        config: ClientConfig,
    ) -> Result<Client, RpcError> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host(addr)
            .await
            .map_err(|e| {
                RpcError::unavailable(format!("cannot resolve the server's address: {e}"))
            })?
            .collect();
        if addrs.is_empty() {
            return Err(RpcError::unavailable(
                "the server's address resolved to nothing",
            ));
        }
        Ok(Client::new(Kind::Direct(Arc::new(Direct::new(
            Target::Resolved(addrs),
            config,
        )))))
    }

    /// Connects to the server listening on the Unix domain socket at `path`, with the default configuration.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), rpc_core::RpcError> {
    /// let client = rpc_core::Client::connect_unix("/run/calc.sock").await?;
    /// # let _ = client; Ok(()) }
    /// ```
    #[cfg(unix)]
    pub async fn connect_unix(path: impl AsRef<std::path::Path>) -> Result<Client, RpcError> {
        Client::connect_unix_with(path, ClientConfig::default()).await
    }

    /// Connects to the server listening on the Unix domain socket at `path`, with `config` (its TLS settings,
    /// if any, are not used: a Unix socket never carries TLS). Fails if the first connection cannot be made;
    /// later ones are remade on demand, as over TCP.
    #[cfg(unix)]
    pub async fn connect_unix_with(
        path: impl AsRef<std::path::Path>,
        config: ClientConfig,
    ) -> Result<Client, RpcError> {
        let target = Target::Unix(Arc::from(path.as_ref()));
        let direct = Arc::new(Direct::new(target, config));
        direct.connection().await?;
        Ok(Client::new(Kind::Direct(direct)))
    }

    /// A client whose calls go to the instances `balancer` picks.
    pub fn balanced(balancer: Balancer, config: ClientConfig) -> Client {
        Client::new(Kind::Balanced(Arc::new(Balanced::new(balancer, config))))
    }

    /// A client of `target`, with the user's layers of its configuration around it.
    fn new(target: Kind) -> Client {
        let layers = &target.config().layers;
        let layers = (!layers.is_empty())
            .then(|| layers.around(transport::Transport::stack(target.clone())));
        Client { target, layers }
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        self.target.config()
    }

    /// Closes a direct client's connection for `reason`: its calls in flight fail with `Unavailable` and that
    /// reason, and the next call connects again, to the next of its addresses if it has several. For a caller
    /// that finds its server silent though the connection stands (a hung process, a host cut off, which no
    /// reset ever tells), so that it moves on. A client of one address has nowhere to move, and a balanced
    /// client has its own outlier detection: this does nothing there.
    pub fn reconnect(&self, reason: &str) {
        if let Kind::Direct(direct) = &self.target {
            direct.close_and_move_on(reason);
        }
    }

    /// Calls `method` with `args` and decodes its result as `R`, both in bincode. Generated stubs call this;
    /// `A` is the tuple of the method's arguments.
    pub async fn call<A, R>(
        &self,
        method: &'static MethodInfo,
        args: &A,
        options: &CallOptions,
    ) -> Result<R, RpcError>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        self.call_with(&Bincode, method, args, options).await
    }

    /// Like [`Client::call`], with the payloads encoded by `codec`: what the stub of a service declared with
    /// `#[service(codec = ...)]` calls.
    pub async fn call_with<C, A, R>(
        &self,
        codec: &C,
        method: &'static MethodInfo,
        args: &A,
        options: &CallOptions,
    ) -> Result<R, RpcError>
    where
        C: PayloadCodec,
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let limit = self.config().codec.max_decoded_len;
        match self
            .round_trip(method, &Args { codec, args }, options)
            .await?
        {
            Reply::Value(bytes) => decode(codec, method, &bytes, limit),
            Reply::AppError(_) => Err(RpcError::internal(format!(
                "the server sent an application error for {method}, which has none"
            ))),
            Reply::Failed(e) => Err(e),
            Reply::DeadlineExceeded => Err(direct::deadline_exceeded(method)),
        }
    }

    /// Like [`Client::call`] for a method returning `Result<U, E>`: the application's error comes back as the
    /// inner `Err`.
    pub async fn call_fallible<A, U, E>(
        &self,
        method: &'static MethodInfo,
        args: &A,
        options: &CallOptions,
    ) -> Result<Result<U, E>, RpcError>
    where
        A: Serialize + ?Sized,
        U: DeserializeOwned,
        E: DeserializeOwned,
    {
        self.call_fallible_with(&Bincode, method, args, options)
            .await
    }

    /// Like [`Client::call_fallible`], with the payloads encoded by `codec`.
    pub async fn call_fallible_with<C, A, U, E>(
        &self,
        codec: &C,
        method: &'static MethodInfo,
        args: &A,
        options: &CallOptions,
    ) -> Result<Result<U, E>, RpcError>
    where
        C: PayloadCodec,
        A: Serialize + ?Sized,
        U: DeserializeOwned,
        E: DeserializeOwned,
    {
        let limit = self.config().codec.max_decoded_len;
        match self
            .round_trip(method, &Args { codec, args }, options)
            .await?
        {
            Reply::Value(bytes) => decode(codec, method, &bytes, limit).map(Ok),
            Reply::AppError(bytes) => decode(codec, method, &bytes, limit).map(Err),
            Reply::Failed(e) => Err(e),
            Reply::DeadlineExceeded => Err(direct::deadline_exceeded(method)),
        }
    }

    /// Calls `method` in JSON (protocol 1.2): `args` is JSON text, an object of the method's arguments keyed by
    /// name (`{"a": 2, "b": 3}`), and the answer comes back as JSON text, the value or the application's error.
    /// The call goes through the client's layers, balancing, retries and deadlines like any other; the server
    /// decodes the arguments (and refuses what does not fit with `InvalidArgument`). What tools, the CLI's
    /// `call` and the registry's gateway use; a method known only at run time is named by
    /// [`MethodInfo::intern`].
    ///
    /// ```
    /// # use rpc_core::{service, Server, Client, CallOptions, MethodInfo};
    /// # use rpc_core::client::JsonAnswer;
    /// # #[service] trait Calc { async fn add(&self, a: i32, b: i32) -> i32; }
    /// # struct C; impl Calc for C { async fn add(&self, a: i32, b: i32) -> i32 { a + b } }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// # let addr = listener.local_addr()?;
    /// # tokio::spawn(Server::builder().add_service(CalcServer::new(C)).build()?.serve(listener));
    /// let client = Client::connect(addr).await?;
    /// let add = MethodInfo::intern("Calc", "add", false)?;
    /// let answer = client.call_json(add, br#"{"a": 2, "b": 3}"#, &CallOptions::default()).await?;
    /// assert_eq!(answer, JsonAnswer::Value(b"5"[..].into()));
    /// # Ok(()) }
    /// ```
    pub async fn call_json(
        &self,
        method: &'static MethodInfo,
        args: &[u8],
        options: &CallOptions,
    ) -> Result<JsonAnswer, RpcError> {
        let answer = match self
            .round_trip(method, &crate::payload::RawJson(args), options)
            .await?
        {
            Reply::Value(bytes) => JsonAnswer::Value(bytes),
            Reply::AppError(bytes) => JsonAnswer::AppError(bytes),
            Reply::Failed(e) => return Err(e),
            Reply::DeadlineExceeded => return Err(direct::deadline_exceeded(method)),
        };
        // What comes back goes on to tools and into the JSON of gateways' answers: it must be JSON (a layer of
        // the server's may have answered in the service's codec).
        #[cfg(feature = "json")]
        if let JsonAnswer::Value(bytes) | JsonAnswer::AppError(bytes) = &answer
            && !crate::http::answer::is_json(bytes)
        {
            return Err(RpcError::internal(format!(
                "the server answered {method} in JSON with {} bytes that are not JSON",
                bytes.len()
            )));
        }
        Ok(answer)
    }

    /// The call through the client's layers (see [`layer`]): its span and counts, then the user's layers if
    /// any, then the target.
    async fn round_trip<P: Payload + ?Sized>(
        &self,
        method: &'static MethodInfo,
        args: &P,
        options: &CallOptions,
    ) -> Result<Reply, RpcError> {
        options.check()?;
        let now = Instant::now();
        let deadline = now + options.deadline_or(self.config().default_deadline);
        let traced = layer::trace::begin(method, options.metadata_ref());
        // Counted as cancelled unless it ends: a caller may drop the call's future.
        let mut counted = self
            .config()
            .metrics
            .as_ref()
            .map(|metrics| layer::metrics::Counted::start(metrics, method, now));
        let metadata = traced
            .as_ref()
            .map_or_else(|| options.metadata_ref(), |t| &t.metadata);
        // Each path awaits its future where it is made: a future moved before it is awaited costs a copy.
        let result = match (&traced, &self.layers, &self.target) {
            (None, None, Kind::Direct(d)) => {
                d.round_trip(method, args, metadata, deadline, now, None)
                    .await
            }
            (None, None, Kind::Balanced(b)) => {
                let call = CallInfo::new(method, metadata)
                    .with_key(options.key())
                    .with_deadline_chosen(options.has_deadline());
                b.round_trip(call, args, deadline, now, None).await
            }
            (None, Some(stack), _) => {
                let call = CallInfo::new(method, metadata)
                    .with_key(options.key())
                    .with_deadline_chosen(options.has_deadline());
                transport::through(stack.clone(), call, args, deadline).await
            }
            (Some(t), _, _) => {
                let call = CallInfo::new(method, metadata)
                    .with_key(options.key())
                    .with_deadline_chosen(options.has_deadline());
                self.send(call, args, deadline, now, &t.span)
                    .instrument(t.span.clone())
                    .await
            }
        };
        if traced.is_some() || counted.is_some() {
            let ended = ended(&result);
            if let Some(t) = &traced {
                t.finish(ended, now);
            }
            if let Some(counted) = &mut counted {
                counted.ended = ended;
            }
        }
        result
    }

    /// A traced call through the user's layers, if any, to the target.
    async fn send<P: Payload + ?Sized>(
        &self,
        call: CallInfo<'_>,
        args: &P,
        deadline: Instant,
        now: Instant,
        span: &tracing::Span,
    ) -> Result<Reply, RpcError> {
        if let Some(stack) = &self.layers {
            return transport::through(stack.clone(), call, args, deadline).await;
        }
        self.target
            .round_trip(call, args, deadline, now, Some(span))
            .await
    }
}

/// How a call ended, as its span and metrics name it: the method's own error is `AppError`, not `Ok`.
fn ended(result: &Result<Reply, RpcError>) -> Ended {
    match result {
        Ok(Reply::Failed(e)) | Err(e) => Ended::Status(e.code()),
        Ok(Reply::DeadlineExceeded) => Ended::Status(Status::DeadlineExceeded),
        Ok(Reply::AppError(_)) => Ended::AppError,
        Ok(Reply::Value(_)) => Ended::Status(Status::Ok),
    }
}

fn decode<C: PayloadCodec, T: DeserializeOwned>(
    codec: &C,
    method: &MethodInfo,
    bytes: &[u8],
    limit: usize,
) -> Result<T, RpcError> {
    codec.decode_within(bytes, limit).map_err(|e| {
        RpcError::new(
            payload_status(PayloadSide::Response, &e),
            format!(
                "the response of {method} does not decode as {}: {e}",
                core::any::type_name::<T>()
            ),
        )
    })
}
