//! A raw peer for limit and wire tests: a TCP connection (to a server, or accepted from a client) that writes
//! whatever bytes a test hands it (whole frames built with rpc-codec, or garbage) and reads the other side's
//! frames back one by one, with bounded waits; and the process's peak resident memory, for tests that bound
//! what a peer can make the server hold.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use rpc_codec::{Bincode, Frame, FrameCodec, Header, Metadata, Received, WriteBuf};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the server did next.
#[derive(Debug)]
pub enum Next {
    /// It sent a frame.
    Frame(Frame),
    /// It closed the connection.
    Closed,
    /// Nothing within the wait.
    Silent,
}

/// A raw connection to a server.
#[derive(Debug)]
pub struct RawPeer {
    stream: TcpStream,
    codec: FrameCodec,
    buf: BytesMut,
}

impl RawPeer {
    /// Connects to `addr`.
    pub async fn connect(addr: SocketAddr) -> std::io::Result<RawPeer> {
        Ok(RawPeer::over(TcpStream::connect(addr).await?))
    }

    /// Accepts the next connection on `listener`: a raw peer acting as a server, for tests of a client.
    pub async fn accept(listener: &TcpListener) -> std::io::Result<RawPeer> {
        Ok(RawPeer::over(listener.accept().await?.0))
    }

    fn over(stream: TcpStream) -> RawPeer {
        // Each write leaves at once: with Nagle's algorithm a small frame written after another waits for the
        // peer's acknowledgement, which a peer that answers nothing delays by tens of milliseconds, an eternity
        // on a paused clock.
        stream
            .set_nodelay(true)
            .expect("TCP_NODELAY on a fresh socket");
        RawPeer {
            stream,
            codec: FrameCodec::default(),
            buf: BytesMut::new(),
        }
    }

    /// Writes `header` with no metadata and `payload`.
    pub async fn send_frame(&mut self, header: Header, payload: &[u8]) -> std::io::Result<()> {
        let mut out = WriteBuf::new();
        self.codec
            .encode_bytes(&header, &Metadata::new(), payload, &mut out)
            .expect("a test frame encodes");
        self.send_bytes(out.as_slice()).await
    }

    /// Writes a response to request `id` carrying `value`.
    pub async fn send_response<T: Serialize>(&mut self, id: u64, value: &T) -> std::io::Result<()> {
        let mut out = WriteBuf::new();
        self.codec
            .encode_value(
                &Header::response(id),
                &Metadata::new(),
                value,
                &Bincode,
                &mut out,
            )
            .expect("a test response encodes");
        self.send_bytes(out.as_slice()).await
    }

    /// Writes `bytes` as they are.
    pub async fn send_bytes(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// Writes a request `id` for `method_id` with `metadata` and `args` (the tuple of the method's arguments).
    pub async fn send_request<A: Serialize>(
        &mut self,
        id: u64,
        method_id: u32,
        metadata: &Metadata,
        args: &A,
    ) -> std::io::Result<()> {
        let bytes = request_bytes(id, method_id, metadata, args);
        self.send_bytes(&bytes).await
    }

    /// The next frame from the server, its closing the connection, or silence for `wait`.
    pub async fn next(&mut self, wait: Duration) -> Next {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match self.codec.decode_with(&mut self.buf, |item| match item {
                rpc_codec::ReceivedRef::Frame(f) => Received::Frame(f.to_frame()),
                rpc_codec::ReceivedRef::Refused(r) => Received::Refused(r),
            }) {
                Ok(Some(Received::Frame(frame))) => return Next::Frame(frame),
                Ok(Some(Received::Refused(r))) => {
                    panic!("the server sent a frame over the limits: {r:?}")
                }
                Ok(None) => {}
                Err(e) => panic!("the server sent a malformed stream: {e}"),
            }
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return Next::Closed,
                Ok(Ok(_)) => {}
                Err(_) => return Next::Silent,
            }
        }
    }

    /// The next frame, which must come within `wait`.
    pub async fn frame(&mut self, wait: Duration) -> Frame {
        match self.next(wait).await {
            Next::Frame(frame) => frame,
            other => panic!("expected a frame from the server, got {other:?}"),
        }
    }

    /// Waits (at most `wait`) for the server to close the connection, skipping the frames it sends first;
    /// returns them.
    pub async fn until_closed(&mut self, wait: Duration) -> Vec<Frame> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut frames = Vec::new();
        for _ in 0..1000 {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Next::Frame(frame) => frames.push(frame),
                Next::Closed => return frames,
                Next::Silent => panic!("the server did not close the connection within {wait:?}"),
            }
        }
        panic!("the server sent more than 1000 frames without closing")
    }
}

/// The bytes of request `id` for `method_id` with `metadata` and `args`, with no deadline.
pub fn request_bytes<A: Serialize>(
    id: u64,
    method_id: u32,
    metadata: &Metadata,
    args: &A,
) -> Vec<u8> {
    frame_bytes(Header::request(id, method_id), metadata, args)
}

/// The bytes of a frame with `header`, `metadata` and `args` as its payload (a request, a one-way call).
pub fn frame_bytes<A: Serialize>(header: Header, metadata: &Metadata, args: &A) -> Vec<u8> {
    let mut out = WriteBuf::new();
    FrameCodec::new(rpc_codec::Config {
        max_metadata_len: u16::MAX,
        max_metadata_entries: u16::MAX,
        ..rpc_codec::Config::default()
    })
    .encode_value(&header, metadata, args, &Bincode, &mut out)
    .expect("a test frame encodes");
    out.as_slice().to_vec()
}

/// A line of `/proc/self/status` (Linux) in bytes, such as `VmRSS` or `VmHWM`.
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("a {field} line in /proc/self/status"));
    kib * 1024
}

/// The resident memory of this process in bytes now (Linux).
pub fn resident_bytes() -> u64 {
    status_bytes("VmRSS")
}

/// Starts measuring the peak resident memory of this process afresh: from now on, [`peak_resident_bytes`]
/// reports the most it holds (Linux: resets `VmHWM` through `/proc/self/clear_refs`); returns the resident
/// memory at the reset.
pub fn reset_peak_resident() -> u64 {
    std::fs::write("/proc/self/clear_refs", "5").expect("/proc/self/clear_refs resets the peak");
    resident_bytes()
}

/// The most resident memory this process has held since the last [`reset_peak_resident`] (Linux: `VmHWM`).
pub fn peak_resident_bytes() -> u64 {
    status_bytes("VmHWM")
}
