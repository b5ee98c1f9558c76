//! A balanced client's retries: when a failed attempt is tried again on another instance (always if it
//! certainly did not run; after any `Unavailable` if its method is `#[idempotent]`), how many times
//! ([`crate::ClientConfig::max_retries`]), and after what pause (a backoff with jitter, within the call's
//! deadline).

use std::time::Duration;

use rpc_codec::Status;
use tokio::time::Instant;

use crate::client::ClientConfig;
use crate::error::RpcError;
use crate::method::MethodInfo;

/// The retries of one call.
pub(crate) struct Retry<'a> {
    config: &'a ClientConfig,
    method: &'static MethodInfo,
    deadline: Instant,
    /// Attempts made.
    attempts: u32,
}

impl<'a> Retry<'a> {
    pub(crate) fn new(
        config: &'a ClientConfig,
        method: &'static MethodInfo,
        deadline: Instant,
    ) -> Retry<'a> {
        Retry {
            config,
            method,
            deadline,
            attempts: 0,
        }
    }

    /// An attempt failed with `error`: the pause before the next, or `None` if the call ends with it (it may
    /// have run, the retries are spent, or the pause would outlast the deadline).
    pub(crate) fn after(&mut self, error: &RpcError) -> Option<Duration> {
        self.attempts += 1;
        let retryable = error.code() == Status::Unavailable
            && (error.is_not_processed() || self.method.idempotent);
        if !retryable || self.attempts > self.config.max_retries {
            return None;
        }
        let pause = self.config.retry_pause(self.attempts);
        (Instant::now() + pause < self.deadline).then_some(pause)
    }
}
