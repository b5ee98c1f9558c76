//! How an instance of the chaos runs protects itself (`--protect`): without it, calls beyond its capacity wait
//! their turn in an unbounded queue, as on a server with no limit.

use rpc_core::Server;
use tokio::net::TcpListener;

use crate::instance::Spec;
use crate::service::ChaosServer;
use crate::service::Worker;

/// Serves `service` on `listener` until `shutdown`, protected as `spec` says.
pub(crate) async fn serve(
    service: ChaosServer<Worker>,
    spec: Spec,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let _ = spec.protect;
    let server = Server::builder()
        .add_service(service)
        .build()
        .map_err(|e| format!("the instance's server does not build: {e}"))?;
    server
        .serve_with_shutdown(listener, shutdown)
        .await
        .map_err(|e| format!("the instance's server failed: {e}"))
}
