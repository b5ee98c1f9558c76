//! One run: a fresh server thread for a system on the workload's runtime flavour, the client's runtime of the
//! same flavour on the calling thread, the workload driven over new connections, then both torn down (the
//! client's runtime first, so that its connections close before the server stops), so that nothing of one run
//! reaches into the next.

use std::net::SocketAddr;
use std::time::Duration;

use benches::server_thread::SHUTDOWN_TIMEOUT;
use bytes::Bytes;

use crate::driver::{self, EchoCall, Sample};
use crate::report::{System, Workload};
use crate::{http_json, ours, raw, tarpc_echo, tonic_echo};

/// Runs `workload` on `system`: `warm_up`, then `measure` measured.
pub(crate) fn run_one(
    system: System,
    workload: Workload,
    warm_up: Duration,
    measure: Duration,
) -> Result<Sample, String> {
    let flavor = workload.runtime;
    let server = match system {
        System::Raw => raw::start_server(flavor),
        System::Rpc | System::RpcBalanced => ours::start_server(flavor, false),
        System::RpcMetrics => ours::start_server(flavor, true),
        System::Tarpc | System::TarpcVec => tarpc_echo::start_server(flavor),
        System::Tonic => tonic_echo::start_server(flavor),
        System::RpcHttpJson => http_json::start_server(flavor),
    }
    .map_err(|e| format!("cannot start the server: {e}"))?;
    let runtime = flavor
        .build()
        .map_err(|e| format!("cannot build the client's {} runtime: {e}", flavor.name()))?;
    let job = Job {
        addr: server.addr(),
        workload,
        payload: Bytes::from(vec![0xa5; workload.payload]),
        warm_up,
        measure,
    };
    let sample = runtime.block_on(async move {
        match system {
            System::Raw => Ok(job.raw().await),
            System::Rpc => job.drive(ours::Client::connect).await,
            System::RpcMetrics => job.drive(ours::Client::connect_with_metrics).await,
            System::RpcBalanced => job.drive(ours::Client::balanced).await,
            System::Tarpc => job.drive(tarpc_echo::Client::connect).await,
            System::TarpcVec => job.drive(tarpc_echo::VecClient::connect).await,
            System::Tonic => job.drive(tonic_echo::Client::connect).await,
            System::RpcHttpJson => job.drive(http_json::Client::connect).await,
        }
    });
    // The client's connections close before the server stops.
    runtime.shutdown_timeout(SHUTDOWN_TIMEOUT);
    drop(server);
    sample
}

/// What the client of one run does: `workload` against the server at `addr`.
struct Job {
    addr: SocketAddr,
    workload: Workload,
    payload: Bytes,
    warm_up: Duration,
    measure: Duration,
}

impl Job {
    /// Opens the workload's connections with `connect`, then runs the closed loop over them.
    async fn drive<C, F>(self, connect: fn(SocketAddr) -> F) -> Result<Sample, String>
    where
        C: EchoCall,
        F: Future<Output = Result<C, String>>,
    {
        let mut clients = Vec::with_capacity(self.workload.connections);
        for _ in 0..self.workload.connections {
            clients.push(connect(self.addr).await?);
        }
        Ok(driver::closed_loop(
            &clients,
            self.workload.concurrency,
            self.payload,
            self.warm_up,
            self.measure,
        )
        .await)
    }

    /// The floor's own pipelined closed loop.
    async fn raw(self) -> Sample {
        raw::closed_loop(
            self.addr,
            self.workload.concurrency,
            self.workload.connections,
            self.payload,
            self.warm_up,
            self.measure,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use benches::server_thread::Flavor;

    use super::{System, Workload, run_one};

    /// Every system answers the workload `compare` measures, on both runtime flavours and at every default
    /// payload size, through the same path a run takes: 16 echoes in flight on one connection, each checked for
    /// its length (a wrong one counts as failed).
    #[test]
    fn every_system_echoes_through_the_measured_path() {
        for runtime in Flavor::ALL {
            for payload in [32, 1024, 65536] {
                let workload = Workload {
                    runtime,
                    payload,
                    concurrency: 16,
                    connections: 1,
                };
                for system in System::ALL {
                    let sample = run_one(
                        system,
                        workload,
                        Duration::from_millis(10),
                        Duration::from_millis(100),
                    )
                    .unwrap_or_else(|e| panic!("{system:?} {workload}: {e}"));
                    assert!(sample.calls > 0, "{system:?} {workload}: no call finished");
                    assert_eq!(
                        sample.failed, 0,
                        "{system:?} {workload}: {:?}",
                        sample.first_error
                    );
                }
            }
        }
    }
}
