//! Calls over HTTP/1.1 with JSON bodies (Connect's unary shape: `POST /{Service}/{method}`, the arguments an
//! object keyed by name): how an answer becomes an HTTP status and a JSON body ([`answer`], feature `json`),
//! and, with feature `http`, the HTTP server a [`crate::Server`] runs on its own port beside the binary protocol
//! ([`crate::ServerBuilder::http`], [`HttpConfig`]). Servers and the registry's gateway answer with the same
//! mapping, so that a tool sees one protocol wherever it calls. `docs/PROTOCOL.md` section 16 is the protocol.
//!
//! An HTTP call is the same call as a binary one: it goes through the server's own layers (tracing, metrics,
//! drain), then the user's tower layers (an [`crate::server::layer::Authorize`] reads its `authorization`
//! header, a [`crate::server::layer::RateLimit`] counts it), then its service, which decodes the arguments by
//! name and answers in JSON (protocol 1.2, section 15).
//!
//! ```
//! use rpc_core::http::{Cors, HttpConfig};
//! # #[rpc_core::service] trait Calc { async fn add(&self, a: i64, b: i64) -> i64; }
//! # struct C; impl Calc for C { async fn add(&self, a: i64, b: i64) -> i64 { a + b } }
//!
//! // `curl -H 'content-type: application/json' -d '{"a":2,"b":3}' http://ADDR/Calc/add` answers `5`.
//! let server = rpc_core::Server::builder()
//!     .add_service(CalcServer::new(C))
//!     .http(HttpConfig { cors: Some(Cors::allow(["http://localhost:5173"])), ..HttpConfig::default() })
//!     .build()?;
//! # let _ = server;
//! # Ok::<(), rpc_core::BuildError>(())
//! ```
//!
//! # Layout
//! - [`answer`]: statuses to HTTP codes (the table of `docs/PROTOCOL.md` section 16) and the JSON bodies of
//!   values, application errors and failures.
//! - `config` (feature `http`, as all that follows): [`HttpConfig`] and [`Cors`], the limits and timeouts of
//!   requests and which browser pages may call.
//! - `sniff`: which protocol a connection speaks, from its first bytes, and those bytes put back.
//! - `connection`: one connection: sniffed, then served by the binary protocol or by hyper's HTTP/1.1 server;
//!   its graceful shutdown.
//! - `call`: one request: method, checks, the call through the server's layers, its answer.
//! - `route`: the method a path names.
//! - [`headers`]: the `Content-Type`, the deadline headers, and the other headers as call metadata.
//! - `body`: the body, read within its limit and its time.
//! - `cors`: preflights, and the CORS headers of answers.
//! - `reply`: HTTP responses: a call's end, and the refusals of requests.

pub mod answer;
#[cfg(feature = "http")]
mod body;
#[cfg(feature = "http")]
mod call;
#[cfg(feature = "http")]
mod config;
#[cfg(feature = "http")]
pub(crate) mod connection;
#[cfg(feature = "http")]
mod cors;
#[cfg(feature = "http")]
pub mod headers;
#[cfg(feature = "http")]
mod reply;
#[cfg(feature = "http")]
mod route;
#[cfg(feature = "http")]
mod sniff;

#[cfg(feature = "http")]
pub use config::{
    Cors, DEFAULT_BODY_TIMEOUT, DEFAULT_CORS_MAX_AGE, DEFAULT_HEADER_READ_TIMEOUT,
    DEFAULT_MAX_HEADER_BYTES, DEFAULT_MAX_HEADERS, HttpConfig,
};
#[cfg(feature = "http")]
pub use cors::CorsError;
#[cfg(feature = "http")]
pub use headers::{CONNECT_TIMEOUT_HEADER, MAX_TIMEOUT_DIGITS, TIMEOUT_HEADER};
