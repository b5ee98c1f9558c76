//! The server side of the transport: [`Listener`], the sockets a server accepts connections from (TCP, Unix
//! domain, or several at once), and the handshake that makes an accepted stream ready for frames (TLS over
//! TCP when the server has TLS settings; nothing over a Unix socket, which never carries TLS).

use std::future::poll_fn;
use std::io;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::net::TcpListener;
#[cfg(unix)]
use tokio::net::UnixListener;

use super::{PeerAddr, Stream};

/// The sockets a [`crate::Server`] accepts connections from: a TCP listener, a Unix domain socket listener
/// (unix only), or several of them, whose connections share the server's limits (`max_connections`, ...).
/// [`crate::Server::serve`] takes anything that converts into one.
///
/// ```no_run
/// # async fn run(server: rpc_core::Server) -> std::io::Result<()> {
/// use rpc_core::server::Listener;
///
/// let tcp = tokio::net::TcpListener::bind("127.0.0.1:7000").await?;
/// # #[cfg(unix)]
/// let both = Listener::from(tcp).and(tokio::net::UnixListener::bind("/run/calc.sock")?);
/// # #[cfg(unix)]
/// server.serve(both).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Listener {
    bound: Vec<Bound>,
    /// The socket asked first at the next accept, so that a busy one does not starve the others.
    next: usize,
}

#[derive(Debug)]
enum Bound {
    Tcp(TcpListener),
    #[cfg(unix)]
    Unix(UnixListener),
}

impl From<TcpListener> for Listener {
    fn from(listener: TcpListener) -> Listener {
        Listener::of(Bound::Tcp(listener))
    }
}

#[cfg(unix)]
impl From<UnixListener> for Listener {
    fn from(listener: UnixListener) -> Listener {
        Listener::of(Bound::Unix(listener))
    }
}

impl Listener {
    fn of(bound: Bound) -> Listener {
        Listener {
            bound: vec![bound],
            next: 0,
        }
    }

    /// These sockets and those of `other`: the server accepts from all of them.
    pub fn and(mut self, other: impl Into<Listener>) -> Listener {
        self.bound.extend(other.into().bound);
        self
    }

    /// The next connection of any of the sockets, and its peer. Accepted TCP streams have `TCP_NODELAY` set.
    pub(crate) async fn accept(&mut self) -> io::Result<(Stream, PeerAddr)> {
        poll_fn(|cx| self.poll_accept(cx)).await
    }

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<(Stream, PeerAddr)>> {
        let count = self.bound.len();
        for i in 0..count {
            let at = (self.next + i) % count;
            if let Poll::Ready(accepted) = self.bound[at].poll_accept(cx) {
                self.next = (at + 1) % count;
                return Poll::Ready(accepted);
            }
        }
        Poll::Pending
    }
}

impl Bound {
    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(Stream, PeerAddr)>> {
        match self {
            Bound::Tcp(listener) => listener.poll_accept(cx).map_ok(|(stream, peer)| {
                let _ = stream.set_nodelay(true);
                (Stream::Tcp(stream), PeerAddr::Tcp(peer))
            }),
            #[cfg(unix)]
            Bound::Unix(listener) => listener.poll_accept(cx).map_ok(|(stream, peer)| {
                let path = peer.as_pathname().map(Arc::from);
                (Stream::Unix(stream), PeerAddr::Unix(path))
            }),
        }
    }
}

/// A Unix domain socket listening at `path`, for [`crate::Server::serve`]. A socket file left at `path` by a
/// server that is gone (connecting to it is refused) is replaced; one where a server still listens, or any
/// other file, is an error. Call it within a tokio runtime.
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let listener = rpc_core::server::bind_unix("/run/calc.sock")?;
/// # let _ = listener; Ok(()) }
/// ```
#[cfg(unix)]
pub fn bind_unix(path: impl AsRef<std::path::Path>) -> io::Result<UnixListener> {
    use std::os::unix::fs::FileTypeExt;
    let path = path.as_ref();
    match UnixListener::bind(path) {
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            let is_socket =
                std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
            let stale = is_socket
                && std::os::unix::net::UnixStream::connect(path)
                    .is_err_and(|e| e.kind() == io::ErrorKind::ConnectionRefused);
            if !stale {
                let what = if is_socket {
                    "a server listens there"
                } else {
                    "a file that is not a socket is there"
                };
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "cannot listen on {}: expected no file or a stale socket, but {what}",
                        path.display()
                    ),
                ));
            }
            std::fs::remove_file(path)?;
            UnixListener::bind(path)
        }
        bound => bound,
    }
}

/// What a server does with each accepted stream before it reads frames.
#[derive(Clone, Debug, Default)]
pub(crate) struct Handshake {
    #[cfg(feature = "tls")]
    tls: Option<Arc<crate::tls::ServerTls>>,
}

/// A stream ready for frames, and the DNS names of the client's verified certificate (mutual TLS), if any.
#[derive(Debug)]
pub(crate) struct Ready {
    pub(crate) stream: Stream,
    pub(crate) names: Option<Arc<[String]>>,
}

impl Handshake {
    /// TLS over every TCP connection.
    #[cfg(feature = "tls")]
    pub(crate) fn tls(tls: crate::tls::ServerTls) -> Handshake {
        Handshake {
            tls: Some(Arc::new(tls)),
        }
    }

    /// Makes `stream` ready for frames: the TLS handshake within `timeout` if there is one to run. `None` if it
    /// failed or took too long (the stream is dropped).
    #[cfg_attr(not(feature = "tls"), expect(unused_variables))]
    pub(crate) async fn run(&self, stream: Stream, timeout: Duration) -> Option<Ready> {
        #[cfg(feature = "tls")]
        let stream = match (stream, &self.tls) {
            (Stream::Tcp(tcp), Some(tls)) => {
                let (stream, names) = tls.accept(tcp, timeout).await?;
                return Some(Ready {
                    stream: Stream::Tls(Box::new(stream.into())),
                    names: (!names.is_empty()).then(|| Arc::from(names)),
                });
            }
            (stream, _) => stream,
        };
        Some(Ready {
            stream,
            names: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_busy_socket_does_not_starve_the_others() {
        let busy = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let other = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (busy_addr, other_addr) = (busy.local_addr().unwrap(), other.local_addr().unwrap());
        let mut listener = Listener::from(busy).and(other);
        let mut clients = Vec::new();
        for addr in [busy_addr, busy_addr, busy_addr, other_addr] {
            clients.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        let mut served = Vec::new();
        for _ in 0..2 {
            let accept = tokio::time::timeout(Duration::from_secs(5), listener.accept());
            let (stream, peer) = accept.await.unwrap().unwrap();
            let Stream::Tcp(stream) = stream else {
                panic!("expected a TCP stream")
            };
            assert!(matches!(peer, PeerAddr::Tcp(_)), "{peer:?}");
            served.push(stream.local_addr().unwrap());
        }
        assert_eq!(served, [busy_addr, other_addr]);
    }
}
