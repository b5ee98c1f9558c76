//! This framework: a `Blocks` service of two server streams (a counted one, and an endless one whose producer
//! counts what it makes), served by `rpc_core::Server` with its default configuration and read through the
//! generated client over one multiplexed connection, whose configuration is the default but for the window of
//! its streams (`--rpc-window`). Items are `serde_bytes::ByteBuf`s, each made by the producer (a copy of one
//! block), as a user's owned items would be.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use benches::server_thread::ServerThread;
use rpc_core::{ClientConfig, Server, Stream, Streaming};
use serde_bytes::ByteBuf;

use crate::run::{Drained, Source};
use crate::workload::block;

/// Streams of blocks of bytes.
#[rpc_core::service]
pub(crate) trait Blocks {
    /// `n` blocks of `size` bytes each, as fast as the client takes them.
    async fn blocks(&self, n: u64, size: u32) -> impl Stream<Item = ByteBuf>;
    /// Blocks of `size` bytes without end, as fast as the client takes them; each one made is counted.
    async fn forever(&self, size: u32) -> impl Stream<Item = ByteBuf>;
}

/// The implementation; `made` counts the blocks `forever` made.
#[derive(Clone, Debug, Default)]
struct Blocker {
    made: Arc<AtomicU64>,
}

impl Blocks for Blocker {
    async fn blocks(&self, n: u64, size: u32) -> impl Stream<Item = ByteBuf> {
        let block = ByteBuf::from(block(size));
        futures::stream::iter((0..n).map(move |_| block.clone()))
    }

    async fn forever(&self, size: u32) -> impl Stream<Item = ByteBuf> {
        let block = ByteBuf::from(block(size));
        let made = Arc::clone(&self.made);
        futures::stream::repeat_with(move || {
            made.fetch_add(1, Ordering::Relaxed);
            block.clone()
        })
    }
}

/// Starts the server on its own thread with a current-thread runtime; `forever` counts into `made`.
pub(crate) fn start_server(made: Arc<AtomicU64>) -> std::io::Result<ServerThread> {
    let server = Server::builder()
        .add_service(BlocksServer::new(Blocker { made }))
        .build()
        .map_err(std::io::Error::other)?;
    ServerThread::rpc("rpc-server", server)
}

/// The generated client over one connection.
#[derive(Clone)]
pub(crate) struct Client(BlocksClient);

impl Client {
    /// Connects to `addr` with the default configuration but for the window of its streams, `stream_window`.
    pub(crate) async fn connect(addr: SocketAddr, stream_window: u64) -> Result<Client, String> {
        let config = ClientConfig {
            stream_window,
            ..ClientConfig::default()
        };
        rpc_core::Client::connect_with(addr, config)
            .await
            .map(|client| Client(BlocksClient::new(client)))
            .map_err(|e| format!("cannot connect to {addr}: {e}"))
    }

    /// Opens an endless stream of blocks of `size` bytes, to be left unread.
    pub(crate) async fn forever(&self, size: u32) -> Result<Streaming<ByteBuf>, String> {
        self.0
            .forever(size)
            .await
            .map_err(|e| format!("cannot open the stream: {e}"))
    }
}

impl Source for Client {
    async fn drain(&self, n: u64, size: u32) -> Result<Drained, String> {
        let mut items = self
            .0
            .blocks(n, size)
            .await
            .map_err(|e| format!("cannot open the stream: {e}"))?;
        let mut drained = Drained::default();
        while let Some(item) = items.next().await {
            let item = item.map_err(|e| format!("the stream failed: {e}"))?;
            drained.items += 1;
            drained.bytes += item.len() as u64;
        }
        Ok(drained)
    }
}
