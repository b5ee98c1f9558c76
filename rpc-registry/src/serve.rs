//! Running a registry: its RPC API on one listener, its HTTP port (dashboard, JSON API, metrics) on another, the eviction task, and a graceful
//! shutdown of all three.

use rpc_core::Server;
use tokio::net::TcpListener;

use crate::api::RegistryServer;
use crate::config::RegistryConfig;
use crate::http;
use crate::service::RegistryService;

/// Serves a registry with `config`: the RPC API on `rpc`, and on `http` if given the dashboard, the JSON API
/// and the metrics (of the registry and of its RPC server), until `shutdown` completes; then drains and
/// returns.
pub async fn serve(
    config: RegistryConfig,
    rpc: TcpListener,
    http: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    #[cfg(feature = "tls")]
    let tls = config.tls.clone();
    let (service, evictions) = RegistryService::new(config);
    // Stopped when `serve` returns, and also when it is dropped (aborted) before.
    let evictions = AbortOnDrop(tokio::spawn(evictions).abort_handle());
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let rpc_metrics = rpc_core::Metrics::server();
    let http_task = http.map(|listener| {
        let app = http::router(std::sync::Arc::clone(service.shared()), rpc_metrics.clone());
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = http_stopped.await;
                })
                .await
        })
    });
    let _http_guard = http_task.as_ref().map(|t| AbortOnDrop(t.abort_handle()));
    let builder = Server::builder()
        .add_service(RegistryServer::new(service))
        .metrics(rpc_metrics);
    #[cfg(feature = "tls")]
    let builder = match tls {
        Some(tls) => builder.tls(tls),
        None => builder,
    };
    let server = builder.build().map_err(std::io::Error::other)?;
    let served = server.serve_with_shutdown(rpc, shutdown).await;
    let _ = stop_http.send(());
    if let Some(task) = http_task {
        let _ = task.await;
    }
    drop(evictions);
    served
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
