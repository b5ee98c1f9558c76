//! What the example programs' tests share: a registry served in the test's process, on 127.0.0.1 at a port the
//! OS assigns, for the programs under test to register with and discover through.

use rpc_registry::RegistryConfig;

/// Serves a registry with `config` on this test's runtime (which stops it when the test ends); its address.
pub(crate) async fn start_registry(config: RegistryConfig) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let registry = listener.local_addr().unwrap().to_string();
    tokio::spawn(rpc_registry::serve(
        config,
        listener,
        None,
        std::future::pending(),
    ));
    registry
}
