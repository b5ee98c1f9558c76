//! [`HttpConfig`]: how a server answers HTTP/1.1 on its own port (feature `http`, [`crate::ServerBuilder::http`]):
//! the limits of a request (its body, its headers), the timeouts of a connection and of a body, and [`Cors`],
//! which pages of other origins a browser lets call it. Every limit has its default here, as a `const`.

use std::time::Duration;

/// Default of [`HttpConfig::max_headers`]: 100 (hyper's own default).
pub const DEFAULT_MAX_HEADERS: usize = 100;
/// Default of [`HttpConfig::max_header_bytes`]: 16 KiB, twice the default metadata section of a binary call
/// ([`rpc_codec::config::DEFAULT_MAX_METADATA_LEN`]), leaving room for the request line and the headers that
/// are not metadata.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;
/// Default of [`HttpConfig::header_read_timeout`]: 30 s (hyper's own default).
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Default of [`HttpConfig::body_timeout`]: 20 s, as long as a binary frame may take to arrive
/// ([`crate::server::config::DEFAULT_FRAME_TIMEOUT`]).
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(20);
/// Default of [`Cors::max_age`]: 10 minutes (the most Chromium caches a preflight for).
pub const DEFAULT_CORS_MAX_AGE: Duration = Duration::from_secs(600);

/// How a server answers HTTP/1.1 on its own port, beside the binary protocol: `POST /{Service}/{method}` with
/// the arguments as a JSON object (`docs/PROTOCOL.md` section 16).
///
/// ```
/// use rpc_core::http::{Cors, HttpConfig};
///
/// let http = HttpConfig {
///     cors: Some(Cors::allow(["https://app.example.com"])),
///     ..HttpConfig::default()
/// };
/// assert_eq!(http.max_body_len, None, "the server's payload limit");
/// assert_eq!(http.max_headers, 100);
/// # let _ = rpc_core::Server::builder().http(http);
/// ```
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// Most bytes of a request's body (the arguments in JSON). A body over it is answered `413` as soon as its
    /// `Content-Length` says so, or once that many bytes have come; no more are kept. Default `None`: the
    /// largest payload a binary frame may carry under the server's `ServerConfig::codec` (its `max_frame_len`
    /// less the 28 bytes of a frame's header: 16 MiB less 28 bytes by default).
    pub max_body_len: Option<usize>,
    /// Most header lines of a request; one more is answered `431` and the connection closes. Default 100
    /// ([`DEFAULT_MAX_HEADERS`]). The headers that become call metadata must also fit the server's metadata
    /// limits (`codec.max_metadata_entries`, `codec.max_metadata_len`), or the call is answered `431`.
    pub max_headers: usize,
    /// Most bytes of a request's head (the request line and every header); more is answered `431` and the
    /// connection closes. Default 16 KiB ([`DEFAULT_MAX_HEADER_BYTES`]).
    pub max_header_bytes: usize,
    /// A request's head must arrive whole within this, counted from when the server starts to wait for it;
    /// otherwise the connection closes. It also closes a kept-alive connection that sends no new request for
    /// this long. Default 30 s ([`DEFAULT_HEADER_READ_TIMEOUT`]).
    pub header_read_timeout: Duration,
    /// A request's body must arrive whole within this, counted from the end of its head (and before the call's
    /// deadline, if it has one); otherwise it is answered `408`. Default 20 s ([`DEFAULT_BODY_TIMEOUT`]).
    pub body_timeout: Duration,
    /// Which pages of other origins may call the server from a browser. Default `None`: no CORS header is
    /// sent, and `OPTIONS` is answered `405` like any method but `POST`.
    pub cors: Option<Cors>,
}

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig {
            max_body_len: None,
            max_headers: DEFAULT_MAX_HEADERS,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            cors: None,
        }
    }
}

/// Cross-origin calls from browsers: which origins may call, which request headers their pages may set beyond
/// the server's own list, and how long a browser may keep a preflight's answer.
///
/// ```
/// use rpc_core::http::Cors;
///
/// let cors = Cors {
///     allowed_headers: vec![String::from("x-tenant")],
///     ..Cors::allow(["https://app.example.com", "http://localhost:5173"])
/// };
/// assert_eq!(cors.allowed_origins.len(), 2);
/// assert!(Cors::allow(["*"]).allows("https://anywhere.example"));
/// ```
#[derive(Clone, Debug)]
pub struct Cors {
    /// The origins allowed, each compared whole with a request's `Origin` (`https://app.example.com`), or `*`
    /// for every origin. Answers to an allowed origin name that origin in `Access-Control-Allow-Origin`.
    pub allowed_origins: Vec<String>,
    /// Request headers a page may set beyond `content-type`, `authorization`, `rpc-timeout-ms`,
    /// `connect-timeout-ms` and `traceparent` (header names; they reach handlers as metadata). Default none.
    pub allowed_headers: Vec<String>,
    /// How long a browser may keep a preflight's answer (`Access-Control-Max-Age`, in whole seconds). Default
    /// 10 minutes ([`DEFAULT_CORS_MAX_AGE`]).
    pub max_age: Duration,
}

impl Cors {
    /// Calls from `origins` (or every origin, with `*`), with the default headers and max age.
    pub fn allow<I, S>(origins: I) -> Cors
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Cors {
            allowed_origins: origins.into_iter().map(Into::into).collect(),
            allowed_headers: Vec::new(),
            max_age: DEFAULT_CORS_MAX_AGE,
        }
    }

    /// Whether a page of `origin` may call.
    pub fn allows(&self, origin: &str) -> bool {
        self.allows_bytes(origin.as_bytes())
    }

    /// Whether a page of `origin`, as a request's header carries it, may call.
    pub(crate) fn allows_bytes(&self, origin: &[u8]) -> bool {
        self.allowed_origins
            .iter()
            .any(|allowed| allowed == "*" || allowed.as_bytes() == origin)
    }
}
