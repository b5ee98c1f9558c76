//! The service the chaos runs call: one idempotent method whose instance answers after its service time, and,
//! when the instance has a capacity, only that many at once (the others wait their turn, as on a saturated
//! server).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

/// What the load calls.
#[rpc_core::service]
pub(crate) trait Chaos {
    /// Answers `n` after the instance's service time.
    #[idempotent]
    async fn work(&self, n: u64) -> u64;
}

/// One instance's behaviour.
#[derive(Clone)]
pub(crate) struct Worker {
    /// How long a call takes once it runs.
    pub(crate) service_time: Duration,
    /// Calls that run at once, if limited.
    pub(crate) capacity: Option<Arc<Semaphore>>,
}

impl Chaos for Worker {
    async fn work(&self, n: u64) -> u64 {
        let _permit = match &self.capacity {
            Some(capacity) => capacity.acquire().await.ok(),
            None => None,
        };
        if !self.service_time.is_zero() {
            tokio::time::sleep(self.service_time).await;
        }
        n
    }
}
