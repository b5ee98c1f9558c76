//! The transport: how bytes get between a client and a server, whatever carries them (TCP, TLS over TCP with
//! feature `tls`, a Unix domain socket on unix). Above it, the client's and the server's connections see one
//! stream type and never ask which transport it is; everything that differs between transports lives here.
//!
//! # Layout
//! - `peer`: [`PeerAddr`], the address of a connection's other end, for every transport.
//! - `stream`: a connection's stream and its read and write halves, one type for every transport.
//! - `connect`: the client side: dial, `TCP_NODELAY`, the TLS handshake when configured.
//! - `listen`: the server side: [`Listener`] (the sockets a server accepts from), and the handshake of each
//!   accepted stream (TLS over TCP when configured).
//! - `metered`: a connection's bytes and its life counted in the metrics of its client or server.

mod connect;
mod listen;
mod metered;
mod peer;
mod stream;

pub(crate) use connect::Connector;
pub(crate) use listen::Handshake;
pub use listen::Listener;
#[cfg(unix)]
pub use listen::bind_unix;
pub(crate) use metered::{Counted, Open};
pub use peer::PeerAddr;
pub(crate) use stream::Stream;
