//! A probe for callgrind: `calls` echo calls of `payload` bytes, `in_flight` at a time, over one connection,
//! client and server on one current-thread runtime, so that the instructions counted are the framework's own
//! and nothing of a scheduler's between threads. Run it under callgrind twice with different call counts; the
//! difference in instructions divided by the difference in calls is the cost of one call (the start-up cancels
//! out):
//!
//! ```sh
//! cargo build --release -p benches --bin call-probe
//! for n in 12800 25600; do
//!   GLIBC_TUNABLES=glibc.malloc.tcache_count=1000 valgrind --tool=callgrind \
//!     --callgrind-out-file=/tmp/probe.$n target/release/call-probe $n 32 128
//! done
//! ```
//!
//! With `json` as a fourth argument the calls go in JSON (protocol 1.2, `Client::call_json`), as a gateway
//! or a tool sends them; with `http` (built with `--features peers`), as `POST /Echo/echo` over HTTP/1.1
//! keep-alive connections, one per call in flight (hyper's client, the server's `ServerBuilder::http`).

use std::sync::Arc;

use benches::echo::{EchoClient, EchoServer, Echoer};
use rpc_core::{CallOptions, MethodInfo, Server};
use serde_bytes::ByteBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize, default: usize| -> Result<usize, String> {
        match args.get(i) {
            None => Ok(default),
            Some(text) => text
                .parse()
                .map_err(|_| format!("argument {}: expected a number, got {text:?}", i + 1)),
        }
    };
    let calls = number(0, 12_800)?;
    let payload = number(1, 32)?;
    let in_flight = number(2, 128)?.max(1);
    let mode = args.get(3).map_or("bincode", String::as_str);
    let json = mode == "json";
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let builder = Server::builder().add_service(EchoServer::new(Echoer));
        #[cfg(feature = "peers")]
        let builder = builder.http(rpc_core::http::HttpConfig::default());
        tokio::spawn(builder.build()?.serve(listener));
        if mode == "http" {
            return http::run(addr, calls, payload, in_flight).await;
        }
        let client = EchoClient::connect(addr).await?;
        let data = ByteBuf::from(vec![7u8; payload]);
        let args = Arc::new(serde_json::to_vec(&serde_json::json!({ "payload": data }))?);
        let method = MethodInfo::intern("Echo", "echo", false)?;
        let mut tasks = tokio::task::JoinSet::new();
        for caller in 0..in_flight {
            let (client, data, args) = (client.clone(), data.clone(), Arc::clone(&args));
            let mine = calls / in_flight + usize::from(caller < calls % in_flight);
            tasks.spawn(async move {
                let options = CallOptions::default();
                for _ in 0..mine {
                    match json {
                        false => drop(client.echo(data.clone()).await?),
                        true => drop(client.client().call_json(method, &args, &options).await?),
                    }
                }
                Ok::<(), rpc_core::RpcError>(())
            });
        }
        while let Some(done) = tasks.join_next().await {
            done??;
        }
        Ok(())
    })
}

/// The calls over HTTP/1.1 and JSON.
#[cfg(feature = "peers")]
mod http {
    use std::net::SocketAddr;

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};

    /// `calls` echoes of `payload` bytes as `POST /Echo/echo`, over `in_flight` keep-alive connections.
    pub(crate) async fn run(
        addr: SocketAddr,
        calls: usize,
        payload: usize,
        in_flight: usize,
    ) -> Result<(), Box<dyn std::error::Error>> {
        let data = vec![7u8; payload];
        let mut tasks = tokio::task::JoinSet::new();
        for caller in 0..in_flight {
            let stream = tokio::net::TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
            tokio::spawn(connection);
            let body = Bytes::from(serde_json::to_vec(&serde_json::json!({ "payload": data }))?);
            let mine = calls / in_flight + usize::from(caller < calls % in_flight);
            tasks.spawn(async move {
                for _ in 0..mine {
                    let request = hyper::Request::post("/Echo/echo")
                        .header("host", "probe")
                        .header("content-type", "application/json")
                        .body(Full::new(body.clone()))?;
                    sender.ready().await?;
                    let answer = sender.send_request(request).await?;
                    if answer.status() != hyper::StatusCode::OK {
                        return Err(format!("HTTP {}", answer.status()).into());
                    }
                    let echoed = answer.into_body().collect().await?.to_bytes();
                    let _: Vec<u8> = serde_json::from_slice(&echoed)?;
                }
                Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
            });
        }
        while let Some(done) = tasks.join_next().await {
            done?.map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

#[cfg(not(feature = "peers"))]
mod http {
    /// Without the peers' dependencies there is no HTTP client.
    pub(crate) async fn run(
        _: std::net::SocketAddr,
        _: usize,
        _: usize,
        _: usize,
    ) -> Result<(), Box<dyn std::error::Error>> {
        Err("the http mode needs `--features peers`".into())
    }
}
