//! The results of every round and what is printed of them: per workload and system, the median over the rounds
//! of items per second, bytes per second and CPU time per item, the spread (lowest and highest round), and the
//! ratios of this framework's median against tonic's and the floor's; then the stalled consumers. As a plain
//! text table, and as one JSON object per row.

use benches::rounds::median;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::json;

use crate::run::Sample;
use crate::stall::Stalled;
use crate::workload::{System, Workload};

/// Every sample, in the order the workloads first ran.
#[derive(Debug, Default)]
pub(crate) struct Results {
    order: Vec<Workload>,
    samples: BTreeMap<(Workload, System), Vec<Sample>>,
}

/// The medians and spread of one workload on one system.
#[derive(Clone, Copy, Debug)]
struct Summary {
    rounds: usize,
    items_per_second: f64,
    bytes_per_second: f64,
    lowest: f64,
    highest: f64,
    cpu_ns_per_item: f64,
}

impl Results {
    pub(crate) fn add(&mut self, workload: Workload, system: System, sample: Sample) {
        if !self.order.contains(&workload) {
            self.order.push(workload);
        }
        self.samples
            .entry((workload, system))
            .or_default()
            .push(sample);
    }

    fn summary(&self, workload: Workload, system: System) -> Option<Summary> {
        let samples = self.samples.get(&(workload, system))?;
        let of = |f: fn(&Sample) -> f64| samples.iter().map(f).collect::<Vec<f64>>();
        let rates = of(Sample::items_per_second);
        Some(Summary {
            rounds: samples.len(),
            items_per_second: median(rates.clone()),
            bytes_per_second: median(of(Sample::bytes_per_second)),
            lowest: rates.iter().copied().fold(f64::INFINITY, f64::min),
            highest: rates.iter().copied().fold(0.0, f64::max),
            cpu_ns_per_item: median(of(Sample::cpu_ns_per_item)),
        })
    }

    /// This framework's median items per second over `other`'s, on `workload`.
    fn ratio(&self, workload: Workload, system: System, other: System) -> Option<f64> {
        if system == other {
            return None;
        }
        let ours = self.summary(workload, system)?.items_per_second;
        let theirs = self.summary(workload, other)?.items_per_second;
        Some(ours / theirs)
    }

    /// The table of every workload, its systems in `systems`' order.
    pub(crate) fn table(&self, systems: &[System]) -> String {
        let mut out = format!(
            "{:<8} {:>13} {:>23} {:>10} {:>9} {:>8} {:>8}\n",
            "system", "items/s", "lowest..highest", "MiB/s", "CPU ns/it", "/tonic", "/raw"
        );
        for &workload in &self.order {
            let _ = writeln!(out, "{} ({}):", workload, workload.case.name());
            for &system in systems {
                let Some(s) = self.summary(workload, system) else {
                    continue;
                };
                let vs = |other| match self.ratio(workload, system, other) {
                    Some(r) => format!("{r:.2}x"),
                    None => String::from("-"),
                };
                let _ = writeln!(
                    out,
                    "  {:<6} {:>13} {:>23} {:>10.1} {:>9.0} {:>8} {:>8}",
                    system.name(),
                    thousands(s.items_per_second),
                    format!("{}..{}", thousands(s.lowest), thousands(s.highest)),
                    s.bytes_per_second / (1024.0 * 1024.0),
                    s.cpu_ns_per_item,
                    vs(System::Tonic),
                    vs(System::Raw),
                );
            }
        }
        out
    }

    /// One JSON object per workload and system.
    pub(crate) fn json_lines(&self, systems: &[System]) -> Vec<String> {
        let mut lines = Vec::new();
        for &workload in &self.order {
            for &system in systems {
                let Some(s) = self.summary(workload, system) else {
                    continue;
                };
                let row = json!({
                    "case": workload.case.name(),
                    "system": system.name(),
                    "item_bytes": workload.size(),
                    "items": workload.items,
                    "streams": workload.streams,
                    "rounds": s.rounds,
                    "items_per_s": s.items_per_second.round(),
                    "items_per_s_lowest": s.lowest.round(),
                    "items_per_s_highest": s.highest.round(),
                    "bytes_per_s": s.bytes_per_second.round(),
                    "cpu_ns_per_item": (s.cpu_ns_per_item * 10.0).round() / 10.0,
                    "vs_tonic": self.ratio(workload, system, System::Tonic),
                    "vs_raw": self.ratio(workload, system, System::Raw),
                });
                lines.push(row.to_string());
            }
        }
        lines
    }
}

/// The table of the stalled consumers.
pub(crate) fn stall_table(stalled: &[Stalled]) -> String {
    let mut out = format!(
        "{:<8} {:>12} {:>12} {:>12} {:>14} {:>14}\n",
        "system", "made at 1/2", "made", "MiB made", "RSS before", "RSS growth"
    );
    for s in stalled {
        let _ = writeln!(
            out,
            "  {:<6} {:>12} {:>12} {:>12.1} {:>10.1} MiB {:>10.1} MiB",
            s.system.name(),
            s.made_at_half,
            s.made,
            s.bytes_made() as f64 / (1024.0 * 1024.0),
            s.rss_before as f64 / (1024.0 * 1024.0),
            s.growth() as f64 / (1024.0 * 1024.0),
        );
    }
    out
}

/// One JSON object per stalled consumer.
pub(crate) fn stall_json_lines(stalled: &[Stalled], wait_ms: u64) -> Vec<String> {
    stalled
        .iter()
        .map(|s| {
            json!({
                "case": "stall",
                "system": s.system.name(),
                "item_bytes": s.size,
                "wait_ms": wait_ms,
                "items_made_at_half": s.made_at_half,
                "items_made": s.made,
                "bytes_made": s.bytes_made(),
                "rss_before_bytes": s.rss_before,
                "rss_after_bytes": s.rss_after,
                "rss_growth_bytes": s.growth(),
            })
            .to_string()
        })
        .collect()
}

/// `value` rounded, with commas between thousands: 1234567.8 -> "1,234,568".
pub(crate) fn thousands(value: f64) -> String {
    if !value.is_finite() {
        return String::from("-");
    }
    let digits = format!("{:.0}", value.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if value < 0.0 { format!("-{out}") } else { out }
}

#[cfg(test)]
mod tests {
    use super::{median, thousands};

    #[test]
    fn medians_and_separators() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(thousands(1_234_567.8), "1,234,568");
        assert_eq!(thousands(999.0), "999");
    }
}
