//! How [`Metrics`] are written out: a `prometheus-client` [`Collector`] that reads the counters when scraped, so
//! that `prometheus-client`'s encoders write them. [`Metrics::render`] encodes them in the Prometheus text format
//! (version 0.0.4); once put in a user's own [`Registry`] with [`Metrics::register_into`], they come out with
//! the user's metrics in whatever format that registry is encoded in (OpenMetrics text, protobuf). Recording
//! stays on the framework's atomics: the crate only reads them.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet, prometheus_text};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use super::{BUCKETS_US, LABELS, MethodStats, Metrics, Side};

/// The names and help of one side's metrics. Counters are named without `_total` and units are given apart, as
/// `prometheus-client` wants them: its encoders append both (`rpc_server_calls` is written
/// `rpc_server_calls_total`, `rpc_server_call_duration` with [`Unit::Seconds`] `rpc_server_call_duration_seconds`).
struct Names {
    calls: &'static str,
    calls_help: &'static str,
    duration: &'static str,
    in_flight: &'static str,
    connections: &'static str,
    received: &'static str,
    sent: &'static str,
}

const SERVER: Names = Names {
    calls: "rpc_server_calls",
    calls_help: "Calls served, by service, method and status.",
    duration: "rpc_server_call_duration",
    in_flight: "rpc_server_calls_in_flight",
    connections: "rpc_server_connections",
    received: "rpc_server_received",
    sent: "rpc_server_sent",
};

const CLIENT: Names = Names {
    calls: "rpc_client_calls",
    calls_help: "Calls made, by service, method and status.",
    duration: "rpc_client_call_duration",
    in_flight: "rpc_client_calls_in_flight",
    connections: "rpc_client_connections",
    received: "rpc_client_received",
    sent: "rpc_client_sent",
};

const DURATION_HELP: &str = "Time calls took, from the request's arrival (server) or the call's start (client) to \
                             its answer.";

impl Metrics {
    /// The metrics in the Prometheus text format (version 0.0.4), as `prometheus-client` writes it.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.render_into(&mut out);
        out
    }

    /// Appends the metrics in the Prometheus text format (version 0.0.4) to `out`.
    pub fn render_into(&self, out: &mut String) {
        let mut registry = Registry::default();
        self.register_into(&mut registry);
        // Writing to a `String` does not fail, and these metrics hold nothing the format refuses.
        let _ = prometheus_text::encode(out, &registry);
    }

    /// Puts these metrics in `registry`, a `prometheus-client` registry of the user's: they are read on each
    /// encoding of it, in its format and under its prefix and labels. Register each `Metrics` once.
    ///
    /// ```
    /// use rpc_core::metrics::prometheus_client::{encoding::text, registry::Registry};
    ///
    /// let metrics = rpc_core::Metrics::server();
    /// let mut registry = Registry::default();
    /// metrics.register_into(&mut registry);
    /// let mut text = String::new();
    /// text::encode(&mut text, &registry).unwrap();
    /// assert!(text.contains("# TYPE rpc_server_calls_in_flight gauge\nrpc_server_calls_in_flight 0\n"));
    /// assert!(text.ends_with("# EOF\n"));
    /// ```
    pub fn register_into(&self, registry: &mut Registry) {
        registry.register_collector(Box::new(self.clone()));
    }
}

/// A method's latency histogram as `prometheus-client` takes it: (upper bound in seconds, calls in that bucket
/// alone), the last bound `+Inf`; the count of calls, and the sum of their latencies in seconds.
fn histogram(stats: &MethodStats) -> ([(f64, u64); BUCKETS_US.len() + 1], u64, f64) {
    let buckets: [(f64, u64); BUCKETS_US.len() + 1] = std::array::from_fn(|i| {
        let bound = BUCKETS_US
            .get(i)
            .map_or(f64::INFINITY, |&us| us as f64 / 1e6);
        (bound, stats.buckets[i].load(Ordering::Relaxed))
    });
    let count = buckets.iter().map(|&(_, n)| n).sum();
    let sum = stats.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
    (buckets, count, sum)
}

impl Collector for Metrics {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let names = match self.inner.side {
            Side::Server => &SERVER,
            Side::Client => &CLIENT,
        };
        let mut methods: Vec<Arc<MethodStats>> = crate::sync::read(&self.inner.methods)
            .values()
            .cloned()
            .collect();
        methods.sort_by_key(|m| (m.service, m.method));

        let mut calls =
            encoder.encode_descriptor(names.calls, names.calls_help, None, MetricType::Counter)?;
        for m in &methods {
            for (&status, count) in LABELS.iter().zip(&m.by_status) {
                let count = count.load(Ordering::Relaxed);
                if count > 0 {
                    let labels = [
                        ("service", m.service),
                        ("method", m.method),
                        ("status", status),
                    ];
                    calls
                        .encode_family(&labels)?
                        .encode_counter::<NoLabelSet, _, u64>(&count, None)?;
                }
            }
        }

        let seconds = Unit::Seconds;
        let mut durations = encoder.encode_descriptor(
            names.duration,
            DURATION_HELP,
            Some(&seconds),
            MetricType::Histogram,
        )?;
        for m in &methods {
            let (buckets, count, sum) = histogram(m);
            let labels = [("service", m.service), ("method", m.method)];
            durations
                .encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
        }

        let gauges = [
            (
                names.in_flight,
                "Calls being made or served now.",
                &self.inner.in_flight,
            ),
            (
                names.connections,
                "Connections open now.",
                &self.inner.connections,
            ),
        ];
        for (name, help, gauge) in gauges {
            encoder
                .encode_descriptor(name, help, None, MetricType::Gauge)?
                .encode_gauge(&gauge.load(Ordering::Relaxed))?;
        }

        let bytes = Unit::Bytes;
        let counters = [
            (
                names.received,
                "Bytes read from connections.",
                &self.inner.received,
            ),
            (
                names.sent,
                "Bytes written to connections.",
                &self.inner.sent,
            ),
        ];
        for (name, help, counter) in counters {
            encoder
                .encode_descriptor(name, help, Some(&bytes), MetricType::Counter)?
                .encode_counter::<NoLabelSet, _, u64>(&counter.load(Ordering::Relaxed), None)?;
        }

        if self.inner.side == Side::Client {
            let resilience = [
                (
                    "rpc_client_retries",
                    "Attempts a balanced client made again on another instance.",
                    &self.inner.retries,
                ),
                (
                    "rpc_client_hedges",
                    "Second attempts a balanced client sent while the first was slow.",
                    &self.inner.hedges,
                ),
                (
                    "rpc_client_ejections",
                    "Instances a balanced client's outlier detection ejected.",
                    &self.inner.ejections,
                ),
            ];
            for (name, help, counter) in resilience {
                encoder
                    .encode_descriptor(name, help, None, MetricType::Counter)?
                    .encode_counter::<NoLabelSet, _, u64>(&counter.load(Ordering::Relaxed), None)?;
            }
        }
        Ok(())
    }
}
