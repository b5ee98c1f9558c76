//! This framework: the `Echo` service of `benches::echo`, served by `rpc_core::Server` with its default
//! configuration and called through the generated `EchoClient` (one multiplexed connection per client); with
//! metrics on both sides, as the `rpc-metrics` system; through a balanced client with its default policy and
//! resilience (outlier detection, retry budget), as the `rpc-balanced` system.

use std::net::SocketAddr;

use benches::echo::{EchoClient, EchoServer, Echoer};
use benches::server_thread::{Flavor, ServerThread};
use bytes::Bytes;
use rpc_core::balance::{Balancer, Instance, PeakEwma};
use rpc_core::{ClientConfig, Metrics, Server};
use serde_bytes::ByteBuf;

use crate::driver::EchoCall;

/// Starts the echo server on its own thread with a runtime of `flavor`, counting into metrics if `metrics`.
pub(crate) fn start_server(flavor: Flavor, metrics: bool) -> std::io::Result<ServerThread> {
    let builder = Server::builder().add_service(EchoServer::new(Echoer));
    let builder = if metrics {
        builder.metrics(Metrics::server())
    } else {
        builder
    };
    let server = builder.build().map_err(std::io::Error::other)?;
    ServerThread::rpc_on("rpc-server", flavor, server)
}

/// A generated client over one connection.
#[derive(Clone)]
pub(crate) struct Client(EchoClient);

impl Client {
    /// Connects to `addr`.
    pub(crate) async fn connect(addr: SocketAddr) -> Result<Client, String> {
        EchoClient::connect(addr)
            .await
            .map(Client)
            .map_err(|e| format!("cannot connect to {addr}: {e}"))
    }

    /// Connects to `addr` with a client that counts its calls into metrics.
    pub(crate) async fn connect_with_metrics(addr: SocketAddr) -> Result<Client, String> {
        let config = ClientConfig {
            metrics: Some(Metrics::client()),
            ..ClientConfig::default()
        };
        rpc_core::Client::connect_with(addr, config)
            .await
            .map(|c| Client(EchoClient::new(c)))
            .map_err(|e| format!("cannot connect to {addr}: {e}"))
    }
}

impl Client {
    /// A balanced client over the one server at `addr`: the default policy, outlier detection and retry
    /// budget, as a client of a discovered service has them; it connects on its first call.
    pub(crate) async fn balanced(addr: SocketAddr) -> Result<Client, String> {
        let instances = vec![Instance::new(&addr.to_string(), 1)];
        let balancer = Balancer::new(PeakEwma::default(), instances);
        let client = rpc_core::Client::balanced(balancer, ClientConfig::default());
        Ok(Client(EchoClient::new(client)))
    }
}

impl EchoCall for Client {
    async fn echo(&self, payload: &Bytes) -> Result<usize, String> {
        match self.0.echo(ByteBuf::from(payload.to_vec())).await {
            Ok(back) => Ok(back.len()),
            Err(e) => Err(e.to_string()),
        }
    }
}
