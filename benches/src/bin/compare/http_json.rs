//! This framework over HTTP/1.1 with JSON (`ServerBuilder::http`, protocol 1.2's calls in JSON): the same
//! `Echo` server with HTTP on its port, called the way a tool or another language calls it, `POST /Echo/echo`
//! with `{"payload":[...]}` over keep-alive connections (hyper's HTTP/1.1 client). HTTP/1.1 carries one call at
//! a time per connection, so a client is one connection and its callers take turns on it: give the workload
//! as many connections as calls in flight (`16x16`).

use std::net::SocketAddr;
use std::sync::Arc;

use benches::echo::{EchoServer, Echoer};
use benches::server_thread::{Flavor, ServerThread};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use rpc_core::Server;
use tokio::sync::Mutex;

use crate::driver::EchoCall;

/// Starts the echo server with HTTP on its port, on its own thread with a runtime of `flavor`.
pub(crate) fn start_server(flavor: Flavor) -> std::io::Result<ServerThread> {
    let server = Server::builder()
        .add_service(EchoServer::new(Echoer))
        .http(rpc_core::http::HttpConfig::default())
        .build()
        .map_err(std::io::Error::other)?;
    ServerThread::rpc_on("rpc-http-server", flavor, server)
}

/// The arguments of `Echo.echo`, as a JSON object keyed by name: `{"payload":[...]}`.
#[derive(serde::Serialize)]
struct Args<'a> {
    payload: &'a [u8],
}

/// One keep-alive HTTP/1.1 connection; its callers take turns.
#[derive(Clone)]
pub(crate) struct Client {
    sender: Arc<Mutex<SendRequest<Full<Bytes>>>>,
    host: Arc<str>,
}

impl Client {
    /// Connects to `addr`.
    pub(crate) async fn connect(addr: SocketAddr) -> Result<Client, String> {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let io = hyper_util::rt::TokioIo::new(stream);
        let (sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| format!("HTTP handshake with {addr}: {e}"))?;
        tokio::spawn(connection);
        Ok(Client {
            sender: Arc::new(Mutex::new(sender)),
            host: Arc::from(addr.to_string()),
        })
    }
}

impl EchoCall for Client {
    async fn echo(&self, payload: &Bytes) -> Result<usize, String> {
        // What a JSON client does each call: encode the arguments, send, parse the answer.
        let body = serde_json::to_vec(&Args { payload }).map_err(|e| e.to_string())?;
        let request = hyper::Request::post("/Echo/echo")
            .header(hyper::header::HOST, &*self.host)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let response = {
            let mut sender = self.sender.lock().await;
            sender.ready().await.map_err(|e| e.to_string())?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| e.to_string())?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
            (parts.status, body)
        };
        match response {
            (status, body) if status == hyper::StatusCode::OK => {
                let echoed: Vec<u8> = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
                Ok(echoed.len())
            }
            (status, body) => Err(format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            )),
        }
    }
}
