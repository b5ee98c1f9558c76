//! How an instance of the chaos runs protects itself (`--protect`): an adaptive concurrency limit
//! ([`AdaptiveLimit`], its defaults) sheds the calls beyond the knee it finds, with `ResourceExhausted` and a
//! retry-after, so that a balanced client sends them elsewhere or fails them at once. Without it, calls
//! beyond the instance's capacity wait their turn in an unbounded queue, as on a server with no limit.

use rpc_core::Server;
use rpc_core::server::layer::{AdaptiveConfig, AdaptiveLimit};
use tokio::net::TcpListener;

use crate::instance::Spec;
use crate::service::{ChaosServer, Worker};

/// Serves `service` on `listener` until `shutdown`, protected as `spec` says.
pub(crate) async fn serve(
    service: ChaosServer<Worker>,
    spec: Spec,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let served = if spec.protect {
        Server::builder()
            .layer(AdaptiveLimit::new(AdaptiveConfig::default()))
            .add_service(service)
            .build()
            .map_err(|e| format!("the instance's server does not build: {e}"))?
            .serve_with_shutdown(listener, shutdown)
            .await
    } else {
        Server::builder()
            .add_service(service)
            .build()
            .map_err(|e| format!("the instance's server does not build: {e}"))?
            .serve_with_shutdown(listener, shutdown)
            .await
    };
    served.map_err(|e| format!("the instance's server failed: {e}"))
}
