//! What a run prints: a line per phase as it ends, the registration ramp and the second replica's start (etcd
//! store), then the tables for docs/BENCHMARKS.md and the medians over the phases of each kind.

use std::time::Duration;

use crate::etcd::Rates;
use crate::histogram::Histogram;
use crate::load::Counts;
use crate::registry::Joined;

/// One measured phase.
pub(crate) struct Phase {
    pub(crate) dashboard: bool,
    pub(crate) secs: f64,
    pub(crate) heartbeats: u64,
    pub(crate) lost: u64,
    pub(crate) failed: u64,
    pub(crate) evictions: f64,
    pub(crate) cpu: Duration,
    pub(crate) polls: u64,
    pub(crate) poll_bytes: u64,
    pub(crate) rss: f64,
    pub(crate) peak: f64,
    /// The probe's writes the registry accepted (with the etcd store, an etcd transaction each).
    pub(crate) probe_writes: u64,
    /// What etcd did meanwhile (etcd store).
    pub(crate) etcd: Option<Rates>,
}

impl Phase {
    /// etcd's proposals per second beyond the probe's writes: what the load itself cost etcd.
    fn other_proposals(&self) -> f64 {
        self.etcd.map_or(f64::NAN, |e| {
            e.proposals - self.probe_writes as f64 / self.secs
        })
    }
}

/// The registration of every instance, from the first to the last.
pub(crate) struct Ramp {
    pub(crate) instances: u64,
    pub(crate) secs: f64,
    /// The registry's CPU time over it.
    pub(crate) cpu: Duration,
    /// The driver's own CPU time over it (the load, the probe; etcd's metrics read).
    pub(crate) driver_cpu: Duration,
    /// The registry's resident memory before the first registration and after the last, in MiB.
    pub(crate) rss: (f64, f64),
    pub(crate) etcd: Option<Rates>,
}

pub(crate) fn print_ramp(ramp: &Ramp) {
    let per_instance = (ramp.rss.1 - ramp.rss.0) * 1024.0 * 1024.0 / ramp.instances as f64;
    println!(
        "registered {} instances in {:.1} s ({:.0}/s), registry CPU {:.0} %, driver CPU {:.0} %, registry RSS \
         {:.0} -> {:.0} MiB ({per_instance:.0} bytes per instance)",
        ramp.instances,
        ramp.secs,
        ramp.instances as f64 / ramp.secs,
        ramp.cpu.as_secs_f64() * 100.0 / ramp.secs,
        ramp.driver_cpu.as_secs_f64() * 100.0 / ramp.secs,
        ramp.rss.0,
        ramp.rss.1,
    );
    if let Some(e) = ramp.etcd {
        println!(
            "  registration ramp: {e}; {:.0} bytes per put, etcd's database in use grew {:.1} MiB ({:.0} bytes per \
             instance)",
            e.put_size,
            e.db_growth / 1024.0 / 1024.0,
            e.db_growth / ramp.instances as f64,
        );
    }
}

pub(crate) fn print_joined(joined: &Joined, expected: u64, keys: f64, etcd: &Rates) {
    println!(
        "a second replica started beside the first: ports bound in {:.0} ms, then its store opened (every key \
         read from etcd into its index) in {:.0} ms, {:.0} instances of {expected} ({keys:.0} keys in etcd), \
         RSS {:.0} MiB, CPU {:.2} s; meanwhile {etcd}",
        joined.bound.as_secs_f64() * 1000.0,
        joined.opened.as_secs_f64() * 1000.0,
        joined.instances,
        joined.rss,
        joined.cpu.as_secs_f64(),
    );
}

pub(crate) fn ms(h: &Histogram, q: f64) -> String {
    h.quantile_ms(q)
        .map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"))
}

pub(crate) fn print_phase(p: usize, phase: &Phase, round_trips: &Histogram, latencies: &Histogram) {
    println!(
        "phase {p} ({}): {:.0} heartbeats/s, heartbeat p50 {} p99 {} ms, watch p50 {} p99 {} ms ({} changes), \
         registry CPU {:.0} %, RSS {:.0} MiB (peak {:.0}), {} polls ({:.1} MB), {} leases lost, {} calls failed, {} evictions",
        if phase.dashboard {
            "dashboard open"
        } else {
            "no dashboard"
        },
        phase.heartbeats as f64 / phase.secs,
        ms(round_trips, 0.5),
        ms(round_trips, 0.99),
        ms(latencies, 0.5),
        ms(latencies, 0.99),
        latencies.count(),
        phase.cpu.as_secs_f64() * 100.0 / phase.secs,
        phase.rss,
        phase.peak,
        phase.polls,
        phase.poll_bytes as f64 / 1e6,
        phase.lost,
        phase.failed,
        phase.evictions,
    );
    if let Some(e) = phase.etcd {
        println!(
            "  {e}; the probe's writes {:.1}/s, proposals beyond them {:.2}/s",
            phase.probe_writes as f64 / phase.secs,
            phase.other_proposals(),
        );
    }
}

/// The median of `values` (NaN if empty).
fn median(mut values: Vec<f64>) -> f64 {
    values.retain(|v| !v.is_nan());
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// The table for docs/BENCHMARKS.md, then the medians over the phases of each kind and their ratio.
pub(crate) fn summary(results: &[(usize, Phase)], counts: &Counts, latencies: &[Histogram]) {
    println!();
    println!(
        "| phase | dashboard | heartbeats/s | heartbeat p50 ms | heartbeat p99 ms | watch p50 ms | watch p99 ms | \
         registry CPU | RSS MiB (peak) | polls/s | KB/poll | evictions |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (p, phase) in results {
        println!(
            "| {p} | {} | {:.0} | {} | {} | {} | {} | {:.0} % | {:.0} ({:.0}) | {:.1} | {:.0} | {} |",
            if phase.dashboard { "open" } else { "none" },
            phase.heartbeats as f64 / phase.secs,
            ms(&counts.round_trips[*p], 0.5),
            ms(&counts.round_trips[*p], 0.99),
            ms(&latencies[*p], 0.5),
            ms(&latencies[*p], 0.99),
            phase.cpu.as_secs_f64() * 100.0 / phase.secs,
            phase.rss,
            phase.peak,
            phase.polls as f64 / phase.secs,
            if phase.polls > 0 {
                phase.poll_bytes as f64 / phase.polls as f64 / 1e3
            } else {
                0.0
            },
            phase.evictions,
        );
    }
    println!();
    /// One figure of a phase.
    type Figure<'a> = &'a dyn Fn(usize, &Phase) -> f64;
    /// A row of the medians: one figure of a phase, boxed.
    type Row<'a> = Box<dyn Fn(usize, &Phase) -> f64 + 'a>;
    let of = |open: bool, value: Figure<'_>| {
        median(
            results
                .iter()
                .filter(|(_, phase)| phase.dashboard == open)
                .map(|(p, phase)| value(*p, phase))
                .collect(),
        )
    };
    let q = |h: &Histogram, q: f64| h.quantile_ms(q).unwrap_or(f64::NAN);
    let etcd = results.iter().any(|(_, phase)| phase.etcd.is_some());
    if etcd {
        println!(
            "| phase | dashboard | etcd proposals/s | probe writes/s | other proposals/s | txns/s | puts/s | \
             deletes/s | lease keep-alives/s | fsyncs/s | etcd CPU |"
        );
        println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for (p, phase) in results {
            let Some(e) = phase.etcd else { continue };
            println!(
                "| {p} | {} | {:.1} | {:.1} | {:.2} | {:.1} | {:.1} | {:.1} | {:.2} | {:.1} | {:.1} % |",
                if phase.dashboard { "open" } else { "none" },
                e.proposals,
                phase.probe_writes as f64 / phase.secs,
                phase.other_proposals(),
                e.txns,
                e.puts,
                e.deletes,
                e.renewals,
                e.fsyncs,
                e.cpu,
            );
        }
        println!();
    }
    let mut rows: Vec<(&str, Row<'_>)> = vec![
        (
            "heartbeats/s",
            Box::new(|_, ph| ph.heartbeats as f64 / ph.secs),
        ),
        (
            "heartbeat p50 ms",
            Box::new(|p, _| q(&counts.round_trips[p], 0.5)),
        ),
        (
            "heartbeat p99 ms",
            Box::new(|p, _| q(&counts.round_trips[p], 0.99)),
        ),
        ("watch p50 ms", Box::new(|p, _| q(&latencies[p], 0.5))),
        ("watch p99 ms", Box::new(|p, _| q(&latencies[p], 0.99))),
        (
            "registry CPU %",
            Box::new(|_, ph| ph.cpu.as_secs_f64() * 100.0 / ph.secs),
        ),
        ("registry RSS MiB", Box::new(|_, ph| ph.rss)),
    ];
    if etcd {
        let of_etcd = |figure: fn(&Rates) -> f64| -> Row<'_> {
            Box::new(move |_, ph| ph.etcd.as_ref().map_or(f64::NAN, figure))
        };
        rows.extend([
            ("etcd proposals/s", of_etcd(|e| e.proposals)),
            (
                "etcd proposals/s beyond the probe's",
                Box::new(|_, ph| ph.other_proposals()),
            ),
            ("etcd lease keep-alives/s", of_etcd(|e| e.renewals)),
            ("etcd CPU %", of_etcd(|e| e.cpu)),
        ]);
    }
    println!("| median over the phases | no dashboard | dashboard open | open / none |");
    println!("|---|---:|---:|---:|");
    for (name, value) in rows {
        let (none, open) = (of(false, &*value), of(true, &*value));
        println!("| {name} | {none:.2} | {open:.2} | {:.2}x |", open / none);
    }
}
