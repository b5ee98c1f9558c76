//! Running a registry: its RPC API on its listeners (TCP, and Unix domain sockets), its HTTP port (dashboard,
//! JSON API, metrics) on another, the eviction task, and a graceful shutdown of all three (evictions stop first,
//! waiting watches answer).

use rpc_core::Server;
use rpc_core::server::Listener;
use tokio::net::TcpListener;

use crate::api::RegistryServer;
use crate::server::config::RegistryConfig;
use crate::server::http;
use crate::server::service::RegistryService;

/// Serves a registry with `config`: the RPC API on `rpc` (a `TcpListener`, a `UnixListener`, or a [`Listener`]
/// of both, with the limits of `config.server`; connections over a Unix socket are not TLS), and on `http` if
/// given the dashboard, the JSON API and the metrics (of the registry and of its RPC server), until `shutdown`
/// completes; then drains and returns. A configuration that fails [`RegistryConfig::validate`] is refused
/// (`InvalidInput`) before anything is served.
pub async fn serve(
    config: RegistryConfig,
    rpc: impl Into<Listener>,
    http: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let tls = config.tls.clone();
    let server_config = config.server.clone();
    // Finds out which of the registry's credentials each call carries (see `Credentials::layer`).
    let authorize = config.credentials.layer(config.token.as_deref());
    let (service, evictions) = RegistryService::open(config)
        .await
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let shared = std::sync::Arc::clone(service.shared());
    // Stopped when shutdown begins, and also when `serve` is dropped (aborted) before.
    let evictions = AbortOnDrop(tokio::spawn(evictions).abort_handle());
    let stop_evicting = evictions.0.clone();
    let rpc_metrics = rpc_core::Metrics::server();
    let http_task = http.map(|listener| {
        let app = http::router(std::sync::Arc::clone(&shared), rpc_metrics.clone());
        let shared = std::sync::Arc::clone(&shared);
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { shared.closed().await })
                .await
        })
    });
    // If `serve` is dropped before it returns, the HTTP port shuts down too: its connections run in tasks of
    // their own, which aborting the accept loop would leave answering.
    let _close_http = CloseOnDrop(std::sync::Arc::clone(&shared));
    let builder = Server::builder()
        .add_service(RegistryServer::new(service))
        .config(server_config)
        .metrics(rpc_metrics)
        .layer(authorize);
    let builder = match tls {
        Some(tls) => builder.tls(tls),
        None => builder,
    };
    let server = builder.build().map_err(std::io::Error::other)?;
    let shutdown = {
        let shared = std::sync::Arc::clone(&shared);
        async move {
            shutdown.await;
            // While the server drains it refuses heartbeats: evicting now would remove live instances and tell
            // every watcher so. Waiting watches answer at once, so that the drain does not wait for them.
            stop_evicting.abort();
            shared.close();
        }
    };
    let served = server.serve_with_shutdown(rpc, shutdown).await;
    shared.close();
    if let Some(task) = http_task {
        let _ = task.await;
    }
    drop(evictions);
    served
}

/// Starts the registry's shutdown (of its HTTP port and waiting watches) when dropped.
struct CloseOnDrop(std::sync::Arc<crate::server::service::Shared>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
