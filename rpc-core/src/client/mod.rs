//! The client: calls with deadlines that travel as budgets, to one server address (one multiplexed connection,
//! remade with backoff after it drops) or spread over the instances of a service by a [`crate::balance::Balance`],
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

use rpc_codec::{Bincode, PayloadCodec};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::ToSocketAddrs;
use tokio::time::Instant;

use balanced::Balanced;
pub use config::ClientConfig;
use connection::Reply;
use direct::{Direct, Target};

use crate::balance::Balance;
use crate::error::RpcError;
use crate::method::MethodInfo;
use crate::options::CallOptions;

/// A client of one server address, or of the instances of a service. Cheap to clone: clones share their
/// connections.
///
/// A client of one address ([`Client::connect`]) keeps one connection and remakes it on demand: when it drops,
/// every call in flight fails at once with `Unavailable`, and the next call connects again. After a failed
/// attempt, the following ones wait for a backoff (doubling from [`ClientConfig::backoff_min`] to
/// [`ClientConfig::backoff_max`], with jitter); calls made meanwhile fail at once with `Unavailable` rather than
/// hang.
///
/// A balanced client ([`Client::balanced`]) asks its [`Balance`] for an instance per call and keeps such a
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

    /// A client whose calls go to the instances `balance` picks.
    pub fn balanced(balance: Arc<dyn Balance>, config: ClientConfig) -> Client {
        Client {
            target: Kind::Balanced(Arc::new(Balanced::new(balance, config))),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        match &self.target {
            Kind::Direct(d) => &d.config,
            Kind::Balanced(b) => &b.config,
        }
    }

    /// Calls `method` with `args` and decodes its result as `R`. Generated stubs call this; `A` is the tuple of
    /// the method's arguments.
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
        let limit = self.config().codec.max_decoded_len;
        match self.round_trip(method, args, options).await? {
            Reply::Value(bytes) => decode(method, &bytes, limit),
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
        let limit = self.config().codec.max_decoded_len;
        match self.round_trip(method, args, options).await? {
            Reply::Value(bytes) => decode(method, &bytes, limit).map(Ok),
            Reply::AppError(bytes) => decode(method, &bytes, limit).map(Err),
            Reply::Failed(e) => Err(e),
            Reply::DeadlineExceeded => Err(direct::deadline_exceeded(method)),
        }
    }

    async fn round_trip<A: Serialize + ?Sized>(
        &self,
        method: &'static MethodInfo,
        args: &A,
        options: &CallOptions,
    ) -> Result<Reply, RpcError> {
        let now = Instant::now();
        let deadline = now + options.deadline_or(self.config().default_deadline);
        let metadata = options.metadata_ref();
        match &self.target {
            Kind::Direct(d) => d.round_trip(method, args, metadata, deadline, now).await,
            Kind::Balanced(b) => b.round_trip(method, args, metadata, deadline, now).await,
        }
    }
}

fn decode<T: DeserializeOwned>(
    method: &MethodInfo,
    bytes: &[u8],
    limit: usize,
) -> Result<T, RpcError> {
    Bincode.decode_within(bytes, limit).map_err(|e| {
        let status = match e {
            rpc_codec::PayloadError::DecodedTooLarge { .. } => rpc_codec::Status::ResourceExhausted,
            _ => rpc_codec::Status::Internal,
        };
        RpcError::new(
            status,
            format!(
                "the response of {method} does not decode as {}: {e}",
                core::any::type_name::<T>()
            ),
        )
    })
}
