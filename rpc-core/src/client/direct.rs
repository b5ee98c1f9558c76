//! A client of one server address (or of a list of equivalent ones, such as a registry's replicas): its
//! connection, made on demand and remade with backoff after it drops, and one call's round trip over it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use rpc_codec::{FrameCodec, Metadata, Status};
use tokio::time::Instant;

use super::ClientConfig;
use super::connection::{Connection, Reply};
use crate::error::RpcError;
use crate::method::MethodInfo;
use crate::payload::Payload;
use crate::transport::{Connector, Counted, Open, PeerAddr};

/// Where a direct client connects.
#[derive(Debug)]
pub(crate) enum Target {
    /// Addresses resolved when the client was made.
    Resolved(Vec<SocketAddr>),
    /// A `host:port` resolved at each connection attempt.
    Name(String),
    /// A Unix domain socket's path.
    #[cfg(unix)]
    Unix(std::sync::Arc<std::path::Path>),
}

/// One server address and its connection.
#[derive(Debug)]
pub(crate) struct Direct {
    target: Target,
    pub(crate) config: ClientConfig,
    connector: Connector,
    codec: FrameCodec,
    /// The live connection, if any; callers take a handle under this short lock.
    current: Mutex<Option<Arc<Connection>>>,
    /// Held while connecting, so that one attempt runs at a time; it keeps the backoff state.
    connecting: tokio::sync::Mutex<Backoff>,
    /// Where a connection attempt starts among several resolved addresses: at random for a new client, so that
    /// the clients of one list do not all pile onto its first address; then the address that answered last; after
    /// a failed attempt (or a refused connection) the address after the one it started at, so that a dead address
    /// is not the first one tried each time. Always 0 for one address, a name or a Unix socket, which are
    /// tried in their own order.
    start: AtomicUsize,
}

#[derive(Debug, Default)]
struct Backoff {
    /// Consecutive failed attempts.
    failures: u32,
    /// No attempt before this instant.
    retry_at: Option<Instant>,
    /// Why the last attempt failed.
    last_error: Option<RpcError>,
}

impl Direct {
    pub(crate) fn new(target: Target, config: ClientConfig) -> Direct {
        let start = match &target {
            Target::Resolved(addrs) if addrs.len() > 1 => crate::random::below(addrs.len()),
            _ => 0,
        };
        Direct {
            start: AtomicUsize::new(start),
            target,
            codec: FrameCodec::new(config.codec),
            connector: Connector::new(&config),
            config,
            current: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(Backoff::default()),
        }
    }

    /// Sends the call and waits for its reply until `deadline`; a drop before the reply sends a cancel. `now` is
    /// the current time, read once by the caller: the budget sent is `deadline - now` (read again after
    /// connecting, if the call had to wait for a connection).
    pub(crate) async fn round_trip<P: Payload + ?Sized>(
        &self,
        method: &'static MethodInfo,
        args: &P,
        metadata: &Metadata,
        deadline: Instant,
        now: Instant,
        span: Option<&tracing::Span>,
    ) -> Result<Reply, RpcError> {
        let (conn, now) = match self.usable() {
            Some(conn) => (conn, now),
            // Connecting took some of the budget: the server is told what is left.
            None => (
                tokio::time::timeout_at(deadline, self.connection())
                    .await
                    .map_err(|_| deadline_exceeded(method).unprocessed())??,
                Instant::now(),
            ),
        };
        let budget = deadline.saturating_duration_since(now);
        let (id, rx) = conn.send(method, args, metadata, deadline, budget).await?;
        if let Some(span) = span {
            span.record("request_id", id);
        }
        // The connection's deadline task answers the call at its deadline; until an answer comes, dropping this
        // future cancels the call.
        let mut guard = CancelOnDrop {
            conn: &conn,
            id,
            armed: true,
        };
        let reply = rx.await;
        guard.armed = false;
        match reply {
            Ok(Reply::DeadlineExceeded) => Err(deadline_exceeded(method)),
            Ok(reply) => reply.into_result(),
            Err(_) => Err(conn.closed_error()),
        }
    }

    /// The live connection, connecting if there is none (one attempt at a time, with backoff).
    pub(crate) async fn connection(&self) -> Result<Arc<Connection>, RpcError> {
        if let Some(conn) = self.usable() {
            return Ok(conn);
        }
        let mut backoff = self.connecting.lock().await;
        if let Some(conn) = self.usable() {
            return Ok(conn);
        }
        // The connection that ended, counted once: one the server refused (at its connection limit, say) is a
        // failed attempt, so the next waits for the backoff, which grows while the refusals go on; one that was
        // served ends the run of failures.
        let ended = self.current().take_if(|c| !c.is_usable());
        match ended.as_ref().map(|c| c.refusal()) {
            Some(Some(refusal)) => {
                self.failed(&mut backoff, refusal.clone());
                // The next attempt starts at another address, if there are several.
                self.rotate(self.start.load(Ordering::Relaxed));
            }
            Some(None) => backoff.failures = 0,
            None => {}
        }
        let now = Instant::now();
        if let Some(at) = backoff.retry_at
            && now < at
        {
            let (code, why) = backoff
                .last_error
                .as_ref()
                .map_or((Status::Unavailable, "the last attempt failed"), |e| {
                    (e.code(), e.message())
                });
            let message = format!("{why}; next attempt in {} ms", (at - now).as_millis());
            return Err(RpcError::not_processed(code, message));
        }
        match self.dial().await {
            Ok(conn) => {
                // The run of failures ends once the connection is served, not refused (see above).
                backoff.retry_at = None;
                backoff.last_error = None;
                *self.current() = Some(Arc::clone(&conn));
                Ok(conn)
            }
            Err(e) => Err(self.failed(&mut backoff, e)),
        }
    }

    /// Notes a failed connection attempt: the next one waits for the backoff. Returns the error.
    fn failed(&self, backoff: &mut Backoff, error: RpcError) -> RpcError {
        backoff.failures += 1;
        backoff.retry_at = Some(Instant::now() + self.config.backoff(backoff.failures));
        backoff.last_error = Some(error.clone());
        error
    }

    /// Closes the live connection, if any, for `reason`: its calls in flight fail at once with `Unavailable`
    /// and that reason (an instance ejected or gone, say); the next call connects again.
    pub(crate) fn close(&self, reason: &str) {
        let closing = self.current().take();
        if let Some(conn) = closing {
            conn.close(reason);
        }
    }

    /// Closes the live connection for `reason` (see [`Direct::close`]), and starts the next attempt at the
    /// address after the one in use: its server is silent.
    pub(crate) fn close_and_move_on(&self, reason: &str) {
        // With one address there is nowhere to move: the connection stays, and its calls with it.
        if !matches!(&self.target, Target::Resolved(addrs) if addrs.len() > 1) {
            return;
        }
        self.rotate(self.start.load(Ordering::Relaxed));
        self.close(reason);
    }

    fn current(&self) -> MutexGuard<'_, Option<Arc<Connection>>> {
        crate::sync::lock(&self.current)
    }

    fn usable(&self) -> Option<Arc<Connection>> {
        self.current().as_ref().filter(|c| c.is_usable()).cloned()
    }

    /// Makes a new connection to the first address that answers, trying each in turn from the one `start`
    /// names.
    async fn dial(&self) -> Result<Arc<Connection>, RpcError> {
        let addrs: Vec<PeerAddr> = match &self.target {
            Target::Resolved(addrs) => addrs.iter().copied().map(PeerAddr::Tcp).collect(),
            Target::Name(name) => tokio::net::lookup_host(name.as_str())
                .await
                .map_err(|e| {
                    let message = format!("cannot resolve {name}: {e}");
                    RpcError::not_processed(Status::Unavailable, message)
                })?
                .map(PeerAddr::Tcp)
                .collect(),
            #[cfg(unix)]
            Target::Unix(path) => vec![PeerAddr::Unix(Some(std::sync::Arc::clone(path)))],
        };
        let count = addrs.len();
        // Only a resolved list ever moves its start; a name's addresses keep the resolver's order.
        let start = self.start.load(Ordering::Relaxed) % count.max(1);
        let mut last = String::from("the address resolved to nothing");
        for at in (0..count).map(|i| (start + i) % count) {
            let addr = &addrs[at];
            // Past this address before trying it: a dial cut short by the call's deadline (shorter than the
            // connect timeout, say, against an address that never answers) leaves the next attempt at another.
            self.rotate(at);
            let timeout = self.config.connect_timeout;
            match tokio::time::timeout(timeout, self.dial_one(addr)).await {
                Ok(Ok(conn)) => {
                    self.settle(at);
                    return Ok(Arc::new(conn));
                }
                Ok(Err(e)) => last = e,
                Err(_) => last = format!("cannot connect to {addr}: no answer in {timeout:?}"),
            }
        }
        Err(RpcError::not_processed(Status::Unavailable, last))
    }

    /// Starts the next attempt at address `at` of a resolved list: the one that answered.
    fn settle(&self, at: usize) {
        if matches!(&self.target, Target::Resolved(addrs) if addrs.len() > 1) {
            self.start.store(at, Ordering::Relaxed);
        }
    }

    /// Starts the next attempt at the address after `from` of a resolved list: `from` failed.
    fn rotate(&self, from: usize) {
        if let Target::Resolved(addrs) = &self.target
            && addrs.len() > 1
        {
            self.start
                .store((from + 1) % addrs.len(), Ordering::Relaxed);
        }
    }

    /// Connects to `addr`, with the TLS handshake if the client has TLS settings and `addr` is a TCP address.
    async fn dial_one(&self, addr: &PeerAddr) -> Result<Connection, String> {
        let (reader, writer) = self.connector.connect(addr).await?.into_split();
        let metrics = &self.config.metrics;
        Ok(Connection::start(
            Counted::new(reader, metrics.clone()),
            Counted::new(writer, metrics.clone()),
            self.codec.clone(),
            self.config.max_pending_output,
            &self.config.compression,
            Open::new(metrics.clone()),
        ))
    }
}

/// Sends a cancel for a call whose future is dropped before its reply (the connection's deadline task answers a
/// call that times out).
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

pub(crate) fn deadline_exceeded(method: &MethodInfo) -> RpcError {
    RpcError::new(
        Status::DeadlineExceeded,
        format!("{method} did not complete within its deadline"),
    )
}
