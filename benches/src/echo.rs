//! The echo service the round-trip benchmarks call: one method that returns its byte argument, so that a call
//! costs the framework's work and nothing of the application's.

use serde_bytes::ByteBuf;

/// Returns what it is sent.
#[rpc_core::service]
pub trait Echo {
    /// Returns `payload`.
    async fn echo(&self, payload: ByteBuf) -> ByteBuf;
}

/// The service's implementation.
#[derive(Clone, Copy, Debug, Default)]
pub struct Echoer;

impl Echo for Echoer {
    async fn echo(&self, payload: ByteBuf) -> ByteBuf {
        payload
    }
}
