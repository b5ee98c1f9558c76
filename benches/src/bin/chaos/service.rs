//! The service the chaos runs call: one idempotent method whose instance answers after its service time, and,
//! when the instance has a capacity, only that many at once (the others wait their turn, as on a saturated
//! server).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

/// Most latencies an instance keeps (the first ones; a run makes far fewer).
const KEPT: usize = 1_000_000;

/// What the load calls.
#[rpc_core::service]
pub(crate) trait Chaos {
    /// Answers `n` after the instance's service time.
    #[idempotent]
    async fn work(&self, n: u64) -> u64;
    /// The latencies of the calls of `work` this instance served, in microseconds, from the handler's start
    /// (so with the wait for a place when the instance is full) to its answer.
    #[idempotent]
    async fn served(&self) -> Vec<u32>;
}

/// One instance's behaviour.
#[derive(Clone)]
pub(crate) struct Worker {
    /// How long a call takes once it runs.
    pub(crate) service_time: Duration,
    /// Calls that run at once, if limited.
    pub(crate) capacity: Option<Arc<Semaphore>>,
    pub(crate) served: Arc<Mutex<Vec<u32>>>,
}

impl Chaos for Worker {
    async fn work(&self, n: u64) -> u64 {
        let start = Instant::now();
        let _permit = match &self.capacity {
            Some(capacity) => capacity.acquire().await.ok(),
            None => None,
        };
        if !self.service_time.is_zero() {
            tokio::time::sleep(self.service_time).await;
        }
        let mut served = self.served.lock().unwrap();
        if served.len() < KEPT {
            served.push(start.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
        }
        n
    }

    async fn served(&self) -> Vec<u32> {
        self.served.lock().unwrap().clone()
    }
}
