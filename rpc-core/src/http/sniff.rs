//! Which protocol a connection speaks, told from its first bytes (on a server with HTTP, after the TLS
//! handshake): the binary protocol's frames begin with [`rpc_codec::MAGIC`], HTTP/1.1 requests with a method
//! token and a space (`POST `). The bytes read to tell are put back in front of the stream ([`Rewind`]), so that
//! whichever side reads the connection sees it from its first byte. A connection that says nothing before the
//! server's idle timeout or its drain is left to the binary protocol, which tells an idle client go-away.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use rpc_codec::MAGIC;
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use tokio::sync::watch;

/// The request methods whose token, followed by a space, sends a connection to HTTP. Any other first bytes
/// are the binary protocol's (which refuses what is not a frame, naming the magic it expected).
pub(crate) const HTTP_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// Room for the first read of a connection: 4 KiB, enough for a small request whole.
const FIRST_READ: usize = 4096;

/// What the first bytes say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Protocol {
    Binary,
    Http,
}

/// What the first bytes of `bytes` say, or `None` if they are too few to tell (at most 8 are needed).
pub(crate) fn classify(bytes: &[u8]) -> Option<Protocol> {
    if bytes.starts_with(&MAGIC) {
        return Some(Protocol::Binary);
    }
    let mut undecided = MAGIC.starts_with(bytes);
    for method in HTTP_METHODS {
        let (token, rest) = bytes.split_at(bytes.len().min(method.len()));
        if token != &method.as_bytes()[..token.len()] {
            continue;
        }
        match rest.first() {
            Some(b' ') => return Some(Protocol::Http),
            Some(_) => {}
            None => undecided = true,
        }
    }
    (!undecided).then_some(Protocol::Binary)
}

/// A connection, sniffed.
pub(crate) enum Sniffed {
    /// Its first bytes (or none, if it said nothing in time), and the protocol they say.
    Speaks(Protocol, Bytes),
    /// It closed, or failed, before saying anything that tells.
    Closed,
}

/// Reads from `reader` until its first bytes tell its protocol; gives up, for the binary protocol, after
/// `idle` or once the server drains.
pub(crate) async fn sniff<R: AsyncRead + Unpin>(
    reader: &mut R,
    idle: Duration,
    mut draining: watch::Receiver<bool>,
) -> Sniffed {
    let mut buf = BytesMut::with_capacity(FIRST_READ);
    let deadline = tokio::time::Instant::now() + idle;
    // Each read adds at least a byte, and 8 bytes always tell: at most 8 reads.
    loop {
        if let Some(protocol) = classify(&buf) {
            return Sniffed::Speaks(protocol, buf.freeze());
        }
        tokio::select! {
            read = reader.read_buf(&mut buf) => match read {
                Ok(0) | Err(_) => return Sniffed::Closed,
                Ok(_) => {}
            },
            () = tokio::time::sleep_until(deadline) => break,
            _ = draining.wait_for(|&stop| stop) => break,
        }
    }
    Sniffed::Speaks(Protocol::Binary, buf.freeze())
}

/// A reader that gives back the bytes read to sniff it before what follows them.
#[derive(Debug)]
pub(crate) struct Rewind<R> {
    prefix: Bytes,
    inner: R,
}

impl<R> Rewind<R> {
    pub(crate) fn new(prefix: Bytes, inner: R) -> Rewind<R> {
        Rewind { prefix, inner }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Rewind<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.prefix.has_remaining() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_bytes_tell_frames_from_requests() {
        assert_eq!(classify(b""), None);
        assert_eq!(classify(b"R"), None);
        assert_eq!(classify(b"RP\x01\x01"), Some(Protocol::Binary));
        assert_eq!(classify(b"P"), None);
        assert_eq!(classify(b"POS"), None);
        assert_eq!(classify(b"POST"), None);
        assert_eq!(classify(b"POST /Calc/add HTTP/1.1"), Some(Protocol::Http));
        assert_eq!(classify(b"PUT "), Some(Protocol::Http));
        assert_eq!(classify(b"OPTIONS "), Some(Protocol::Http));
        assert_eq!(classify(b"GET /"), Some(Protocol::Http));
        // Not a method: the binary protocol says what it expected.
        assert_eq!(classify(b"POSTX"), Some(Protocol::Binary));
        assert_eq!(classify(b"\x16\x03\x01"), Some(Protocol::Binary));
        assert_eq!(classify(b"GETS"), Some(Protocol::Binary));
        assert_eq!(classify(b"RX"), Some(Protocol::Binary));
        assert_eq!(classify(b"get /"), Some(Protocol::Binary));
    }

    #[tokio::test]
    async fn the_sniffed_bytes_are_read_again_first() {
        let (mut ours, theirs) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut ours, b"POST /a/b HTTP/1.1\r\n")
            .await
            .unwrap();
        drop(ours);
        let mut theirs = theirs;
        let (_keep, draining) = watch::channel(false);
        let Sniffed::Speaks(Protocol::Http, prefix) =
            sniff(&mut theirs, Duration::from_secs(5), draining).await
        else {
            panic!("expected HTTP")
        };
        let mut again = Rewind::new(prefix, theirs);
        let mut all = String::new();
        again.read_to_string(&mut all).await.unwrap();
        assert_eq!(all, "POST /a/b HTTP/1.1\r\n");
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_is_left_to_the_binary_protocol() {
        let (_ours, mut theirs) = tokio::io::duplex(64);
        let (_keep, draining) = watch::channel(false);
        let sniffed = sniff(&mut theirs, Duration::from_secs(60), draining).await;
        assert!(matches!(sniffed, Sniffed::Speaks(Protocol::Binary, b) if b.is_empty()));
    }
}
