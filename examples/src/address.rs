//! The addresses `hello-server --listen` and `hello-client --server` take: `host:port` for TCP, or
//! `unix:PATH` for a Unix domain socket (unix only), and what serving or calling at one takes.

use rpc_core::server::Listener;
use rpc_core::{RpcError, Stub};

/// The prefix of a Unix domain socket's address.
pub const UNIX: &str = "unix:";

/// A listener at `address` and how to show it (`127.0.0.1:7000` with the port the OS picked, or
/// `unix:/tmp/hello.sock`). A stale socket file at the path is replaced.
pub async fn listen(address: &str) -> std::io::Result<(Listener, String)> {
    if let Some(path) = address.strip_prefix(UNIX) {
        return Ok((unix_listener(path)?, address.to_owned()));
    }
    let listener = tokio::net::TcpListener::bind(address).await?;
    let shown = listener.local_addr()?.to_string();
    Ok((listener.into(), shown))
}

/// A stub of the server at `address`.
pub async fn connect<S: Stub>(address: &str) -> Result<S, RpcError> {
    match address.strip_prefix(UNIX) {
        #[cfg(unix)]
        Some(path) => S::connect_unix(path).await,
        #[cfg(not(unix))]
        Some(_) => Err(RpcError::unavailable(format!(
            "{address}: expected a Unix system for a Unix socket"
        ))),
        None => S::connect(address).await,
    }
}

/// Removes the socket file of `address` if it is a Unix socket's, once the server is done with it.
pub fn remove(address: &str) {
    if let Some(path) = address.strip_prefix(UNIX) {
        let _ = std::fs::remove_file(path);
    }
}

#[cfg(unix)]
fn unix_listener(path: &str) -> std::io::Result<Listener> {
    Ok(rpc_core::server::bind_unix(path)?.into())
}

#[cfg(not(unix))]
fn unix_listener(path: &str) -> std::io::Result<Listener> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        format!("{UNIX}{path}: expected a Unix system for a Unix socket"),
    ))
}
