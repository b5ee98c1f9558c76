//! `ServerConfig`: every limit and timing of a server, each with its default.

use core::time::Duration;

/// Default of [`ServerConfig::max_connections`]: 1024.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default of [`ServerConfig::max_handshaking_connections`]: 256.
pub const DEFAULT_MAX_HANDSHAKING_CONNECTIONS: usize = 256;
/// Refusals of connections over [`ServerConfig::max_connections`] under way at once: 64. A connection over the
/// limit that finds this many is closed without a word.
pub const REFUSALS_AT_ONCE: usize = 64;
/// Longest a refusal of a connection over [`ServerConfig::max_connections`] takes, TLS handshake included: 2 s.
pub const REFUSAL_TIMEOUT: Duration = Duration::from_secs(2);
/// Default of [`ServerConfig::max_in_flight_per_connection`]: 1024.
pub const DEFAULT_MAX_IN_FLIGHT_PER_CONNECTION: usize = 1024;
/// Default of [`ServerConfig::drain_timeout`]: 10 s.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of [`ServerConfig::max_pending_output`]: 4 MiB.
pub const DEFAULT_MAX_PENDING_OUTPUT: usize = 4 * 1024 * 1024;
/// Default of [`ServerConfig::idle_timeout`]: 60 s.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default of [`ServerConfig::frame_timeout`]: 20 s.
pub const DEFAULT_FRAME_TIMEOUT: Duration = Duration::from_secs(20);
/// Default of [`ServerConfig::write_timeout`]: 30 s.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default of [`ServerConfig::handshake_timeout`]: 10 s.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A server's limits and timings.
///
/// ```
/// let config = rpc_core::ServerConfig { max_connections: 64, ..Default::default() };
/// assert_eq!(config.max_in_flight_per_connection, 1024);
/// ```
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Connections held at once. Default 1024 ([`DEFAULT_MAX_CONNECTIONS`]). When every one of them is
    /// established, a new connection is refused at once: it is sent a `GoAway` with status `ResourceExhausted`
    /// and the reason `server at its connection limit of 1024 (max_connections)` (over TLS, after the
    /// handshake), and closed. At most [`REFUSALS_AT_ONCE`] refusals run at a time, each for at most
    /// [`REFUSAL_TIMEOUT`]; beyond that a connection over the limit is closed without a word.
    pub max_connections: usize,
    /// Connections held at once that have not finished their handshake: the TLS handshake if the server has
    /// TLS, then a first whole frame. Default 256 ([`DEFAULT_MAX_HANDSHAKING_CONNECTIONS`]); 0 counts as 1.
    /// When this many are held, or `max_connections` are, a new connection makes the server drop the oldest
    /// of them (it is closed without a word), so that peers that connect and stall cannot keep out the clients
    /// that would be served; established connections are never dropped to make room.
    pub max_handshaking_connections: usize,
    /// Calls in flight on one connection; one more is answered `ResourceExhausted`. Default 1024
    /// ([`DEFAULT_MAX_IN_FLIGHT_PER_CONNECTION`]).
    pub max_in_flight_per_connection: usize,
    /// On shutdown, how long calls in flight may take to finish before their connections close. Default 10 s
    /// ([`DEFAULT_DRAIN_TIMEOUT`]).
    pub drain_timeout: Duration,
    /// Bytes of answers queued for one connection beyond which the connection takes no new request (and
    /// handlers wait to answer) until the peer reads. Default 4 MiB ([`DEFAULT_MAX_PENDING_OUTPUT`]). A
    /// connection holds at most this plus one answer, plus the answers of handlers that were already running.
    pub max_pending_output: usize,
    /// A connection whose queued answers cannot leave for this long (the peer does not read) is closed at once,
    /// with what is queued. Also bounds the sending of a closing connection's last frames (a go-away, the reason
    /// of a close). Default 30 s ([`DEFAULT_WRITE_TIMEOUT`]).
    pub write_timeout: Duration,
    /// Frame limits; see [`rpc_codec::Config`] (default 16 MiB frames, 8 KiB and 64 entries of metadata, 64 MiB
    /// of decoded arguments). A frame over them is answered `ResourceExhausted` and skipped; the connection
    /// carries on. Arguments that would decode to more memory than `codec.max_decoded_len` are answered
    /// `ResourceExhausted` too.
    pub codec: rpc_codec::Config,
    /// A connection with no call in flight that sends nothing for this long is told go-away and closed (a
    /// client reconnects at its next call). Default 60 s ([`DEFAULT_IDLE_TIMEOUT`]). Checked every quarter of
    /// it, so a connection closes within a quarter of it after the timeout.
    pub idle_timeout: Duration,
    /// Once a frame's first byte has arrived, the rest must arrive within this; otherwise the connection is told
    /// `ResourceExhausted` and closed, so that a peer trickling bytes (slowloris) cannot hold a connection and
    /// its buffer. Timed from the read that brought the frame's first byte, and enforced at that time plus this.
    /// Also bounds the skipping of a refused frame. Default 20 s ([`DEFAULT_FRAME_TIMEOUT`]).
    pub frame_timeout: Duration,
    /// With TLS, the handshake of a new connection must finish within this, or the connection is closed.
    /// Default 10 s ([`DEFAULT_HANDSHAKE_TIMEOUT`]).
    pub handshake_timeout: Duration,
    /// Poll each handler once in the connection's read loop before giving it a task of its own. Default `true`:
    /// a handler that finishes without waiting (most compute and return) then costs no task, which more than
    /// doubles throughput on small calls. A handler that computes for long before its first `.await` holds up
    /// the other calls of its connection meanwhile; with `false`, every call gets its own task at once, so that
    /// on a multi-threaded runtime the handlers of one connection run in parallel.
    pub inline_handlers: bool,
    /// The encodings the server decompresses requests in and compresses answers with, for clients that offer
    /// compression (protocol 1.1), and the smallest answer it compresses. Default: every encoding of the build,
    /// from 1 KiB ([`crate::CompressionConfig::supported`]); a client that offers nothing gets nothing
    /// compressed. Requests are decompressed within the smaller of `codec.max_decoded_len` and
    /// `codec.max_frame_len`.
    pub compression: crate::CompressionConfig,
    /// Streams open at once on one connection (protocol 1.1); one more is refused `ResourceExhausted`.
    /// Default 100 ([`crate::stream::DEFAULT_MAX_STREAMS_PER_CONNECTION`]). Streams count as calls in flight
    /// too ([`ServerConfig::max_in_flight_per_connection`]).
    pub max_streams_per_connection: usize,
    /// Bytes of a client's items that one stream may have in flight to the server before the handler reads
    /// them (each item counts its payload plus 28). Default 256 KiB
    /// ([`crate::stream::DEFAULT_STREAM_WINDOW`]); less than 64 KiB ([`crate::stream::INITIAL_CREDIT`], which
    /// every sender starts with) counts as 64 KiB. A connection holds at most `max_streams_per_connection`
    /// times this plus one item per stream of items not yet read, whatever the client sends.
    pub stream_window: u64,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_handshaking_connections: DEFAULT_MAX_HANDSHAKING_CONNECTIONS,
            max_in_flight_per_connection: DEFAULT_MAX_IN_FLIGHT_PER_CONNECTION,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            max_pending_output: DEFAULT_MAX_PENDING_OUTPUT,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            codec: rpc_codec::Config::default(),
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            frame_timeout: DEFAULT_FRAME_TIMEOUT,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            inline_handlers: true,
            compression: crate::CompressionConfig::supported(),
            max_streams_per_connection: crate::stream::DEFAULT_MAX_STREAMS_PER_CONNECTION,
            stream_window: crate::stream::DEFAULT_STREAM_WINDOW,
        }
    }
}
