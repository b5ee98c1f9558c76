//! What a chaos run found: calls, failures, success rate, latency percentiles of the calls that succeeded, and
//! the longest window in which no call completed; as a table, and as one JSON line.

use std::time::Duration;

use crate::load::Record;

/// The figures of one run.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Summary {
    pub(crate) scenario: String,
    pub(crate) policy: String,
    pub(crate) calls: usize,
    pub(crate) failed: usize,
    pub(crate) success_rate: f64,
    pub(crate) p50_us: u64,
    pub(crate) p99_us: u64,
    pub(crate) p999_us: u64,
    pub(crate) max_gap_ms: u64,
}

impl Summary {
    /// The summary of `record`, a load that lasted `length`.
    pub(crate) fn of(scenario: &str, policy: &str, record: &Record, length: Duration) -> Summary {
        let calls = record.calls.len();
        let failed = record.calls.iter().filter(|c| !c.ok).count();
        let mut latencies: Vec<u64> = record
            .calls
            .iter()
            .filter(|c| c.ok)
            .map(|c| c.latency.as_micros() as u64)
            .collect();
        latencies.sort_unstable();
        let at = |q: f64| {
            if latencies.is_empty() {
                return 0;
            }
            let i = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1;
            latencies[i]
        };
        Summary {
            scenario: scenario.to_owned(),
            policy: policy.to_owned(),
            calls,
            failed,
            success_rate: if calls == 0 {
                0.0
            } else {
                (calls - failed) as f64 / calls as f64
            },
            p50_us: at(0.5),
            p99_us: at(0.99),
            p999_us: at(0.999),
            max_gap_ms: max_gap(record, length).as_millis() as u64,
        }
    }

    /// The table row, under [`HEADER`].
    pub(crate) fn row(&self) -> String {
        format!(
            "| {} | {} | {} | {} | {:.4}% | {} | {} | {} | {} |",
            self.scenario,
            self.policy,
            self.calls,
            self.failed,
            self.success_rate * 100.0,
            self.p50_us,
            self.p99_us,
            self.p999_us,
            self.max_gap_ms
        )
    }
}

/// The table's header.
pub(crate) const HEADER: &str = "| scenario | policy | calls | failed | success | p50 µs | p99 µs | p99.9 µs | max gap ms |\n|---|---|---:|---:|---:|---:|---:|---:|---:|";

/// The longest stretch of the load (from its start to its end) in which no call succeeded.
fn max_gap(record: &Record, length: Duration) -> Duration {
    let mut done: Vec<Duration> = record
        .calls
        .iter()
        .filter(|c| c.ok)
        .map(|c| c.started + c.latency)
        .filter(|at| *at <= length)
        .collect();
    done.sort_unstable();
    let mut last = Duration::ZERO;
    let mut gap = Duration::ZERO;
    for at in done.into_iter().chain([length]) {
        gap = gap.max(at.saturating_sub(last));
        last = at;
    }
    gap
}
