//! The `--registry` flag of `calc-server`, `calc-client` and `hello-server`: the address of the registry's API,
//! or the addresses of its replicas separated by commas (`127.0.0.1:7070,127.0.0.1:7071`), resolved into the
//! list the registration and the discovery fail over along.

use std::net::SocketAddr;

/// The addresses of `--registry`'s `list`, resolved in order; refused (naming the flag and what came) if an
/// entry is empty or does not resolve.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let addrs = examples::registry::resolve("127.0.0.1:7070, 127.0.0.1:7071").await.unwrap();
/// assert_eq!(addrs.len(), 2);
/// let err = examples::registry::resolve("127.0.0.1:7070,,127.0.0.1:7071").await.unwrap_err();
/// assert!(err.starts_with("--registry: expected host:port as entry 2"), "{err}");
/// # }
/// ```
pub async fn resolve(list: &str) -> Result<Vec<SocketAddr>, String> {
    rpc_registry::resolve_registries(list)
        .await
        .map_err(|e| format!("--registry: {e}"))
}
