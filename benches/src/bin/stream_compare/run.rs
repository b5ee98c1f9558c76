//! One measured run: a fresh server thread for a system, a current-thread client runtime on the calling thread,
//! one connection, a warm-up stream, then the workload's items drained over its streams (each a task of the
//! client's runtime) while the wall clock and the process's CPU time run; then the client's runtime and the
//! server torn down, so that nothing of one run reaches into the next.

use std::sync::Arc;
use std::time::{Duration, Instant};

use benches::server_thread::{Flavor, SHUTDOWN_TIMEOUT, ServerThread};
use nix::sys::resource::{UsageWho, getrusage};

use crate::workload::{System, Workload};
use crate::{ours, raw, tonic_stream};

/// The items warm-up drains before measuring, as a share of the workload's: one in 20.
const WARM_UP_SHARE: u64 = 20;

/// What a consumer read of its streams.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Drained {
    pub(crate) items: u64,
    pub(crate) bytes: u64,
}

impl std::ops::AddAssign for Drained {
    fn add_assign(&mut self, other: Drained) {
        self.items += other.items;
        self.bytes += other.bytes;
    }
}

/// A client of one system over one connection; clones share it.
pub(crate) trait Source: Clone + Send + Sync + 'static {
    /// Opens a stream of `n` items of `size` bytes each and reads it to its end.
    fn drain(&self, n: u64, size: u32) -> impl Future<Output = Result<Drained, String>> + Send;
}

/// What one measured run saw.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sample {
    pub(crate) drained: Drained,
    pub(crate) elapsed: Duration,
    /// User plus system CPU time of the whole process (client and server) during the run.
    pub(crate) cpu: Duration,
}

impl Sample {
    pub(crate) fn items_per_second(&self) -> f64 {
        self.drained.items as f64 / self.elapsed.as_secs_f64()
    }

    pub(crate) fn bytes_per_second(&self) -> f64 {
        self.drained.bytes as f64 / self.elapsed.as_secs_f64()
    }

    pub(crate) fn cpu_ns_per_item(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e9 / self.drained.items.max(1) as f64
    }
}

/// Starts `system`'s server on its own thread with a current-thread runtime.
pub(crate) fn start_server(system: System) -> Result<ServerThread, String> {
    match system {
        System::Rpc => ours::start_server(Arc::default()),
        System::Tonic => tonic_stream::start_server(Arc::default()),
        System::Raw => raw::start_server(),
    }
    .map_err(|e| format!("cannot start the {} server: {e}", system.name()))
}

/// Runs `workload` on `system`, from a fresh server to its teardown; this framework's client reads its streams
/// with a window of `rpc_window` bytes.
pub(crate) fn run_one(
    system: System,
    workload: Workload,
    rpc_window: u64,
) -> Result<Sample, String> {
    let server = start_server(system)?;
    let runtime = Flavor::CurrentThread
        .build()
        .map_err(|e| format!("cannot build the client's runtime: {e}"))?;
    let addr = server.addr();
    let sample = runtime.block_on(async move {
        match system {
            System::Rpc => measure(ours::Client::connect(addr, rpc_window).await?, workload).await,
            System::Tonic => measure(tonic_stream::Client::connect(addr).await?, workload).await,
            System::Raw => measure(raw::Client::connect(addr).await?, workload).await,
        }
    });
    // The client's connection closes before the server stops.
    runtime.shutdown_timeout(SHUTDOWN_TIMEOUT);
    drop(server);
    sample
}

/// Warms up, then drains the workload's items over its streams, timed.
async fn measure<S: Source>(source: S, workload: Workload) -> Result<Sample, String> {
    let size = workload.size();
    let warm_up = (workload.items / WARM_UP_SHARE).max(workload.streams as u64);
    drain_all(&source, warm_up, workload.streams, size).await?;
    let (cpu, started) = (process_cpu(), Instant::now());
    let drained = drain_all(&source, workload.items, workload.streams, size).await?;
    let (elapsed, cpu) = (started.elapsed(), process_cpu().saturating_sub(cpu));
    let expected = workload.items * u64::from(size);
    if drained.items != workload.items || drained.bytes != expected {
        return Err(format!(
            "expected {} items of {expected} bytes in all, read {} items of {} bytes",
            workload.items, drained.items, drained.bytes
        ));
    }
    Ok(Sample {
        drained,
        elapsed,
        cpu,
    })
}

/// Drains `items` items of `size` bytes over `streams` streams open at once (an even share each, the first
/// taking the remainder), each stream a task of its own unless there is only one.
async fn drain_all<S: Source>(
    source: &S,
    items: u64,
    streams: usize,
    size: u32,
) -> Result<Drained, String> {
    if streams <= 1 {
        return source.drain(items, size).await;
    }
    let share = items / streams as u64;
    let tasks: Vec<_> = (0..streams)
        .map(|i| {
            let n = share + if i == 0 { items % streams as u64 } else { 0 };
            let source = source.clone();
            tokio::spawn(async move { source.drain(n, size).await })
        })
        .collect();
    let mut total = Drained::default();
    for task in tasks {
        total += task
            .await
            .map_err(|e| format!("a stream's task failed: {e}"))??;
    }
    Ok(total)
}

/// User plus system CPU time of the whole process so far.
fn process_cpu() -> Duration {
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(usage) => {
            let tv = |t: nix::sys::time::TimeVal| {
                Duration::from_secs(t.tv_sec().max(0) as u64)
                    + Duration::from_micros(t.tv_usec().max(0) as u64)
            };
            tv(usage.user_time()) + tv(usage.system_time())
        }
        Err(_) => Duration::ZERO,
    }
}

#[cfg(test)]
mod tests {
    use super::{System, Workload, run_one};
    use crate::workload::Case;

    /// Every system reads every item of every case it takes part in, through the path a measured run takes.
    #[test]
    fn every_system_drains_every_case() {
        for (case, items, streams) in [
            (Case::Small, 2_000, 1),
            (Case::Concurrent, 2_000, 10),
            (Case::Large, 40, 1),
        ] {
            let workload = Workload {
                case,
                items,
                streams,
            };
            for system in System::ALL.into_iter().filter(|&s| case.has(s)) {
                let sample = run_one(system, workload, rpc_core::stream::DEFAULT_STREAM_WINDOW)
                    .unwrap_or_else(|e| panic!("{system:?} {workload}: {e}"));
                assert_eq!(sample.drained.items, items, "{system:?} {workload}");
            }
        }
    }
}
