//! Starting servers for tests: on 127.0.0.1, on a port the OS assigns (or one a test reuses), with a handle to
//! shut them down gracefully; and a bounded wait for a condition.

use std::net::SocketAddr;
use std::time::Duration;

use rpc_core::{Server, ServerConfig};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::lab::{LabImpl, LabServer};

/// A running server.
#[derive(Debug)]
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Starts a graceful shutdown and waits (at most `limit`) until the server has returned.
    pub async fn shut_down(mut self, limit: Duration) -> Result<(), &'static str> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match tokio::time::timeout(limit, &mut self.task).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(_) => Err("the server failed"),
            Err(_) => Err("the server did not finish draining in time"),
        }
    }

    /// Stops the server at once, closing every connection without a drain (as a crash would).
    pub fn kill(self) {
        self.task.abort();
    }

    /// Starts a graceful shutdown without waiting for it.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Waits (at most `limit`) for a shutdown begun with [`Running::begin_shutdown`] to finish.
    pub async fn finished(self, limit: Duration) -> Result<(), &'static str> {
        match tokio::time::timeout(limit, self.task).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(_) => Err("the server failed"),
            Err(_) => Err("the server did not finish draining in time"),
        }
    }
}

/// Builds the server of `builder` (its layers and services) and serves it on 127.0.0.1 at a port the OS assigns,
/// in a task of its own; its address.
pub async fn serve_builder<L>(builder: rpc_core::ServerBuilder<L>) -> SocketAddr
where
    L: rpc_core::server::layer::Layers,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = builder.build().expect("the server builds");
    tokio::spawn(server.serve(listener));
    addr
}

/// Serves `lab` on 127.0.0.1 at `port` (0: one the OS assigns) with `config`.
pub async fn serve_lab(lab: LabImpl, config: ServerConfig, port: u16) -> std::io::Result<Running> {
    serve_lab_with(lab, config, port, None).await
}

/// Serves `lab` like [`serve_lab`], over TLS if `tls` is given.
pub async fn serve_lab_with(
    lab: LabImpl,
    config: ServerConfig,
    port: u16,
    tls: Option<rpc_core::tls::ServerTls>,
) -> std::io::Result<Running> {
    serve(lab, config, port, tls, None).await
}

/// Serves `lab` on a port the OS assigns, over TLS if `tls` is given, counting into `metrics`.
pub async fn serve_lab_metered(
    lab: LabImpl,
    config: ServerConfig,
    tls: Option<rpc_core::tls::ServerTls>,
    metrics: rpc_core::Metrics,
) -> std::io::Result<Running> {
    serve(lab, config, 0, tls, Some(metrics)).await
}

async fn serve(
    lab: LabImpl,
    config: ServerConfig,
    port: u16,
    tls: Option<rpc_core::tls::ServerTls>,
    metrics: Option<rpc_core::Metrics>,
) -> std::io::Result<Running> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    let server = lab_server(lab, config, tls, metrics);
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(server.serve_with_shutdown(listener, async move {
        let _ = rx.await;
    }));
    Ok(Running {
        addr,
        shutdown: Some(tx),
        task,
    })
}

/// A server of `lab` with `config`, over TLS if `tls` is given, counting into `metrics` if given.
pub fn lab_server(
    lab: LabImpl,
    config: ServerConfig,
    tls: Option<rpc_core::tls::ServerTls>,
    metrics: Option<rpc_core::Metrics>,
) -> Server {
    let builder = Server::builder()
        .add_service(LabServer::new(lab))
        .config(config);
    let builder = match tls {
        Some(tls) => builder.tls(tls),
        None => builder,
    };
    let builder = match metrics {
        Some(metrics) => builder.metrics(metrics),
        None => builder,
    };
    builder
        .build()
        .expect("the Lab service alone always builds")
}

/// Waits until `condition` holds, checking every millisecond of (possibly paused) time, at most 10,000 times.
pub async fn until(mut condition: impl FnMut() -> bool) -> bool {
    for _ in 0..10_000 {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    condition()
}
