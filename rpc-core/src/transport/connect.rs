//! The client side of the transport: dialing an address and making the stream ready for frames. Over TCP:
//! `TCP_NODELAY` (frames are coalesced by the writer already), then the TLS handshake when the client has TLS
//! settings; over a Unix domain socket: nothing more (a Unix socket never carries TLS).

#[cfg(unix)]
use std::path::Path;

use tokio::net::TcpStream;

use super::{PeerAddr, Stream};
use crate::client::ClientConfig;

/// How a client makes its connections: the transport's part of its [`ClientConfig`].
#[derive(Clone, Debug, Default)]
pub(crate) struct Connector {
    #[cfg(feature = "tls")]
    tls: Option<crate::tls::ClientTls>,
}

impl Connector {
    #[cfg_attr(not(feature = "tls"), expect(unused_variables))]
    pub(crate) fn new(config: &ClientConfig) -> Connector {
        Connector {
            #[cfg(feature = "tls")]
            tls: config.tls.clone(),
        }
    }

    /// A stream to `addr`, ready for frames; or what failed (`cannot connect to 127.0.0.1:7000: ...`, `TLS
    /// handshake with 127.0.0.1:7000 failed: ...`). The caller bounds the time it takes.
    pub(crate) async fn connect(&self, addr: &PeerAddr) -> Result<Stream, String> {
        let cannot = |e: std::io::Error| format!("cannot connect to {addr}: {e}");
        let addr = match addr {
            PeerAddr::Tcp(addr) => *addr,
            #[cfg(unix)]
            PeerAddr::Unix(Some(path)) => return unix(path).await.map_err(cannot),
            PeerAddr::Unix(_) => {
                return Err(format!(
                    "cannot connect to {addr}: expected a Unix socket's path on a Unix system"
                ));
            }
        };
        let stream = TcpStream::connect(addr).await.map_err(cannot)?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("cannot set TCP_NODELAY on {addr}: {e}"))?;
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            let stream = tls
                .connect(addr.ip(), stream)
                .await
                .map_err(|e| format!("TLS handshake with {addr} failed: {e}"))?;
            return Ok(Stream::Tls(Box::new(stream.into())));
        }
        Ok(Stream::Tcp(stream))
    }
}

#[cfg(unix)]
async fn unix(path: &Path) -> std::io::Result<Stream> {
    tokio::net::UnixStream::connect(path)
        .await
        .map(Stream::Unix)
}
