//! [`AdaptiveLimit`]: a limit on the calls under way that finds the server's knee by itself, in the gradient
//! style of Netflix's concurrency-limits (Gradient2): each window of calls compares their mean latency (short
//! term) with a long-term average, and the limit follows `limit × gradient + √limit`, the gradient
//! `tolerance × long / short` bounded to `0.5..=1`, smoothed and clamped to `min_limit..=max_limit`. Latency
//! that climbs with load brings the limit down; latency back to normal lets it grow again (by the `√limit`
//! allowance, while the calls under way fill at least half of it). A call above the limit is shed at once
//! with `ResourceExhausted` and a retry-after, before its handler sees it.
//!
//! One limit per layer, over every call through it from every connection: one for the server, or one per
//! method or service put on with [`super::Only`] (methods of very different latencies are best limited apart,
//! since a change in their mix looks like a change in latency).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, TryLockError};
use std::task::{Context, Poll};
use std::time::Duration;

use rpc_codec::Status;
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use super::super::request::Request;
use super::super::response::Response;
use super::BoxError;
use super::only::Either;

/// The limit before any window has been measured, unless configured: Gradient2's.
pub const DEFAULT_INITIAL_LIMIT: usize = 20;
/// The lowest the limit goes, unless configured: with the `√limit` allowance and the gradient's floor of 0.5,
/// the limit settles near 4 under any overload, so a lower floor would seldom be reached.
pub const DEFAULT_MIN_LIMIT: usize = 4;
/// The highest the limit goes, unless configured: past it, a server's other limits (connections, calls in
/// flight per connection) are the ones that hold.
pub const DEFAULT_MAX_LIMIT: usize = 1000;
/// The shortest window whose calls are averaged into one latency (a window also needs
/// [`DEFAULT_MIN_WINDOW_SAMPLES`] calls), unless configured: ten updates a second, as Envoy's adaptive
/// concurrency filter makes by default.
pub const DEFAULT_WINDOW: Duration = Duration::from_millis(100);
/// The fewest calls a window averages, unless configured: fewer say little about the server.
pub const DEFAULT_MIN_WINDOW_SAMPLES: usize = 10;
/// The weight of each new limit against the last, unless configured: Gradient2's.
pub const DEFAULT_SMOOTHING: f64 = 0.2;
/// How far above the long-term latency the short-term one may go before the limit comes down, unless
/// configured (1.5: half as slow again): Gradient2's.
pub const DEFAULT_TOLERANCE: f64 = 1.5;
/// The windows the long-term latency averages over, unless configured: after the first
/// [`WARMUP_WINDOWS`] (a plain average), an exponential average with weight `2 / (long_windows + 1)` per
/// window. Gradient2's 600: a minute of 100 ms windows before a new normal of latency is the long-term one.
pub const DEFAULT_LONG_WINDOWS: u32 = 600;
/// The first windows, whose latencies the long-term latency averages plainly (Gradient2's warm-up).
pub const WARMUP_WINDOWS: u32 = 10;
/// The least the gradient is: a window can at most halve the limit (before smoothing).
pub const MIN_GRADIENT: f64 = 0.5;
/// Windows between two probes of the server's own latency, unless configured: 300 (30 s of 100 ms windows;
/// Envoy's adaptive concurrency measures its minimum latency every 60 s).
pub const DEFAULT_PROBE_EVERY: u32 = 300;
/// How far above the probed latency a window's may go before the limit comes down, unless configured: 1.25,
/// Envoy's `min_rtt_buffer` of 25%.
pub const DEFAULT_PROBE_TOLERANCE: f64 = 1.25;
/// The wait a shed call asks its caller for, unless configured: as a concurrency limit's.
pub const DEFAULT_ADAPTIVE_RETRY_AFTER: Duration = Duration::from_millis(50);
/// A change of the limit by this fraction of the last one logged is logged at `info` (others at `trace`).
const LOGGED_CHANGE: f64 = 0.25;
/// The long-term latency this many times the short-term one comes down faster (the load went away).
const STALE_RATIO: f64 = 2.0;
/// How much faster: by this factor per window.
const STALE_DECAY: f64 = 0.95;

/// The settings of an [`AdaptiveLimit`].
#[derive(Clone, Debug, PartialEq)]
pub struct AdaptiveConfig {
    /// The limit at first. Default: [`DEFAULT_INITIAL_LIMIT`].
    pub initial_limit: usize,
    /// The lowest limit (at least 1, at most `max_limit`). Default: [`DEFAULT_MIN_LIMIT`].
    pub min_limit: usize,
    /// The highest limit (at least 1). Default: [`DEFAULT_MAX_LIMIT`].
    pub max_limit: usize,
    /// The shortest window. Default: [`DEFAULT_WINDOW`].
    pub window: Duration,
    /// The fewest calls a window averages. Default: [`DEFAULT_MIN_WINDOW_SAMPLES`].
    pub min_window_samples: usize,
    /// The weight of each new limit, `0..=1` (another value counts as the default). Default:
    /// [`DEFAULT_SMOOTHING`].
    pub smoothing: f64,
    /// How many times the long-term latency the short-term one may be before the limit comes down (a positive
    /// number; another value counts as the default). Default: [`DEFAULT_TOLERANCE`].
    pub tolerance: f64,
    /// The reach of the long-term latency's average, in windows. Default: [`DEFAULT_LONG_WINDOWS`].
    pub long_windows: u32,
    /// Windows between two probes (0: none). A probe holds the limit at `min_limit` for two windows while the
    /// server is busy (the first lets the calls admitted before drain), and takes the second's latency, the
    /// server's own without a queue, as the reference
    /// the gradient compares with, instead of the long-term average. Without probes, a server overloaded from
    /// its first call takes its overloaded latency for normal and never finds its knee. Default:
    /// [`DEFAULT_PROBE_EVERY`].
    pub probe_every: u32,
    /// How many times the probed latency a window's may be before the limit comes down, once a probe has
    /// measured it (a positive number; another value counts as the default). Default:
    /// [`DEFAULT_PROBE_TOLERANCE`].
    pub probe_tolerance: f64,
    /// How long a shed call asks its caller to wait before sending it again. Default:
    /// [`DEFAULT_ADAPTIVE_RETRY_AFTER`].
    pub retry_after: Duration,
}

impl AdaptiveConfig {
    /// This configuration with its bounds in order and its factors numbers in range, as documented.
    fn sanitized(self) -> AdaptiveConfig {
        let max_limit = self.max_limit.max(1);
        let in_range = |value: f64, range: std::ops::RangeInclusive<f64>, default: f64| match range
            .contains(&value)
        {
            true => value,
            false => default,
        };
        AdaptiveConfig {
            max_limit,
            min_limit: self.min_limit.clamp(1, max_limit),
            smoothing: in_range(self.smoothing, 0.0..=1.0, DEFAULT_SMOOTHING),
            tolerance: match self.tolerance.is_finite() && self.tolerance > 0.0 {
                true => self.tolerance,
                false => DEFAULT_TOLERANCE,
            },
            probe_tolerance: match self.probe_tolerance.is_finite() && self.probe_tolerance > 0.0 {
                true => self.probe_tolerance,
                false => DEFAULT_PROBE_TOLERANCE,
            },
            ..self
        }
    }
}

impl Default for AdaptiveConfig {
    fn default() -> AdaptiveConfig {
        AdaptiveConfig {
            initial_limit: DEFAULT_INITIAL_LIMIT,
            min_limit: DEFAULT_MIN_LIMIT,
            max_limit: DEFAULT_MAX_LIMIT,
            window: DEFAULT_WINDOW,
            min_window_samples: DEFAULT_MIN_WINDOW_SAMPLES,
            smoothing: DEFAULT_SMOOTHING,
            tolerance: DEFAULT_TOLERANCE,
            long_windows: DEFAULT_LONG_WINDOWS,
            probe_every: DEFAULT_PROBE_EVERY,
            probe_tolerance: DEFAULT_PROBE_TOLERANCE,
            retry_after: DEFAULT_ADAPTIVE_RETRY_AFTER,
        }
    }
}

/// The limit as windows of latencies move it: a plain state machine, given each window's figures.
#[derive(Debug)]
struct Gradient {
    limit: f64,
    /// The long-term latency in seconds, once a window has been measured.
    long: Option<f64>,
    /// The latency of the last probe window, in seconds: the server's own, without a queue.
    base: Option<f64>,
    /// While a probe runs: the limit to go back to, and whether its first window (in which the calls admitted
    /// before it drain) is over.
    probing: Option<(f64, bool)>,
    /// The window after which the next probe starts.
    next_probe: u32,
    windows: u32,
    /// The limit last logged at `info`.
    logged: f64,
}

impl Gradient {
    fn new(config: &AdaptiveConfig) -> Gradient {
        let limit = config
            .initial_limit
            .clamp(config.min_limit, config.max_limit) as f64;
        Gradient {
            limit,
            long: None,
            base: None,
            probing: None,
            next_probe: 1,
            windows: 0,
            logged: limit,
        }
    }

    /// A window ended: its calls took `short` on average, and at most `peak` were under way at once. The new
    /// limit.
    fn window(&mut self, config: &AdaptiveConfig, short: Duration, peak: usize) -> f64 {
        let short = short.as_secs_f64().max(1e-9);
        self.windows = self.windows.saturating_add(1);
        let weight = match self.windows <= WARMUP_WINDOWS {
            true => 1.0 / f64::from(self.windows),
            false => 2.0 / (f64::from(config.long_windows) + 1.0),
        };
        let mut long = self
            .long
            .map_or(short, |long| long + (short - long) * weight);
        if long / short > STALE_RATIO {
            long *= STALE_DECAY;
        }
        self.long = Some(long);
        match self.probing {
            Some((saved, false)) => {
                // The calls admitted before the probe have drained; the next window measures.
                self.probing = Some((saved, true));
                return self.limit;
            }
            Some((saved, true)) => {
                // The probe window: its calls ran at most `min_limit` at a time.
                self.probing = None;
                self.base = Some(short);
                self.next_probe = self.windows.saturating_add(config.probe_every);
                self.limit = saved;
                return self.limit;
            }
            None => {}
        }
        // Too few calls under way to tell what more would do to latency.
        if (peak as f64) < self.limit / 2.0 {
            return self.limit;
        }
        if config.probe_every > 0 && self.windows >= self.next_probe {
            self.probing = Some((self.limit, false));
            self.limit = config.min_limit as f64;
            return self.limit;
        }
        let reference = match self.base {
            Some(base) => config.probe_tolerance * base,
            None => config.tolerance * long,
        };
        let gradient = (reference / short).clamp(MIN_GRADIENT, 1.0);
        let target = self.limit * gradient + self.limit.sqrt();
        let smoothing = config.smoothing;
        let smoothed = self.limit * (1.0 - smoothing) + target * smoothing;
        self.limit = smoothed.clamp(config.min_limit as f64, config.max_limit as f64);
        self.limit
    }
}

/// The adaptive limit layer. Its clones share the limit: keep one to read [`limit`](AdaptiveLimit::limit)
/// and [`in_flight`](AdaptiveLimit::in_flight). Calls it sheds are counted by the server's metrics as
/// `ResourceExhausted`.
///
/// ```
/// use rpc_core::server::layer::{AdaptiveConfig, AdaptiveLimit};
///
/// let adaptive = AdaptiveLimit::new(AdaptiveConfig { max_limit: 200, ..AdaptiveConfig::default() });
/// # let _ = rpc_core::Server::builder().layer(adaptive.clone());
/// assert_eq!(adaptive.limit(), 20);
/// ```
#[derive(Clone, Debug)]
pub struct AdaptiveLimit {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    config: AdaptiveConfig,
    /// The limit now, in whole calls.
    limit: AtomicUsize,
    in_flight: AtomicUsize,
    /// The most calls under way at once in this window.
    peak: AtomicUsize,
    /// This window's calls, and the sum of their latencies in nanoseconds.
    count: AtomicU64,
    sum_ns: AtomicU64,
    /// When this window began, in nanoseconds since `epoch`.
    began: AtomicU64,
    epoch: Instant,
    /// Taken only to end a window (never waited for).
    gradient: Mutex<Gradient>,
}

impl AdaptiveLimit {
    /// A limit as `config` says.
    pub fn new(config: AdaptiveConfig) -> AdaptiveLimit {
        let config = config.sanitized();
        let gradient = Gradient::new(&config);
        AdaptiveLimit {
            shared: Arc::new(Shared {
                limit: AtomicUsize::new(gradient.limit as usize),
                in_flight: AtomicUsize::new(0),
                peak: AtomicUsize::new(0),
                count: AtomicU64::new(0),
                sum_ns: AtomicU64::new(0),
                began: AtomicU64::new(0),
                epoch: Instant::now(),
                gradient: Mutex::new(gradient),
                config,
            }),
        }
    }

    /// The limit now: calls past it are shed.
    pub fn limit(&self) -> usize {
        self.shared.limit.load(Ordering::Acquire)
    }

    /// The calls under way through the layer now.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::Acquire)
    }

    /// The long-term latency the limit compares each window with, once a window has been measured.
    pub fn long_term_latency(&self) -> Option<Duration> {
        let gradient = crate::sync::lock(&self.shared.gradient);
        gradient.long.map(Duration::from_secs_f64)
    }
}

impl Shared {
    /// A place under the limit, if there is one.
    fn admit(self: &Arc<Shared>) -> Result<Admitted, usize> {
        let limit = self.limit.load(Ordering::Acquire);
        let before = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .map_err(|_| limit)?;
        self.peak.fetch_max(before + 1, Ordering::AcqRel);
        Ok(Admitted {
            shared: Arc::clone(self),
            arrived: Instant::now(),
            deadline: None,
            done: false,
        })
    }

    /// A call took `latency`; at `now`, the window ends if it is long enough and has calls enough.
    fn sample(&self, latency: Duration, now: Instant) {
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.sum_ns.fetch_add(ns, Ordering::AcqRel);
        let count = self.count.fetch_add(1, Ordering::AcqRel) + 1;
        if count < self.config.min_window_samples.max(1) as u64 {
            return;
        }
        let at =
            u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX);
        let window = u64::try_from(self.config.window.as_nanos()).unwrap_or(u64::MAX);
        if at.saturating_sub(self.began.load(Ordering::Acquire)) < window {
            return;
        }
        let mut gradient = match self.gradient.try_lock() {
            Ok(gradient) => gradient,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            // Another call is ending this window.
            Err(TryLockError::WouldBlock) => return,
        };
        // Ended by another call since it was read.
        if at.saturating_sub(self.began.load(Ordering::Acquire)) < window {
            return;
        }
        let count = self.count.swap(0, Ordering::AcqRel);
        let sum = self.sum_ns.swap(0, Ordering::AcqRel);
        self.began.store(at, Ordering::Release);
        let peak = self
            .peak
            .swap(self.in_flight.load(Ordering::Acquire), Ordering::AcqRel);
        let Some(mean) = sum.checked_div(count) else {
            return;
        };
        let short = Duration::from_nanos(mean);
        let limit = gradient.window(&self.config, short, peak);
        self.limit.store(limit as usize, Ordering::Release);
        let long = gradient.long.map(Duration::from_secs_f64);
        if (limit - gradient.logged).abs() >= gradient.logged * LOGGED_CHANGE {
            tracing::info!(
                from = gradient.logged as usize,
                to = limit as usize,
                ?short,
                ?long,
                "adaptive concurrency limit moved"
            );
            gradient.logged = limit;
        } else {
            tracing::trace!(limit, ?short, ?long, peak, "adaptive concurrency window");
        }
    }
}

/// A call's place under the limit: given back when dropped; its latency is a sample if it ended (or outlived
/// its deadline, which says as much about the server; a call its caller cancelled says nothing).
#[derive(Debug)]
struct Admitted {
    shared: Arc<Shared>,
    arrived: Instant,
    deadline: Option<Instant>,
    done: bool,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let now = Instant::now();
        if self.done || self.deadline.is_some_and(|at| now >= at) {
            self.shared
                .sample(now.saturating_duration_since(self.arrived), now);
        }
        self.shared.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<S> Layer<S> for AdaptiveLimit {
    type Service = AdaptiveLimited<S>;

    fn layer(&self, inner: S) -> AdaptiveLimited<S> {
        AdaptiveLimited {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The service of [`AdaptiveLimit`] (one per connection).
#[derive(Clone, Debug)]
pub struct AdaptiveLimited<S> {
    inner: S,
    shared: Arc<Shared>,
}

pin_project_lite::pin_project! {
    /// A call's answer to come, holding its place under the adaptive limit and timing it.
    #[derive(Debug)]
    pub struct Sampled<F> {
        #[pin]
        future: F,
        admitted: Option<Admitted>,
    }
}

impl<F, E> Future for Sampled<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let ready = std::task::ready!(this.future.poll(cx));
        if let Some(mut admitted) = this.admitted.take() {
            admitted.done = true;
        }
        Poll::Ready(ready)
    }
}

impl<S> Service<Request> for AdaptiveLimited<S>
where
    S: Service<Request, Response = Response>,
    S::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = BoxError;
    type Future = Either<std::future::Ready<Result<Response, BoxError>>, Sampled<S::Future>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match self.shared.admit() {
            Ok(mut admitted) => {
                // Latency counts from the request's arrival, as the server's metrics count it.
                admitted.arrived = request.arrived();
                admitted.deadline = request.deadline();
                Either::Right {
                    future: Sampled {
                        future: self.inner.call(request),
                        admitted: Some(admitted),
                    },
                }
            }
            Err(limit) => {
                let method = request.method();
                tracing::debug!(%method, limit, "adaptive concurrency limit reached: call shed");
                let message = format!(
                    "the server's adaptive limit of {limit} calls under way is reached: {method} is shed"
                );
                let shed = Response::error(Status::ResourceExhausted, message)
                    .with_retry_after(self.shared.config.retry_after);
                Either::Left {
                    future: std::future::ready(Ok(shed)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
