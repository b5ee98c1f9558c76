//! Runnable programs a new user of the rpc framework starts with; each lives in `src/bin/`. The services they
//! share are defined here.
//!
//! # Layout
//! - [`hello`]: the `Greeter` service of `hello-server` and `hello-client`.
//! - [`address`]: the `host:port` or `unix:PATH` addresses of `hello-server` and `hello-client`.
//! - [`registry`]: the `--registry` flag of the programs that register or discover: one address, or the
//!   registry's replicas separated by commas.
//! - [`calc`]: the `Calc` service of `calc-server`, `calc-client` and `cluster-demo`.
//! - [`tls`]: the `--tls-cert`, `--tls-key` and `--tls-ca` flags and the settings they make.
//! - [`http`]: the `--http` and `--cors-origin` flags of servers: HTTP/1.1 and JSON on their own port.
//! - [`labels`]: the `--label KEY=VALUE` flag of servers and the `--subset` flag of clients.
//! - [`callers`]: the `--jwt-*` flags of servers, which make JWT subjects caller identities.
//! - [`ops`]: the `--metrics ADDR` flag of servers (metrics and `/healthz`), the registration's changes
//!   logged and counted ([`ops::Health`]), and the progress line of clients.
//! - [`protect`]: the limits of servers (`--max-concurrency`, `--adaptive-limit`, `--rate-limit`) and the fault
//!   injection flags of servers and clients (`--fault-*`), and the layers they make.
//! - `wire-tour`: encodes a frame of every kind, prints it byte by byte, decodes it back, and shows the
//!   codec refusing hostile input.
//! - `hello-server`, `hello-client`: the smallest real service, served and called over TCP or a Unix socket.
//! - `calc-server`, `calc-client`: a service registered with `rpc-registry` and called through discovery.
//! - `cluster-demo`: a registry, three weighted servers and a client in one process, one server killed mid-run.
//! - `stream-demo`: a server and a client in one process, 100,000 items streamed from one to the other.
//! - `interceptor`: a server layer that refuses calls without an `x-api-key`, and a client refused, then let in.

pub mod address;
pub mod calc;
pub mod callers;
pub mod hello;
pub mod http;
pub mod labels;
pub mod ops;
pub mod protect;
pub mod registry;
pub mod tls;
