//! The results of every round and what is printed of them: per workload and system, the medians over the rounds
//! of calls per second, latency quantiles and CPU per call; the ratios against the floor and the peers (medians
//! of the per-round ratios, since systems alternate within a round); and the targets, met or missed.

use std::collections::BTreeMap;
use std::fmt::Write as _;

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
    /// tarpc with its bincode transport.
    Tarpc,
    /// tonic over one HTTP/2 connection.
    Tonic,
}

impl System {
    pub(crate) const ALL: [System; 5] = [
        System::Raw,
        System::Rpc,
        System::RpcMetrics,
        System::Tarpc,
        System::Tonic,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            System::Raw => "raw",
            System::Rpc => "rpc",
            System::RpcMetrics => "rpc-metrics",
            System::Tarpc => "tarpc",
            System::Tonic => "tonic",
        }
    }

    pub(crate) fn parse(name: &str) -> Result<System, String> {
        System::ALL
            .into_iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| {
                format!(
                    "unknown system `{name}`; expected one of raw, rpc, rpc-metrics, tarpc, tonic"
                )
            })
    }
}

/// One workload: payload size and calls in flight over how many connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Workload {
    pub(crate) payload: usize,
    pub(crate) concurrency: usize,
    pub(crate) connections: usize,
}

impl std::fmt::Display for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} B, {} in flight on {} connection{}",
            self.payload,
            self.concurrency,
            self.connections,
            if self.connections == 1 { "" } else { "s" }
        )
    }
}

/// Every sample, by workload and system, in round order.
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

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
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

    fn summary(&self, workload: Workload, system: System) -> Option<Summary> {
        let samples = self.samples.get(&workload)?.get(&system)?;
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

    /// The median over rounds of `system`'s value divided by `other`'s in the same round.
    fn ratio(
        &self,
        workload: Workload,
        system: System,
        other: System,
        value: fn(&Sample) -> f64,
    ) -> Option<f64> {
        let by = self.samples.get(&workload)?;
        let (a, b) = (by.get(&system)?, by.get(&other)?);
        let ratios: Vec<f64> = a.iter().zip(b).map(|(x, y)| value(x) / value(y)).collect();
        (!ratios.is_empty()).then(|| median(ratios))
    }

    /// The table of medians, in markdown.
    pub(crate) fn table(&self) -> String {
        let mut out = String::new();
        let peers = [System::Raw, System::Tarpc, System::Tonic];
        let _ = writeln!(
            out,
            "| payload | in flight | conns | system | calls/s | p50 µs | p99 µs | p99.9 µs | CPU µs/call | \
             vs raw | vs tarpc | vs tonic |"
        );
        let _ = writeln!(
            out,
            "|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for &w in &self.order {
            for system in System::ALL {
                let Some(s) = self.summary(w, system) else {
                    continue;
                };
                let ratios: Vec<String> = peers
                    .iter()
                    .map(
                        |&peer| match self.ratio(w, system, peer, Sample::per_second) {
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
                    "| {} B | {} | {} | {}{failed} | {} | {:.1} | {:.1} | {:.1} | {:.2} | {} |",
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

    /// The targets for this framework, each with the measured ratio, the same ratio for raw echo (the
    /// floor: what no framework on this machine can beat), and whether the target is met.
    pub(crate) fn targets(&self) -> String {
        let mut out = String::from(
            "| target | workload | rpc | raw echo, same ratio | met |\n|---|---|---:|---:|---|\n",
        );
        let shown = |r: Option<f64>| match r {
            Some(m) if m.is_finite() => format!("{m:.2}x"),
            _ => String::from("n/a"),
        };
        let mut line = |target: &str,
                        w: Workload,
                        other: System,
                        value: fn(&Sample) -> f64,
                        met: fn(f64) -> bool| {
            let rpc = self.ratio(w, System::Rpc, other, value);
            let floor = if other == System::Raw {
                None
            } else {
                self.ratio(w, System::Raw, other, value)
            };
            let ok = match rpc {
                Some(m) if m.is_finite() => {
                    if met(m) {
                        "yes"
                    } else {
                        "**no**"
                    }
                }
                _ => "n/a",
            };
            let _ = writeln!(
                out,
                "| {target} | {w} | {} | {} | {ok} |",
                shown(rpc),
                shown(floor)
            );
        };
        for &w in &self.order {
            if w.concurrency == 128 && w.connections == 1 {
                line(
                    "calls/s >= 2.5x tarpc",
                    w,
                    System::Tarpc,
                    Sample::per_second,
                    |m| m >= 2.5,
                );
                line(
                    "calls/s >= 10x tonic",
                    w,
                    System::Tonic,
                    Sample::per_second,
                    |m| m >= 10.0,
                );
                line(
                    "p99 <= 0.5x tarpc",
                    w,
                    System::Tarpc,
                    |s| s.latency_us(0.99),
                    |m| m <= 0.5,
                );
            }
            if w.concurrency == 1 && w.connections == 1 {
                line(
                    "p50 <= 1.15x raw",
                    w,
                    System::Raw,
                    |s| s.latency_us(0.5),
                    |m| m <= 1.15,
                );
            }
        }
        for &w in &self.order {
            line(
                "CPU/call <= 0.3x tarpc",
                w,
                System::Tarpc,
                Sample::cpu_us_per_call,
                |m| m <= 0.3,
            );
        }
        out
    }
}

/// `1234567.8` as `1,234,568`.
fn thousands(x: f64) -> String {
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
