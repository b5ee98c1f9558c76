//! The tonic peer: a unary gRPC method `echo.Echo/Echo` written by hand the way tonic's code generator writes
//! one (a prost message, a tower service that routes the path to `tonic::server::Grpc`, and a client built on
//! `tonic::client::Grpc`), so that no build script or protoc is needed. Owns the server's accept stream and the
//! client's single HTTP/2 connection, on which every concurrent call is a stream of its own.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::net::SocketAddr;

use benches::server_thread::{Flavor, ServerThread};
use bytes::Bytes;
use tokio::net::TcpListener;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::codegen::{Body, BoxFuture, Context, Poll, Service, StdError, http};
use tonic::server::{NamedService, UnaryService};
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;

/// The gRPC service's full name.
const SERVICE_NAME: &str = "echo.Echo";

/// The HTTP/2 path of the one method, `Echo`.
const ECHO_PATH: &str = "/echo.Echo/Echo";

/// The request and the answer of `echo.Echo/Echo`: `message EchoMessage { bytes payload = 1; }`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct EchoMessage {
    /// The bytes to send back.
    #[prost(bytes = "bytes", tag = "1")]
    pub(crate) payload: Bytes,
}

/// The `Echo` method's handler: answers with the message it was sent.
#[derive(Clone, Copy)]
struct EchoMethod;

impl UnaryService<EchoMessage> for EchoMethod {
    type Response = EchoMessage;
    type Future = Ready<Result<Response<EchoMessage>, Status>>;

    fn call(&mut self, request: Request<EchoMessage>) -> Self::Future {
        ready(Ok(Response::new(request.into_inner())))
    }
}

/// The server side of `echo.Echo`: routes each HTTP/2 request by its path, as tonic's generated servers do.
#[derive(Clone, Copy)]
struct EchoService;

impl NamedService for EchoService {
    const NAME: &'static str = SERVICE_NAME;
}

impl<B> Service<http::Request<B>> for EchoService
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
        if request.uri().path() == ECHO_PATH {
            Box::pin(async move {
                let mut grpc = tonic::server::Grpc::new(ProstCodec::default());
                Ok(grpc.unary(EchoMethod, request).await)
            })
        } else {
            let status = Status::unimplemented(format!("no method {}", request.uri().path()));
            Box::pin(ready(Ok(status.into_http())))
        }
    }
}

/// Starts the tonic echo server on its own thread with a runtime of `flavor`, 127.0.0.1, OS-assigned port.
pub(crate) fn start_server(flavor: Flavor) -> std::io::Result<ServerThread> {
    ServerThread::spawn_on("tonic-server", flavor, serve)
}

/// Serves `echo.Echo` on every connection `listener` accepts, each with TCP_NODELAY set.
async fn serve(listener: TcpListener) {
    let incoming = futures::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(stream, _)| {
            if let Err(e) = stream.set_nodelay(true) {
                eprintln!("tonic server: cannot set TCP_NODELAY: {e}");
            }
            stream
        });
        // tonic skips a failed accept and asks for the next connection.
        Some((accepted, listener))
    });
    // The one service is served directly, without a router: `Server::add_service` needs tonic's `router` feature
    // (axum). `serve_with_incoming` ignores the builder's TCP settings, so TCP_NODELAY is set above.
    if let Err(e) = Server::builder()
        .serve_with_incoming(EchoService, incoming)
        .await
    {
        eprintln!("tonic server: stopped: {e}");
    }
}

/// A tonic client over ONE HTTP/2 connection; clones share it (each call is an HTTP/2 stream of its own).
#[derive(Clone)]
pub(crate) struct Client {
    /// The gRPC client over the channel; the channel's clones all feed the same connection.
    grpc: tonic::client::Grpc<Channel>,
}

impl Client {
    /// Opens one HTTP/2 connection to `addr` (TCP_NODELAY set) and makes one empty call, so that the server's
    /// HTTP/2 settings (among them its limit on concurrent streams) have arrived before the caller starts.
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
        client.call(Bytes::new()).await?;
        Ok(client)
    }

    /// Sends `payload` as one `Echo` call and returns the payload of the answer.
    async fn call(&self, payload: Bytes) -> Result<Bytes, String> {
        let mut grpc = self.grpc.clone();
        grpc.ready()
            .await
            .map_err(|e| format!("tonic client: connection not ready: {e}"))?;
        let answer: Response<EchoMessage> = grpc
            .unary(
                Request::new(EchoMessage { payload }),
                PathAndQuery::from_static(ECHO_PATH),
                ProstCodec::default(),
            )
            .await
            .map_err(|status| format!("tonic echo failed: {status}"))?;
        Ok(answer.into_inner().payload)
    }
}

impl crate::driver::EchoCall for Client {
    async fn echo(&self, payload: &Bytes) -> Result<usize, String> {
        Ok(self.call(payload.clone()).await?.len())
    }
}
