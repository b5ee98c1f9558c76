//! The rpc framework's runtime. Annotate a trait with [`service`], implement it, serve it with a [`Server`],
//! and call it through the generated client:
//!
//! ```
//! use rpc_core::{service, Server};
//!
//! #[service]
//! trait Calc {
//!     async fn add(&self, a: i32, b: i32) -> i32;
//!     /// The application's own error comes back as the inner `Err`.
//!     async fn div(&self, a: i32, b: i32) -> Result<i32, String>;
//! }
//!
//! struct Calculator;
//!
//! impl Calc for Calculator {
//!     async fn add(&self, a: i32, b: i32) -> i32 {
//!         a + b
//!     }
//!     async fn div(&self, a: i32, b: i32) -> Result<i32, String> {
//!         a.checked_div(b).ok_or_else(|| format!("{a} / {b}: division by zero"))
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! tokio::spawn(Server::builder().add_service(CalcServer::new(Calculator)).build()?.serve(listener));
//!
//! let calc = CalcClient::connect(addr).await?;
//! assert_eq!(calc.add(2, 3).await?, 5);
//! assert_eq!(calc.div(7, 0).await?, Err("7 / 0: division by zero".to_owned()));
//! # Ok(()) }
//! ```
//!
//! One connection per client (TCP, TLS with feature `tls`, or a Unix domain socket: see
//! [`Client::connect_unix`] and [`server::Listener`]) multiplexes every call; calls carry a deadline (10 s
//! unless set) that travels as a budget, and dropping a call cancels it on the server. The wire format is
//! `docs/PROTOCOL.md`.
//!
//! A crate that uses it needs these `[dependencies]` (rpc-core is not on crates.io: `path` points at the
//! `rpc-core` folder of a clone of its repository). `#[tokio::main]` needs tokio's `macros` and
//! `rt-multi-thread`, `TcpListener` its `net`; serde's `derive` is for the crate's own argument and result
//! types. CI builds the README's quick start with exactly this block (`.ci/quickstart.sh`).
//!
//! ```toml
//! [dependencies]
//! rpc-core = { path = "../rpc/rpc-core" }
//! tokio = { version = "1", features = ["macros", "net", "rt-multi-thread"] }
//! serde = { version = "1", features = ["derive"] }
//! ```
//!
//! # Layout
//! - [`macro@service`]: re-exported from `rpc-macros`; generates `<Trait>Client` and `<Trait>Server`.
//! - [`client`]: [`Client`], its connection, reconnection with backoff, the call path; `client::layer`: its
//!   layers (tracing, metrics, retries and their budget, hedging, the user's tower layers, fault injection).
//! - [`balance`]: [`balance::Policy`] (one file per policy: [`balance::SmoothWrr`], [`balance::PeakEwma`],
//!   [`balance::LeastRequest`], [`balance::RingHash`]), outlier detection ([`balance::OutlierConfig`]),
//!   [`balance::Feed`], [`balance::Discover`] and [`balance::Balancer`], which a balanced client uses.
//! - [`server`]: [`Server`], the accept loop, connections, handlers, [`Service`]; `server::layer`: its layers
//!   (tracing, metrics, draining, the in-flight limit, the user's tower layers, [`server::layer::Authorize`],
//!   rate, concurrency and adaptive limits, fault injection). `docs/MIDDLEWARE.md` shows how to write and add
//!   layers.
//! - [`rules`]: [`rules::Rules`], one service's routes, call policies, limits and authorization as the
//!   registry distributes them, checked with the path of every problem.
//! - [`http`] (feature `json`): calls over HTTP/1.1 with JSON bodies; how an answer becomes an HTTP status
//!   and body; with feature `http`, the HTTP/1.1 server a [`Server`] runs on its own port beside the binary
//!   protocol ([`ServerBuilder::http`], [`http::HttpConfig`], [`http::Cors`]): sniffing, routes, headers as
//!   metadata, CORS.
//! - [`fault`]: [`fault::Fault`], the delays and aborts that the fault injection layers of servers and clients
//!   inject, and into which calls.
//! - `transport`: what differs between TCP, TLS and Unix domain sockets: dialing, [`server::Listener`], the
//!   handshake of each connection, one stream type for all, [`PeerAddr`], and the counts of bytes and
//!   connections.
//! - `compression`: [`CompressionConfig`], which encodings a client or server compresses large payloads with,
//!   and how a connection negotiates them (protocol 1.1).
//! - [`stream`]: [`Streaming`], the items of a stream as their receiver reads them, and the flow control of
//!   streams (protocol 1.1).
//! - `context`: [`Context`], the call a handler serves.
//! - `error`: [`RpcError`].
//! - `options`: [`CallOptions`], per-call deadline and metadata.
//! - `trace`: [`TraceContext`], the W3C `traceparent` that joins the spans of a call across client and server.
//! - `method`: [`MethodInfo`], and methods named at run time ([`MethodInfo::intern`]).
//! - [`reflect`]: [`reflect::ServiceDescription`], what `#[service]` says of a trait and the built-in
//!   `rpc.Reflection` service answers ([`server::reflection`]).
//! - [`metrics`]: [`Metrics`], counters and histograms of calls, written by prometheus-client (and registrable
//!   into a user's registry).
//! - `outbox`: a connection's outgoing frames and its writer task.
//! - `payload`: a call's arguments on their way out, with the payload codec of their service.
//! - `inbox`: how much room each read of a connection gets.
//! - `ids`: maps keyed by request and method ids, with a hash that costs one multiply.
//! - `tls` (feature `tls`): TLS and mutual TLS settings for clients and servers, from PEM.
//! - [`text`]: which characters of a peer's text must be escaped before it is shown.
//! - [`sync`]: [`sync::lock`], the one way the framework takes a mutex.
//! - `stub`: [`Stub`], what every generated client is; its items never collide with a method's name.
//! - `__private` (hidden): what `#[service]`'s code calls: type checks on each argument and result, byte
//!   buffers as bytes.

// `#[service]` names this crate `::rpc_core`, also for the services it defines itself (`rpc.Reflection`).
extern crate self as rpc_core;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;
pub mod balance;
pub mod client;
mod compression;
mod context;
mod error;
pub mod fault;
#[cfg(feature = "json")]
pub mod http;
mod ids;
mod inbox;
mod method;
pub mod metrics;
mod options;
mod outbox;
mod payload;
mod random;
pub mod reflect;
pub mod rules;
pub mod server;
pub mod stream;
mod stub;
pub mod sync;
pub mod text;
#[cfg(feature = "tls")]
pub mod tls;
mod trace;
mod transport;

pub use client::{Client, ClientConfig};
pub use compression::{ACCEPT_ENCODING, CompressionConfig};
pub use context::Context;
pub use error::{RETRY_AFTER, RpcError};
pub use method::{InternError, MAX_INTERNED_METHODS, MAX_INTERNED_NAME_LEN, MethodInfo};
pub use metrics::Metrics;
pub use options::CallOptions;
pub use rpc_codec::Encoding;
pub use rpc_codec::{Metadata, MetadataBuilder, MetadataError, Status};
pub use rpc_macros::service;
pub use server::{BuildError, Server, ServerBuilder, ServerConfig, Service};
pub use stream::{Stream, Streaming};
pub use stub::Stub;
/// The addresses [`Client::connect`] accepts (`"host:port"`, a `SocketAddr`, ...).
pub use tokio::net::ToSocketAddrs;
pub use trace::{TRACEPARENT, TraceContext};
pub use transport::PeerAddr;

/// The wire codec this runtime speaks.
pub use rpc_codec as codec;

/// The README's code, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

/// `docs/MIDDLEWARE.md`'s code, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/MIDDLEWARE.md")]
struct MiddlewareDoctests;
