//! Hostile connections, for load tests of a server's front door: each [`Hostile`] kind opens a raw TCP
//! connection to a server of the `Lab` service, sends bytes that are not a well-behaved client's (random bytes,
//! an HTTP request, a header claiming a huge frame, an unknown kind, request ids out of order, half a frame,
//! nothing at all), and checks, within a time bound, that the server answered as `docs/PROTOCOL.md` says
//! (sections 8 and 9): a refusal, a close, or both.

use std::net::SocketAddr;
use std::time::Duration;

use rpc_codec::{
    Bincode, Config, FrameCodec, Header, Kind, Metadata, ReceivedRef, Status, WriteBuf,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// The wire id of `Lab.echo`.
const ECHO: u32 = rpc_codec::method_id("Lab", "echo");

/// A kind of hostile connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Hostile {
    /// 28 to 299 bytes from a seeded generator: enough for a whole header, so that the server never waits.
    RandomBytes,
    /// An HTTP request: the wrong magic.
    BadMagic,
    /// A valid `Request` header declaring a payload of `u32::MAX` bytes, and nothing more.
    HugeLength,
    /// A header whose kind byte is `0x0c`, which no frame of protocol 1.1 has.
    UnknownKind,
    /// A valid `Lab.echo` request with id 5, then one with id 3: ids must increase.
    IdsOutOfOrder,
    /// The first 20 bytes of a valid request, then the end of the stream.
    HalfAFrame,
    /// Connects and closes at once, sending nothing.
    ConnectAndClose,
}

/// What the server must do with a hostile connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expected {
    /// Send an `Error` frame for the whole connection (request id 0) with this status, then close.
    RefuseAndClose(Status),
    /// Answer request `id` with an `Error` frame of this status and keep the connection (the client closes).
    Refuse {
        /// The request refused.
        id: u64,
        /// Its status.
        status: Status,
    },
    /// Close without sending anything.
    Close,
    /// Nothing to observe: the client is gone before the server could say anything.
    Nothing,
}

/// How a hostile connection ended, seen from the hostile side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The server did what [`Expected`] says.
    AsExpected,
    /// The server did something else.
    Unexpected(String),
    /// The bound passed before the server did what it should.
    TimedOut,
}

impl Hostile {
    /// Every kind, in a fixed order.
    pub const ALL: [Hostile; 7] = [
        Hostile::RandomBytes,
        Hostile::BadMagic,
        Hostile::HugeLength,
        Hostile::UnknownKind,
        Hostile::IdsOutOfOrder,
        Hostile::HalfAFrame,
        Hostile::ConnectAndClose,
    ];

    /// The kind of the `i`-th connection of a run: the kinds in turn.
    pub fn nth(i: usize) -> Hostile {
        Hostile::ALL[i % Hostile::ALL.len()]
    }

    /// The bytes this kind sends; `seed` varies the random ones.
    pub fn bytes(self, seed: u64) -> Vec<u8> {
        match self {
            Hostile::RandomBytes => {
                let mut rng = XorShift::new(seed);
                let len = 28 + (rng.next() % 272) as usize;
                (0..len).map(|_| rng.next() as u8).collect()
            }
            Hostile::BadMagic => b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_vec(),
            Hostile::HugeLength => Header::request(1, ECHO).to_bytes(0, u32::MAX).to_vec(),
            Hostile::UnknownKind => {
                let mut header = Header::ping(0).to_bytes(0, 0);
                header[3] = 0x0c;
                header.to_vec()
            }
            Hostile::IdsOutOfOrder => {
                let mut out = WriteBuf::new();
                for id in [5, 3] {
                    let codec = FrameCodec::new(Config::default());
                    let header = Header::request(id, ECHO);
                    if let Err(e) =
                        codec.encode_value(&header, &Metadata::new(), &id, &Bincode, &mut out)
                    {
                        panic!("a request for Lab.echo does not encode: {e}");
                    }
                }
                out.as_slice().to_vec()
            }
            Hostile::HalfAFrame => Header::request(1, ECHO).to_bytes(0, 1)[..20].to_vec(),
            Hostile::ConnectAndClose => Vec::new(),
        }
    }

    /// What the server must do with the bytes of [`Hostile::bytes`] for `seed`.
    pub fn expected(self, seed: u64) -> Expected {
        match self {
            Hostile::RandomBytes => match self.bytes(seed).first_chunk::<2>() {
                Some(magic) if *magic != rpc_codec::MAGIC => {
                    Expected::RefuseAndClose(Status::InvalidArgument)
                }
                // `RP` by chance (one seed in 65,536): then the version byte, wrong 255 times in 256, or else an
                // unknown kind is what the server refuses.
                _ => Expected::RefuseAndClose(Status::Unimplemented),
            },
            Hostile::BadMagic => Expected::RefuseAndClose(Status::InvalidArgument),
            Hostile::HugeLength => Expected::Refuse {
                id: 1,
                status: Status::ResourceExhausted,
            },
            Hostile::UnknownKind => Expected::RefuseAndClose(Status::Unimplemented),
            Hostile::IdsOutOfOrder => Expected::RefuseAndClose(Status::InvalidArgument),
            Hostile::HalfAFrame => Expected::Close,
            Hostile::ConnectAndClose => Expected::Nothing,
        }
    }

    /// Opens a connection to `addr`, sends this kind's bytes for `seed`, and watches the server's answer for at
    /// most `limit` (connecting included); the connection is closed when this returns.
    pub async fn run(self, addr: SocketAddr, seed: u64, limit: Duration) -> Outcome {
        let until = Instant::now() + limit;
        let Ok(connected) = tokio::time::timeout_at(until, TcpStream::connect(addr)).await else {
            return Outcome::TimedOut;
        };
        let mut stream = match connected {
            Ok(stream) => stream,
            Err(e) => return Outcome::Unexpected(format!("{self:?}: cannot connect: {e}")),
        };
        let expected = self.expected(seed);
        if expected == Expected::Nothing {
            return Outcome::AsExpected;
        }
        if let Err(e) = stream.write_all(&self.bytes(seed)).await {
            return Outcome::Unexpected(format!("{self:?}: cannot send: {e}"));
        }
        if self == Hostile::HalfAFrame {
            // The end of the stream in the middle of a frame.
            if let Err(e) = stream.shutdown().await {
                return Outcome::Unexpected(format!("{self:?}: cannot shut down: {e}"));
            }
        }
        let mut received = Vec::new();
        let mut chunk = [0u8; 4096];
        // Bounded in time and in bytes: a server that streamed without end would pass neither.
        loop {
            if received.len() > 1 << 20 {
                return Outcome::Unexpected(format!("{self:?}: the server sent over 1 MiB"));
            }
            let read = match tokio::time::timeout_at(until, stream.read(&mut chunk)).await {
                Err(_) => return Outcome::TimedOut,
                Ok(read) => read,
            };
            let closed = match read {
                Ok(0) => true,
                Ok(n) => {
                    received.extend_from_slice(&chunk[..n]);
                    false
                }
                // A reset closes the connection as surely as a FIN does.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => true,
                Err(e) => return Outcome::Unexpected(format!("{self:?}: read failed: {e}")),
            };
            let frames = match answers(&received) {
                Ok(frames) => frames,
                Err(e) => return Outcome::Unexpected(format!("{self:?}: the server sent {e}")),
            };
            let refused = |id: u64, status: Status| {
                frames
                    .iter()
                    .any(|h| h.kind == Kind::Error && h.request_id == id && h.status == status)
            };
            match expected {
                Expected::Refuse { id, status } if refused(id, status) => {
                    return Outcome::AsExpected;
                }
                Expected::RefuseAndClose(status) if closed && refused(0, status) => {
                    return Outcome::AsExpected;
                }
                Expected::Close if closed && received.is_empty() => return Outcome::AsExpected,
                _ if closed => {
                    return Outcome::Unexpected(format!(
                        "{self:?}: expected {expected:?}; the server closed after {frames:?}"
                    ));
                }
                _ => {}
            }
        }
    }
}

/// The headers of the whole frames at the start of `bytes`.
fn answers(bytes: &[u8]) -> Result<Vec<Header>, String> {
    let mut codec = FrameCodec::new(Config::default());
    let mut headers = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        match codec.parse(&bytes[at..]) {
            Err(e) => return Err(format!("bytes that are no frame: {e}")),
            Ok((0, _)) => break,
            Ok((used, item)) => {
                if let Some(ReceivedRef::Frame(frame)) = item {
                    headers.push(frame.header());
                }
                at += used;
            }
        }
    }
    Ok(headers)
}

/// Marsaglia's xorshift64: a reproducible stream of bytes with no dependency.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> XorShift {
        // Zero is the one state xorshift never leaves.
        XorShift(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}
