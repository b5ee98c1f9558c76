//! Where the benchmark's threads run, as `--pin CLIENT,SERVER` asks: on current-thread runs the client (the main
//! thread) is pinned to CPU CLIENT and each server thread to CPU SERVER; multi-thread runs are never pinned (their
//! runtimes' threads go where the kernel puts them, as a user's would), so before one the main thread gets back
//! the CPUs the process started with, and the threads spawned from it inherit them.

use benches::server_thread::{Flavor, pin_current_thread, pin_servers_to};
use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::unistd::Pid;

/// The CPUs of `--pin`, and those the process may run on without it.
#[derive(Debug)]
pub(crate) struct Pinning {
    client: usize,
    server: usize,
    unpinned: CpuSet,
}

impl Pinning {
    /// Reads `--pin` (`CLIENT,SERVER` CPU numbers, or `none`) and, unless `none`, remembers the CPUs the main
    /// thread may run on now and has every current-thread server thread pinned to SERVER.
    pub(crate) fn from_flag(pin: &str) -> Result<Option<Pinning>, String> {
        if pin == "none" {
            return Ok(None);
        }
        let (client, server) = pin
            .split_once(',')
            .and_then(|(c, s)| Some((c.parse().ok()?, s.parse().ok()?)))
            .ok_or_else(|| {
                format!("--pin `{pin}`: expected CLIENT,SERVER CPU numbers like 0,1, or none")
            })?;
        let unpinned = sched_getaffinity(Pid::from_raw(0))
            .map_err(|e| format!("cannot read the CPUs this process may run on: {e}"))?;
        pin_servers_to(Some(server));
        Ok(Some(Pinning {
            client,
            server,
            unpinned,
        }))
    }

    /// The one-line note printed when multi-thread runs are asked for with `--pin`.
    pub(crate) fn multi_note(&self) -> String {
        format!(
            "--pin {},{} applies to current-thread runs only; multi-thread runs leave placement to the kernel",
            self.client, self.server
        )
    }

    /// Places the main thread for a run on `runtime`: pinned to CLIENT for a current-thread run, back on every CPU
    /// it started with for a multi-thread one (before the run's server thread and runtimes are spawned from it).
    pub(crate) fn enter(&self, runtime: Flavor) -> Result<(), String> {
        match runtime {
            Flavor::CurrentThread => pin_current_thread(self.client)
                .map_err(|e| format!("cannot pin the client to CPU {}: {e}", self.client)),
            Flavor::MultiThread => sched_setaffinity(Pid::from_raw(0), &self.unpinned)
                .map_err(|e| format!("cannot unpin the client: {e}")),
        }
    }
}
