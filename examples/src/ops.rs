//! What the example programs show their operators: a `--metrics ADDR` flag that serves a server's metrics at
//! `http://ADDR/metrics` and its health at `http://ADDR/healthz`; the registration's changes, logged and
//! counted ([`Health::follow`]): registered again, superseded by another instance, or refused by the registry
//! for good (another identity owns the instance, its token is no longer granted), either of which makes the
//! health `503`; and a progress line (calls done, rate, failures) for programs that make many calls.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use rpc_core::Metrics;
use rpc_registry::client::registration::Status;

/// The `--metrics` flag.
#[derive(Args, Debug, Clone)]
pub struct MetricsArgs {
    /// Serve Prometheus metrics (calls, latency, bytes) at http://ADDR/metrics, and the health at
    /// http://ADDR/healthz (`ok`, or 503 with the reason).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
}

impl MetricsArgs {
    /// With `--metrics`: binds its address, serves the metrics and an always-healthy `/healthz` there from now
    /// on, tells stderr where, and returns the metrics to attach to the server.
    pub async fn start(&self, program: &str) -> std::io::Result<Option<Metrics>> {
        self.start_with(program, Health::default()).await
    }

    /// Like [`MetricsArgs::start`], with `health` on `/healthz` and its metrics after the server's.
    pub async fn start_with(
        &self,
        program: &str,
        health: Health,
    ) -> std::io::Result<Option<Metrics>> {
        let Some(addr) = self.metrics else {
            return Ok(None);
        };
        let listener = tokio::net::TcpListener::bind(addr).await?;
        eprintln!(
            "{program}: metrics on http://{}/metrics",
            listener.local_addr()?
        );
        let metrics = Metrics::server();
        let problem = health.clone();
        tokio::spawn(metrics.clone().serve_http_with_health(
            listener,
            move |out| health.render(out),
            move || problem.problem(),
        ));
        Ok(Some(metrics))
    }
}

/// A server's health as `/healthz` reports it, and its registration's counts. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Health {
    state: Arc<Mutex<HealthState>>,
}

#[derive(Debug, Default)]
struct HealthState {
    /// Why the server is unhealthy, if it is.
    problem: Option<String>,
    /// Whether another instance's registration took over.
    superseded: bool,
    /// Whether the registry refused the registration's heartbeats for good.
    refused: bool,
    /// Registrations with the registry: the first, and each made again.
    registered: u64,
}

impl Health {
    fn state(&self) -> std::sync::MutexGuard<'_, HealthState> {
        rpc_core::sync::lock(&self.state)
    }

    /// Why the server is unhealthy, if it is.
    pub fn problem(&self) -> Option<String> {
        self.state().problem.clone()
    }

    /// Follows a registration of `address` with the registry at `registry` from its first lease on: says on
    /// stderr, after `program: `, when it registered again (the registry had lost its lease) and, loudly, when
    /// another instance superseded it or the registry refused it for good (its heartbeats stopped then); counts
    /// each in the metrics, and makes `/healthz` answer `503` once superseded or refused. Runs until the
    /// registration is dropped.
    pub fn follow(
        &self,
        program: &'static str,
        registry: &str,
        address: &str,
        mut status: tokio::sync::watch::Receiver<Status>,
    ) -> tokio::task::JoinHandle<()> {
        let (health, registry, address) = (self.clone(), registry.to_owned(), address.to_owned());
        let mut last = status.borrow_and_update().clone();
        health.state().registered = 1;
        tokio::spawn(async move {
            while status.changed().await.is_ok() {
                let now = status.borrow_and_update().clone();
                match (&last, &now) {
                    (Status::Active(old), Status::Active(new)) if old.id != new.id => {
                        health.state().registered += 1;
                        eprintln!(
                            "{program}: registered {address} again with {registry}: lease {} (incarnation {}); \
                             the registry had lost lease {} (it expired, or the registry restarted)",
                            new.id, new.incarnation, old.id
                        );
                    }
                    (_, Status::Superseded(lease)) => {
                        let problem = format!(
                            "superseded: a newer registration of {address} with {registry} took over lease {} \
                             (incarnation {}); this instance gets no calls through the registry and no longer \
                             heartbeats: restart it to register again",
                            lease.id, lease.incarnation
                        );
                        // The state first: whoever reads the warning finds /healthz saying it already.
                        {
                            let mut state = health.state();
                            state.problem = Some(problem.clone());
                            state.superseded = true;
                        }
                        eprintln!("{program}: WARNING: {problem}");
                    }
                    (_, Status::Refused(lease, error)) => {
                        // The registry's words, escaped and bounded: they come from a peer.
                        let why = rpc_registry::cli::escape(
                            &error.to_string(),
                            rpc_registry::cli::MAX_LINE_CHARS,
                        )
                        .into_owned();
                        let problem = format!(
                            "refused: the registry at {registry} refused lease {} (incarnation {}) of {address} for \
                             good: {why}; this instance no longer heartbeats, and the registry drops it at its \
                             TTL: fix its credentials, then restart it",
                            lease.id, lease.incarnation
                        );
                        {
                            let mut state = health.state();
                            state.problem = Some(problem.clone());
                            state.refused = true;
                        }
                        eprintln!("{program}: WARNING: {problem}");
                    }
                    _ => {}
                }
                last = now;
            }
        })
    }

    /// The registration's metrics, in the Prometheus text format, written by prometheus-client (as the
    /// framework's are).
    fn render(&self, out: &mut String) {
        use rpc_core::metrics::prometheus_client::encoding::prometheus_text;
        use rpc_core::metrics::prometheus_client::metrics::{counter::Counter, gauge::Gauge};
        use rpc_core::metrics::prometheus_client::registry::Registry;

        let state = self.state();
        let gauge = |value: bool| {
            let gauge = Gauge::<i64>::default();
            gauge.set(i64::from(value));
            gauge
        };
        let registered = Counter::<u64>::default();
        registered.inc_by(state.registered);
        let mut registry = Registry::default();
        registry.register(
            "rpc_registration_superseded",
            "1 once another instance's registration of this address took over: this instance gets no calls \
             through the registry.",
            gauge(state.superseded),
        );
        registry.register(
            "rpc_registration_refused",
            "1 once the registry refused this instance's registration for good (another identity owns it, or \
             its token is no longer granted): it no longer heartbeats.",
            gauge(state.refused),
        );
        registry.register(
            "rpc_registration_registered",
            "Registrations with the registry: the first, and each made again after the registry lost the \
             lease.",
            registered,
        );
        // Writing to a `String` does not fail.
        let _ = prometheus_text::encode(out, &registry);
    }
}

/// When to show progress.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum ProgressMode {
    /// When stderr is a terminal: one line, redrawn in place.
    #[default]
    Auto,
    /// Always; a line per update when stderr is not a terminal (a log).
    Always,
    /// Never.
    Never,
}

/// Counts of a run that a [`Progress`] shows.
#[derive(Debug, Default)]
pub struct Counts {
    /// Calls that succeeded.
    pub ok: AtomicU64,
    /// Calls that failed.
    pub failed: AtomicU64,
}

/// A progress line on stderr, redrawn every `every`; [`Progress::finish`] ends it with the run's totals.
#[derive(Debug)]
pub struct Progress {
    shown: Option<Shown>,
}

#[derive(Debug)]
struct Shown {
    task: tokio::task::JoinHandle<()>,
    counts: Arc<Counts>,
    total: u64,
    start: Instant,
    terminal: bool,
}

impl Progress {
    /// Shows the progress of `total` calls counted in `counts`, as `mode` says.
    pub fn start(mode: ProgressMode, total: u64, counts: Arc<Counts>, every: Duration) -> Progress {
        let terminal = std::io::stderr().is_terminal();
        let show = match mode {
            ProgressMode::Auto => terminal,
            ProgressMode::Always => true,
            ProgressMode::Never => false,
        };
        if !show {
            return Progress { shown: None };
        }
        let start = Instant::now();
        let task = {
            let counts = Arc::clone(&counts);
            tokio::spawn(async move {
                let mut last = (start, 0u64);
                let mut ticks =
                    tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                loop {
                    ticks.tick().await;
                    let now = Instant::now();
                    let (done, failed) = counts.read();
                    let rate = per_second(done - last.1, now.duration_since(last.0));
                    last = (now, done);
                    show_line(
                        terminal,
                        &line(done, total, failed, rate, now.duration_since(start)),
                    );
                }
            })
        };
        Progress {
            shown: Some(Shown {
                task,
                counts,
                total,
                start,
                terminal,
            }),
        }
    }

    /// Stops updating, and shows the final line: the calls done and their rate over the whole run.
    pub fn finish(mut self) {
        if let Some(shown) = self.shown.take() {
            shown.task.abort();
            let elapsed = shown.start.elapsed();
            let (done, failed) = shown.counts.read();
            let line = line(
                done,
                shown.total,
                failed,
                per_second(done, elapsed),
                elapsed,
            );
            show_line(shown.terminal, &line);
            if shown.terminal {
                eprintln!();
            }
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(shown) = self.shown.take() {
            shown.task.abort();
        }
    }
}

impl Counts {
    /// Calls done (succeeded or failed), and those failed.
    fn read(&self) -> (u64, u64) {
        let failed = self.failed.load(Ordering::Relaxed);
        (self.ok.load(Ordering::Relaxed) + failed, failed)
    }
}

fn per_second(n: u64, over: Duration) -> f64 {
    n as f64 / over.as_secs_f64().max(1e-9)
}

/// Redrawn in place on a terminal; a line of its own in a log.
fn show_line(terminal: bool, line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = if terminal {
        write!(err, "\r\x1b[2K{line}")
    } else {
        writeln!(err, "{line}")
    };
    let _ = err.flush();
}

/// `calls 4,200/10,000 (42%)  1,234 calls/s  0 failed  3.4 s`.
pub fn line(done: u64, total: u64, failed: u64, rate: f64, elapsed: Duration) -> String {
    let percent = if total == 0 {
        100.0
    } else {
        done as f64 * 100.0 / total as f64
    };
    format!(
        "calls {}/{} ({percent:.0}%)  {} calls/s  {} failed  {:.1} s",
        grouped(done),
        grouped(total),
        grouped(rate.round() as u64),
        grouped(failed),
        elapsed.as_secs_f64()
    )
}

/// `n` with its thousands separated by commas.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_shows_calls_done_rate_and_failures() {
        let line = line(4_200, 10_000, 3, 1_234.4, Duration::from_millis(3_400));
        assert_eq!(
            line,
            "calls 4,200/10,000 (42%)  1,234 calls/s  3 failed  3.4 s"
        );
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1_000), "1,000");
        assert_eq!(grouped(12_345_678), "12,345,678");
    }
}
