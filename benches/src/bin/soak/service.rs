//! The `Soak` service the soak run calls: an echo, a method that always answers with the application's error,
//! and one that sleeps, which the run uses both for calls it drops before their answer and for calls whose
//! deadline passes while the handler still sleeps.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// The application error of [`Soak::refuse`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Refusal {
    /// Always: the argument, sent back inside the error.
    No(u64),
}

/// The service under soak.
#[rpc_core::service]
pub(crate) trait Soak {
    /// Returns `payload`.
    async fn echo(&self, payload: ByteBuf) -> ByteBuf;
    /// Answers with the application's error, never a value.
    async fn refuse(&self, n: u64) -> Result<u64, Refusal>;
    /// Returns `ms` after sleeping `ms` milliseconds.
    async fn sleep(&self, ms: u64) -> u64;
}

/// The implementation.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SoakImpl;

impl Soak for SoakImpl {
    async fn echo(&self, payload: ByteBuf) -> ByteBuf {
        payload
    }

    async fn refuse(&self, n: u64) -> Result<u64, Refusal> {
        Err(Refusal::No(n))
    }

    async fn sleep(&self, ms: u64) -> u64 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        ms
    }
}
