//! The results of every round and the table printed of them: per workload (runtime flavour, payload, shape) and
//! system, the medians over the rounds of calls per second, latency quantiles and CPU per call; and the ratios
//! against the floor and the peers (medians of the per-round ratios, since systems alternate within a round).

use benches::rounds::median;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use benches::server_thread::Flavor;

use crate::driver::Sample;

/// A system measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum System {
    /// Raw tokio TCP echo: the floor.
    Raw,
    /// This framework.
    Rpc,
    /// This framework with metrics on, on both the server and the client (not in the default set).
    RpcMetrics,
    /// This framework's balanced client over the one server, with its default resilience: the default policy
    /// (peak EWMA), outlier detection and the retry budget (not in the default set).
    RpcBalanced,
    /// tarpc with its bincode transport, the payload a `serde_bytes::ByteBuf` (as this framework's is).
    Tarpc,
    /// The same tarpc service and connection, the payload a plain `Vec<u8>`: what a tarpc user writes without
    /// serde_bytes.
    TarpcVec,
    /// tonic over one HTTP/2 connection.
    Tonic,
    /// This framework's server with HTTP on its port, called in JSON over HTTP/1.1 (one call at a time per
    /// connection: give it as many connections as calls in flight). Not in the default set.
    RpcHttpJson,
}

impl System {
    pub(crate) const ALL: [System; 8] = [
        System::Raw,
        System::Rpc,
        System::RpcMetrics,
        System::RpcBalanced,
        System::Tarpc,
        System::TarpcVec,
        System::Tonic,
        System::RpcHttpJson,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            System::Raw => "raw",
            System::Rpc => "rpc",
            System::RpcMetrics => "rpc-metrics",
            System::RpcBalanced => "rpc-balanced",
            System::Tarpc => "tarpc",
            System::TarpcVec => "tarpc-vec",
            System::Tonic => "tonic",
            System::RpcHttpJson => "rpc-http-json",
        }
    }

    pub(crate) fn parse(name: &str) -> Result<System, String> {
        System::ALL
            .into_iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| {
                let known: Vec<&str> = System::ALL.iter().map(|s| s.name()).collect();
                format!(
                    "unknown system `{name}`; expected one of {}",
                    known.join(", ")
                )
            })
    }
}

/// One workload: the runtime flavour of both sides, the payload size and calls in flight over how many
/// connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Workload {
    /// The kind of tokio runtime the server and the client each run on.
    pub(crate) runtime: Flavor,
    pub(crate) payload: usize,
    pub(crate) concurrency: usize,
    pub(crate) connections: usize,
}

impl std::fmt::Display for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}, {} B, {} in flight on {} connection{}",
            self.runtime.name(),
            self.payload,
            self.concurrency,
            self.connections,
            if self.connections == 1 { "" } else { "s" }
        )
    }
}

/// Every sample, by workload (runtime included) and system, in round order.
#[derive(Default)]
pub(crate) struct Results {
    samples: BTreeMap<Workload, BTreeMap<System, Vec<Sample>>>,
    order: Vec<Workload>,
}

/// The medians of one system on one workload.
struct Summary {
    per_second: f64,
    p50: f64,
    p99: f64,
    p999: f64,
    cpu: f64,
    failed: u64,
}

impl Results {
    pub(crate) fn add(&mut self, workload: Workload, system: System, sample: Sample) {
        if !self.order.contains(&workload) {
            self.order.push(workload);
        }
        self.samples
            .entry(workload)
            .or_default()
            .entry(system)
            .or_default()
            .push(sample);
    }

    /// The samples of `system` on `workload`, in round order.
    fn samples(&self, workload: Workload, system: System) -> Option<&[Sample]> {
        Some(self.samples.get(&workload)?.get(&system)?.as_slice())
    }

    /// The median over rounds of `value` for `system` on `workload`.
    pub(crate) fn median(
        &self,
        workload: Workload,
        system: System,
        value: fn(&Sample) -> f64,
    ) -> Option<f64> {
        let samples = self.samples(workload, system)?;
        Some(median(samples.iter().map(value).collect()))
    }

    fn summary(&self, workload: Workload, system: System) -> Option<Summary> {
        let samples = self.samples(workload, system)?;
        let of = |f: &dyn Fn(&Sample) -> f64| median(samples.iter().map(f).collect());
        Some(Summary {
            per_second: of(&|s| s.per_second()),
            p50: of(&|s| s.latency_us(0.5)),
            p99: of(&|s| s.latency_us(0.99)),
            p999: of(&|s| s.latency_us(0.999)),
            cpu: of(&|s| s.cpu_us_per_call()),
            failed: samples.iter().map(|s| s.failed).sum(),
        })
    }

    /// The median over rounds of `value` of the first (workload, system) divided by that of the second in the same
    /// round; `None` when either was not run.
    pub(crate) fn ratio(
        &self,
        (workload, system): (Workload, System),
        (other_workload, other): (Workload, System),
        value: fn(&Sample) -> f64,
    ) -> Option<f64> {
        let a = self.samples(workload, system)?;
        let b = self.samples(other_workload, other)?;
        let ratios: Vec<f64> = a.iter().zip(b).map(|(x, y)| value(x) / value(y)).collect();
        (!ratios.is_empty()).then(|| median(ratios))
    }

    /// The table of medians, in markdown: current-thread runs first, then multi-thread ones, each in the order
    /// the workloads were first run.
    pub(crate) fn table(&self) -> String {
        let mut out = String::new();
        let peers = [System::Raw, System::Tarpc, System::Tonic];
        let _ = writeln!(
            out,
            "| runtime | payload | in flight | conns | system | calls/s | p50 µs | p99 µs | p99.9 µs | \
             CPU µs/call | vs raw | vs tarpc | vs tonic |"
        );
        let _ = writeln!(
            out,
            "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        let mut order = self.order.clone();
        // Stable: within a runtime, the order of the run.
        order.sort_by_key(|w| w.runtime);
        for w in order {
            for system in System::ALL {
                let Some(s) = self.summary(w, system) else {
                    continue;
                };
                let ratios: Vec<String> = peers
                    .iter()
                    .map(
                        |&peer| match self.ratio((w, system), (w, peer), Sample::per_second) {
                            Some(_) if peer == system => String::from("-"),
                            Some(r) => format!("{r:.2}x"),
                            None => String::from("n/a"),
                        },
                    )
                    .collect();
                let failed = if s.failed > 0 {
                    format!(" ({} failed)", s.failed)
                } else {
                    String::new()
                };
                let _ = writeln!(
                    out,
                    "| {} | {} B | {} | {} | {}{failed} | {} | {:.1} | {:.1} | {:.1} | {:.2} | {} |",
                    w.runtime.name(),
                    w.payload,
                    w.concurrency,
                    w.connections,
                    system.name(),
                    thousands(s.per_second),
                    s.p50,
                    s.p99,
                    s.p999,
                    s.cpu,
                    ratios.join(" | ")
                );
            }
        }
        out
    }
}

/// `1234567.8` as `1,234,568`.
pub(crate) fn thousands(x: f64) -> String {
    if !x.is_finite() {
        return String::from("n/a");
    }
    let digits = format!("{:.0}", x);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_separators() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(thousands(1_234_567.8), "1,234,568");
        assert_eq!(thousands(999.0), "999");
    }
}
