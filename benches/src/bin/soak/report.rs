//! What a soak run prints: one line per memory sample while it runs, and the summary at the end (memory at the
//! end of warm-up, its peak after, at the end, the growth, the calls by kind, and the verdict).

use std::sync::atomic::Ordering;

use crate::load::Counts;
use crate::memory::{GROWTH_LIMIT_FRACTION, GROWTH_LIMIT_MIB, Verdict};

/// One memory sample.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sample {
    /// Seconds since the load started.
    pub(crate) secs: f64,
    /// Resident set, MiB.
    pub(crate) rss_mib: f64,
    /// Open file descriptors (sockets included): a leaked connection shows here first.
    pub(crate) fds: usize,
    /// Calls finished so far.
    pub(crate) calls: u64,
}

/// The header of the sample lines.
pub(crate) fn header() {
    println!(
        "{:>8}  {:>8}  {:>5}  {:>12}  {:>10}",
        "elapsed", "RSS MiB", "fds", "calls", "calls/s"
    );
}

/// Prints `sample`, with the call rate since `previous`.
pub(crate) fn line(sample: &Sample, previous: Option<&Sample>) {
    let (secs, calls) = previous.map_or((0.0, 0), |p| (p.secs, p.calls));
    let rate = (sample.calls - calls) as f64 / (sample.secs - secs).max(1e-9);
    println!(
        "{:>7.1}s  {:>8.1}  {:>5}  {:>12}  {:>10.0}",
        sample.secs, sample.rss_mib, sample.fds, sample.calls, rate
    );
}

/// Prints the summary; returns whether the run passed: memory within bounds and no unexpected outcome.
/// `after` was taken once the load stopped and its connections closed; it is shown, not judged.
pub(crate) fn summary(
    samples: &[Sample],
    after: &Sample,
    warm_up_secs: f64,
    counts: &Counts,
) -> bool {
    let points: Vec<(f64, f64)> = samples.iter().map(|s| (s.secs, s.rss_mib)).collect();
    let secs = samples.last().map_or(0.0, |s| s.secs);
    println!();
    println!("summary over {secs:.1} s (warm-up: the first {warm_up_secs:.1} s)");
    let verdict = Verdict::judge(&points, warm_up_secs);
    if let Some(v) = verdict {
        let growth = v.end - v.warm;
        println!("  RSS at the end of warm-up:   {:8.1} MiB", v.warm);
        println!(
            "  max RSS after warm-up:       {:8.1} MiB ({:+.1} MiB)",
            v.max_after,
            v.max_after - v.warm
        );
        println!("  RSS at the end:              {:8.1} MiB", v.end);
        println!(
            "  growth after warm-up:        {:+8.1} MiB ({:+.1} %); allowed {:.1} MiB (the larger of {:.0} % and {:.0} MiB)",
            growth,
            100.0 * growth / v.warm.max(1e-9),
            v.allowed,
            100.0 * GROWTH_LIMIT_FRACTION,
            GROWTH_LIMIT_MIB
        );
    } else {
        println!("  no memory sample after warm-up: the run was too short to judge");
    }
    println!(
        "  after the load stopped:      {:8.1} MiB, {} open fds",
        after.rss_mib, after.fds
    );
    if let (Some(first), Some(last)) = (samples.first(), samples.last()) {
        println!(
            "  open fds under load: {} at the first sample, {} at the end",
            first.fds, last.fds
        );
    }
    let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let total = counts.calls();
    println!(
        "  calls: {total} in all ({:.0}/s)",
        total as f64 / secs.max(1e-9)
    );
    let row = |label: &str, n: u64| println!("    {label:<38}{n:>12}");
    row("echo:", get(&counts.echo));
    row("application error:", get(&counts.refused));
    row("dropped before the answer:", get(&counts.dropped));
    row(
        "answered before it could be dropped:",
        get(&counts.answered_before_drop),
    );
    row("deadline exceeded (handler asleep):", get(&counts.late));
    row("echo on churned connections:", get(&counts.churn_calls));
    row("churned connections:", get(&counts.churn_connections));
    let unexpected = get(&counts.unexpected);
    row("unexpected outcome:", unexpected);
    if let Ok(kept) = counts.first_unexpected.lock() {
        for what in kept.iter() {
            println!("      {what}");
        }
    }
    let memory_ok = verdict.is_some_and(|v| v.holds());
    let passed = memory_ok && unexpected == 0;
    let why = match (verdict, memory_ok, unexpected) {
        (None, _, _) => "no sample after warm-up".to_owned(),
        (Some(v), false, _) => format!(
            "RSS rose {:.1} MiB above its warm-up value, over the {:.1} MiB allowed",
            v.max_after - v.warm,
            v.allowed
        ),
        (_, true, 0) => {
            "RSS stayed within bounds after warm-up; every call had the outcome of its kind"
                .to_owned()
        }
        (_, true, n) => format!("{n} calls had an outcome their kind should never have"),
    };
    println!("verdict: {} ({why})", if passed { "PASS" } else { "FAIL" });
    passed
}
