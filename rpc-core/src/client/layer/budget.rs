//! [`RetryBudget`]: retries (and hedged attempts) that cannot make an outage worse. All the calls of a balanced
//! client share one budget: over the last [`RetryBudgetConfig::window`], retries may add at most
//! [`RetryBudgetConfig::ratio`] of the calls made, plus [`RetryBudgetConfig::min_per_second`] so that a client
//! with little traffic can still retry (Finagle's retry budget; Envoy's is 20% too). When every instance
//! fails, calls fail after their first attempt instead of multiplying the load on a service that is down.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Default of [`RetryBudgetConfig::ratio`]: retries add at most 20% to the calls made.
pub const DEFAULT_RETRY_RATIO: f64 = 0.2;
/// Default of [`RetryBudgetConfig::min_per_second`]: 10 retries a second whatever the traffic.
pub const DEFAULT_MIN_RETRIES_PER_SECOND: u32 = 10;
/// Default of [`RetryBudgetConfig::window`]: 10 s.
pub const DEFAULT_RETRY_WINDOW: Duration = Duration::from_secs(10);

/// How many retries a balanced client may make.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryBudgetConfig {
    /// Retries as a share of the calls made in the window (default [`DEFAULT_RETRY_RATIO`]).
    pub ratio: f64,
    /// Retries a second allowed on top of the ratio (default [`DEFAULT_MIN_RETRIES_PER_SECOND`]).
    pub min_per_second: u32,
    /// The window calls and retries are counted over, in whole seconds (default [`DEFAULT_RETRY_WINDOW`];
    /// 1 s to 60 s).
    pub window: Duration,
}

impl Default for RetryBudgetConfig {
    fn default() -> RetryBudgetConfig {
        RetryBudgetConfig {
            ratio: DEFAULT_RETRY_RATIO,
            min_per_second: DEFAULT_MIN_RETRIES_PER_SECOND,
            window: DEFAULT_RETRY_WINDOW,
        }
    }
}

/// Calls and retries of one second. Atomics: every call deposits, so that path takes no lock.
#[derive(Debug, Default)]
struct Slot {
    /// The second (since the budget was made) these counts are for.
    second: AtomicU64,
    calls: AtomicU64,
    retries: AtomicU64,
}

/// The retry budget shared by a balanced client's calls.
#[derive(Debug)]
pub(crate) struct RetryBudget {
    config: RetryBudgetConfig,
    origin: Instant,
    /// One slot per second of the window, indexed by the second modulo its length.
    slots: Vec<Slot>,
    /// Held to move a slot to a new second, and to withdraw (retries are few).
    turn: Mutex<()>,
}

impl RetryBudget {
    pub(crate) fn new(config: RetryBudgetConfig) -> RetryBudget {
        let seconds = config.window.as_secs().clamp(1, 60) as usize;
        RetryBudget {
            config,
            origin: Instant::now(),
            slots: (0..seconds).map(|_| Slot::default()).collect(),
            turn: Mutex::new(()),
        }
    }

    fn second(&self, now: Instant) -> u64 {
        now.duration_since(self.origin).as_secs()
    }

    /// The slot of `second`, emptied first if it held an older second.
    fn slot(&self, second: u64) -> &Slot {
        let slot = &self.slots[(second % self.slots.len() as u64) as usize];
        if slot.second.load(Ordering::Acquire) != second {
            let _turn = crate::sync::lock(&self.turn);
            if slot.second.load(Ordering::Acquire) != second {
                slot.calls.store(0, Ordering::Release);
                slot.retries.store(0, Ordering::Release);
                slot.second.store(second, Ordering::Release);
            }
        }
        slot
    }

    /// A call starts: it adds to what retries may spend.
    pub(crate) fn deposit(&self, now: Instant) {
        self.slot(self.second(now))
            .calls
            .fetch_add(1, Ordering::Relaxed);
    }

    /// A retry (or hedged attempt) wants to go: whether the budget allows it, counting it if so.
    pub(crate) fn try_withdraw(&self, now: Instant) -> bool {
        let second = self.second(now);
        let slot = self.slot(second);
        let _turn = crate::sync::lock(&self.turn);
        let len = self.slots.len() as u64;
        let (calls, retries) = self
            .slots
            .iter()
            .filter(|s| s.second.load(Ordering::Acquire) + len > second)
            .fold((0, 0), |(c, r), s| {
                (
                    c + s.calls.load(Ordering::Relaxed),
                    r + s.retries.load(Ordering::Relaxed),
                )
            });
        let allowed =
            calls as f64 * self.config.ratio + f64::from(self.config.min_per_second) * len as f64;
        if retries as f64 + 1.0 > allowed {
            return false;
        }
        slot.retries.fetch_add(1, Ordering::Relaxed);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn retries_are_a_fifth_of_the_calls_plus_the_floor_and_the_window_forgets() {
        let budget = RetryBudget::new(RetryBudgetConfig {
            min_per_second: 1,
            ..RetryBudgetConfig::default()
        });
        let now = Instant::now();
        for _ in 0..100 {
            budget.deposit(now);
        }
        // 100 calls × 0.2 + 1/s × 10 s = 30.
        let granted = (0..100).filter(|_| budget.try_withdraw(now)).count();
        assert_eq!(granted, 30);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(
            !budget.try_withdraw(Instant::now()),
            "still spent within the window"
        );
        tokio::time::advance(Duration::from_secs(5)).await;
        // The calls and retries of 10 s ago are forgotten: the floor alone remains.
        let granted = (0..100)
            .filter(|_| budget.try_withdraw(Instant::now()))
            .count();
        assert_eq!(granted, 10);
    }

    #[tokio::test(start_paused = true)]
    async fn without_calls_only_the_floor_is_there() {
        let budget = RetryBudget::new(RetryBudgetConfig {
            min_per_second: 0,
            ..RetryBudgetConfig::default()
        });
        assert!(!budget.try_withdraw(Instant::now()));
    }
}
