//! Refusing a connection over [`ServerConfig::max_connections`] when every place holds an established
//! connection: the client is told at once, by a `GoAway` with status `ResourceExhausted`, last request id 0 and
//! a reason that names the limit, instead of waiting in the listen backlog until its own timeout.
//!
//! Refusing costs bounded work: at most [`REFUSALS_AT_ONCE`] refusals run at a time, each for at most
//! [`REFUSAL_TIMEOUT`], and a connection that finds them all busy is closed without a word. A refusal writes the
//! frame, shuts its side down, and reads (and drops) what the client sends until it closes too: closing with
//! the client's request unread would reset the connection, and a reset can destroy the frame before the client
//! reads it. The refusal first runs the transport's handshake (within the same time): over TLS nothing readable
//! can be said before it, and a client whose handshake fails sees that failure instead.

use rpc_codec::{FrameCodec, Header, Metadata, Status, WriteBuf};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::OwnedSemaphorePermit;

use super::ServerConfig;
use super::config::REFUSAL_TIMEOUT;
use crate::transport::{Handshake, Stream};

/// Bytes of what a refused client sends that are read, and dropped, before the connection closes: 64 KiB.
const DISCARD_LIMIT: usize = 64 * 1024;

/// The reason a refused client reads.
pub(crate) fn reason(config: &ServerConfig) -> String {
    format!(
        "server at its connection limit of {} (max_connections)",
        config.max_connections
    )
}

/// Tells the client of `stream` that the server is full, and closes; after the transport's handshake (TLS).
pub(crate) async fn refuse(
    stream: Stream,
    reason: String,
    handshake: Handshake,
    _permit: OwnedSemaphorePermit,
) {
    let refusal = async {
        if let Some(ready) = handshake.run(stream, REFUSAL_TIMEOUT).await {
            let (reader, writer) = ready.stream.into_split();
            say_and_close(tokio::io::join(reader, writer), &reason).await;
        }
    };
    let _ = tokio::time::timeout(REFUSAL_TIMEOUT, refusal).await;
}

/// Writes the `GoAway`, shuts this side down and drops what the client still sends until it closes.
async fn say_and_close<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, reason: &str) {
    let mut frame = WriteBuf::new();
    let header = Header::go_away(0, Status::ResourceExhausted);
    if FrameCodec::default()
        .encode_bytes(&header, &Metadata::new(), reason.as_bytes(), &mut frame)
        .is_err()
    {
        return;
    }
    if stream.write_all(frame.as_slice()).await.is_err() || stream.shutdown().await.is_err() {
        return;
    }
    let mut buf = [0u8; 4096];
    let mut discarded = 0;
    while discarded < DISCARD_LIMIT {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => discarded += n,
        }
    }
}
