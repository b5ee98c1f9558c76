//! The targets of issues 13 and 19, computed from a run's results: each holds one measure of this framework on one
//! workload against the same measure of another system (or of this framework on the other runtime), and is
//! printed met or missed with both figures and their ratio, or "not measured" when the run lacks either row.
//! The ratio judged is the median of the per-round ratios, as in the table; the figures are medians over rounds.

use std::fmt::Write as _;

use benches::server_thread::Flavor;

use crate::driver::Sample;
use crate::report::{Results, System, Workload, thousands};

/// What a target measures.
#[derive(Clone, Copy, Debug)]
enum Measure {
    /// Calls per second: more is better.
    CallsPerSecond,
    /// The 99th percentile of latency, in µs.
    P99,
    /// CPU time per call (the whole process), in µs.
    CpuPerCall,
}

impl Measure {
    fn name(self) -> &'static str {
        match self {
            Measure::CallsPerSecond => "calls/s",
            Measure::P99 => "p99",
            Measure::CpuPerCall => "CPU µs/call",
        }
    }

    fn of(self) -> fn(&Sample) -> f64 {
        match self {
            Measure::CallsPerSecond => Sample::per_second,
            Measure::P99 => |s| s.latency_us(0.99),
            Measure::CpuPerCall => Sample::cpu_us_per_call,
        }
    }

    /// A median of this measure, with its unit.
    fn shown(self, value: f64) -> String {
        match self {
            Measure::CallsPerSecond => format!("{}/s", thousands(value)),
            Measure::P99 => format!("{value:.1} µs"),
            Measure::CpuPerCall => format!("{value:.2} µs"),
        }
    }
}

/// Which side of its bound a target's ratio must fall on.
#[derive(Clone, Copy, Debug)]
enum Bound {
    AtLeast(f64),
    AtMost(f64),
}

/// One target: `measure` of this framework on `workload`, divided by the same measure of `against`, within
/// `bound`.
#[derive(Clone, Copy, Debug)]
struct Target {
    measure: Measure,
    /// The system of ours measured: `rpc`, or `rpc-http-json` for issue 19's target.
    ours: System,
    workload: Workload,
    against: (Workload, System),
    bound: Bound,
}

impl Target {
    /// The target against `system` on the same workload.
    fn vs(measure: Measure, workload: Workload, system: System, bound: Bound) -> Target {
        Target {
            measure,
            ours: System::Rpc,
            workload,
            against: (workload, system),
            bound,
        }
    }

    /// What it asks, as in the issue: `calls/s >= 1.5x tarpc`.
    fn label(&self) -> String {
        let (op, factor) = match self.bound {
            Bound::AtLeast(f) => (">=", f),
            Bound::AtMost(f) => ("<=", f),
        };
        let (against_workload, against) = self.against;
        let whom = if against_workload.runtime == self.workload.runtime {
            against.name().to_owned()
        } else {
            format!("{} on {}", against.name(), against_workload.runtime.name())
        };
        let whom = match against_workload.connections == self.workload.connections {
            true => whom,
            false => format!("{whom} ({})", against_workload),
        };
        format!(
            "{} {} {op} {factor:.1}x {whom}",
            self.ours.name(),
            self.measure.name()
        )
    }
}

/// A workload of the targets: `payload` bytes, `concurrency` calls in flight on one connection.
fn on(runtime: Flavor, payload: usize, concurrency: usize) -> Workload {
    Workload {
        runtime,
        payload,
        concurrency,
        connections: 1,
    }
}

/// Issue 13's targets, in the order.
fn targets() -> Vec<Target> {
    use Bound::{AtLeast, AtMost};
    use Measure::{CallsPerSecond, CpuPerCall, P99};
    let mut all = Vec::new();
    // 64 KiB, 128 in flight on one connection, both runtimes.
    for runtime in Flavor::ALL {
        let w = on(runtime, 65536, 128);
        all.push(Target::vs(CallsPerSecond, w, System::Tarpc, AtLeast(1.5)));
        all.push(Target::vs(CallsPerSecond, w, System::Raw, AtLeast(0.7)));
        all.push(Target::vs(P99, w, System::Tarpc, AtMost(1.0)));
    }
    // 64 KiB, one call at a time, both runtimes.
    for runtime in Flavor::ALL {
        all.push(Target::vs(
            P99,
            on(runtime, 65536, 1),
            System::Tarpc,
            AtMost(1.2),
        ));
    }
    // Multi-thread runtimes, small payloads, 128 in flight on one connection.
    for payload in [32, 1024] {
        let w = on(Flavor::MultiThread, payload, 128);
        all.push(Target::vs(CallsPerSecond, w, System::Tarpc, AtLeast(4.0)));
        all.push(Target::vs(CallsPerSecond, w, System::Raw, AtLeast(0.5)));
        all.push(Target {
            measure: CpuPerCall,
            ours: System::Rpc,
            workload: w,
            against: (
                Workload {
                    runtime: Flavor::CurrentThread,
                    ..w
                },
                System::Rpc,
            ),
            bound: AtMost(1.5),
        });
    }
    // Current-thread runtimes, 32 B, 128 in flight on one connection.
    let w = on(Flavor::CurrentThread, 32, 128);
    all.push(Target::vs(CallsPerSecond, w, System::Tarpc, AtLeast(3.5)));
    all.push(Target::vs(P99, w, System::Tarpc, AtMost(0.5)));
    // Issue 19: the HTTP/1.1 and JSON path, 32 B, 16 in flight (over 16 connections: one call each at a time)
    // against tonic with 16 in flight on its one HTTP/2 connection.
    for runtime in Flavor::ALL {
        let ours = Workload {
            connections: 16,
            ..on(runtime, 32, 16)
        };
        all.push(Target {
            measure: CallsPerSecond,
            ours: System::RpcHttpJson,
            workload: ours,
            against: (on(runtime, 32, 16), System::Tonic),
            bound: AtLeast(1.0),
        });
    }
    all
}

/// The targets as a markdown table, then a line counting them.
pub(crate) fn report(results: &Results) -> String {
    let mut out = String::from(
        "| target | workload | rpc | against | ratio | result |\n|---|---|---:|---:|---:|---|\n",
    );
    let (mut met, mut missed, mut absent) = (0, 0, 0);
    for target in targets() {
        let value = target.measure.of();
        let ours = results.median(target.workload, target.ours, value);
        let theirs = results.median(target.against.0, target.against.1, value);
        let ratio = results
            .ratio((target.workload, target.ours), target.against, value)
            .filter(|r| r.is_finite());
        let row = match (ours, theirs, ratio) {
            (Some(ours), Some(theirs), Some(ratio)) => {
                let ok = match target.bound {
                    Bound::AtLeast(f) => ratio >= f,
                    Bound::AtMost(f) => ratio <= f,
                };
                let result = if ok {
                    met += 1;
                    "met"
                } else {
                    missed += 1;
                    "**missed**"
                };
                format!(
                    "{} | {} | {ratio:.2}x | {result}",
                    target.measure.shown(ours),
                    target.measure.shown(theirs)
                )
            }
            _ => {
                absent += 1;
                String::from("- | - | - | not measured")
            }
        };
        let _ = writeln!(out, "| {} | {} | {row} |", target.label(), target.workload);
    }
    let _ = writeln!(out, "\n{met} met, {missed} missed, {absent} not measured.");
    out
}
