//! The client: one multiplexed connection per server address, made on demand and remade with backoff after it
//! drops; calls with deadlines that travel as budgets; a dropped call sends a cancel.
//!
//! # Layout
//! - `connection`: one connection's reader, writer and table of calls in flight.
//! - `config`: [`ClientConfig`], the client's limits and timings.
//! - this file: [`Client`] (connection management, backoff) and the call path.

pub mod config;
mod connection;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use rpc_codec::{Bincode, FrameCodec, PayloadCodec, Status};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::time::Instant;

pub use config::ClientConfig;
use connection::{Connection, Reply};

use crate::error::RpcError;
use crate::method::MethodInfo;
use crate::options::CallOptions;

/// A client of one server address. Cheap to clone: clones share the connection.
///
/// The connection is made by [`Client::connect`] and remade on demand: when it drops, every call in flight
/// fails at once with `Unavailable`, and the next call connects again. After a failed attempt, the following
/// ones wait for a backoff (doubling from [`ClientConfig::backoff_min`] to [`ClientConfig::backoff_max`], with
/// jitter); calls made meanwhile fail at once with `Unavailable` rather than hang.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    addrs: Vec<SocketAddr>,
    config: ClientConfig,
    codec: FrameCodec,
    /// The live connection, if any; callers take a handle under this short lock.
    current: Mutex<Option<Arc<Connection>>>,
    /// Held while connecting, so that one attempt runs at a time; it keeps the backoff state.
    connecting: tokio::sync::Mutex<Backoff>,
}

#[derive(Debug, Default)]
struct Backoff {
    /// Consecutive failed attempts.
    failures: u32,
    /// No attempt before this instant.
    retry_at: Option<Instant>,
    /// Why the last attempt failed.
    last_error: String,
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
        client.connection().await?;
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
            inner: Arc::new(Inner {
                addrs,
                codec: FrameCodec::new(config.codec),
                config,
                current: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(Backoff::default()),
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
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
        match self.round_trip(method, args, options).await? {
            Reply::Value(bytes) => decode(method, &bytes),
            Reply::AppError(_) => Err(RpcError::internal(format!(
                "the server sent an application error for {method}, which has none"
            ))),
            Reply::Failed(e) => Err(e),
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
        match self.round_trip(method, args, options).await? {
            Reply::Value(bytes) => decode(method, &bytes).map(Ok),
            Reply::AppError(bytes) => decode(method, &bytes).map(Err),
            Reply::Failed(e) => Err(e),
        }
    }

    /// Sends the request and waits for its reply until the deadline; a drop before the reply sends a cancel.
    async fn round_trip<A: Serialize + ?Sized>(
        &self,
        method: &'static MethodInfo,
        args: &A,
        options: &CallOptions,
    ) -> Result<Reply, RpcError> {
        let budget = options.deadline_or(self.inner.config.default_deadline);
        let deadline = Instant::now() + budget;
        let conn = tokio::time::timeout_at(deadline, self.connection())
            .await
            .map_err(|_| deadline_exceeded(method, budget))??;
        let (id, rx) = conn
            .send(method.id, args, options.metadata_ref(), deadline)
            .await?;
        let mut guard = CancelOnDrop {
            conn: &conn,
            id,
            armed: true,
        };
        let reply = tokio::time::timeout_at(deadline, rx).await;
        guard.armed = reply.is_err();
        match reply {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(RpcError::unavailable("connection closed")),
            Err(_) => Err(deadline_exceeded(method, budget)),
        }
    }

    /// The live connection, connecting if there is none (one attempt at a time, with backoff).
    async fn connection(&self) -> Result<Arc<Connection>, RpcError> {
        if let Some(conn) = self.usable() {
            return Ok(conn);
        }
        let mut backoff = self.inner.connecting.lock().await;
        if let Some(conn) = self.usable() {
            return Ok(conn);
        }
        let now = Instant::now();
        if let Some(at) = backoff.retry_at
            && now < at
        {
            return Err(RpcError::unavailable(format!(
                "{}; next attempt in {} ms",
                backoff.last_error,
                (at - now).as_millis()
            )));
        }
        match self.dial().await {
            Ok(conn) => {
                *backoff = Backoff::default();
                *self.current() = Some(Arc::clone(&conn));
                Ok(conn)
            }
            Err(e) => {
                backoff.failures += 1;
                backoff.retry_at =
                    Some(Instant::now() + self.inner.config.backoff(backoff.failures));
                backoff.last_error = e.message().to_owned();
                Err(e)
            }
        }
    }

    fn current(&self) -> MutexGuard<'_, Option<Arc<Connection>>> {
        self.inner
            .current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn usable(&self) -> Option<Arc<Connection>> {
        self.current().as_ref().filter(|c| c.is_usable()).cloned()
    }

    /// Makes a new connection to the first address that answers.
    async fn dial(&self) -> Result<Arc<Connection>, RpcError> {
        let config = &self.inner.config;
        let mut last = String::new();
        for addr in &self.inner.addrs {
            match tokio::time::timeout(config.connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    stream.set_nodelay(true).map_err(|e| {
                        RpcError::unavailable(format!("cannot set TCP_NODELAY on {addr}: {e}"))
                    })?;
                    let (r, w) = stream.into_split();
                    let conn = Connection::start(
                        r,
                        w,
                        self.inner.codec.clone(),
                        config.max_pending_output,
                    );
                    return Ok(Arc::new(conn));
                }
                Ok(Err(e)) => last = format!("cannot connect to {addr}: {e}"),
                Err(_) => {
                    last = format!(
                        "cannot connect to {addr}: no answer in {:?}",
                        config.connect_timeout
                    )
                }
            }
        }
        Err(RpcError::unavailable(last))
    }
}

/// Sends a cancel for a call that is dropped, or times out, before its reply.
struct CancelOnDrop<'a> {
    conn: &'a Connection,
    id: u64,
    armed: bool,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.conn.cancel(self.id);
        }
    }
}

fn deadline_exceeded(method: &MethodInfo, budget: core::time::Duration) -> RpcError {
    RpcError::new(
        Status::DeadlineExceeded,
        format!("{method} did not complete within its deadline of {budget:?}"),
    )
}

fn decode<T: DeserializeOwned>(method: &MethodInfo, bytes: &[u8]) -> Result<T, RpcError> {
    Bincode.decode(bytes).map_err(|e| {
        RpcError::internal(format!(
            "the response of {method} does not decode as {}: {e}",
            core::any::type_name::<T>()
        ))
    })
}
