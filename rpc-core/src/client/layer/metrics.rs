//! A client's calls in its [`Metrics`]: in flight from the call's start until it ends or its future is dropped,
//! then counted by method and status with its latency.

use std::sync::Arc;

use rpc_codec::Status;
use tokio::time::Instant;

use crate::method::MethodInfo;
use crate::metrics::{Ended, MethodStats, Metrics};

/// A call in a client's metrics: in flight until dropped, then counted with how it ended (cancelled, unless
/// told otherwise).
pub(crate) struct Counted<'a> {
    metrics: &'a Metrics,
    stats: Arc<MethodStats>,
    started: Instant,
    pub(crate) ended: Ended,
}

impl<'a> Counted<'a> {
    pub(crate) fn start(
        metrics: &'a Metrics,
        method: &MethodInfo,
        started: Instant,
    ) -> Counted<'a> {
        metrics.call_started();
        Counted {
            metrics,
            stats: metrics.method(method),
            started,
            ended: Ended::Status(Status::Cancelled),
        }
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.stats.record(self.ended, self.started.elapsed());
        self.metrics.call_ended();
    }
}
