//! What the example programs show their operators: a `--metrics ADDR` flag that serves a server's metrics at
//! `http://ADDR/metrics`, and a progress line (calls done, rate, failures) for programs that make many calls.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use rpc_core::Metrics;

/// The `--metrics` flag.
#[derive(Args, Debug, Clone)]
pub struct MetricsArgs {
    /// Serve Prometheus metrics (calls, latency, bytes) at http://ADDR/metrics.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
}

impl MetricsArgs {
    /// With `--metrics`: binds its address, serves the metrics there from now on, tells stderr where, and
    /// returns the metrics to attach to the server.
    pub async fn start(&self, program: &str) -> std::io::Result<Option<Metrics>> {
        let Some(addr) = self.metrics else {
            return Ok(None);
        };
        let listener = tokio::net::TcpListener::bind(addr).await?;
        eprintln!(
            "{program}: metrics on http://{}/metrics",
            listener.local_addr()?
        );
        let metrics = Metrics::server();
        tokio::spawn(metrics.clone().serve_http(listener, |_: &mut String| {}));
        Ok(Some(metrics))
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
