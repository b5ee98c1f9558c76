//! A raw peer for limit tests: a TCP connection that writes whatever bytes a test hands it (whole frames built
//! with rpc-codec, or garbage) and reads the server's frames back one by one, with bounded waits; and the
//! process's resident memory, for tests that bound what a peer can make the server hold.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use rpc_codec::{Bincode, Frame, FrameCodec, Header, Metadata, Received, WriteBuf};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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
        Ok(RawPeer {
            stream: TcpStream::connect(addr).await?,
            codec: FrameCodec::default(),
            buf: BytesMut::new(),
        })
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
    let mut out = WriteBuf::new();
    FrameCodec::new(rpc_codec::Config {
        max_metadata_len: u16::MAX,
        max_metadata_entries: u16::MAX,
        ..rpc_codec::Config::default()
    })
    .encode_value(
        &Header::request(id, method_id),
        metadata,
        args,
        &Bincode,
        &mut out,
    )
    .expect("a test request encodes");
    out.as_slice().to_vec()
}

/// The resident memory of this process in bytes (Linux), for tests that check that memory stays bounded.
pub fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS line in /proc/self/status");
    kib * 1024
}
