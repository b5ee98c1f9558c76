//! [`LoadMeter`]: what a server's calls came to since its last report (gRPC's ORCA idea): calls, failures, calls
//! under way, and latency quantiles from a histogram of powers of two. A registration sends
//! [`LoadMeter::take`] with each heartbeat (`rpc_registry::RegistrationConfig::load`); the registry keeps a
//! short window of them per instance and shows it.

use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use rpc_codec::Status;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use super::super::request::Request;
use super::super::response::Response;
use super::BoxError;

/// Latency buckets: bucket `i` holds calls of under `2^i` microseconds (the last, every longer one).
const BUCKETS: usize = 40;

/// A server's load over a window: what [`LoadMeter::take`] returns.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadReport {
    /// Calls answered in the window.
    pub calls: u64,
    /// Of them, those that failed (a status other than `Ok`; the method's own errors are answers).
    pub errors: u64,
    /// Calls under way when the report was taken.
    pub in_flight: u64,
    /// The median latency, in microseconds (the upper bound of its power-of-two bucket).
    pub p50_us: u64,
    /// The 99th percentile latency, in microseconds (likewise).
    pub p99_us: u64,
    /// The window's length, in milliseconds.
    pub window_ms: u64,
}

/// The load meter: a layer whose clones share the counts. `Default` starts counting at once.
///
/// ```
/// use rpc_core::server::layer::LoadMeter;
/// let meter = LoadMeter::new();
/// let server = rpc_core::Server::builder().layer(meter.clone());
/// # let _ = server;
/// assert_eq!(meter.take().calls, 0);
/// ```
#[derive(Clone, Debug)]
pub struct LoadMeter {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    calls: AtomicU64,
    errors: AtomicU64,
    in_flight: AtomicI64,
    buckets: [AtomicU64; BUCKETS],
    since: Mutex<Instant>,
}

impl Default for LoadMeter {
    fn default() -> LoadMeter {
        LoadMeter {
            shared: Arc::new(Shared {
                calls: AtomicU64::new(0),
                errors: AtomicU64::new(0),
                in_flight: AtomicI64::new(0),
                buckets: std::array::from_fn(|_| AtomicU64::new(0)),
                since: Mutex::new(Instant::now()),
            }),
        }
    }
}

impl LoadMeter {
    /// A meter counting from now.
    pub fn new() -> LoadMeter {
        LoadMeter::default()
    }

    /// The load since the last `take` (or since the meter was made), and a new window from now.
    pub fn take(&self) -> LoadReport {
        let shared = &*self.shared;
        let now = Instant::now();
        let since = std::mem::replace(&mut *crate::sync::lock(&shared.since), now);
        let counts: Vec<u64> = shared
            .buckets
            .iter()
            .map(|b| b.swap(0, Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        let quantile = |q: f64| {
            let wanted = ((total as f64) * q).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (i, count) in counts.iter().enumerate() {
                seen += count;
                if seen >= wanted {
                    return 1u64 << i;
                }
            }
            0
        };
        LoadReport {
            calls: shared.calls.swap(0, Ordering::Relaxed),
            errors: shared.errors.swap(0, Ordering::Relaxed),
            in_flight: u64::try_from(shared.in_flight.load(Ordering::Relaxed)).unwrap_or(0),
            p50_us: if total == 0 { 0 } else { quantile(0.5) },
            p99_us: if total == 0 { 0 } else { quantile(0.99) },
            window_ms: u64::try_from(now.saturating_duration_since(since).as_millis())
                .unwrap_or(u64::MAX),
        }
    }

    fn record(&self, response: &Response, started: Instant) {
        let shared = &*self.shared;
        shared.calls.fetch_add(1, Ordering::Relaxed);
        if response.status() != Status::Ok {
            shared.errors.fetch_add(1, Ordering::Relaxed);
        }
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let bucket = (u64::BITS - micros.leading_zeros()) as usize;
        shared.buckets[bucket.min(BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
    }
}

impl<S> Layer<S> for LoadMeter {
    type Service = LoadMetered<S>;

    fn layer(&self, inner: S) -> LoadMetered<S> {
        LoadMetered {
            inner,
            meter: self.clone(),
        }
    }
}

/// The service of [`LoadMeter`].
#[derive(Clone, Debug)]
pub struct LoadMetered<S> {
    inner: S,
    meter: LoadMeter,
}

impl<S> Service<Request> for LoadMetered<S>
where
    S: Service<Request, Response = Response>,
    S::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = BoxError;
    type Future = Measured<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        self.meter.shared.in_flight.fetch_add(1, Ordering::Relaxed);
        Measured {
            future: self.inner.call(request),
            under_way: UnderWay(self.meter.clone()),
            started: Instant::now(),
        }
    }
}

/// A call counted under way until it is answered or dropped.
#[derive(Debug)]
struct UnderWay(LoadMeter);

impl Drop for UnderWay {
    fn drop(&mut self) {
        self.0.shared.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

pin_project_lite::pin_project! {
    /// A call's answer to come, recorded when it is ready.
    #[derive(Debug)]
    pub struct Measured<F> {
        #[pin]
        future: F,
        under_way: UnderWay,
        started: Instant,
    }
}

impl<F, E> Future for Measured<F>
where
    F: Future<Output = Result<Response, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let ready = std::task::ready!(this.future.poll(cx)).map_err(Into::into);
        if let Ok(response) = &ready {
            this.under_way.0.record(response, *this.started);
        }
        Poll::Ready(ready)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_report_counts_the_window_and_starts_the_next() {
        let meter = LoadMeter::new();
        for (i, ms) in [1u64, 1, 1, 1, 1, 1, 1, 1, 1, 100].iter().enumerate() {
            let started = Instant::now();
            tokio::time::advance(std::time::Duration::from_millis(*ms)).await;
            let response = if i == 9 {
                Response::error(Status::Internal, "boom")
            } else {
                Response::value_bytes(Vec::new())
            };
            meter.record(&response, started);
        }
        let report = meter.take();
        assert_eq!((report.calls, report.errors), (10, 1));
        assert_eq!(report.p50_us, 1024, "1 ms falls under 2^10 us");
        assert_eq!(report.p99_us, 131_072, "100 ms under 2^17 us");
        assert_eq!(report.window_ms, 109);
        let next = meter.take();
        assert_eq!((next.calls, next.p99_us, next.window_ms), (0, 0, 0));
    }
}
