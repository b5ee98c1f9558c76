//! The consumer that stops reading: a fresh server for a system, one connection, one endless stream of blocks
//! opened and never read; after the wait, how much the process's resident memory grew (server and client are in
//! this one process, so it is the growth of both) and how many blocks the server's producer made, read at half
//! the wait and at its end, so that a producer still making blocks shows. A stream bounded by flow control makes
//! its blocks in the first milliseconds and then none.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use benches::server_thread::{Flavor, SHUTDOWN_TIMEOUT};

use crate::workload::System;
use crate::{ours, tonic_stream};

/// What a stalled stream cost.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stalled {
    pub(crate) system: System,
    /// The size of each block.
    pub(crate) size: u32,
    /// Blocks made at half the wait.
    pub(crate) made_at_half: u64,
    /// Blocks made at the end of the wait.
    pub(crate) made: u64,
    /// Resident memory of the process once connected, before the stream opened, in bytes.
    pub(crate) rss_before: u64,
    /// Resident memory at the end of the wait, in bytes.
    pub(crate) rss_after: u64,
}

impl Stalled {
    /// Resident memory growth in bytes (negative if the process shrank).
    pub(crate) fn growth(&self) -> i64 {
        self.rss_after as i64 - self.rss_before as i64
    }

    /// Bytes of blocks the producer made.
    pub(crate) fn bytes_made(&self) -> u64 {
        self.made * u64::from(self.size)
    }
}

/// Opens one stream of `size`-byte blocks on `system` and leaves it unread for `wait`; this framework's client
/// has a window of `rpc_window` bytes.
pub(crate) fn run(
    system: System,
    size: u32,
    wait: Duration,
    rpc_window: u64,
) -> Result<Stalled, String> {
    let made = Arc::new(AtomicU64::new(0));
    let server = match system {
        System::Rpc => ours::start_server(Arc::clone(&made)),
        System::Tonic => tonic_stream::start_server(Arc::clone(&made)),
        System::Raw => return Err(String::from("raw TCP has no stream to stall")),
    }
    .map_err(|e| format!("cannot start the {} server: {e}", system.name()))?;
    let runtime = Flavor::CurrentThread
        .build()
        .map_err(|e| format!("cannot build the client's runtime: {e}"))?;
    let addr = server.addr();
    let made_by = Arc::clone(&made);
    let stalled = runtime.block_on(async move {
        let watch = |rss_before| async move {
            tokio::time::sleep(wait / 2).await;
            let made_at_half = made_by.load(Ordering::Relaxed);
            tokio::time::sleep(wait - wait / 2).await;
            Ok::<_, String>(Stalled {
                system,
                size,
                made_at_half,
                made: made_by.load(Ordering::Relaxed),
                rss_before,
                rss_after: rss()?,
            })
        };
        match system {
            System::Rpc => {
                let client = ours::Client::connect(addr, rpc_window).await?;
                let rss_before = rss()?;
                let _unread = client.forever(size).await?;
                watch(rss_before).await
            }
            _ => {
                let client = tonic_stream::Client::connect(addr).await?;
                let rss_before = rss()?;
                let _unread = client.forever(size).await?;
                watch(rss_before).await
            }
        }
    });
    runtime.shutdown_timeout(SHUTDOWN_TIMEOUT);
    drop(server);
    stalled
}

/// The process's resident memory (`VmRSS` of /proc/self/status), in bytes.
fn rss() -> Result<u64, String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("cannot read /proc/self/status: {e}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| String::from("no VmRSS line in /proc/self/status"))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::run;
    use crate::workload::{LARGE, System};

    /// Both streaming systems open a stream that nobody reads, and their producers make something.
    #[test]
    fn a_stalled_stream_opens_and_its_producer_runs() {
        for system in [System::Rpc, System::Tonic] {
            let stalled = run(
                system,
                LARGE,
                Duration::from_millis(100),
                rpc_core::stream::DEFAULT_STREAM_WINDOW,
            )
            .unwrap_or_else(|e| panic!("{system:?}: {e}"));
            assert!(stalled.made > 0, "{system:?} made nothing");
        }
    }
}
