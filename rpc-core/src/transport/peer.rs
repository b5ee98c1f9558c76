//! [`PeerAddr`]: the address of the other end of a connection, whatever its transport (TCP, with or without
//! TLS, or a Unix domain socket). A server's handlers see it through [`crate::Context::peer`]; a client dials
//! one.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

/// The address of a connection's other end.
///
/// ```
/// use rpc_core::PeerAddr;
///
/// let tcp = PeerAddr::Tcp("127.0.0.1:7000".parse().unwrap());
/// assert_eq!(tcp.to_string(), "127.0.0.1:7000");
/// assert_eq!(tcp.ip(), Some("127.0.0.1".parse().unwrap()));
///
/// let unix = PeerAddr::unix("/run/calc.sock");
/// assert_eq!(unix.to_string(), "unix:/run/calc.sock");
/// assert_eq!(unix.ip(), None);
/// // A client that dials a Unix socket usually binds no path of its own: the server sees it unnamed.
/// assert_eq!(PeerAddr::Unix(None).to_string(), "unix:(unnamed)");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PeerAddr {
    /// A TCP connection (TLS or not) with this address.
    Tcp(SocketAddr),
    /// A Unix domain socket connection; the socket's path if it has one (a client's end usually has none).
    Unix(Option<Arc<Path>>),
}

impl PeerAddr {
    /// The address of the Unix socket at `path`.
    pub fn unix(path: impl AsRef<Path>) -> PeerAddr {
        PeerAddr::Unix(Some(Arc::from(path.as_ref())))
    }

    /// The TCP address, if the connection is over TCP.
    pub fn tcp(&self) -> Option<SocketAddr> {
        match self {
            PeerAddr::Tcp(addr) => Some(*addr),
            PeerAddr::Unix(_) => None,
        }
    }

    /// The IP address, if the connection is over TCP.
    pub fn ip(&self) -> Option<IpAddr> {
        self.tcp().map(|addr| addr.ip())
    }

    /// Whether the connection is over a Unix domain socket (so the peer runs on this host).
    pub fn is_unix(&self) -> bool {
        matches!(self, PeerAddr::Unix(_))
    }
}

impl From<SocketAddr> for PeerAddr {
    fn from(addr: SocketAddr) -> PeerAddr {
        PeerAddr::Tcp(addr)
    }
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerAddr::Tcp(addr) => addr.fmt(f),
            PeerAddr::Unix(Some(path)) => write!(f, "unix:{}", path.display()),
            PeerAddr::Unix(None) => f.write_str("unix:(unnamed)"),
        }
    }
}
