//! The closed loop: `concurrency` callers, spread over the clients (one per connection), each making one call
//! after another with the same payload. A warm-up first, then a measured window in which every completed call's
//! latency goes into its caller's histogram (merged at the end); CPU time (getrusage, the whole process: client
//! and server threads) is read at both ends of the window. Callers are ordinary spawned tasks of the client's
//! runtime, as a user's would be: on a current-thread runtime they share the driver's thread, on a multi-thread
//! one they run on its workers while the driver keeps time on the thread that blocks on it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use nix::sys::resource::{UsageWho, getrusage};

/// A client of one system, over one connection; clones share that connection.
pub(crate) trait EchoCall: Clone + Send + Sync + 'static {
    /// Sends `payload` and waits for it to come back; returns how many bytes came back.
    fn echo(&self, payload: &Bytes) -> impl Future<Output = Result<usize, String>> + Send;
}

/// What one measured window saw.
#[derive(Clone, Debug)]
pub(crate) struct Sample {
    /// Calls completed in the window.
    pub(crate) calls: u64,
    /// Calls that failed (any error, or an answer of the wrong length), in the window or outside it.
    pub(crate) failed: u64,
    /// The first failure, to show.
    pub(crate) first_error: Option<String>,
    /// The window's length.
    pub(crate) elapsed: Duration,
    /// User plus system CPU time of the process in the window.
    pub(crate) cpu: Duration,
    /// Latencies in nanoseconds.
    pub(crate) latency: Histogram<u64>,
}

impl Sample {
    pub(crate) fn per_second(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }

    pub(crate) fn cpu_us_per_call(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.calls.max(1) as f64
    }

    /// The latency at quantile `q`, in microseconds.
    pub(crate) fn latency_us(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1e3
    }
}

/// Where the run is; every caller reads it after each call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    WarmUp,
    Measure,
    Stop,
}

/// The phase, shared by the driver and every caller.
#[derive(Debug)]
pub(crate) struct Control(AtomicU8);

impl Control {
    pub(crate) fn new() -> Arc<Control> {
        Arc::new(Control(AtomicU8::new(Phase::WarmUp as u8)))
    }

    pub(crate) fn phase(&self) -> Phase {
        match self.0.load(Ordering::Relaxed) {
            0 => Phase::WarmUp,
            1 => Phase::Measure,
            _ => Phase::Stop,
        }
    }

    fn set(&self, phase: Phase) {
        self.0.store(phase as u8, Ordering::Relaxed);
    }

    /// Runs the warm-up and the measured window (the callers run meanwhile), then tells them to stop. Returns
    /// the window's length and the process's CPU time in it.
    pub(crate) async fn time_window(
        &self,
        warm_up: Duration,
        measure: Duration,
    ) -> (Duration, Duration) {
        tokio::time::sleep(warm_up).await;
        let cpu0 = process_cpu();
        let t0 = Instant::now();
        self.set(Phase::Measure);
        tokio::time::sleep(measure).await;
        self.set(Phase::Stop);
        let elapsed = t0.elapsed();
        let cpu = process_cpu().saturating_sub(cpu0);
        (elapsed, cpu)
    }
}

/// What one caller (or one connection of the floor) saw.
pub(crate) struct Tally {
    calls: u64,
    failed: u64,
    first_error: Option<String>,
    latency: Histogram<u64>,
}

impl Tally {
    pub(crate) fn new() -> Tally {
        Tally {
            calls: 0,
            failed: 0,
            first_error: None,
            // 1 ns to 60 s, three significant digits.
            latency: Histogram::new_with_bounds(1, 60_000_000_000, 3)
                .expect("valid histogram bounds"),
        }
    }

    /// Notes a call that completed after `took`; it counts if the window was open.
    pub(crate) fn ok(&mut self, phase: Phase, took: Duration) {
        if phase == Phase::Measure {
            self.calls += 1;
            let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX).max(1);
            self.latency.saturating_record(ns);
        }
    }

    pub(crate) fn fail(&mut self, why: String) {
        self.failed += 1;
        self.first_error.get_or_insert(why);
    }

    pub(crate) fn merge(&mut self, other: Tally) {
        self.calls += other.calls;
        self.failed += other.failed;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
    }

    pub(crate) fn into_sample(self, elapsed: Duration, cpu: Duration) -> Sample {
        Sample {
            calls: self.calls,
            failed: self.failed,
            first_error: self.first_error,
            elapsed,
            cpu,
            latency: self.latency,
        }
    }
}

/// Waits for the tasks that each return a tally (at most 5 s after the window, so that a hung system does not
/// hang the run) and adds them up.
pub(crate) async fn gather(tasks: Vec<tokio::task::JoinHandle<Tally>>) -> Tally {
    let mut total = Tally::new();
    let grace = tokio::time::sleep(Duration::from_secs(5));
    tokio::pin!(grace);
    for task in tasks {
        tokio::select! {
            joined = task => match joined {
                Ok(tally) => total.merge(tally),
                Err(e) => total.fail(format!("a caller failed: {e}")),
            },
            () = &mut grace => {
                total.fail(String::from("calls still in flight 5 s after the window closed"));
                break;
            }
        }
    }
    total
}

/// User plus system CPU time of the whole process so far.
pub(crate) fn process_cpu() -> Duration {
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

/// Drives `concurrency` callers over `clients` (caller `i` uses client `i % clients.len()`) for `warm_up`, then
/// measures for `measure`.
pub(crate) async fn closed_loop<C: EchoCall>(
    clients: &[C],
    concurrency: usize,
    payload: Bytes,
    warm_up: Duration,
    measure: Duration,
) -> Sample {
    let control = Control::new();
    let mut callers = Vec::with_capacity(concurrency);
    for i in 0..concurrency {
        let client = clients[i % clients.len()].clone();
        let control = Arc::clone(&control);
        let payload = payload.clone();
        callers.push(tokio::spawn(async move {
            let mut tally = Tally::new();
            let expected = payload.len();
            // A call counts if it completes inside the window.
            while control.phase() != Phase::Stop {
                let start = Instant::now();
                match client.echo(&payload).await {
                    Ok(n) if n == expected => tally.ok(control.phase(), start.elapsed()),
                    Ok(n) => tally.fail(format!("echo returned {n} bytes, sent {expected}")),
                    Err(e) => {
                        tally.fail(e);
                        // A failing system must not spin the loop: pause before the next call.
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            }
            tally
        }));
    }
    let (elapsed, cpu) = control.time_window(warm_up, measure).await;
    gather(callers).await.into_sample(elapsed, cpu)
}
