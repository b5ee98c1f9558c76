//! The tonic peer: two server-streaming gRPC methods, `bench.Blocks/Blocks` (`n` blocks) and
//! `bench.Blocks/Forever` (blocks without end, each one made counted), written by hand the way tonic's code
//! generator writes them (prost messages, a tower service that routes each path to
//! `tonic::server::Grpc::server_streaming`, and a client on `tonic::client::Grpc::server_streaming`), so that no
//! build script or protoc is needed. Owns the server's accept stream and the client's one HTTP/2 connection, on
//! which each stream is an HTTP/2 stream of its own. Every setting is tonic's and hyper's default.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use benches::server_thread::ServerThread;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, stream};
use tokio::net::TcpListener;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::codegen::{Body, BoxFuture, Context, Poll, Service, StdError, http};
use tonic::server::{NamedService, ServerStreamingService};
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;

use crate::run::{Drained, Source};
use crate::workload::block;

/// The gRPC service's full name.
const SERVICE_NAME: &str = "bench.Blocks";
/// The HTTP/2 path of `Blocks`.
const BLOCKS_PATH: &str = "/bench.Blocks/Blocks";
/// The HTTP/2 path of `Forever`.
const FOREVER_PATH: &str = "/bench.Blocks/Forever";

/// `message BlocksRequest { uint64 n = 1; uint32 size = 2; }`; `Forever` reads `size` alone.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct BlocksRequest {
    /// Blocks to send.
    #[prost(uint64, tag = "1")]
    pub(crate) n: u64,
    /// Bytes of each block.
    #[prost(uint32, tag = "2")]
    pub(crate) size: u32,
}

/// `message Block { bytes payload = 1; }`: one item.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Block {
    /// The block's bytes.
    #[prost(bytes = "bytes", tag = "1")]
    pub(crate) payload: Bytes,
}

/// The items of a response.
type Blocks = BoxStream<'static, Result<Block, Status>>;

/// The `Blocks` method's handler.
#[derive(Clone, Copy)]
struct BlocksMethod;

impl ServerStreamingService<BlocksRequest> for BlocksMethod {
    type Response = Block;
    type ResponseStream = Blocks;
    type Future = Ready<Result<Response<Blocks>, Status>>;

    fn call(&mut self, request: Request<BlocksRequest>) -> Self::Future {
        let BlocksRequest { n, size } = request.into_inner();
        let payload = Bytes::from(block(size));
        // A copy per item, as this framework's producer makes one (a `ByteBuf` clone): a block that is only
        // shared would cost tonic nothing.
        let items = stream::iter((0..n).map(move |_| {
            Ok(Block {
                payload: Bytes::copy_from_slice(&payload),
            })
        }));
        ready(Ok(Response::new(items.boxed())))
    }
}

/// The `Forever` method's handler, counting the blocks it makes into `made`.
#[derive(Clone)]
struct ForeverMethod {
    made: Arc<AtomicU64>,
}

impl ServerStreamingService<BlocksRequest> for ForeverMethod {
    type Response = Block;
    type ResponseStream = Blocks;
    type Future = Ready<Result<Response<Blocks>, Status>>;

    fn call(&mut self, request: Request<BlocksRequest>) -> Self::Future {
        let payload = Bytes::from(block(request.into_inner().size));
        let made = Arc::clone(&self.made);
        let items = stream::repeat_with(move || {
            made.fetch_add(1, Ordering::Relaxed);
            // A copy per item, as in `Blocks`.
            Ok(Block {
                payload: Bytes::copy_from_slice(&payload),
            })
        });
        ready(Ok(Response::new(items.boxed())))
    }
}

/// The server side of `bench.Blocks`: routes each HTTP/2 request by its path, as tonic's generated servers do.
#[derive(Clone)]
struct BlocksService {
    made: Arc<AtomicU64>,
}

impl NamedService for BlocksService {
    const NAME: &'static str = SERVICE_NAME;
}

impl<B> Service<http::Request<B>> for BlocksService
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let mut grpc = tonic::server::Grpc::new(ProstCodec::default());
        match request.uri().path() {
            BLOCKS_PATH => {
                Box::pin(async move { Ok(grpc.server_streaming(BlocksMethod, request).await) })
            }
            FOREVER_PATH => {
                let method = ForeverMethod {
                    made: Arc::clone(&self.made),
                };
                Box::pin(async move { Ok(grpc.server_streaming(method, request).await) })
            }
            path => {
                let status = Status::unimplemented(format!("no method {path}"));
                Box::pin(ready(Ok(status.into_http())))
            }
        }
    }
}

/// Starts the tonic server on its own thread with a current-thread runtime; `Forever` counts into `made`.
pub(crate) fn start_server(made: Arc<AtomicU64>) -> std::io::Result<ServerThread> {
    ServerThread::spawn("tonic-server", move |listener| serve(listener, made))
}

/// Serves `bench.Blocks` on every connection `listener` accepts, each with TCP_NODELAY set.
async fn serve(listener: TcpListener, made: Arc<AtomicU64>) {
    let incoming = stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(stream, _)| {
            if let Err(e) = stream.set_nodelay(true) {
                eprintln!("tonic server: cannot set TCP_NODELAY: {e}");
            }
            stream
        });
        // tonic skips a failed accept and asks for the next connection.
        Some((accepted, listener))
    });
    // Served directly, without a router (`Server::add_service` needs tonic's `router` feature).
    if let Err(e) = Server::builder()
        .serve_with_incoming(BlocksService { made }, incoming)
        .await
    {
        eprintln!("tonic server: stopped: {e}");
    }
}

/// A tonic client over ONE HTTP/2 connection; clones share it.
#[derive(Clone)]
pub(crate) struct Client {
    grpc: tonic::client::Grpc<Channel>,
}

impl Client {
    /// Opens one HTTP/2 connection to `addr` (TCP_NODELAY set) and reads one empty stream, so that the server's
    /// HTTP/2 settings have arrived before the caller starts.
    pub(crate) async fn connect(addr: SocketAddr) -> Result<Client, String> {
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| format!("tonic client: bad address {addr}: {e}"))?
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| format!("tonic client: cannot connect to {addr}: {e}"))?;
        let client = Client {
            grpc: tonic::client::Grpc::new(channel),
        };
        client.drain(0, 0).await?;
        Ok(client)
    }

    /// Opens a stream of `request` on `path`.
    async fn open(
        &self,
        path: &'static str,
        request: BlocksRequest,
    ) -> Result<tonic::Streaming<Block>, String> {
        let mut grpc = self.grpc.clone();
        grpc.ready()
            .await
            .map_err(|e| format!("tonic client: connection not ready: {e}"))?;
        let response = grpc
            .server_streaming(
                Request::new(request),
                PathAndQuery::from_static(path),
                ProstCodec::default(),
            )
            .await
            .map_err(|status| format!("tonic stream refused: {status}"))?;
        Ok(response.into_inner())
    }

    /// Opens an endless stream of blocks of `size` bytes, to be left unread.
    pub(crate) async fn forever(&self, size: u32) -> Result<tonic::Streaming<Block>, String> {
        self.open(FOREVER_PATH, BlocksRequest { n: 0, size }).await
    }
}

impl Source for Client {
    async fn drain(&self, n: u64, size: u32) -> Result<Drained, String> {
        let mut items = self.open(BLOCKS_PATH, BlocksRequest { n, size }).await?;
        let mut drained = Drained::default();
        while let Some(item) = items
            .message()
            .await
            .map_err(|status| format!("tonic stream failed: {status}"))?
        {
            drained.items += 1;
            drained.bytes += item.payload.len() as u64;
        }
        Ok(drained)
    }
}
