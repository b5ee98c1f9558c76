//! The client: calls with deadlines that travel as budgets, to one server address (one multiplexed connection,
//! remade with backoff after it drops) or spread over the instances of a service by a [`crate::balance::Balancer`],
//! with bounded retries on other instances.
//!
//! # Layout
//! - `connection`: one connection's reader, writer and deadline tasks.
//! - `calls`: a connection's calls in flight and their deadlines.
//! - `direct`: one address: its connection, reconnection with backoff, a call's round trip.
//! - `balanced`: many instances: picking, per-instance clients, retries.
//! - `config`: [`ClientConfig`], the client's limits and timings.
//! - this file: [`Client`] and the typed call path.

mod balanced;
mod calls;
pub mod config;
mod connection;
mod direct;

use std::net::SocketAddr;
use std::sync::Arc;

use rpc_codec::{Bincode, Metadata, PayloadCodec, Status};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::ToSocketAddrs;
use tokio::time::Instant;
use tracing::Instrument;

use balanced::Balanced;
pub use config::ClientConfig;
use connection::Reply;
use direct::{Direct, Target};

use crate::balance::Balancer;
use crate::context::Context;
use crate::error::{PayloadSide, RpcError, payload_status};
use crate::method::MethodInfo;
use crate::metrics::{Ended, MethodStats, Metrics};
use crate::options::CallOptions;
use crate::payload::{Args, Payload};
use crate::trace::{TRACEPARENT, TraceContext};

/// A client of one server address, or of the instances of a service. Cheap to clone: clones share their
/// connections.
///
/// A client of one address ([`Client::connect`]) keeps one connection and remakes it on demand: when it drops,
/// every call in flight fails at once with `Unavailable`, and the next call connects again. After a failed
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
/// connection to each instance it uses; a call that certainly did not run, or an `#[idempotent]` call that
/// failed with `Unavailable`, is retried on another instance.
#[derive(Clone, Debug)]
pub struct Client {
    target: Kind,
}

#[derive(Clone, Debug)]
enum Kind {
    Direct(Arc<Direct>),
    Balanced(Arc<Balanced>),
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
        Ok(Client {
            target: Kind::Direct(Arc::new(Direct::new(Target::Resolved(addrs), config))),
        })
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
        Ok(Client {
            target: Kind::Direct(direct),
        })
    }

    /// A client whose calls go to the instances `balancer` picks.
    pub fn balanced(balancer: Balancer, config: ClientConfig) -> Client {
        Client {
            target: Kind::Balanced(Arc::new(Balanced::new(balancer, config))),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        match &self.target {
            Kind::Direct(d) => &d.config,
            Kind::Balanced(b) => &b.config,
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

    async fn round_trip<P: Payload + ?Sized>(
        &self,
        method: &'static MethodInfo,
        args: &P,
        options: &CallOptions,
    ) -> Result<Reply, RpcError> {
        options.check()?;
        let now = Instant::now();
        let deadline = now + options.deadline_or(self.config().default_deadline);
        // One load of tracing's global level: with no subscriber at INFO no span is built (building and
        // dropping a disabled span still costs a few hundred instructions when tracing's `log` feature is on).
        let traced = tracing::level_enabled!(tracing::Level::INFO);
        // The untraced call goes straight to the connection, without the layers of `traced`.
        macro_rules! straight {
            () => {{
                let metadata = options.metadata_ref();
                match &self.target {
                    Kind::Direct(d) => {
                        d.round_trip(method, args, metadata, deadline, now, None)
                            .await
                    }
                    Kind::Balanced(b) => {
                        b.round_trip(method, args, metadata, deadline, now, None)
                            .await
                    }
                }
            }};
        }
        let Some(metrics) = &self.config().metrics else {
            if traced {
                return self.traced(method, args, options, deadline, now).await;
            }
            return straight!();
        };
        // Counted as cancelled unless it ends: a caller may drop the call's future.
        let mut counted = Counted::start(metrics, method, now);
        let result = if traced {
            self.traced(method, args, options, deadline, now).await
        } else {
            straight!()
        };
        counted.ended = ended(&result);
        result
    }

    /// Makes the call within an `rpc.call` span, if one is enabled.
    async fn traced<P: Payload + ?Sized>(
        &self,
        method: &'static MethodInfo,
        args: &P,
        options: &CallOptions,
        deadline: Instant,
        now: Instant,
    ) -> Result<Reply, RpcError> {
        if !tracing::level_enabled!(tracing::Level::INFO) {
            return self
                .send(method, args, options.metadata_ref(), deadline, now, None)
                .await;
        }
        let span = tracing::info_span!(
            "rpc.call",
            service = method.service,
            method = method.name,
            request_id = tracing::field::Empty,
            status = tracing::field::Empty,
            duration_us = tracing::field::Empty,
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
            parent_id = tracing::field::Empty,
        );
        if span.is_disabled() {
            return self
                .send(method, args, options.metadata_ref(), deadline, now, None)
                .await;
        }
        // A call made while serving one continues its trace; any other starts a trace.
        let trace = match Context::current().and_then(|c| c.trace()) {
            Some(parent) => {
                span.record("parent_id", format_args!("{:016x}", parent.span_id));
                parent.child()
            }
            None => TraceContext::new_root(),
        };
        span.record("trace_id", format_args!("{:032x}", trace.trace_id));
        span.record("span_id", format_args!("{:016x}", trace.span_id));
        let metadata = with_traceparent(options.metadata_ref(), &trace);
        let result = self
            .send(method, args, &metadata, deadline, now, Some(&span))
            .instrument(span.clone())
            .await;
        span.record("status", ended(&result).label());
        span.record("duration_us", now.elapsed().as_micros() as u64);
        result
    }

    async fn send<P: Payload + ?Sized>(
        &self,
        method: &'static MethodInfo,
        args: &P,
        metadata: &Metadata,
        deadline: Instant,
        now: Instant,
        span: Option<&tracing::Span>,
    ) -> Result<Reply, RpcError> {
        match &self.target {
            Kind::Direct(d) => {
                d.round_trip(method, args, metadata, deadline, now, span)
                    .await
            }
            Kind::Balanced(b) => {
                b.round_trip(method, args, metadata, deadline, now, span)
                    .await
            }
        }
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

/// A call in a client's metrics: in flight until dropped, then counted with its status and time.
struct Counted<'a> {
    metrics: &'a Metrics,
    stats: Arc<MethodStats>,
    started: Instant,
    ended: Ended,
}

impl<'a> Counted<'a> {
    fn start(metrics: &'a Metrics, method: &MethodInfo, started: Instant) -> Counted<'a> {
        metrics.call_started();
        Counted {
            metrics,
            stats: metrics.method(method),
            started,
            ended: Ended::Status(Status::Cancelled),
        }
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.stats.record(self.ended, self.started.elapsed());
        self.metrics.call_ended();
    }
}

/// `metadata` with the `traceparent` of `trace` (in place of one already there).
fn with_traceparent(metadata: &Metadata, trace: &TraceContext) -> Metadata {
    let mut builder = Metadata::builder();
    for (key, value) in metadata.iter().filter(|(k, _)| *k != TRACEPARENT) {
        // The entries came from a valid section, so they are valid again.
        let _ = builder.insert(key, value);
    }
    let _ = builder.insert(TRACEPARENT, trace.to_traceparent());
    builder.build()
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
