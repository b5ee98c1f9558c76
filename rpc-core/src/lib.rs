//! The rpc framework's runtime: client stubs, server skeletons and the TCP transport, driving the wire
//! protocol of [`rpc_codec`].
//!
//! # Layout
//! This crate is filled by the `#[service]`/runtime issue; for now it re-exports the codec it builds on.

pub use rpc_codec as codec;
