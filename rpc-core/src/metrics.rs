//! Metrics of calls, for a server or a client: calls by method and status (the names of `docs/PROTOCOL.md`
//! section 6, and [`APP_ERROR`] for a method's own error), a latency histogram per method, calls in flight,
//! open connections, bytes in and out. `prometheus-client` writes them (`exposition`): in the Prometheus text
//! format (version 0.0.4) by [`Metrics::render`] and over HTTP by [`Metrics::serve_http`], or, put in a user's
//! own [`prometheus_client::registry::Registry`] by [`Metrics::register_into`], beside the user's metrics.
//!
//! Metrics are opt-in: attach one with `ServerBuilder::metrics` or `ClientConfig::metrics`. A call then costs
//! a few relaxed atomic additions and one clock read; without, nothing.
//!
//! ```
//! let metrics = rpc_core::Metrics::server();
//! let text = metrics.render();
//! assert!(text.contains("# TYPE rpc_server_calls_in_flight gauge"));
//! ```

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rpc_codec::Status;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::ids::IdMap;
use crate::method::MethodInfo;

mod exposition;

/// The `prometheus-client` that [`Metrics`] are written with, and whose registries take them
/// ([`Metrics::register_into`]).
pub use prometheus_client;

/// Upper bounds of the latency histogram's buckets, in microseconds (and `+Inf`).
const BUCKETS_US: [u64; 18] = [
    10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000,
    500_000, 1_000_000, 2_500_000, 10_000_000,
];

/// The `status` label of a call that ended with the method's own error: a `Response` with `APP_ERROR`, which
/// is an answered call but not a success.
pub const APP_ERROR: &str = "AppError";

/// The `status` labels of calls, by [`Ended::index`]: the names of `docs/PROTOCOL.md` section 6 (which are
/// [`Status`]'s variants), then [`APP_ERROR`]. Spans record the same names.
const LABELS: [&str; 18] = [
    "Ok",
    "Cancelled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
    APP_ERROR,
];

/// How a call ended, as its metrics and its span name it: a status code, or the method's own error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ended {
    /// The status of the call (`Ok` for a method's value).
    Status(Status),
    /// The method returned its own error.
    AppError,
}

impl Ended {
    fn index(self) -> usize {
        match self {
            Ended::Status(status) => status as usize,
            Ended::AppError => LABELS.len() - 1,
        }
    }

    /// The call's `status` label (and span field).
    pub(crate) fn label(self) -> &'static str {
        LABELS[self.index()]
    }
}

impl From<Status> for Ended {
    fn from(status: Status) -> Ended {
        Ended::Status(status)
    }
}

/// Counters of one method.
pub(crate) struct MethodStats {
    service: &'static str,
    method: &'static str,
    /// Calls by how they ended, indexed as [`LABELS`].
    by_status: [AtomicU64; LABELS.len()],
    /// One count per bucket (not cumulative), the last for `+Inf`.
    buckets: [AtomicU64; BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
}

impl std::fmt::Debug for MethodStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MethodStats({}.{})", self.service, self.method)
    }
}

impl MethodStats {
    fn new(method: &MethodInfo) -> MethodStats {
        MethodStats {
            service: method.service,
            method: method.name,
            by_status: std::array::from_fn(|_| AtomicU64::new(0)),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_us: AtomicU64::new(0),
        }
    }

    /// A call that ended as `ended` (a [`Status`], or [`Ended::AppError`]) after `took`.
    pub(crate) fn record(&self, ended: impl Into<Ended>, took: Duration) {
        self.by_status[ended.into().index()].fetch_add(1, Ordering::Relaxed);
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let bucket = BUCKETS_US.partition_point(|&bound| bound < us);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }
}

/// Ids of [`Metrics`], for the per-thread caches.
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// Entries of a thread's cache of method counters.
const CACHED: usize = 32;

/// Counters by (metrics id, method id).
type Cached = Vec<((u64, u32), Arc<MethodStats>)>;

thread_local! {
    /// The counters this thread looked up last.
    static CACHE: std::cell::RefCell<Cached> = const {
        std::cell::RefCell::new(Vec::new())
    };
}

/// Which side of calls the metrics count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Server,
    Client,
}

struct Inner {
    /// Tells these metrics apart in the per-thread caches of [`Metrics::method`] (never reused, unlike an
    /// address).
    id: u64,
    side: Side,
    methods: RwLock<IdMap<u32, Arc<MethodStats>>>,
    in_flight: AtomicI64,
    connections: AtomicI64,
    received: AtomicU64,
    sent: AtomicU64,
    /// A balanced client's retries, hedged attempts and ejections of instances.
    retries: AtomicU64,
    hedges: AtomicU64,
    ejections: AtomicU64,
}

/// The metrics of a server's or a client's calls. Cheap to clone: clones count into the same metrics.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("side", &self.inner.side)
            .finish_non_exhaustive()
    }
}

impl Metrics {
    fn new(side: Side) -> Metrics {
        Metrics {
            inner: Arc::new(Inner {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                side,
                methods: RwLock::new(IdMap::default()),
                in_flight: AtomicI64::new(0),
                connections: AtomicI64::new(0),
                received: AtomicU64::new(0),
                sent: AtomicU64::new(0),
                retries: AtomicU64::new(0),
                hedges: AtomicU64::new(0),
                ejections: AtomicU64::new(0),
            }),
        }
    }

    /// Metrics of a server's calls (names `rpc_server_*`).
    pub fn server() -> Metrics {
        Metrics::new(Side::Server)
    }

    /// Metrics of a client's calls (names `rpc_client_*`).
    pub fn client() -> Metrics {
        Metrics::new(Side::Client)
    }

    /// The counters of `method`, made on first use. A client looks them up on every call: a small per-thread
    /// cache answers without touching the shared map's lock.
    pub(crate) fn method(&self, method: &MethodInfo) -> Arc<MethodStats> {
        let key = (self.inner.id, method.id);
        let cached = CACHE.with_borrow(|cache| {
            cache
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, stats)| Arc::clone(stats))
        });
        if let Some(stats) = cached {
            return stats;
        }
        let stats = self.shared_method(method);
        CACHE.with_borrow_mut(|cache| {
            if cache.len() == CACHED {
                cache.remove(0);
            }
            cache.push((key, Arc::clone(&stats)));
        });
        stats
    }

    fn shared_method(&self, method: &MethodInfo) -> Arc<MethodStats> {
        let methods = crate::sync::read(&self.inner.methods);
        if let Some(stats) = methods.get(&method.id) {
            return Arc::clone(stats);
        }
        drop(methods);
        let mut methods = crate::sync::write(&self.inner.methods);
        Arc::clone(
            methods
                .entry(method.id)
                .or_insert_with(|| Arc::new(MethodStats::new(method))),
        )
    }

    /// One call recorded as a server records it, its method's counters resolved beforehand: calls in flight up,
    /// the call's status and latency, calls in flight down. For `benches/benches/metrics.rs`; not part of the
    /// API.
    #[doc(hidden)]
    pub fn __recorder(
        &self,
        method: &MethodInfo,
    ) -> impl Fn(Status, Duration) + Send + Sync + use<> {
        let (metrics, stats) = (self.clone(), self.method(method));
        move |status, took| {
            metrics.call_started();
            stats.record(status, took);
            metrics.call_ended();
        }
    }

    /// One call recorded as a client records it, its method's counters looked up on the way (through the
    /// per-thread cache). For `benches/benches/metrics.rs`; not part of the API.
    #[doc(hidden)]
    pub fn __record(&self, method: &MethodInfo, status: Status, took: Duration) {
        self.call_started();
        self.method(method).record(status, took);
        self.call_ended();
    }

    pub(crate) fn call_started(&self) {
        self.inner.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn call_ended(&self) {
        self.inner.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// Connections open now (the `*_connections` gauge): what a server compares with
    /// [`ServerConfig::max_connections`](crate::ServerConfig::max_connections), say for a health check.
    pub fn connections(&self) -> u64 {
        u64::try_from(self.inner.connections.load(Ordering::Relaxed)).unwrap_or(0)
    }

    pub(crate) fn connection_opened(&self) {
        self.inner.connections.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn connection_closed(&self) {
        self.inner.connections.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn received(&self, bytes: usize) {
        self.inner
            .received
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub(crate) fn sent(&self, bytes: usize) {
        self.inner.sent.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// A balanced client retried an attempt on another instance.
    pub(crate) fn retried(&self) {
        self.inner.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// A balanced client sent a hedged attempt.
    pub(crate) fn hedged(&self) {
        self.inner.hedges.fetch_add(1, Ordering::Relaxed);
    }

    /// A balanced client's outlier detection ejected an instance.
    pub(crate) fn ejected(&self) {
        self.inner.ejections.fetch_add(1, Ordering::Relaxed);
    }

    /// Serves `GET /metrics` on `listener` (HTTP/1.1, one request per connection), with these metrics followed
    /// by what `extra` renders, until the task is dropped. Anything else gets 404; a request over 8 KiB or
    /// slower than 5 s is dropped.
    pub async fn serve_http(
        self,
        listener: TcpListener,
        extra: impl Fn(&mut String) + Send + Sync + 'static,
    ) {
        self.serve(listener, Arc::new(extra), None).await;
    }

    /// Like [`Metrics::serve_http`], and `GET /healthz` as well: `200 ok` while `problem` returns `None`, `503`
    /// with the problem once it returns one (what a load balancer or an orchestrator's probe reads).
    pub async fn serve_http_with_health(
        self,
        listener: TcpListener,
        extra: impl Fn(&mut String) + Send + Sync + 'static,
        problem: impl Fn() -> Option<String> + Send + Sync + 'static,
    ) {
        self.serve(listener, Arc::new(extra), Some(Arc::new(problem)))
            .await;
    }

    async fn serve(self, listener: TcpListener, extra: Arc<Extra>, health: Option<Arc<Problem>>) {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (metrics, extra, health) = (self.clone(), Arc::clone(&extra), health.clone());
            tokio::spawn(async move {
                let mut request = Vec::with_capacity(1024);
                let read = tokio::time::timeout(Duration::from_secs(5), async {
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return false,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    true
                })
                .await;
                if !matches!(read, Ok(true)) {
                    return;
                }
                let line = request.split(|&b| b == b'\r').next().unwrap_or_default();
                let (status, body) = match &health {
                    _ if line.starts_with(b"GET /metrics ") => {
                        let mut body = metrics.render();
                        extra(&mut body);
                        ("200 OK", body)
                    }
                    Some(problem) if line.starts_with(b"GET /healthz ") => match problem() {
                        None => ("200 OK", String::from("ok\n")),
                        Some(problem) => ("503 Service Unavailable", format!("{problem}\n")),
                    },
                    Some(_) => (
                        "404 Not Found",
                        String::from("only GET /metrics and GET /healthz are served here\n"),
                    ),
                    None => (
                        "404 Not Found",
                        String::from("only GET /metrics is served here\n"),
                    ),
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(body.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    }
}

/// What [`Metrics::serve_http`] renders after the metrics.
type Extra = dyn Fn(&mut String) + Send + Sync;
/// What [`Metrics::serve_http_with_health`] asks for `/healthz`.
type Problem = dyn Fn() -> Option<String> + Send + Sync;

/// A label value with `\`, `"` and newlines escaped, as the text format asks: for lines of one's own that
/// [`Metrics::serve_http`]'s `extra` appends (the framework's metrics are escaped by `prometheus-client`).
pub fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ECHO: MethodInfo = MethodInfo {
        service: "Lab",
        name: "echo",
        id: 7,
        idempotent: false,
    };

    #[test]
    fn a_call_lands_in_its_status_and_bucket() {
        let metrics = Metrics::server();
        let stats = metrics.method(&ECHO);
        stats.record(Status::Ok, Duration::from_micros(40));
        stats.record(Status::Ok, Duration::from_micros(300));
        stats.record(Status::DeadlineExceeded, Duration::from_secs(60));
        let text = metrics.render();
        assert!(
            text.contains(
                "rpc_server_calls_total{service=\"Lab\",method=\"echo\",status=\"Ok\"} 2\n"
            )
        );
        assert!(text.contains("status=\"DeadlineExceeded\"} 1\n"));
        assert!(
            text.contains("_bucket{service=\"Lab\",method=\"echo\",le=\"5e-05\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("_bucket{service=\"Lab\",method=\"echo\",le=\"0.0005\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("_bucket{service=\"Lab\",method=\"echo\",le=\"10\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("_bucket{service=\"Lab\",method=\"echo\",le=\"+Inf\"} 3\n"),
            "{text}"
        );
        assert!(text.contains(
            "rpc_server_call_duration_seconds_count{service=\"Lab\",method=\"echo\"} 3\n"
        ));
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn status_labels_are_the_protocol_names_and_app_error_is_its_own() {
        for status in Status::ALL {
            assert_eq!(Ended::from(status).label(), format!("{status:?}"));
        }
        assert_eq!(Ended::AppError.label(), "AppError");
        let metrics = Metrics::client();
        let stats = metrics.method(&ECHO);
        stats.record(Ended::AppError, Duration::from_micros(5));
        stats.record(Status::Ok, Duration::from_micros(5));
        let text = metrics.render();
        assert!(
            text.contains("method=\"echo\",status=\"AppError\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("method=\"echo\",status=\"Ok\"} 1\n"),
            "{text}"
        );
    }

    #[test]
    fn each_metrics_counts_its_own_calls_through_the_thread_cache() {
        let (a, b) = (Metrics::client(), Metrics::client());
        for _ in 0..3 {
            a.method(&ECHO).record(Status::Ok, Duration::from_micros(5));
        }
        b.method(&ECHO).record(Status::Ok, Duration::from_micros(5));
        // More methods than the cache holds push the first out; it is found again in the shared map.
        for id in 0..(CACHED as u32 + 5) {
            let other = MethodInfo {
                id: 1000 + id,
                ..ECHO
            };
            a.method(&other);
        }
        a.method(&ECHO).record(Status::Ok, Duration::from_micros(5));
        let ok = |m: &Metrics| {
            let calls = "rpc_client_calls_total{service=\"Lab\",method=\"echo\",status=\"Ok\"}";
            m.render()
                .lines()
                .find(|l| l.starts_with(calls))
                .map(str::to_owned)
        };
        assert!(ok(&a).is_some_and(|l| l.ends_with(" 4")), "{:?}", ok(&a));
        assert!(ok(&b).is_some_and(|l| l.ends_with(" 1")), "{:?}", ok(&b));
    }
}
