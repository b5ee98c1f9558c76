//! One connection of a server that serves HTTP too: sniffed (`sniff`), then read by the binary protocol's loop
//! exactly as on a server without HTTP, or served by hyper's HTTP/1.1 server (keep-alive, its header limits and
//! timeout from [`HttpConfig`]). Either way the connection holds the place the accept loop gave it, and leaves
//! the handshaking budget at its first request. When the server drains, hyper shuts the connection down
//! gracefully: an idle one closes at once, a request under way finishes (within the drain timeout) and its
//! answer says `Connection: close`.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use super::config::HttpConfig;
use super::cors::{CorsError, Policy};
use super::sniff::{Protocol, Rewind, Sniffed, sniff};
use crate::server::Peer;
use crate::server::ServerConfig;
use crate::server::admission::Slot;
use crate::server::connection::{self as binary, Accepted};
use crate::server::layer::{Layers, Own};
use crate::server::registry::Registry;

/// A server's HTTP settings, made once when it is built.
#[derive(Debug)]
pub(crate) struct Http {
    builder: http1::Builder,
    pub(crate) config: HttpConfig,
    pub(crate) cors: Option<Policy>,
    /// [`HttpConfig::max_body_len`], or the server's largest payload.
    pub(crate) max_body_len: usize,
}

impl Http {
    /// The settings of `config` on a server of `server`'s limits; an error if its CORS settings are not valid.
    pub(crate) fn new(config: HttpConfig, server: &ServerConfig) -> Result<Http, CorsError> {
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .keep_alive(true)
            .header_read_timeout(config.header_read_timeout)
            .max_headers(config.max_headers)
            .max_header_size(config.max_header_bytes);
        let largest_payload =
            (server.codec.max_frame_len as usize).saturating_sub(rpc_codec::HEADER_LEN);
        Ok(Http {
            builder,
            cors: config.cors.clone().map(Policy::new).transpose()?,
            max_body_len: config.max_body_len.unwrap_or(largest_payload),
            config,
        })
    }
}

/// What the requests of one HTTP connection share.
pub(crate) struct Conn<L: Layers> {
    pub(crate) http: Arc<Http>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) config: Arc<ServerConfig>,
    pub(crate) peer: Arc<Peer>,
    /// The server's own layers.
    pub(crate) own: Arc<Own>,
    /// The user's layers, taken by one request at a time (HTTP/1.1 serves them in turn).
    stack: Mutex<L::Stack>,
    slot: Mutex<Slot>,
    last_id: AtomicU64,
}

impl<L: Layers> Conn<L> {
    pub(crate) fn stack(&self) -> MutexGuard<'_, L::Stack> {
        crate::sync::lock(&self.stack)
    }

    /// The id of the connection's next call: 1, 2, ...
    pub(crate) fn next_id(&self) -> u64 {
        self.last_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// A request's head came whole: the connection's handshake is over.
    pub(crate) fn established(&self) {
        crate::sync::lock(&self.slot).establish();
    }
}

/// What a server hands one accepted connection.
pub(crate) struct Serving<L: Layers> {
    pub(crate) accepted: Accepted,
    pub(crate) registry: Arc<Registry>,
    pub(crate) stack: (Own, L::Stack),
    pub(crate) config: Arc<ServerConfig>,
    pub(crate) http: Arc<Http>,
}

/// Serves one connection of a server with HTTP: sniffs it, then serves the protocol it speaks until it closes,
/// or until the end of the server's drain.
pub(crate) async fn serve<R, W, L>(
    mut reader: R,
    writer: W,
    serving: Serving<L>,
    draining: watch::Receiver<bool>,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
    L: Layers,
{
    let Serving {
        accepted,
        registry,
        stack,
        config,
        http,
    } = serving;
    let idle = config.idle_timeout;
    let (protocol, prefix) = match sniff(&mut reader, idle, draining.clone()).await {
        Sniffed::Closed => return,
        Sniffed::Speaks(protocol, prefix) => (protocol, prefix),
    };
    let reader = Rewind::new(prefix, reader);
    if protocol == Protocol::Binary {
        binary::run::<_, _, L>(reader, writer, accepted, registry, stack, config, draining).await;
        return;
    }
    let (own, stack) = stack;
    let conn = Arc::new(Conn::<L> {
        http: Arc::clone(&http),
        registry,
        config: Arc::clone(&config),
        peer: accepted.peer,
        own: Arc::new(own),
        stack: Mutex::new(stack),
        slot: Mutex::new(accepted.slot),
        last_id: AtomicU64::new(0),
    });
    let service = hyper::service::service_fn(move |request| {
        let conn = Arc::clone(&conn);
        async move { Ok::<_, Infallible>(super::call::serve(&conn, request).await) }
    });
    let io = TokioIo::new(tokio::io::join(reader, writer));
    let connection = http.builder.serve_connection(io, service);
    tokio::pin!(connection);
    let mut stopping = draining;
    let drained = async {
        // The sender lives as long as the server serves; without one, nothing drains.
        if stopping.wait_for(|&stop| stop).await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        _ = connection.as_mut() => return,
        () = drained => {}
    }
    connection.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(config.drain_timeout, connection).await;
}
