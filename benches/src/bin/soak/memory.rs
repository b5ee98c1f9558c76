//! The process's resident memory, sampled from `/proc/self/statm`, and the verdict on it: after warm-up, the
//! resident set may not rise above its value at the end of warm-up by more than [`GROWTH_LIMIT_FRACTION`] or
//! [`GROWTH_LIMIT_MIB`], whichever is larger. Allocators keep freed memory for reuse and the kernel settles
//! socket buffers in steps, so a steady process wanders by a few MiB; a leak of even a few bytes per call
//! grows without bound over millions of calls and crosses either limit within minutes.

/// Growth allowed after warm-up, as a fraction of the resident set at the end of warm-up: 10 %.
pub(crate) const GROWTH_LIMIT_FRACTION: f64 = 0.10;
/// Growth allowed after warm-up, in MiB, when that is more than [`GROWTH_LIMIT_FRACTION`]: 8 MiB.
pub(crate) const GROWTH_LIMIT_MIB: f64 = 8.0;

const MIB: f64 = 1024.0 * 1024.0;

/// The size of a memory page, from `sysconf(_SC_PAGESIZE)`; 4096 if it cannot be read.
pub(crate) fn page_size() -> u64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE) {
        Ok(Some(size)) if size > 0 => size as u64,
        _ => 4096,
    }
}

/// The resident set of this process in MiB: the second field of `/proc/self/statm` (pages) times the page size.
pub(crate) fn rss_mib(page_size: u64) -> Result<f64, String> {
    let statm = std::fs::read_to_string("/proc/self/statm")
        .map_err(|e| format!("cannot read /proc/self/statm: {e}"))?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| format!("/proc/self/statm reads {statm:?}, expected `size resident ...`"))?;
    Ok((pages * page_size) as f64 / MIB)
}

/// What the samples say about memory.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Verdict {
    /// The resident set at the end of warm-up, MiB.
    pub(crate) warm: f64,
    /// The largest resident set after warm-up, MiB.
    pub(crate) max_after: f64,
    /// The last sample, MiB.
    pub(crate) end: f64,
    /// How far above `warm` the resident set may go, MiB.
    pub(crate) allowed: f64,
}

impl Verdict {
    /// Judges `samples` (seconds since the start, MiB) of a run whose warm-up ended at `warm_up_secs`.
    /// `None` if no sample was taken at or after the end of warm-up.
    pub(crate) fn judge(samples: &[(f64, f64)], warm_up_secs: f64) -> Option<Verdict> {
        let at = samples.iter().position(|&(t, _)| t >= warm_up_secs)?;
        let warm = samples[at].1;
        let after = &samples[at..];
        let max_after = after.iter().map(|&(_, m)| m).fold(warm, f64::max);
        let end = after.last().map_or(warm, |&(_, m)| m);
        Some(Verdict {
            warm,
            max_after,
            end,
            allowed: (warm * GROWTH_LIMIT_FRACTION).max(GROWTH_LIMIT_MIB),
        })
    }

    /// Whether the resident set stayed within the allowed growth.
    pub(crate) fn holds(&self) -> bool {
        self.max_after - self.warm <= self.allowed
    }
}
