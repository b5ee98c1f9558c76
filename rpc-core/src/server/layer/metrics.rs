//! [`Metered`]: counts each call into the server's [`Metrics`]: in flight while it runs, then by method and
//! status with its latency from arrival. A call stopped by its deadline counts as `DeadlineExceeded`, one the
//! caller cancelled (or whose connection closed, or whose task stopped with the runtime) as `Cancelled`.

use std::sync::Arc;

use rpc_codec::Status;
use tokio::time::Instant;

use super::super::response::Response;
use super::{Head, Intercept};
use crate::ids::IdMap;
use crate::metrics::{Ended, MethodStats, Metrics};

/// Each method's counters, by method id.
type ByMethod = Arc<IdMap<u32, Arc<MethodStats>>>;

/// Counts calls, if the server has metrics; each method's counters are found once, when the server is built.
#[derive(Clone, Debug, Default)]
pub(crate) struct Metered {
    meter: Option<(Metrics, ByMethod)>,
}

impl Metered {
    /// Counts the calls of `methods` into `metrics`, if any.
    pub(crate) fn new(
        metrics: Option<Metrics>,
        methods: impl Iterator<Item = &'static crate::MethodInfo>,
    ) -> Metered {
        Metered {
            meter: metrics.map(|metrics| {
                let stats = methods.map(|m| (m.id, metrics.method(m))).collect();
                (metrics, Arc::new(stats))
            }),
        }
    }
}

/// A call being counted; counted as cancelled if dropped before it ends.
pub(crate) struct Counting {
    stats: Arc<MethodStats>,
    metrics: Metrics,
    arrived: Instant,
    done: bool,
}

impl Counting {
    fn finish(&mut self, ended: Ended) {
        self.done = true;
        self.stats.record(ended, self.arrived.elapsed());
        self.metrics.call_ended();
    }
}

impl Drop for Counting {
    fn drop(&mut self) {
        if !self.done {
            self.finish(Ended::Status(Status::Cancelled));
        }
    }
}

impl Intercept for Metered {
    type State = Option<Counting>;

    #[inline]
    fn before(&self, head: &mut Head) -> Result<Option<Counting>, Response> {
        let Some((metrics, stats)) = &self.meter else {
            return Ok(None);
        };
        let Some(stats) = stats.get(&head.method.id) else {
            return Ok(None);
        };
        metrics.call_started();
        Ok(Some(Counting {
            stats: Arc::clone(stats),
            metrics: metrics.clone(),
            arrived: head.arrived,
            done: false,
        }))
    }

    #[inline]
    fn after(&self, state: Option<Counting>, ended: Ended) {
        if let Some(mut counting) = state {
            counting.finish(ended);
        }
    }
}
