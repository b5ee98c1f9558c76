//! [`Live`]: what the detector counts of one instance on every call (calls in flight, since when none has
//! answered, calls and failures, consecutive failures, smoothed latency), in atomics, so that a call's start
//! and its success take no lock and look nothing up: a balanced client keeps each instance's `Live` beside its
//! connection. Decisions (ejections, probes) are made under the detector's lock, from these counts.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// One instance's counts.
#[derive(Debug, Default)]
pub(crate) struct Live {
    pub(super) in_flight: AtomicU32,
    /// Since when calls have been in flight with none answered (the start of the oldest unanswered stretch),
    /// as [`Epoch::encode`]s it; 0: none.
    pub(super) waiting_since: AtomicU64,
    /// Calls and failures ended in the current interval.
    pub(super) calls: AtomicU32,
    pub(super) failures: AtomicU32,
    pub(super) consecutive_failures: AtomicU32,
    /// Latency in nanoseconds, smoothed (an average over about the last eight calls); 0 before the first.
    pub(super) latency_ns: AtomicU64,
    /// Its ejection ended and a probe is due or under way: a call's start and end then take the lock.
    pub(super) probing: AtomicBool,
}

impl Live {
    /// A call starts at `now` (encoded only if the call starts a wait: most join one).
    pub(super) fn started(&self, now: impl FnOnce() -> u64) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        if self.waiting_since.load(Ordering::Relaxed) == 0 {
            // Another call may have set it meanwhile: the earlier start stands either way.
            let _ =
                self.waiting_since
                    .compare_exchange(0, now(), Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    /// A call ended at `now` (encoded only if an answer restarts the wait); `answered`: the instance answered
    /// it (it was not cancelled).
    pub(super) fn ended(&self, now: impl FnOnce() -> u64, answered: bool) {
        let before = self
            .in_flight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(1))
            })
            .unwrap_or(0);
        if before <= 1 {
            self.waiting_since.store(0, Ordering::Relaxed);
        } else if answered {
            // An answer: the wait for the next one starts now.
            self.waiting_since.store(now(), Ordering::Relaxed);
        }
    }

    /// A success of `latency`: into the average, and the run of failures ends.
    pub(super) fn succeeded(&self, latency: Duration) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX).max(1);
        // Two calls ending at once may each miss the other's sample: an average loses nothing it needs.
        let average = match self.latency_ns.load(Ordering::Relaxed) {
            0 => ns,
            // An average over about the last eight calls.
            avg => avg - avg / 8 + ns / 8,
        };
        self.latency_ns.store(average, Ordering::Relaxed);
        if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
    }

    /// A failure: the count of failures in a row now.
    pub(super) fn failed(&self) -> u32 {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub(super) fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub(super) fn calls(&self) -> u32 {
        self.calls.load(Ordering::Relaxed)
    }

    pub(super) fn latency_ns(&self) -> u64 {
        self.latency_ns.load(Ordering::Relaxed)
    }
}

/// Instants as the counts keep them: nanoseconds since the detector was made, plus one (0 means none).
#[derive(Clone, Copy, Debug)]
pub(super) struct Epoch(Instant);

impl Epoch {
    pub(super) fn new(now: Instant) -> Epoch {
        Epoch(now)
    }

    pub(super) fn encode(self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.0).as_nanos();
        u64::try_from(since).unwrap_or(u64::MAX - 1) + 1
    }

    pub(super) fn decode(self, at: u64) -> Option<Instant> {
        (at != 0).then(|| self.0 + Duration::from_nanos(at - 1))
    }
}
