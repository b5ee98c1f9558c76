//! The tarpc peer: an `Echo` service declared with `#[tarpc::service]`, served over TCP with tarpc's serde
//! transport (length-delimited frames, bincode), and its client over one multiplexed connection. Owns the
//! server's accept loop and the client's connection set-up. The service has one method per payload type: `echo`
//! carries `serde_bytes::ByteBuf` (the `tarpc` system: bincode writes the payload as one length and one copy of
//! the bytes, as it does for this framework's `ByteBuf`), `echo_vec` a plain `Vec<u8>` (the `tarpc-vec` system:
//! what a tarpc user writes without serde_bytes, serialized byte by byte). Both share the server, the
//! connection and the client; only the method called differs.

use std::net::SocketAddr;
use std::time::Duration;

use benches::server_thread::{Flavor, ServerThread};
use bytes::Bytes;
use futures::StreamExt;
use serde_bytes::ByteBuf;
use tarpc::client::{self, RpcError};
use tarpc::context;
use tarpc::serde_transport;
use tarpc::server::{BaseChannel, Channel};
use tarpc::tokio_serde::formats::Bincode;
use tarpc::tokio_util::codec::{Framed, LengthDelimitedCodec};
use tokio::net::{TcpListener, TcpStream};

use crate::driver::EchoCall;

/// The echo service: answers with the payload it was sent.
#[tarpc::service]
pub(crate) trait Echo {
    /// Returns `payload` unchanged; the payload is a `ByteBuf`.
    async fn echo(payload: ByteBuf) -> ByteBuf;
    /// Returns `payload` unchanged; the payload is a plain `Vec<u8>`.
    async fn echo_vec(payload: Vec<u8>) -> Vec<u8>;
}

/// The server side of [`Echo`]; stateless.
#[derive(Clone, Copy)]
struct EchoServer;

impl Echo for EchoServer {
    async fn echo(self, _: context::Context, payload: ByteBuf) -> ByteBuf {
        payload
    }

    async fn echo_vec(self, _: context::Context, payload: Vec<u8>) -> Vec<u8> {
        payload
    }
}

/// How long the accept loop waits after a failed accept before trying again (so that, say, running out of file
/// descriptors does not turn it into a busy loop).
const ACCEPT_RETRY: Duration = Duration::from_millis(10);

/// Starts the tarpc echo server on its own thread with a runtime of `flavor`, 127.0.0.1, OS-assigned port.
pub(crate) fn start_server(flavor: Flavor) -> std::io::Result<ServerThread> {
    ServerThread::spawn_on("tarpc-server", flavor, serve)
}

/// Accepts connections on `listener` forever, serving each on a task of its own; each request runs on a task of
/// its own too, as tarpc's examples do.
async fn serve(listener: TcpListener) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                eprintln!("tarpc server: accept failed: {e}");
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        if let Err(e) = stream.set_nodelay(true) {
            eprintln!("tarpc server: cannot set TCP_NODELAY: {e}");
        }
        let transport = serde_transport::new(
            Framed::new(stream, LengthDelimitedCodec::new()),
            Bincode::default(),
        );
        let requests = BaseChannel::with_defaults(transport).execute(EchoServer.serve());
        tokio::spawn(requests.for_each(|handler| async move {
            tokio::spawn(handler);
        }));
    }
}

/// A tarpc client over ONE TCP connection, calling `echo` (`ByteBuf`); clones share the connection (tarpc
/// multiplexes calls by request id).
#[derive(Clone)]
pub(crate) struct Client {
    /// The generated client; its dispatch task owns the connection.
    inner: EchoClient,
}

impl Client {
    /// Opens one connection to `addr` (TCP_NODELAY set) and starts the client's dispatch task on the current
    /// runtime. tarpc has no handshake.
    pub(crate) async fn connect(addr: SocketAddr) -> Result<Client, String> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("tarpc client: cannot connect to {addr}: {e}"))?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("tarpc client: cannot set TCP_NODELAY: {e}"))?;
        let transport = serde_transport::new(
            Framed::new(stream, LengthDelimitedCodec::new()),
            Bincode::default(),
        );
        let mut config = client::Config::default();
        // The default queue to the dispatch task (100 requests) is below the harness's 128 concurrent callers.
        config.pending_request_buffer = 1024;
        Ok(Client {
            inner: EchoClient::new(config, transport).spawn(),
        })
    }
}

impl EchoCall for Client {
    async fn echo(&self, payload: &Bytes) -> Result<usize, String> {
        let answer = self
            .inner
            .echo(context::current(), ByteBuf::from(payload.to_vec()))
            .await;
        answered(answer)
    }
}

/// The same client calling `echo_vec` (a plain `Vec<u8>`): the `tarpc-vec` system.
#[derive(Clone)]
pub(crate) struct VecClient(Client);

impl VecClient {
    /// Opens one connection to `addr`, as [`Client::connect`] does.
    pub(crate) async fn connect(addr: SocketAddr) -> Result<VecClient, String> {
        Client::connect(addr).await.map(VecClient)
    }
}

impl EchoCall for VecClient {
    async fn echo(&self, payload: &Bytes) -> Result<usize, String> {
        let answer = self
            .0
            .inner
            .echo_vec(context::current(), payload.to_vec())
            .await;
        answered(answer)
    }
}

/// The length of an echo's answer, or its error as text.
fn answered<T: AsRef<[u8]>>(answer: Result<T, RpcError>) -> Result<usize, String> {
    answer
        .map(|back| back.as_ref().len())
        .map_err(|e| format!("tarpc echo failed: {e}"))
}
